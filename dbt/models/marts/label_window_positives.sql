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

sampled_users as (

    select * from {{ ref('int_labelled_users_sampled') }}

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
    -- The users the cutoff evaluates: the same sample that got candidates.
    inner join sampled_users
        on
            labels.snapshot_date = sampled_users.snapshot_date
            and labels.user_id = sampled_users.user_id
    left join user_features
        on
            labels.snapshot_date = user_features.snapshot_date
            and labels.user_id = user_features.user_id

)

select * from final
