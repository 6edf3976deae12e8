-- Every raw row that staging did not pass on, with the reason and the row as it arrived, so
-- nothing is dropped silently. The warn-level test on this model counts them in every build.

with

events as (

    select * from {{ ref('base_app__events_checked') }}
    where quarantine_reason is not null

),

items as (

    select * from {{ ref('base_app__items_validated') }}
    where quarantine_reason is not null

),

users as (

    select * from {{ ref('base_app__users_validated') }}
    where quarantine_reason is not null

),

unioned as (

    select
        'events' as source_table,
        quarantine_reason,
        {{ record_to_json(
            ['user_id', 'item_id', 'event_type', 'event_at_raw', 'event_value_raw']
        ) }} as raw_record
    from events

    union all

    select
        'items' as source_table,
        quarantine_reason,
        {{ record_to_json(['item_id', 'category', 'created_at_raw']) }} as raw_record
    from items

    union all

    select
        'users' as source_table,
        quarantine_reason,
        {{ record_to_json(['user_id', 'segment', 'signup_at_raw']) }} as raw_record
    from users

)

select * from unioned
