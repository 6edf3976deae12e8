{{
    config(
        materialized = 'ephemeral',
    )
}}
-- Candidates with the user, item and user-item features of their snapshot: the one place the
-- feature joins are written, shared by the labelled candidates and the scoring candidates.
-- Ephemeral: the two read disjoint snapshots, so each joins only its own rows and the wide
-- result is written once, in the model, instead of twice. No split here: which split a
-- snapshot belongs to changes as label windows close, while these rows never do.

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

featurized as (

    select
        candidates.user_id,
        candidates.item_id,
        user_features.segment as user_segment,
        item_features.category as item_category,
        candidates.covisitation_score,
        candidates.covisitation_rank,
        candidates.popularity_rank,
        candidates.category_score,
        candidates.category_rank,
        user_features.events_7d as user_events_7d,
        user_features.events_28d as user_events_28d,
        user_features.events_total as user_events_total,
        user_features.positive_events_28d as user_positive_events_28d,
        user_features.distinct_items_total as user_distinct_items_total,
        user_features.active_days_total as user_active_days_total,
        user_features.favourite_category_share as user_favourite_category_share,
        user_features.days_since_last_event as user_days_since_last_event,
        user_features.days_since_signup as user_days_since_signup,
        {%- for window in var('popularity_windows_days') %}
        item_features.users_{{ window }}d as item_users_{{ window }}d,
        {%- endfor %}
        item_features.positive_rate_{{ var('popularity_windows_days') | max }}d
            as item_positive_rate_{{ var('popularity_windows_days') | max }}d,
        item_features.category_popularity_rank as item_category_popularity_rank,
        item_features.days_since_created as item_days_since_created,
        item_features.days_since_last_event as item_days_since_last_event,
        coalesce(affinities.affinity_share, 0) as user_item_category_share,
        affinities.affinity_rank as user_item_category_rank,
        candidates.is_from_covisitation,
        candidates.is_from_popularity,
        candidates.is_from_category,
        candidates.snapshot_date

    from candidates
    left join user_features
        on
            candidates.snapshot_date = user_features.snapshot_date
            and candidates.user_id = user_features.user_id
    left join item_features
        on
            candidates.snapshot_date = item_features.snapshot_date
            and candidates.item_id = item_features.item_id
    left join affinities
        on
            candidates.snapshot_date = affinities.snapshot_date
            and candidates.user_id = affinities.user_id
            and item_features.category = affinities.category

)

select * from featurized
