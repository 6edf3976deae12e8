{{
    config(
        materialized = 'ephemeral',
    )
}}
-- Daily user-item interactions paired with every snapshot they precede, with their age in days:
-- the one place the point-in-time join (`event_date < snapshot_date`) is written. Ephemeral, so
-- each model that reads it inlines the join and filters it to its own window.

with

interactions as (

    select * from {{ ref('int_user_item_interactions_daily') }}

),

snapshots as (

    select * from {{ ref('int_snapshots_scheduled') }}

),

paired as (

    select
        snapshots.snapshot_date,
        interactions.user_id,
        interactions.item_id,
        interactions.event_date,
        interactions.event_count,
        interactions.positive_event_count,
        interactions.interaction_weight,
        interactions.first_event_at,
        interactions.last_event_at,
        {{ dbt.datediff('interactions.event_date', 'snapshots.snapshot_date', 'day') }}
            as days_ago

    from snapshots
    inner join interactions
        on snapshots.snapshot_date > interactions.event_date

)

select * from paired
