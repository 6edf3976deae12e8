{{
    config(
        materialized = 'ephemeral',
    )
}}
-- Candidates with the user, item and user-item features of their cutoff: the one place the
-- feature joins are written, shared by the labelled candidates and the scoring candidates.
-- The candidates come with their user-item features (int_user_items_featurized); every column
-- of the user and item feature models but their keys (and `last_event_at`, the point-in-time
-- audit) is taken, so a feature added to a feature model reaches both marts with no edit here;
-- its one declaration is in training_examples' YAML.
-- Ephemeral: the two read disjoint cutoffs, so each joins only its own rows and the wide
-- result is written once, in the model, instead of twice. Each filters the cutoff by a literal
-- date, which reaches every scan below (DuckDB's zone maps, BigQuery's partitions). No split
-- here: which split a cutoff belongs to changes as label windows close, while these rows
-- never do.

with

candidates as (

    select * from {{ ref('int_user_items_featurized') }}

),

user_features as (

    select * from {{ ref('int_users_featurized') }}

),

item_features as (

    select * from {{ ref('int_items_featurized') }}

),

featurized as (

    select
        candidates.*,
        {{ star_except('user_features', ['user_id', 'cutoff_date', 'last_event_at']) }},
        {{ star_except('item_features', ['item_id', 'cutoff_date', 'last_event_at']) }}

    from candidates
    left join user_features
        on
            candidates.cutoff_date = user_features.cutoff_date
            and candidates.user_id = user_features.user_id
    left join item_features
        on
            candidates.cutoff_date = item_features.cutoff_date
            and candidates.item_id = item_features.item_id

)

select * from featurized
