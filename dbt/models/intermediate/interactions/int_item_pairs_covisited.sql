{{
    config(incremental_by_day(
        partition_date='covisit_date', cluster_by=['item_id', 'related_item_id']
    ))
}}
-- Item pairs seen close together in one user's history, per day of the later event. Each visit
-- pairs only with the next few visits within a time limit, so the cost stays linear in events.
-- Incremental: a run recomputes the pairs of the recent days, reading one day more of events
-- so that visits just before the window still pair with those inside it.

with

events as (

    select * from {{ ref('stg_app__events') }}
    {%- if is_incremental() %}
    where event_date >= cast({{ dbt.dateadd(
        'day', -1, incremental_window_start('covisit_date')
    ) }} as date)
    {%- endif %}

),

events_with_previous as (

    select
        user_id,
        item_id,
        event_at,
        lag(item_id) over (
            partition by user_id order by event_at, item_id
        ) as previous_item_id,
        lag(event_at) over (
            partition by user_id order by event_at, item_id
        ) as previous_event_at

    from events

),

-- A view followed by a click on the same item is one visit, not two; the same item again
-- after a pause longer than the pairing limit is a new visit.
visits as (

    select
        user_id,
        item_id,
        event_at,
        row_number() over (partition by user_id order by event_at, item_id) as visit_number

    from events_with_previous
    where
        previous_item_id is null
        or previous_item_id != item_id
        or event_at > cast({{ dbt.dateadd(
            'minute', var('covisit_max_minutes'), 'previous_event_at'
        ) }} as timestamp)

),

forward_pairs as (

    select
        earlier.item_id,
        later.item_id as related_item_id,
        cast(later.event_at as date) as covisit_date

    from visits as earlier
    inner join visits as later
        on
            earlier.user_id = later.user_id
            and earlier.visit_number < later.visit_number
            and later.visit_number <= earlier.visit_number + {{ var('covisit_max_positions') }}
            -- dbt.dateadd returns a DATETIME on BigQuery, which a TIMESTAMP cannot compare to.
            and later.event_at <= cast({{ dbt.dateadd(
                'minute', var('covisit_max_minutes'), 'earlier.event_at'
            ) }} as timestamp)
            and earlier.item_id != later.item_id

),

both_directions as (

    select
        item_id,
        related_item_id,
        covisit_date
    from forward_pairs

    union all

    select
        related_item_id as item_id,
        item_id as related_item_id,
        covisit_date
    from forward_pairs

),

aggregated as (

    select
        item_id,
        related_item_id,
        covisit_date,
        count(*) as covisit_count

    from both_directions
    {%- if is_incremental() %}
    where covisit_date >= {{ incremental_window_start('covisit_date') }}
    {%- endif %}
    group by item_id, related_item_id, covisit_date

)

select * from aggregated
