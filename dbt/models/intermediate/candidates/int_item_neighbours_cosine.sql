{{
    config(incremental_by_cutoff(cluster_by=['item_id']))
}}
-- For each cutoff, each item's most similar items by cosine similarity over the users who
-- interacted with both: |users with i and j| / sqrt(|users with i| * |users with j|), over whole
-- histories rather than sessions. Each user contributes only their most recent items, so a
-- user adds at most cap * (cap - 1) pairs and the cost stays bounded per user; item counts run
-- over the same capped histories so the similarity stays within [0, 1].

with

user_items as (

    select * from {{ ref('int_user_items_aggregated') }}
    where
        recency_rank <= {{ var('itemknn_items_per_user') }}
        and {{ cutoffs_to_rebuild() }}

),

-- Items are numbered (the same number at every cutoff) so the self-join and its aggregation,
-- the costly step, group on integers rather than strings.
item_user_counts as (

    select
        cutoff_date,
        item_id,
        count(*) as user_count,
        dense_rank() over (order by item_id) as item_number

    from user_items
    group by cutoff_date, item_id

),

-- An item with fewer users than the minimum co-occurrence cannot reach it with any other item,
-- so it stays out of the self-join (most of the long tail).
pairable_user_items as (

    select
        user_items.cutoff_date,
        user_items.user_id,
        item_user_counts.item_number

    from user_items
    inner join item_user_counts
        on
            user_items.cutoff_date = item_user_counts.cutoff_date
            and user_items.item_id = item_user_counts.item_id
    where item_user_counts.user_count >= {{ var('itemknn_min_cooccurrence') }}

),

-- Each unordered pair once (item_number < related_item_number): co-occurrence and cosine are
-- symmetric, so the other direction is a copy, made after the aggregation.
cooccurrences as (

    select
        left_items.cutoff_date,
        left_items.item_number,
        right_items.item_number as related_item_number,
        count(*) as cooccurrence_count

    from pairable_user_items as left_items
    inner join pairable_user_items as right_items
        on
            left_items.cutoff_date = right_items.cutoff_date
            and left_items.user_id = right_items.user_id
            and left_items.item_number < right_items.item_number
    group by left_items.cutoff_date, left_items.item_number, right_items.item_number
    having count(*) >= {{ var('itemknn_min_cooccurrence') }}

),

similarities as (

    select
        cooccurrences.cutoff_date,
        item_counts.item_id,
        related_counts.item_id as related_item_id,
        cooccurrences.cooccurrence_count,
        cast(cooccurrences.cooccurrence_count as {{ type_float64() }})
        / sqrt(
            cast(item_counts.user_count as {{ type_float64() }})
            * cast(related_counts.user_count as {{ type_float64() }})
        ) as cosine_similarity

    from cooccurrences
    inner join item_user_counts as item_counts
        on
            cooccurrences.cutoff_date = item_counts.cutoff_date
            and cooccurrences.item_number = item_counts.item_number
    inner join item_user_counts as related_counts
        on
            cooccurrences.cutoff_date = related_counts.cutoff_date
            and cooccurrences.related_item_number = related_counts.item_number

),

both_directions as (

    select
        cutoff_date,
        item_id,
        related_item_id,
        cooccurrence_count,
        cosine_similarity

    from similarities

    union all

    select
        cutoff_date,
        related_item_id as item_id,
        item_id as related_item_id,
        cooccurrence_count,
        cosine_similarity

    from similarities

),

ranked as (

    select
        *,
        row_number() over (
            partition by cutoff_date, item_id
            order by cosine_similarity desc, related_item_id asc
        ) as neighbour_rank

    from both_directions

)

select * from ranked
where neighbour_rank <= {{ var('itemknn_neighbours_per_item') }}
