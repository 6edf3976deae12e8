{{
    config(physical_design(
        partition_date='snapshot_date', cluster_by=['user_id', 'item_id']
    ))
}}
-- The candidates and features at the latest cutoff, for batch recommendations.

with

featurized as (

    select * from {{ ref('int_candidates_featurized') }}
    where split = 'scoring'

)

select * from featurized
