{{
    config(physical_design(
        partition_date='snapshot_date', cluster_by=['user_id', 'item_id']
    ))
}}
-- Every positive interaction in each labelled snapshot's label window, for every user, not only
-- those the candidates covered: the ground truth evaluation measures recall against.

with

labels as (

    select * from {{ ref('int_user_item_labels') }}

),

snapshots as (

    select * from {{ ref('int_snapshots_scheduled') }}

),

user_features as (

    select * from {{ ref('user_features') }}

),

final as (

    select
        labels.user_id,
        labels.item_id,
        snapshots.split,
        labels.positive_event_count,
        -- Warm users had at least one event before the snapshot.
        user_features.user_id is not null as is_warm_user,
        labels.snapshot_date

    from labels
    inner join snapshots
        on labels.snapshot_date = snapshots.snapshot_date
    left join user_features
        on
            labels.snapshot_date = user_features.snapshot_date
            and labels.user_id = user_features.user_id

)

select * from final
