{{
    config(physical_design(
        partition_date='cutoff_date', cluster_by=['user_id']
    ))
}}
-- What the app reads: each user's recommended items at the latest cutoff, best first.

with

batch_recommendations as (

    select * from {{ ref('stg_ml__batch_recommendations') }}

),

final as (

    select
        user_id,
        item_id,
        model_version,
        recommendation_rank,
        score,
        cutoff_date,
        generated_at

    from batch_recommendations

)

select * from final
