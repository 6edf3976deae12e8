{{
    config(incremental_by_cutoff(cluster_by=['user_id', 'item_id']))
}}
-- One row per candidate at every labelled cutoff, with its features and its label (from
-- int_candidates_labelled, stored per cutoff). `split` holds out the latest labelled
-- cutoffs for validation and test, by time; it comes from the spine here, since it changes as
-- label windows close.
-- In the train split, negatives may be sampled (`train_negative_sample_percent`): every positive
-- stays, and a hash of the row's key decides which negatives do, so a rebuild keeps the same
-- rows. Validation and test keep every candidate, so early stopping and the evaluation rank the
-- full lists.
-- Incremental per cutoff, like int_candidates_labelled, and a cutoff whose split moved (a
-- label window closed) is rebuilt too, since the sampling follows the split.

{%- set negative_percent = var('train_negative_sample_percent') %}

with

labelled as (

    select * from {{ ref('int_candidates_labelled') }}
    where {{ cutoffs_to_rebuild(labelled_only=true) }} or {{ cutoffs_whose_split_changed() }}

),

cutoffs as (

    select * from {{ ref('int_cutoffs_scheduled') }}

),

final as (

    select
        labelled.*,
        cutoffs.split

    from labelled
    inner join cutoffs
        on labelled.cutoff_date = cutoffs.cutoff_date

),

-- Train cutoffs keep at most `train_users_per_cutoff` users, chosen by a hash of user and
-- cutoff, so many cutoffs on a large user base stay within the trainer's memory; validation and
-- test keep every user (the evaluation scores what serving would deliver to each of them).
train_users as (

    select distinct
        cutoff_date,
        user_id

    from final
    where split = 'train'

),

train_users_ranked as (

    select
        cutoff_date,
        user_id,
        {{ user_sample_rank() }} as user_sample_rank

    from train_users

),

users_sampled as (

    select final.*

    from final
    left join train_users_ranked
        on
            final.cutoff_date = train_users_ranked.cutoff_date
            and final.user_id = train_users_ranked.user_id
    where
        final.split != 'train'
        or train_users_ranked.user_sample_rank <= {{ var('train_users_per_cutoff') }}

),

sampled as (

    select * from users_sampled
    {%- if negative_percent < 100 %}
    where
        split != 'train'
        or label = 1
        or {{ hash_bucket(dbt.concat([
            'user_id', "'|'", 'item_id', "'|'",
            'cast(cutoff_date as ' ~ dbt.type_string() ~ ')'
        ]), 100) }} < {{ negative_percent }}
    {%- endif %}

)

select * from sampled
