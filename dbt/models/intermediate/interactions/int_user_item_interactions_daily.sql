{{
    config(incremental_by_day(partition_date='event_date', cluster_by=['user_id', 'item_id']))
}}
-- One row per user, item and day: the grain every point-in-time feature aggregates from, so
-- features never re-read the event log. Incremental: a run recomputes only the recent days.

with

events as (

    select * from {{ ref('stg_app__events') }}
    {%- if is_incremental() %}
    where event_date >= {{ incremental_window_start('event_date') }}
    {%- endif %}

),

aggregated as (

    select
        user_id,
        item_id,
        event_date,
        count(*) as event_count,
        cast(sum(case when is_positive then 1 else 0 end) as {{ dbt.type_bigint() }})
            as positive_event_count,
        sum(event_weight) as interaction_weight,
        min(event_at) as first_event_at,
        max(event_at) as last_event_at

    from events
    group by user_id, item_id, event_date

)

select * from aggregated
