{{
    config(
        materialized = 'ephemeral',
    )
}}
-- Daily user-item interactions paired with every snapshot they precede, with their age in days:
-- the one place the point-in-time join (`event_date < snapshot_date`, in int_snapshot_days) meets
-- the interactions. An equality join on the day, against a table of days x snapshots. Ephemeral,
-- so each model that reads it inlines the join and filters it to its own window.

with

interactions as (

    select * from {{ ref('int_user_item_interactions_daily') }}

),

snapshot_days as (

    select * from {{ ref('int_snapshot_days') }}

),

paired as (

    select
        snapshot_days.snapshot_date,
        interactions.user_id,
        interactions.item_id,
        interactions.event_date,
        interactions.event_count,
        interactions.positive_event_count,
        interactions.interaction_weight,
        interactions.first_event_at,
        interactions.last_event_at,
        snapshot_days.days_ago

    from snapshot_days
    inner join interactions
        on snapshot_days.event_date = interactions.event_date

)

select * from paired
