{{
    config(incremental_by_cutoff(cluster_by=['user_id', 'item_id']))
}}
-- What each user did with each item before each cutoff: the history candidate generation
-- starts from (recent items) and excludes (already seen items).
-- Each user-item's totals run over its days once (a window over the daily rows); a cutoff then
-- takes the running totals of the pair's last day before it. That is a join through
-- int_event_days_before_cutoffs (the point-in-time join, as in int_interactions_before_cutoffs)
-- filtered to one row per cutoff, user and item, instead of aggregating every day x cutoff row
-- into nearly as many groups.

with

interactions as (

    select * from {{ ref('int_user_item_interactions_daily') }}

),

cutoff_days as (

    select * from {{ ref('int_event_days_before_cutoffs') }}
    where {{ cutoffs_to_rebuild() }}

),

-- One row per user, item and day with events (the daily table's key), so the running totals
-- through a day count every earlier day exactly once.
running_totals as (

    select
        user_id,
        item_id,
        event_date,
        sum(event_count) over pair_days as event_count,
        sum(interaction_weight) over pair_days as interaction_weight,
        max(last_event_at) over pair_days as last_event_at,
        lead(event_date) over (
            partition by user_id, item_id order by event_date
        ) as next_event_date

    from interactions
    window pair_days as (
        partition by user_id, item_id
        order by event_date
        rows between unbounded preceding and current row
    )

),

-- A day's running totals hold at the cutoffs after it up to the pair's next day with events.
as_of_cutoffs as (

    select
        cutoff_days.cutoff_date,
        running_totals.user_id,
        running_totals.item_id,
        cast(running_totals.event_count as {{ dbt.type_bigint() }}) as event_count,
        running_totals.interaction_weight,
        running_totals.last_event_at

    from cutoff_days
    inner join running_totals
        on cutoff_days.event_date = running_totals.event_date
    where
        running_totals.next_event_date is null
        or running_totals.next_event_date >= cutoff_days.cutoff_date

),

ranked as (

    select
        *,
        row_number() over (
            partition by cutoff_date, user_id order by last_event_at desc, item_id asc
        ) as recency_rank

    from as_of_cutoffs

)

select * from ranked
