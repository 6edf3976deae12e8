{{
    config(
        materialized = 'ephemeral',
    )
}}
-- Candidates with the user, item and user-item features of their cutoff: the one place the
-- feature joins are written, shared by the labelled candidates and the scoring candidates.
-- Ephemeral: the two read disjoint cutoffs, so each joins only its own rows and the wide
-- result is written once, in the model, instead of twice. No split here: which split a
-- cutoff belongs to changes as label windows close, while these rows never do.

with

candidates as (

    select * from {{ ref('candidates') }}

),

user_features as (

    select * from {{ ref('user_features') }}

),

item_features as (

    select * from {{ ref('item_features') }}

),

affinities as (

    select * from {{ ref('int_user_category_affinities') }}

),

-- The user's own history with the candidate item: null for an item they never touched (all
-- candidates when `exclude_seen_items` is true).
user_items as (

    select * from {{ ref('int_user_items_aggregated') }}

),

featurized as (

    select
        candidates.user_id,
        candidates.item_id,
        user_features.segment as user_segment,
        item_features.category as item_category,
        candidates.covisitation_score,
        candidates.covisitation_rank,
        candidates.itemknn_score,
        candidates.itemknn_rank,
        candidates.popularity_rank,
        candidates.popularity_all_rank,
        candidates.category_score,
        candidates.category_rank,
        candidates.repeat_rank,
        user_features.events_7d as user_events_7d,
        user_features.events_28d as user_events_28d,
        user_features.events_total as user_events_total,
        user_features.positive_events_28d as user_positive_events_28d,
        user_features.distinct_items_total as user_distinct_items_total,
        user_features.active_days_total as user_active_days_total,
        user_features.favourite_category_share as user_favourite_category_share,
        user_features.days_since_last_event as user_days_since_last_event,
        user_features.days_since_first_event as user_days_since_first_event,
        user_features.days_since_signup as user_days_since_signup,
        {%- for window in popularity_windows_days() %}
        item_features.users_{{ window }}d as item_users_{{ window }}d,
        {%- endfor %}
        item_features.users_total as item_users_total,
        item_features.positive_rate_{{ popularity_windows_days() | max }}d
            as item_positive_rate_{{ popularity_windows_days() | max }}d,
        item_features.category_popularity_rank as item_category_popularity_rank,
        item_features.days_since_created as item_days_since_created,
        item_features.days_since_last_event as item_days_since_last_event,
        coalesce(affinities.affinity_share, 0) as user_item_category_share,
        affinities.affinity_rank as user_item_category_rank,
        user_items.event_count as user_item_event_count,
        user_items.interaction_weight as user_item_interaction_weight,
        {{ dbt.datediff('user_items.last_event_at', 'candidates.cutoff_date', 'day') }}
            as user_item_days_since_last_event,
        candidates.is_from_covisitation,
        candidates.is_from_itemknn,
        candidates.is_from_popularity,
        candidates.is_from_popularity_all,
        candidates.is_from_category,
        candidates.is_from_repeat,
        candidates.cutoff_date

    from candidates
    left join user_features
        on
            candidates.cutoff_date = user_features.cutoff_date
            and candidates.user_id = user_features.user_id
    left join item_features
        on
            candidates.cutoff_date = item_features.cutoff_date
            and candidates.item_id = item_features.item_id
    left join affinities
        on
            candidates.cutoff_date = affinities.cutoff_date
            and candidates.user_id = affinities.user_id
            and item_features.category = affinities.category
    left join user_items
        on
            candidates.cutoff_date = user_items.cutoff_date
            and candidates.user_id = user_items.user_id
            and candidates.item_id = user_items.item_id

)

select * from featurized
