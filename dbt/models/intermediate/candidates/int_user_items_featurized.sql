{{
    config(
        materialized = 'ephemeral',
    )
}}
-- Every candidate with its user-item features at its cutoff: the user's affinity to the
-- item's category and the user's own history with the item (null for an item they never
-- touched, all candidates when `exclude_seen_items` is true). The feature model of user-item
-- pairs: one column per feature, named `user_item_*`, beside the candidate's own columns.
-- It carries the candidates rather than only their keys: the pairs exist only as candidates,
-- and joining them back on (cutoff, user, item) would cost as much as the features themselves.
-- Ephemeral: int_candidates_featurized inlines it.

with

candidates as (

    select * from {{ ref('int_candidates_generated') }}

),

item_features as (

    select * from {{ ref('int_items_featurized') }}

),

affinities as (

    select * from {{ ref('int_user_category_affinities') }}

),

user_items as (

    select * from {{ ref('int_user_items_aggregated') }}

),

final as (

    select
        candidates.*,
        coalesce(affinities.affinity_share, 0) as user_item_category_share,
        affinities.affinity_rank as user_item_category_rank,
        user_items.event_count as user_item_event_count,
        user_items.interaction_weight as user_item_interaction_weight,
        {{ dbt.datediff('user_items.last_event_at', 'candidates.cutoff_date', 'day') }}
            as user_item_days_since_last_event

    from candidates
    left join item_features
        on
            candidates.cutoff_date = item_features.cutoff_date
            and candidates.item_id = item_features.item_id
    left join affinities
        on
            candidates.cutoff_date = affinities.cutoff_date
            and candidates.user_id = affinities.user_id
            and item_features.item_category = affinities.category
    left join user_items
        on
            candidates.cutoff_date = user_items.cutoff_date
            and candidates.user_id = user_items.user_id
            and candidates.item_id = user_items.item_id

)

select * from final
