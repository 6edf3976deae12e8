{{
    config(
        materialized = 'ephemeral',
    )
}}
-- Daily user-item interactions paired with every cutoff they precede, with their age in days:
-- the one place the point-in-time join (`event_date < cutoff_date`, in
-- int_event_days_before_cutoffs) meets the interactions. An equality join on the day, against a
-- table of days x cutoffs. Ephemeral, so each model that reads it inlines the join and filters
-- it to its own window.

with

interactions as (

    select * from {{ ref('int_user_item_interactions_daily') }}

),

cutoff_days as (

    select * from {{ ref('int_event_days_before_cutoffs') }}

),

paired as (

    select
        cutoff_days.cutoff_date,
        interactions.user_id,
        interactions.item_id,
        interactions.event_date,
        interactions.event_count,
        interactions.positive_event_count,
        interactions.interaction_weight,
        interactions.first_event_at,
        interactions.last_event_at,
        cutoff_days.days_ago

    from cutoff_days
    inner join interactions
        on cutoff_days.event_date = interactions.event_date

)

select * from paired
