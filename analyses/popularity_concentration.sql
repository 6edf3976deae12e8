-- How concentrated interactions are on a few items, week by week: the share of distinct
-- user-item interactions taken by the top 1% and top 10% of items, and how many items it takes
-- to cover half of them. A long tail argues for personalised candidates over popularity.

with

interactions as (

    select * from {{ ref('int_user_item_interactions_daily') }}

),

weekly_item_users as (

    select
        item_id,
        cast({{ dbt.date_trunc('week', 'event_date') }} as date) as week_start_date,
        count(distinct user_id) as user_count

    from interactions
    group by item_id, cast({{ dbt.date_trunc('week', 'event_date') }} as date)

),

ranked as (

    select
        *,
        row_number() over (partition by week_start_date order by user_count desc, item_id asc)
            as item_rank,
        count(*) over (partition by week_start_date) as active_items,
        sum(user_count) over (partition by week_start_date) as week_users,
        sum(user_count) over (
            partition by week_start_date
            order by user_count desc, item_id asc
            rows between unbounded preceding and current row
        ) as cumulative_users

    from weekly_item_users

),

concentration as (

    select
        week_start_date,
        max(active_items) as active_items,
        sum(case when item_rank <= ceil(active_items * 0.01) then user_count else 0 end)
        / max(week_users) as top_1_percent_share,
        sum(case when item_rank <= ceil(active_items * 0.10) then user_count else 0 end)
        / max(week_users) as top_10_percent_share,
        min(case when cumulative_users >= week_users / 2.0 then item_rank end)
            as items_for_half_of_interactions

    from ranked
    group by week_start_date

)

select * from concentration
order by week_start_date
