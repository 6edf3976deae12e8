{{
    config(physical_design(
        partition_date='cutoff_date', cluster_by=['event_date']
    ))
}}
-- Every day with events paired with each cutoff it precedes, and its age in days: a table of
-- days x cutoffs (hundreds of rows) through which the per-cutoff models join the daily
-- tables on equality of the day, instead of a range join of millions of rows against the
-- spine.

with

interactions as (

    select * from {{ ref('int_user_item_interactions_daily') }}

),

cutoffs as (

    select * from {{ ref('int_cutoffs_scheduled') }}

),

event_days as (

    select event_date
    from interactions
    group by event_date

),

paired as (

    select
        cutoffs.cutoff_date,
        event_days.event_date,
        {{ dbt.datediff('event_days.event_date', 'cutoffs.cutoff_date', 'day') }}
            as days_ago

    from cutoffs
    inner join event_days
        on cutoffs.cutoff_date > event_days.event_date

)

select * from paired
