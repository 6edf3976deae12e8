{{
    config(physical_design(
        partition_date='snapshot_date', cluster_by=['item_id']
    ))
}}
-- For each snapshot, each item's strongest co-visited neighbours over the lookback window
-- before it, capped per item so candidate generation stays bounded.

with

pairs as (

    select * from {{ ref('int_item_pairs_covisited') }}

),

snapshots as (

    select * from {{ ref('int_snapshots_scheduled') }}

),

aggregated as (

    select
        snapshots.snapshot_date,
        pairs.item_id,
        pairs.related_item_id,
        sum(pairs.covisit_count) as covisit_count,
        max(pairs.covisit_date) as last_covisit_date

    from snapshots
    inner join pairs
        on
            snapshots.snapshot_date > pairs.covisit_date
            and pairs.covisit_date >= cast({{ dbt.dateadd(
                'day', -var('covisit_lookback_days'), 'snapshots.snapshot_date'
            ) }} as date)
    group by snapshots.snapshot_date, pairs.item_id, pairs.related_item_id

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
