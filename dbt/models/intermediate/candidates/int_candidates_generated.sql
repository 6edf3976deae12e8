{{
    config(incremental_by_cutoff(cluster_by=['user_id', 'item_id']))
}}
-- Candidate items per user and cutoff, from several sources, each keeping its own score and
-- rank so the ranker (and the evaluation) can tell them apart:
--   covisitation:   neighbours of the user's most recent items within short sessions
--   itemknn:        cosine neighbours over whole user histories (int_item_neighbours_cosine)
--   popularity:     the most popular items of the recent window (`popularity_rank_window_days`)
--   popularity_all: the most popular items over all history
--   category:       the most popular items of the user's two favourite categories
--   repeat:         the user's own most recent items, only when `exclude_seen_items` is false,
--                   so the ranker decides whether this data set re-consumes
-- Every user with any event before the cutoff gets candidates, however long ago it was: the
-- popularity sources alone give each of them `candidates_per_source` items, so every known user
-- with history is served K items (users without history get the fallback, trainer/serving.py).
-- Items the user already interacted with are removed before each source keeps its top
-- `candidates_per_source` (unless configured), so every source offers that many new items.
-- Cost at scale is the rows that reach the seen-item anti-join, the per-source rank and the
-- pivot, so the popularity sources are cut to the rows that can still be kept (see below), the
-- anti-join runs once on the union of the sources, and one window ranks them all.
-- At labelled cutoffs (train, validation, test) only users with a positive in the label
-- window get candidates, at most `labelled_users_per_cutoff` (int_labelled_users_sampled): the
-- ranker learns only from groups holding a positive (trainer/dataset.py) and the evaluation
-- scores only users with a positive (trainer/metrics.py, coverage included), so the other
-- users' candidates would be built, featurized and dropped.
-- The scoring cutoff keeps every user.

