{{
    config(physical_design(
        partition_date='cutoff_date', cluster_by=['user_id', 'item_id']
    ))
}}
-- Each user's history with each item before the test and scoring cutoffs: what the evaluation's
-- baselines (popularity, item-kNN, ALS) learn from, and what the gate and the serving tests know
-- a user has already seen. The two cutoffs only: the trainer reads the whole table.

with

user_items as (

    select * from {{ ref('int_user_items_aggregated') }}

),

cutoffs as (

    select * from {{ ref('int_cutoffs_scheduled') }}
    where split in ('test', 'scoring')

),

final as (

    select
        user_items.user_id,
        user_items.item_id,
        user_items.event_count,
        user_items.interaction_weight,
        user_items.recency_rank,
        user_items.cutoff_date,
        user_items.last_event_at

    from user_items
    inner join cutoffs
        on user_items.cutoff_date = cutoffs.cutoff_date

)

select * from final
