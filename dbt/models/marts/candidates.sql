{{
    config(incremental_by_snapshot(cluster_by=['user_id', 'item_id']))
}}
-- Candidate items per active user and snapshot, from three sources, each keeping its own score
-- and rank so the ranker (and the evaluation) can tell them apart:
--   covisitation: neighbours of the user's most recent items
--   popularity:   the most popular items overall
--   category:     the most popular items of the user's two favourite categories
-- Items the user already interacted with are removed before each source keeps its top
-- `candidates_per_source`, so every source offers that many new items (unless configured).
-- At labelled snapshots (train, validation, test) only users with a positive in the label
-- window get candidates: the ranker learns only from groups holding a positive
-- (trainer/dataset.py) and the evaluation scores only users with a positive (trainer/metrics.py,
-- coverage included), so the other users' candidates would be built, featurized and dropped.
-- The scoring snapshot keeps every active user.

{%- set per_source = var('candidates_per_source') %}

with

user_items as (

    select * from {{ ref('int_user_items_snapshotted') }}
    where {{ snapshots_to_rebuild() }}

),

neighbours as (

    select * from {{ ref('int_item_neighbours_ranked') }}
    where {{ snapshots_to_rebuild() }}

),

popularity as (

    select * from {{ ref('int_item_popularity_snapshotted') }}
    where {{ snapshots_to_rebuild() }}

),

affinities as (

    select * from {{ ref('int_user_category_affinities') }}
    where {{ snapshots_to_rebuild() }}

),

snapshots as (

    select * from {{ ref('int_snapshots_scheduled') }}
    where {{ snapshots_to_rebuild() }}

),

labels as (

    select * from {{ ref('int_user_item_labels') }}
    where {{ snapshots_to_rebuild() }}

),

labelled_users as (

    select distinct
        snapshot_date,
        user_id

    from labels

),

-- A user's most recent item (recency rank 1) carries their latest event, so one row per user
-- and snapshot decides activity: no DISTINCT over the whole history.
active_users as (

    select
        user_items.snapshot_date,
        user_items.user_id

    from user_items
    inner join snapshots
        on user_items.snapshot_date = snapshots.snapshot_date
    left join labelled_users
        on
            user_items.snapshot_date = labelled_users.snapshot_date
            and user_items.user_id = labelled_users.user_id
    where
        user_items.recency_rank = 1
        and user_items.last_event_at >= cast({{ dbt.dateadd(
            'day', -var('active_user_lookback_days'), 'user_items.snapshot_date'
        ) }} as timestamp)
        and (
            snapshots.split = 'scoring'
            or labelled_users.user_id is not null
        )

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
        'covisitation' as candidate_source,
        -- More recent anchors count more (linear decay). Integer arithmetic keeps the score
        -- exact, so rebuilds rank ties identically whatever order the sum runs in.
        cast(sum(
            neighbours.covisit_count
            * ({{ var('recent_items_per_user') }} + 1 - recent_items.recency_rank)
        ) as {{ type_float64() }}) as source_score

    from recent_items
    inner join neighbours
        on
            recent_items.snapshot_date = neighbours.snapshot_date
            and recent_items.item_id = neighbours.item_id
    group by recent_items.snapshot_date, recent_items.user_id, neighbours.related_item_id

),

popularity_scored as (

    select
        active_users.snapshot_date,
        active_users.user_id,
        popularity.item_id,
        'popularity' as candidate_source,
        -- Negated so that, as for the other sources, a higher score is better.
        -1.0 * popularity.popularity_rank as source_score

    from active_users
    inner join popularity
        on active_users.snapshot_date = popularity.snapshot_date
    -- A pool larger than kept, so enough remain once seen items are removed.
    where popularity.popularity_rank <= {{ 2 * per_source }}

),

category_scored as (

    select
        affinities.snapshot_date,
        affinities.user_id,
        popularity.item_id,
        'category' as candidate_source,
        affinities.affinity_share * popularity.users_{{ var('popularity_rank_window_days') }}d
            as source_score

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
        and popularity.category_popularity_rank <= {{ 2 * per_source }}

),

-- Each source drops seen items and ranks its own rows, keeping its top `candidates_per_source`,
-- before the sources meet: the window sorts one source at a time and the union only carries
-- the kept rows.
{%- for source in ['covisitation', 'popularity', 'category'] %}

{{ source }}_ranked as (

    select
        *,
        row_number() over (
            partition by snapshot_date, user_id
            order by source_score desc, item_id asc
        ) as source_rank

    from {{ source }}_scored
    {%- if var('exclude_seen_items') %}
    where
        not exists (
            select 1 as is_seen
            from user_items as seen
            where
                {{ source }}_scored.snapshot_date = seen.snapshot_date
                and {{ source }}_scored.user_id = seen.user_id
                and {{ source }}_scored.item_id = seen.item_id
        )
    {%- endif %}

),

{{ source }}_kept as (

    select * from {{ source }}_ranked
    where source_rank <= {{ per_source }}

),
{%- endfor %}

ranked as (

    select * from covisitation_kept
    union all
    select * from popularity_kept
    union all
    select * from category_kept

),

final as (

    select
        user_id,
        item_id,
        max(case when candidate_source = 'covisitation' then source_score end)
            as covisitation_score,
        max(case when candidate_source = 'covisitation' then source_rank end)
            as covisitation_rank,
        max(case when candidate_source = 'popularity' then source_rank end) as popularity_rank,
        max(case when candidate_source = 'category' then source_score end) as category_score,
        max(case when candidate_source = 'category' then source_rank end) as category_rank,
        coalesce(max(case when candidate_source = 'covisitation' then 1 end) = 1, false)
            as is_from_covisitation,
        coalesce(max(case when candidate_source = 'popularity' then 1 end) = 1, false)
            as is_from_popularity,
        coalesce(max(case when candidate_source = 'category' then 1 end) = 1, false)
            as is_from_category,
        snapshot_date

    from ranked
    group by snapshot_date, user_id, item_id

)

select * from final
