{{
    config(incremental_by_cutoff(cluster_by=['user_id', 'item_id']))
}}
-- Every candidate at every labelled cutoff with its features and its label: did the user
-- positively interact with the item within the label window after the cutoff? Stored per
-- cutoff and final once the label window has closed; the split (which moves from test to
-- validation to train as later windows close) and the train negative sampling are applied in
-- training_examples, from the spine, so the stored rows never change.

with

cutoffs as (

    select * from {{ ref('int_cutoffs_scheduled') }}
    where split != 'scoring' and {{ cutoffs_to_rebuild(labelled_only=true) }}

),

featurized as (

    select * from {{ ref('int_candidates_featurized') }}
    where
        {{ cutoffs_to_rebuild(labelled_only=true) }}
        and cutoff_date < {{ scoring_cutoff_date() }}

),

labels as (

    select * from {{ ref('int_user_item_labels') }}
    where {{ cutoffs_to_rebuild(labelled_only=true) }}

),

final as (

    select
        featurized.*,
        cast(case when labels.item_id is not null then 1 else 0 end as {{ dbt.type_bigint() }})
            as label

    from featurized
    inner join cutoffs
        on featurized.cutoff_date = cutoffs.cutoff_date
    left join labels
        on
            featurized.cutoff_date = labels.cutoff_date
            and featurized.user_id = labels.user_id
            and featurized.item_id = labels.item_id

)

select * from final
