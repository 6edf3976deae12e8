{{
    config(incremental_by_cutoff(cluster_by=['item_id']))
}}
{%- set rank_window = var('popularity_rank_window_days') -%}
{%- if rank_window not in [1, 7, 28] -%}
    {{ exceptions.raise_compiler_error(
        "popularity_rank_window_days (" ~ rank_window ~ ") must be one of the popularity "
        ~ "windows 1, 7, 28: fix it in dbt/dbt_project.yml or with --var."
    ) }}
{%- endif -%}
-- Item popularity over the last 1, 7 and 28 days before each cutoff and over all history, with
-- the item's rank overall, within its category, and over all history (the popularity candidate
-- sources read the ranks). An item with no event in the longest window still has all-history
-- popularity, so long-lived favourites stay reachable.

with

interactions as (

    select * from {{ ref('int_interactions_before_cutoffs') }}
    where days_ago <= 28 and {{ cutoffs_to_rebuild() }}

),

user_items as (

    select * from {{ ref('int_user_items_aggregated') }}
    where {{ cutoffs_to_rebuild() }}

),

items as (

    select * from {{ ref('stg_app__items') }}

),

all_history as (

    select
        cutoff_date,
        item_id,
        count(*) as users_total,
        max(last_event_at) as last_event_at

    from user_items
    group by cutoff_date, item_id

),

windowed as (

    select
        cutoff_date,
        item_id,
        count(distinct case when days_ago <= 1 then user_id end) as users_1d,
        count(distinct case when days_ago <= 7 then user_id end) as users_7d,
        count(distinct case when days_ago <= 28 then user_id end) as users_28d,
        cast(sum(positive_event_count) as {{ dbt.type_bigint() }}) as positive_events_28d,
        cast(sum(event_count) as {{ dbt.type_bigint() }}) as events_28d

    from interactions
    group by cutoff_date, item_id

),

combined as (

    select
        all_history.cutoff_date,
        all_history.item_id,
        coalesce(windowed.users_1d, 0) as users_1d,
        coalesce(windowed.users_7d, 0) as users_7d,
        coalesce(windowed.users_28d, 0) as users_28d,
        all_history.users_total,
        coalesce(windowed.positive_events_28d, 0) as positive_events_28d,
        coalesce(windowed.events_28d, 0) as events_28d,
        all_history.last_event_at

    -- Every item in a window was seen before the cutoff, so all_history holds it too.
    from all_history
    left join windowed
        on
            all_history.cutoff_date = windowed.cutoff_date
            and all_history.item_id = windowed.item_id

),

ranked as (

    select
        combined.*,
        coalesce(items.category, 'unknown') as category,
        row_number() over (
            partition by combined.cutoff_date
            order by combined.users_{{ rank_window }}d desc, combined.item_id asc
        ) as popularity_rank,
        row_number() over (
            partition by combined.cutoff_date
            order by combined.users_total desc, combined.item_id asc
        ) as popularity_all_rank,
        row_number() over (
            partition by combined.cutoff_date, coalesce(items.category, 'unknown')
            order by combined.users_{{ rank_window }}d desc, combined.item_id asc
        ) as category_popularity_rank

    from combined
    left join items
        on combined.item_id = items.item_id

)

select * from ranked
