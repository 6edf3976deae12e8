-- Candidate items per active user and snapshot, from three sources, each keeping its own score
-- and rank so the ranker (and the evaluation) can tell them apart:
--   covisitation: neighbours of the user's most recent items
--   popularity:   the most popular items overall
--   category:     the most popular items of the user's two favourite categories

{%- set per_source = var('candidates_per_source') %}

with

user_items as (

    select * from {{ ref('int_user_items_snapshotted') }}

),

neighbours as (

    select * from {{ ref('int_item_neighbours_ranked') }}

),

popularity as (

    select * from {{ ref('int_item_popularity_snapshotted') }}

),

affinities as (

    select * from {{ ref('int_user_category_affinities') }}

),

active_users as (

    select distinct
        snapshot_date,
        user_id

    from user_items
    where last_event_at >= cast({{ dbt.dateadd(
        'day', -var('active_user_lookback_days'), 'snapshot_date'
    ) }} as timestamp)

),

recent_items as (

    select user_items.*

    from user_items
    inner join active_users
        on
            user_items.snapshot_date = active_users.snapshot_date
            and user_items.user_id = active_users.user_id
    where user_items.recency_rank <= {{ var('recent_items_per_user') }}

),

covisitation_scored as (

    select
        recent_items.snapshot_date,
        recent_items.user_id,
        neighbours.related_item_id as item_id,
        -- More recent anchors count more.
        sum(neighbours.covisit_count / recent_items.recency_rank) as covisitation_score

    from recent_items
    inner join neighbours
        on
            recent_items.snapshot_date = neighbours.snapshot_date
            and recent_items.item_id = neighbours.item_id
    group by recent_items.snapshot_date, recent_items.user_id, neighbours.related_item_id

),

covisitation_ranked as (

    select
        *,
        row_number() over (
            partition by snapshot_date, user_id order by covisitation_score desc, item_id asc
        ) as covisitation_rank

    from covisitation_scored

),

covisitation_candidates as (

    select * from covisitation_ranked
    where covisitation_rank <= {{ per_source }}

),

popularity_candidates as (

    select
        active_users.snapshot_date,
        active_users.user_id,
        popularity.item_id,
        popularity.popularity_rank

    from active_users
    inner join popularity
        on active_users.snapshot_date = popularity.snapshot_date
    where popularity.popularity_rank <= {{ per_source }}

),

category_scored as (

    select
        affinities.snapshot_date,
        affinities.user_id,
        popularity.item_id,
        affinities.affinity_share * popularity.users_{{ var('popularity_rank_window_days') }}d
            as category_score

    from affinities
    inner join active_users
        on
            affinities.snapshot_date = active_users.snapshot_date
            and affinities.user_id = active_users.user_id
    inner join popularity
        on
            affinities.snapshot_date = popularity.snapshot_date
            and affinities.category = popularity.category
    where
        affinities.affinity_rank <= 2
        and popularity.category_popularity_rank <= {{ per_source }}

),

category_ranked as (

    select
        *,
        row_number() over (
            partition by snapshot_date, user_id order by category_score desc, item_id asc
        ) as category_rank

    from category_scored

),

category_candidates as (

    select * from category_ranked
    where category_rank <= {{ per_source }}

),

unioned as (

    select
        snapshot_date,
        user_id,
        item_id
    from covisitation_candidates
    union distinct
    select
        snapshot_date,
        user_id,
        item_id
    from popularity_candidates
    union distinct
    select
        snapshot_date,
        user_id,
        item_id
    from category_candidates

),

sourced as (

    select
        unioned.user_id,
        unioned.item_id,
        covisitation_candidates.covisitation_score,
        covisitation_candidates.covisitation_rank,
        popularity_candidates.popularity_rank,
        category_candidates.category_score,
        category_candidates.category_rank,
        covisitation_candidates.item_id is not null as is_from_covisitation,
        popularity_candidates.item_id is not null as is_from_popularity,
        category_candidates.item_id is not null as is_from_category,
        unioned.snapshot_date

    from unioned
    left join covisitation_candidates
        on
            unioned.snapshot_date = covisitation_candidates.snapshot_date
            and unioned.user_id = covisitation_candidates.user_id
            and unioned.item_id = covisitation_candidates.item_id
    left join popularity_candidates
        on
            unioned.snapshot_date = popularity_candidates.snapshot_date
            and unioned.user_id = popularity_candidates.user_id
            and unioned.item_id = popularity_candidates.item_id
    left join category_candidates
        on
            unioned.snapshot_date = category_candidates.snapshot_date
            and unioned.user_id = category_candidates.user_id
            and unioned.item_id = category_candidates.item_id

),

final as (

    select sourced.*

    from sourced
    left join user_items as seen
        on
            sourced.snapshot_date = seen.snapshot_date
            and sourced.user_id = seen.user_id
            and sourced.item_id = seen.item_id
    -- Items the user already interacted with are not recommended again, unless configured.
    where seen.item_id is null or not {{ 'true' if var('exclude_seen_items') else 'false' }}

)

select * from final
