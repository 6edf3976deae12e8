{{
    config(physical_design(
        partition_date='snapshot_date', cluster_by=['user_id', 'item_id']
    ))
}}
-- One row per candidate at every labelled snapshot, with its features and its label: did the
-- user positively interact with the item within the label window after the snapshot?
-- `split` holds out the latest labelled snapshots for validation and test, by time.
-- In the train split, negatives may be sampled (`train_negative_sample_percent`): every positive
-- stays, and a hash of the row's key decides which negatives do, so a rebuild keeps the same
-- rows. Validation and test keep every candidate, so early stopping and the evaluation rank the
-- full lists.

{%- set negative_percent = var('train_negative_sample_percent') %}

with

featurized as (

    select * from {{ ref('int_candidates_featurized') }}
    where split != 'scoring'

),

labels as (

    select * from {{ ref('int_user_item_labels') }}

),

final as (

    select
        featurized.*,
        cast(case when labels.item_id is not null then 1 else 0 end as {{ dbt.type_bigint() }})
            as label

    from featurized
    left join labels
        on
            featurized.snapshot_date = labels.snapshot_date
            and featurized.user_id = labels.user_id
            and featurized.item_id = labels.item_id

),

sampled as (

    select * from final
    {%- if negative_percent < 100 %}
    where
        split != 'train'
        or label = 1
        or {{ hash_bucket(dbt.concat([
            'user_id', "'|'", 'item_id', "'|'",
            'cast(snapshot_date as ' ~ dbt.type_string() ~ ')'
        ]), 100) }} < {{ negative_percent }}
    {%- endif %}

)

select * from sampled
