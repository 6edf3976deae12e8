{{
    config(physical_design(
        partition_date='snapshot_date', cluster_by=['user_id', 'item_id']
    ))
}}
-- The candidates and features at the latest cutoff, for batch recommendations.

with

snapshots as (

    select * from {{ ref('int_snapshots_scheduled') }}
    where split = 'scoring'

),

featurized as (

    select * from {{ ref('int_candidates_featurized') }}

),

final as (

    select
        featurized.*,
        snapshots.split

    from featurized
    inner join snapshots
        on featurized.snapshot_date = snapshots.snapshot_date

)

select * from final
