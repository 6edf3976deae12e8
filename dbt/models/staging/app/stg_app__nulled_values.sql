-- Values of optional columns that did not parse and were staged as null: the row itself was
-- kept (no model reads these columns to decide anything), and the value is listed here with the
-- raw row so nothing changes silently. The warn-level test on this model counts them in every
-- build; `recflow run` prints them by column.

with

events as (

    select * from {{ ref('base_app__events_checked') }}
    where
        quarantine_reason is null
        and event_value_raw is not null
        and event_value is null

),

nulled as (

    select
        'events' as source_table,
        'value' as column_name,
        event_value_raw as raw_value,
        {{ record_to_json(
            ['user_id', 'item_id', 'event_type', 'event_at_raw', 'event_value_raw']
        ) }} as raw_record

    from events

)

select * from nulled
