-- Events that passed every check, including the catalogue checks, which
-- base_app__events_checked keeps current.

with

checked as (

    select * from {{ ref('base_app__events_checked') }}

),

renamed as (

    select
        event_id,
        user_id,
        item_id,
        event_type,
        event_value,
        {{ event_type_weight('event_type') }} as event_weight,
        {{ event_type_is_positive('event_type') }} as is_positive,
        event_date,
        event_at

    from checked
    where quarantine_reason is null

)

select * from renamed
