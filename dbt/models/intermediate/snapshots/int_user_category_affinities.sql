-- How much of each user's recent interaction weight went to each category, before each
-- snapshot: the category-affinity candidate source and a user-item feature.

with

interactions as (

    select * from {{ ref('int_user_item_interactions_daily') }}

),

items as (

    select * from {{ ref('stg_app__items') }}

),

snapshots as (

    select * from {{ ref('int_snapshots_scheduled') }}

),

category_weights as (

    select
        snapshots.snapshot_date,
        interactions.user_id,
        coalesce(items.category, 'unknown') as category,
        sum(interactions.interaction_weight) as interaction_weight

    from snapshots
    inner join interactions
        on
            snapshots.snapshot_date > interactions.event_date
            and interactions.event_date >= cast({{ dbt.dateadd(
                'day', -var('category_affinity_lookback_days'), 'snapshots.snapshot_date'
            ) }} as date)
    left join items
        on interactions.item_id = items.item_id
    group by snapshots.snapshot_date, interactions.user_id, coalesce(items.category, 'unknown')

),

shared as (

    select
        *,
        interaction_weight / sum(interaction_weight) over (
            partition by snapshot_date, user_id
        ) as affinity_share,
        row_number() over (
            partition by snapshot_date, user_id order by interaction_weight desc, category asc
        ) as affinity_rank

    from category_weights

)

select * from shared
