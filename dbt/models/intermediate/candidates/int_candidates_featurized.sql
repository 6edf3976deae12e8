{{
    config(
        materialized = 'ephemeral',
    )
}}
-- Candidates with the user, item and user-item features of their cutoff: the one place the
-- feature joins are written, shared by the labelled candidates and the scoring candidates.
-- Every column of each feature model but its keys (and `last_event_at`, the point-in-time audit)
-- is taken, so a feature added to a feature model reaches both marts with no edit here; its one
-- declaration is in training_examples' YAML.
-- Ephemeral: the two read disjoint cutoffs, so each joins only its own rows and the wide
-- result is written once, in the model, instead of twice. No split here: which split a
-- cutoff belongs to changes as label windows close, while these rows never do.

with

candidates as (

    select * from {{ ref('int_candidates_generated') }}

),

user_features as (

    select * from {{ ref('int_users_featurized') }}

),

item_features as (

    select * from {{ ref('int_items_featurized') }}

),

user_item_features as (

    select * from {{ ref('int_user_items_featurized') }}

),

featurized as (

    select
        candidates.*,
        {{ star_except('user_features', ['user_id', 'cutoff_date', 'last_event_at']) }},
        {{ star_except('item_features', ['item_id', 'cutoff_date', 'last_event_at']) }},
        {{ star_except('user_item_features', ['user_id', 'item_id', 'cutoff_date']) }}

    from candidates
    left join user_features
        on
            candidates.cutoff_date = user_features.cutoff_date
            and candidates.user_id = user_features.user_id
    left join item_features
        on
            candidates.cutoff_date = item_features.cutoff_date
            and candidates.item_id = item_features.item_id
    left join user_item_features
        on
            candidates.cutoff_date = user_item_features.cutoff_date
            and candidates.user_id = user_item_features.user_id
            and candidates.item_id = user_item_features.item_id

)

select * from featurized
