{{
    config(incremental_by_cutoff(cluster_by=['item_id']))
}}
-- Item features at each cutoff, from events strictly before it, for every item listed
-- before the cutoff or seen in its events. A feature model: its keys (item_id, cutoff_date),
-- `last_event_at` (the point-in-time audit) and one column per feature, named `item_*`;
-- int_candidates_featurized takes every other column, so a new item feature is one column here
-- and one entry in training_examples' YAML. The item_features mart is this model plus the
-- popularity ranks and counts of int_item_popularity_ranked.

with

items as (

    select * from {{ ref('stg_app__items') }}

),

popularity as (

    select * from {{ ref('int_item_popularity_ranked') }}
    where {{ cutoffs_to_rebuild() }}

),

cutoffs as (

    select * from {{ ref('int_cutoffs_scheduled') }}
    where {{ cutoffs_to_rebuild() }}

),

listed_items as (

    select
        cutoffs.cutoff_date,
        items.item_id

    from cutoffs
    cross join items
    -- BigQuery compares a TIMESTAMP only with a TIMESTAMP, never with a DATE.
    where
        items.created_at is null
        or items.created_at < cast(cutoffs.cutoff_date as timestamp)

    union distinct

    select
        cutoff_date,
        item_id
    from popularity

),

final as (

    select
        listed_items.item_id,
        coalesce(items.category, 'unknown') as item_category,
        coalesce(popularity.users_1d, 0) as item_users_1d,
        coalesce(popularity.users_7d, 0) as item_users_7d,
        coalesce(popularity.users_28d, 0) as item_users_28d,
        coalesce(popularity.users_total, 0) as item_users_total,
        popularity.positive_events_28d
        / nullif(popularity.events_28d, 0) as item_positive_rate_28d,
        popularity.category_popularity_rank as item_category_popularity_rank,
        {{ dbt.datediff('items.created_at', 'listed_items.cutoff_date', 'day') }}
            as item_days_since_created,
        {{ dbt.datediff('popularity.last_event_at', 'listed_items.cutoff_date', 'day') }}
            as item_days_since_last_event,
        listed_items.cutoff_date,
        popularity.last_event_at

    from listed_items
    left join items
        on listed_items.item_id = items.item_id
    left join popularity
        on
            listed_items.cutoff_date = popularity.cutoff_date
            and listed_items.item_id = popularity.item_id

)

select * from final
