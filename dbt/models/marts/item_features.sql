{{
    config(incremental_by_cutoff(cluster_by=['item_id']))
}}
-- Item features at each cutoff, from events strictly before it, for every item listed
-- before the cutoff or seen in its events.

{%- set windows = popularity_windows_days() %}

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
        coalesce(items.category, 'unknown') as category,
        {%- for window in windows %}
        coalesce(popularity.users_{{ window }}d, 0) as users_{{ window }}d,
        {%- endfor %}
        coalesce(popularity.users_total, 0) as users_total,
        coalesce(popularity.events_{{ windows | max }}d, 0) as events_{{ windows | max }}d,
        coalesce(popularity.positive_events_{{ windows | max }}d, 0)
            as positive_events_{{ windows | max }}d,
        popularity.positive_events_{{ windows | max }}d
        / nullif(popularity.events_{{ windows | max }}d, 0) as positive_rate_{{ windows | max }}d,
        popularity.popularity_rank,
        popularity.popularity_all_rank,
        popularity.category_popularity_rank,
        {{ dbt.datediff('items.created_at', 'listed_items.cutoff_date', 'day') }}
            as days_since_created,
        {{ dbt.datediff('popularity.last_event_at', 'listed_items.cutoff_date', 'day') }}
            as days_since_last_event,
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
