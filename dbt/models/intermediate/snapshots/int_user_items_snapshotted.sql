-- What each user did with each item before each snapshot: the history candidate generation
-- starts from (recent items) and excludes (already seen items).

with

interactions as (

    select * from {{ ref('int_user_item_interactions_daily') }}

),

snapshots as (

    select * from {{ ref('int_snapshots_scheduled') }}

),

aggregated as (

    select
        snapshots.snapshot_date,
        interactions.user_id,
        interactions.item_id,
        cast(sum(interactions.event_count) as {{ dbt.type_bigint() }}) as event_count,
        sum(interactions.interaction_weight) as interaction_weight,
        max(interactions.last_event_at) as last_event_at

    from snapshots
    inner join interactions
        on snapshots.snapshot_date > interactions.event_date
    group by snapshots.snapshot_date, interactions.user_id, interactions.item_id

),

ranked as (

    select
        *,
        row_number() over (
            partition by snapshot_date, user_id order by last_event_at desc, item_id asc
        ) as recency_rank

    from aggregated

)

select * from ranked
