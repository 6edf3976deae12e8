{{
    config(incremental_by_cutoff(cluster_by=['user_id']))
}}
-- How much of each user's recent interaction weight went to each category, before each
-- cutoff: the category-affinity candidate source and a user-item feature.

with

interactions as (

    select * from {{ ref('int_interactions_before_cutoffs') }}
    where days_ago <= {{ var('category_affinity_lookback_days') }} and {{ cutoffs_to_rebuild() }}

),

items as (

    select * from {{ ref('stg_app__items') }}

),

category_weights as (

    select
        interactions.cutoff_date,
        interactions.user_id,
        coalesce(items.category, 'unknown') as category,
        sum(interactions.interaction_weight) as interaction_weight

    from interactions
    left join items
        on interactions.item_id = items.item_id
    group by
        interactions.cutoff_date,
        interactions.user_id,
        coalesce(items.category, 'unknown')

),

shared as (

    select
        *,
        interaction_weight / sum(interaction_weight) over (
            partition by cutoff_date, user_id
        ) as affinity_share,
        row_number() over (
            partition by cutoff_date, user_id order by interaction_weight desc, category asc
        ) as affinity_rank

    from category_weights

)

select * from shared