{%- set per_source = var('candidates_per_source') %}
{%- set history_items = [var('recent_items_per_user'), var('itemknn_items_per_user')]
    + ([] if var('exclude_seen_items') else [per_source]) %}
{#- The popularity sources: name and the rank column of int_item_popularity_ranked. #}
{%- set popularity_sources = [
    ('popularity', 'popularity_rank'), ('popularity_all', 'popularity_all_rank')
] %}

with

-- Two narrow reads of the user-item history instead of one shared CTE: a CTE read several times
-- is materialised whole, while each read here keeps only the rows and columns it needs.
recent_user_items as (

    select
        cutoff_date,
        user_id,
        item_id,
        recency_rank,
        last_event_at

    from {{ ref('int_user_items_aggregated') }}
    where
        recency_rank <= {{ history_items | max }}
        and {{ cutoffs_to_rebuild() }}

),

seen_user_items as (

    select
        cutoff_date,
        user_id,
        item_id

    from {{ ref('int_user_items_aggregated') }}
    where {{ cutoffs_to_rebuild() }}

),

neighbours as (

    select * from {{ ref('int_item_neighbours_ranked') }}
    where {{ cutoffs_to_rebuild() }}

),

cosine_neighbours as (

    select * from {{ ref('int_item_neighbours_cosine') }}
    where {{ cutoffs_to_rebuild() }}

),

popularity as (

    select * from {{ ref('int_item_popularity_ranked') }}
    where {{ cutoffs_to_rebuild() }}

),

affinities as (

    select * from {{ ref('int_user_category_affinities') }}
    where {{ cutoffs_to_rebuild() }}

),

cutoffs as (

    select * from {{ ref('int_cutoffs_scheduled') }}
    where {{ cutoffs_to_rebuild() }}

),

labelled_users as (

    select * from {{ ref('int_labelled_users_sampled') }}
    where {{ cutoffs_to_rebuild() }}

),

-- A user's most recent item (recency rank 1): one row per user with history and cutoff, no
-- DISTINCT over the whole history. Any history counts, however old: every user is served.
active_users as (

    select
        recent_user_items.cutoff_date,
        recent_user_items.user_id

    from recent_user_items
    inner join cutoffs
        on recent_user_items.cutoff_date = cutoffs.cutoff_date
    left join labelled_users
        on
            recent_user_items.cutoff_date = labelled_users.cutoff_date
            and recent_user_items.user_id = labelled_users.user_id
    where
        recent_user_items.recency_rank = 1
        and (
            cutoffs.split = 'scoring'
            or labelled_users.user_id is not null
        )

),

recent_items as (

    select recent_user_items.*

    from recent_user_items
    inner join active_users
        on
            recent_user_items.cutoff_date = active_users.cutoff_date
            and recent_user_items.user_id = active_users.user_id

),

covisitation_scored as (

    select
        recent_items.cutoff_date,
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
            recent_items.cutoff_date = neighbours.cutoff_date
            and recent_items.item_id = neighbours.item_id
    where recent_items.recency_rank <= {{ var('recent_items_per_user') }}
    group by recent_items.cutoff_date, recent_items.user_id, neighbours.related_item_id

),

-- Items similar to the user's whole (capped) history: the sum of their cosine similarities,
-- summed as integers (nanounits) so the score, and the ranks it decides, do not depend on the
-- order a parallel sum runs in: an incremental build ranks ties exactly as a full refresh.
itemknn_scored as (

    select
        recent_items.cutoff_date,
        recent_items.user_id,
        cosine_neighbours.related_item_id as item_id,
        'itemknn' as candidate_source,
        cast(sum(cast(
            round(cosine_neighbours.cosine_similarity * 1000000000) as {{ dbt.type_bigint() }}
        )) as {{ type_float64() }}) / 1000000000 as source_score

    from recent_items
    inner join cosine_neighbours
        on
            recent_items.cutoff_date = cosine_neighbours.cutoff_date
            and recent_items.item_id = cosine_neighbours.item_id
    where recent_items.recency_rank <= {{ var('itemknn_items_per_user') }}
    group by recent_items.cutoff_date, recent_items.user_id, cosine_neighbours.related_item_id

),

{%- if not var('exclude_seen_items') %}

-- The user's own items, the most recent first: whether they come back is the ranker's call.
repeat_scored as (

    select
        cutoff_date,
        user_id,
        item_id,
        'repeat' as candidate_source,
        -1.0 * recency_rank as source_score

    from recent_items
    where recency_rank <= {{ per_source }}

),
{%- endif %}

-- The popularity pools: larger than kept, so enough remain once seen items are removed.
{%- for source, rank_column in popularity_sources %}

{{ source }}_items as (

    select * from popularity
    where {{ rank_column }} <= {{ 2 * per_source }}

),
{%- endfor %}

category_popular_items as (

    select * from popularity
    where category_popularity_rank <= {{ 2 * per_source }}

),

-- How many pool items each user has already seen. A pool item ranked r has r - 1 items ahead
-- of it in its pool, at most this many of them seen, so when r > `candidates_per_source` + this
-- count at least `candidates_per_source` unseen items rank ahead of it and it cannot be kept:
-- the sources below drop those rows before the anti-join and the rank, with identical output.
{%- for source, rank_column in popularity_sources %}

seen_{{ source }}_counts as (

    select
        seen_user_items.cutoff_date,
        seen_user_items.user_id,
        count(*) as seen_item_count

    from seen_user_items
    inner join {{ source }}_items
        on
            seen_user_items.cutoff_date = {{ source }}_items.cutoff_date
            and seen_user_items.item_id = {{ source }}_items.item_id
    group by seen_user_items.cutoff_date, seen_user_items.user_id

),
{%- endfor %}

seen_category_popular_counts as (

    select
        seen_user_items.cutoff_date,
        seen_user_items.user_id,
        category_popular_items.category,
        count(*) as seen_item_count

    from seen_user_items
    inner join category_popular_items
        on
            seen_user_items.cutoff_date = category_popular_items.cutoff_date
            and seen_user_items.item_id = category_popular_items.item_id
    group by
        seen_user_items.cutoff_date,
        seen_user_items.user_id,
        category_popular_items.category

),
{%- for source, rank_column in popularity_sources %}

{{ source }}_scored as (

    select
        active_users.cutoff_date,
        active_users.user_id,
        {{ source }}_items.item_id,
        '{{ source }}' as candidate_source,
        -- Negated so that, as for the other sources, a higher score is better.
        -1.0 * {{ source }}_items.{{ rank_column }} as source_score

    from active_users
    inner join {{ source }}_items
        on active_users.cutoff_date = {{ source }}_items.cutoff_date
    left join seen_{{ source }}_counts
        on
            active_users.cutoff_date = seen_{{ source }}_counts.cutoff_date
            and active_users.user_id = seen_{{ source }}_counts.user_id
    where
        {{ source }}_items.{{ rank_column }}
        <= {{ per_source }} + coalesce(seen_{{ source }}_counts.seen_item_count, 0)

),
{%- endfor %}

category_scored as (

    select
        affinities.cutoff_date,
        affinities.user_id,
        category_popular_items.item_id,
        'category' as candidate_source,
        affinities.affinity_share
        * category_popular_items.users_{{ var('popularity_rank_window_days') }}d
            as source_score

    from affinities
    inner join active_users
        on
            affinities.cutoff_date = active_users.cutoff_date
            and affinities.user_id = active_users.user_id
    inner join category_popular_items
        on
            affinities.cutoff_date = category_popular_items.cutoff_date
            and affinities.category = category_popular_items.category
    left join seen_category_popular_counts
        on
            affinities.cutoff_date = seen_category_popular_counts.cutoff_date
            and affinities.user_id = seen_category_popular_counts.user_id
            and affinities.category = seen_category_popular_counts.category
    where
        affinities.affinity_rank <= 2
        and (
            category_popular_items.category_popularity_rank
            <= {{ per_source }} + coalesce(seen_category_popular_counts.seen_item_count, 0)
            -- The cut relies on the score ordering a category like its rank, which holds for
            -- a positive share; any other share keeps the whole pool.
            or not coalesce(
                affinities.affinity_share > 0 and affinities.affinity_share <= 1, false
            )
        )

),

scored as (

    select * from covisitation_scored
    union all
    select * from itemknn_scored
    {%- for source, _ in popularity_sources %}
    union all
    select * from {{ source }}_scored
    {%- endfor %}
    union all
    select * from category_scored
    {%- if not var('exclude_seen_items') %}
    union all
    select * from repeat_scored
    {%- endif %}

),

-- Seen items leave all sources in one anti-join, before any source ranks its rows.
unseen as (

    select * from scored
    {%- if var('exclude_seen_items') %}
    where
        not exists (
            select 1 as is_seen
            from seen_user_items
            where
                scored.cutoff_date = seen_user_items.cutoff_date
                and scored.user_id = seen_user_items.user_id
                and scored.item_id = seen_user_items.item_id
        )
    {%- endif %}

),

ranked as (

    select
        *,
        row_number() over (
            partition by cutoff_date, user_id, candidate_source
            order by source_score desc, item_id asc
        ) as source_rank

    from unseen

),

kept as (

    select * from ranked
    where source_rank <= {{ per_source }}

),

-- Every kept row has a rank, so a source's rank is null exactly when the item did not come
-- from it: the is_from flags follow from the ranks instead of three more aggregates.
pivoted as (

    select
        cutoff_date,
        user_id,
        item_id,
        max(case when candidate_source = 'covisitation' then source_score end)
            as covisitation_score,
        max(case when candidate_source = 'covisitation' then source_rank end)
            as covisitation_rank,
        max(case when candidate_source = 'itemknn' then source_score end) as itemknn_score,
        max(case when candidate_source = 'itemknn' then source_rank end) as itemknn_rank,
        max(case when candidate_source = 'popularity' then source_rank end) as popularity_rank,
        max(case when candidate_source = 'popularity_all' then source_rank end)
            as popularity_all_rank,
        max(case when candidate_source = 'category' then source_score end) as category_score,
        max(case when candidate_source = 'category' then source_rank end) as category_rank,
        max(case when candidate_source = 'repeat' then source_rank end) as repeat_rank

    from kept
    group by cutoff_date, user_id, item_id

),

final as (

    select
        user_id,
        item_id,
        covisitation_score,
        covisitation_rank,
        itemknn_score,
        itemknn_rank,
        popularity_rank,
        popularity_all_rank,
        category_score,
        category_rank,
        repeat_rank,
        covisitation_rank is not null as is_from_covisitation,
        itemknn_rank is not null as is_from_itemknn,
        popularity_rank is not null as is_from_popularity,
        popularity_all_rank is not null as is_from_popularity_all,
        category_rank is not null as is_from_category,
        repeat_rank is not null as is_from_repeat,
        cutoff_date

    from pivoted

)

select * from final
