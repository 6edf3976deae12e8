{{
    config(incremental_by_day(
        partition_date='covisit_date', cluster_by=['item_id', 'related_item_id']
    ))
}}
{%- set max_positions = var('covisit_max_positions') %}
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
        event_at

    from events_with_previous
    where
        previous_item_id is null
        or previous_item_id != item_id
        or event_at > cast({{ dbt.dateadd(
            'minute', var('covisit_max_minutes'), 'previous_event_at'
        ) }} as timestamp)

),

-- Each visit with the few visits before it, from one sorted pass: a self join on the user
-- would compare every pair of a user's visits before keeping the close ones.
visits_with_earlier as (

    select
        {%- for offset in range(1, max_positions + 1) %}
        lag(item_id, {{ offset }}) over (
            partition by user_id order by event_at, item_id
        ) as earlier_item_id_{{ offset }},
        lag(event_at, {{ offset }}) over (
            partition by user_id order by event_at, item_id
        ) as earlier_event_at_{{ offset }},
        {%- endfor %}
        user_id,
        item_id,
        event_at

    from visits

),

offsets as (

    {{ dbt.generate_series(max_positions) }}

),

-- One row per visit and offset: the earlier visit that many positions back.
visit_pairs as (

    select
        case offsets.generated_number
            {%- for offset in range(1, max_positions + 1) %}
            when {{ offset }} then visits_with_earlier.earlier_item_id_{{ offset }}
            {%- endfor %}
        end as item_id,
        case offsets.generated_number
            {%- for offset in range(1, max_positions + 1) %}
            when {{ offset }} then visits_with_earlier.earlier_event_at_{{ offset }}
            {%- endfor %}
        end as earlier_event_at,
        visits_with_earlier.item_id as related_item_id,
        visits_with_earlier.event_at,
        cast(visits_with_earlier.event_at as date) as covisit_date

    from visits_with_earlier
    cross join offsets
    {%- if is_incremental() %}
    where cast(visits_with_earlier.event_at as date) >= {{ incremental_window_start('covisit_date') }}
    {%- endif %}

),

forward_counts as (

    select
        item_id,
        related_item_id,
        covisit_date,
        count(*) as covisit_count

    from visit_pairs
    where
        item_id is not null
        and item_id != related_item_id
        -- dbt.dateadd returns a DATETIME on BigQuery, which a TIMESTAMP cannot compare to.
        and event_at <= cast({{ dbt.dateadd(
            'minute', var('covisit_max_minutes'), 'earlier_event_at'
        ) }} as timestamp)
    group by item_id, related_item_id, covisit_date

),

-- Counted once per direction before the final sum, so the wide union carries counts, not
-- one row per pair.
both_directions as (

    select
        item_id,
        related_item_id,
        covisit_date,
        covisit_count
    from forward_counts

    union all

    select
        related_item_id as item_id,
        item_id as related_item_id,
        covisit_date,
        covisit_count
    from forward_counts

),

aggregated as (

    select
        item_id,
        related_item_id,
        covisit_date,
        cast(sum(covisit_count) as {{ dbt.type_bigint() }}) as covisit_count

    from both_directions
    group by item_id, related_item_id, covisit_date

)

select * from aggregated
