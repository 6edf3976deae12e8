{{
    config(incremental_by_snapshot(cluster_by=['item_id']))
}}
{%- set windows = var('popularity_windows_days') -%}
{%- set rank_window = var('popularity_rank_window_days') -%}
{%- if rank_window not in windows -%}
    {{ exceptions.raise_compiler_error(
        "popularity_rank_window_days (" ~ rank_window ~ ") must be one of "
        ~ "popularity_windows_days " ~ windows ~ " in dbt/dbt_project.yml."
    ) }}
{%- endif -%}
-- Item popularity over several windows before each snapshot, with the item's overall and
-- within-category popularity rank (the popularity candidate sources read the ranks).

with

interactions as (

    select * from {{ ref('int_interactions_before_snapshots') }}
    where days_ago <= {{ windows | max }} and {{ snapshots_to_rebuild() }}

),

items as (

    select * from {{ ref('stg_app__items') }}

),

windowed as (

    select
        snapshot_date,
        item_id,
        {%- for window in windows %}
        count(distinct case when days_ago <= {{ window }} then user_id end) as users_{{ window }}d,
        {%- endfor %}
        cast(sum(positive_event_count) as {{ dbt.type_bigint() }})
            as positive_events_{{ windows | max }}d,
        cast(sum(event_count) as {{ dbt.type_bigint() }}) as events_{{ windows | max }}d,
        max(last_event_at) as last_event_at

    from interactions
    group by snapshot_date, item_id

),

ranked as (

    select
        windowed.*,
        coalesce(items.category, 'unknown') as category,
        row_number() over (
            partition by windowed.snapshot_date
            order by windowed.users_{{ rank_window }}d desc, windowed.item_id asc
        ) as popularity_rank,
        row_number() over (
            partition by windowed.snapshot_date, coalesce(items.category, 'unknown')
            order by windowed.users_{{ rank_window }}d desc, windowed.item_id asc
        ) as category_popularity_rank

    from windowed
    left join items
        on windowed.item_id = items.item_id

)

select * from ranked
