{{
    config(
        on_schema_change='fail',
        full_refresh=false,
        **incremental_by_day(partition_date='serving_date', cluster_by=['model_version', 'user_id'])
    )
}}
-- Every batch the trainer served, kept: one row per user and recommended item per serving day.
-- The batch table holds one batch (the trainer replaces it each run), so each serving build
-- appends that batch under its serving date, the batch's cutoff_date (the scoring cutoff: the
-- day the lists start being shown). A rerun for the same serving date (the same batch, or a
-- retrain that day) replaces that day only; older days stay as stored.

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
        cutoff_date as serving_date,
        generated_at

    from batch_recommendations

)

select * from final
