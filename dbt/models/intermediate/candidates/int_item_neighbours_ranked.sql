{{
    config(incremental_by_cutoff(cluster_by=['item_id']))
}}
-- For each cutoff, each item's strongest co-visited neighbours over the lookback window
-- before it, capped per item so candidate generation stays bounded.

with

pairs as (

    select * from {{ ref('int_item_pairs_covisited') }}

),

cutoff_days as (

    select * from {{ ref('int_event_days_before_cutoffs') }}
    where days_ago <= {{ var('covisit_lookback_days') }} and {{ cutoffs_to_rebuild() }}

),

aggregated as (

    select
        cutoff_days.cutoff_date,
        pairs.item_id,
        pairs.related_item_id,
        sum(pairs.covisit_count) as covisit_count,
        max(pairs.covisit_date) as last_covisit_date

    -- The days of the lookback window before each cutoff, joined on the day.
    from cutoff_days
    inner join pairs
        on cutoff_days.event_date = pairs.covisit_date
    group by cutoff_days.cutoff_date, pairs.item_id, pairs.related_item_id

),

ranked as (

    select
        *,
        row_number() over (
            partition by cutoff_date, item_id order by covisit_count desc, related_item_id asc
        ) as neighbour_rank

    from aggregated

)

select * from ranked
where neighbour_rank <= {{ var('covisit_neighbours_per_item') }}
