{{
    config(incremental_by_snapshot(cluster_by=['item_id']))
}}
-- For each snapshot, each item's strongest co-visited neighbours over the lookback window
-- before it, capped per item so candidate generation stays bounded.

with

pairs as (

    select * from {{ ref('int_item_pairs_covisited') }}

),

snapshot_days as (

    select * from {{ ref('int_snapshot_days') }}
    where days_ago <= {{ var('covisit_lookback_days') }} and {{ snapshots_to_rebuild() }}

),

aggregated as (

    select
        snapshot_days.snapshot_date,
        pairs.item_id,
        pairs.related_item_id,
        sum(pairs.covisit_count) as covisit_count,
        max(pairs.covisit_date) as last_covisit_date

    -- The days of the lookback window before each snapshot, joined on the day.
    from snapshot_days
    inner join pairs
        on snapshot_days.event_date = pairs.covisit_date
    group by snapshot_days.snapshot_date, pairs.item_id, pairs.related_item_id

),

ranked as (

    select
        *,
        row_number() over (
            partition by snapshot_date, item_id order by covisit_count desc, related_item_id asc
        ) as neighbour_rank

    from aggregated

)

select * from ranked
where neighbour_rank <= {{ var('covisit_neighbours_per_item') }}
