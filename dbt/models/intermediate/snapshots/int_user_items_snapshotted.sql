{{
    config(incremental_by_snapshot(cluster_by=['user_id', 'item_id']))
}}
-- What each user did with each item before each snapshot: the history candidate generation
-- starts from (recent items) and excludes (already seen items).

with

interactions as (

    select * from {{ ref('int_interactions_before_snapshots') }}
    where {{ snapshots_to_rebuild() }}

),

aggregated as (

    select
        snapshot_date,
        user_id,
        item_id,
        cast(sum(event_count) as {{ dbt.type_bigint() }}) as event_count,
        sum(interaction_weight) as interaction_weight,
        max(last_event_at) as last_event_at

    from interactions
    group by snapshot_date, user_id, item_id

),

ranked as (

    select
        *,
        row_number() over (
            partition by snapshot_date, user_id order by last_event_at desc, item_id asc
        ) as recency_rank

    from aggregated

)

select * from ranked
