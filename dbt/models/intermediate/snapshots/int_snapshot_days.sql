{{
    config(physical_design(
        partition_date='snapshot_date', cluster_by=['event_date']
    ))
}}
-- Every day with events paired with each snapshot it precedes, and its age in days: a table of
-- days x snapshots (hundreds of rows) through which the per-snapshot models join the daily
-- tables on equality of the day, instead of a range join of millions of rows against the
-- spine.

with

interactions as (

    select * from {{ ref('int_user_item_interactions_daily') }}

),

snapshots as (

    select * from {{ ref('int_snapshots_scheduled') }}

),

event_days as (

    select event_date
    from interactions
    group by event_date

),

paired as (

    select
        snapshots.snapshot_date,
        event_days.event_date,
        {{ dbt.datediff('event_days.event_date', 'snapshots.snapshot_date', 'day') }}
            as days_ago

    from snapshots
    inner join event_days
        on snapshots.snapshot_date > event_days.event_date

)

select * from paired
