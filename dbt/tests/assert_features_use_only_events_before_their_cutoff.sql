-- Point-in-time correctness: no feature row of any cutoff may rest on an event at or after
-- that cutoff. Checked two ways: the latest event each feature row used, and a recount of
-- every user's events straight from staging, which catches an off-by-one (`<=`) in any join.
-- Like the generic tests, it checks only the recent cutoffs when `data_test_scope` is `recent`.

with

user_features as (

    select * from {{ ref('int_users_featurized') }}
    {%- set recent = recent_partitions_condition(ref('int_users_featurized')) %}
    {%- if recent %}
    where {{ recent }}
    {%- endif %}

),

item_features as (

    select * from {{ ref('int_items_featurized') }}
    {%- set recent = recent_partitions_condition(ref('int_items_featurized')) %}
    {%- if recent %}
    where {{ recent }}
    {%- endif %}

),

events as (

    select * from {{ ref('stg_app__events') }}

),

late_user_rows as (

    select
        'int_users_featurized' as model_name,
        user_id as entity_id,
        cutoff_date,
        'last_event_at is not before cutoff_date' as problem
    from user_features
    where last_event_at >= cast(cutoff_date as {{ api.Column.translate_type('timestamp') }})

),

late_item_rows as (

    select
        'int_items_featurized' as model_name,
        item_id as entity_id,
        cutoff_date,
        'last_event_at is not before cutoff_date' as problem
    from item_features
    where last_event_at >= cast(cutoff_date as {{ api.Column.translate_type('timestamp') }})

),

recounted_user_events as (

    select
        user_features.user_id,
        user_features.cutoff_date,
        user_features.user_events_total,
        count(events.event_id) as events_before_cutoff

    from user_features
    left join events
        on
            user_features.user_id = events.user_id
            and events.event_at
            < cast(user_features.cutoff_date as {{ api.Column.translate_type('timestamp') }})
    group by user_features.user_id, user_features.cutoff_date, user_features.user_events_total

),

miscounted_user_rows as (

    select
        'int_users_featurized' as model_name,
        user_id as entity_id,
        cutoff_date,
        'user_events_total differs from a recount of events before cutoff_date' as problem
    from recounted_user_events
    where user_events_total != events_before_cutoff

)

select * from late_user_rows
union all
select * from late_item_rows
union all
select * from miscounted_user_rows
