{{
    config(incremental_by_snapshot(cluster_by=['user_id', 'item_id']))
}}
-- What each user positively interacted with in the label window after each snapshot. Only
-- events at or after the snapshot count here; features only ever see events before it.

with

events as (

    select * from {{ ref('stg_app__events') }}

),

snapshots as (

    select * from {{ ref('int_snapshots_scheduled') }}
    where split != 'scoring' and {{ snapshots_to_rebuild(labelled_only=true) }}

),

labelled as (

    select
        snapshots.snapshot_date,
        events.user_id,
        events.item_id,
        count(*) as positive_event_count

    from snapshots
    inner join events
        on
            snapshots.snapshot_date <= events.event_date
            and snapshots.label_window_end_date > events.event_date
    where events.is_positive
    group by snapshots.snapshot_date, events.user_id, events.item_id

)

select * from labelled
