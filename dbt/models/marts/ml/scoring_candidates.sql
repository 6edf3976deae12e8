{{
    config(physical_design(
        partition_date='cutoff_date', cluster_by=['user_id', 'item_id']
    ))
}}
-- The candidates and features at the latest cutoff, for batch recommendations.

with

cutoffs as (

    select * from {{ ref('int_cutoffs_scheduled') }}
    where split = 'scoring'

),

featurized as (

    select * from {{ ref('int_candidates_featurized') }}
    where cutoff_date = {{ scoring_cutoff_date() }}

),

final as (

    select
        featurized.*,
        cutoffs.split

    from featurized
    inner join cutoffs
        on featurized.cutoff_date = cutoffs.cutoff_date

)

select * from final
