{{
    config(incremental_by_cutoff(cluster_by=['item_id']))
}}
{%- set windows = popularity_windows_days() -%}
{%- set rank_window = var('popularity_rank_window_days') -%}
{%- if rank_window not in windows -%}
    {{ exceptions.raise_compiler_error(
        "popularity_rank_window_days (" ~ rank_window ~ ") must be one of "
        ~ "popularity windows " ~ windows ~ ": fix it in dbt/dbt_project.yml or with --var."
    ) }}
{%- endif -%}
-- Item popularity over several windows before each cutoff and over all history, with the
-- item's rank overall, within its category, and over all history (the popularity candidate
-- sources read the ranks). An item with no event in the longest window still has all-history
-- popularity, so long-lived favourites stay reachable.

with

interactions as (

    select * from {{ ref('int_interactions_before_cutoffs') }}
    where days_ago <= {{ windows | max }} and {{ cutoffs_to_rebuild() }}

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
        {%- for window in windows %}
        count(distinct case when days_ago <= {{ window }} then user_id end) as users_{{ window }}d,
        {%- endfor %}
        cast(sum(positive_event_count) as {{ dbt.type_bigint() }})
            as positive_events_{{ windows | max }}d,
        cast(sum(event_count) as {{ dbt.type_bigint() }}) as events_{{ windows | max }}d

    from interactions
    group by cutoff_date, item_id

),

combined as (

    select
        all_history.cutoff_date,
        all_history.item_id,
        {%- for window in windows %}
        coalesce(windowed.users_{{ window }}d, 0) as users_{{ window }}d,
        {%- endfor %}
        all_history.users_total,
        coalesce(windowed.positive_events_{{ windows | max }}d, 0)
            as positive_events_{{ windows | max }}d,
        coalesce(windowed.events_{{ windows | max }}d, 0) as events_{{ windows | max }}d,
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
