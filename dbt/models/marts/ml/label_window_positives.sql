{{
    config(physical_design(
        partition_date='cutoff_date', cluster_by=['user_id', 'item_id']
    ))
}}
-- Every positive interaction in each labelled cutoff's label window, for every user, not only
-- those the candidates covered: the ground truth evaluation measures recall against.

with

labels as (

    select * from {{ ref('int_user_item_labels') }}

),

cutoffs as (

    select * from {{ ref('int_cutoffs_scheduled') }}

),

sampled_users as (

    select * from {{ ref('int_labelled_users_sampled') }}

),

user_features as (

    select * from {{ ref('int_users_featurized') }}

),

final as (

    select
        labels.user_id,
        labels.item_id,
        cutoffs.split,
        labels.positive_event_count,
        -- Warm users had at least one event before the cutoff.
        user_features.user_id is not null as is_warm_user,
        labels.cutoff_date

    from labels
    inner join cutoffs
        on labels.cutoff_date = cutoffs.cutoff_date
    -- The users the cutoff evaluates: the same sample that got candidates.
    inner join sampled_users
        on
            labels.cutoff_date = sampled_users.cutoff_date
            and labels.user_id = sampled_users.user_id
    left join user_features
        on
            labels.cutoff_date = user_features.cutoff_date
            and labels.user_id = user_features.user_id

)

select * from final
