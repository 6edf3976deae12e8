{{
    config(incremental_by_day(partition_date='event_date', cluster_by=['user_id', 'item_id']))
}}
-- Materialised (incrementally, by day), not a view: both the clean events and the quarantine
-- read it, and the raw log should be scanned once per build. `event_date` (UTC) is derived here,
-- once; stg_app__events passes it on. Rows without a usable timestamp have no day of their own:
-- they are kept under 1900-01-01, a day every run recomputes from the raw log. Checks against
-- the items and users tables change with the catalogue, not with the day, so they live in the
-- view base_app__events_checked, which stays current for every stored day.

with

source as (

    select * from {{ source('app', 'events') }}

),

typed as (

    select
        nullif(trim(cast(user_id as {{ dbt.type_string() }})), '') as user_id,
        nullif(trim(cast(item_id as {{ dbt.type_string() }})), '') as item_id,
        nullif(lower(trim(cast(event_type as {{ dbt.type_string() }}))), '') as event_type,
        cast(event_at as {{ dbt.type_string() }}) as event_at_raw,
        cast(value as {{ dbt.type_string() }}) as event_value_raw,
        -- Optional and read by no model: a value that does not parse becomes null and the event
        -- is kept (stg_app__nulled_values lists such values).
        {{ dbt.safe_cast('value', type_float64()) }} as event_value,
        {{ to_utc_timestamp('event_at') }} as event_at

    from source

),

keyed as (

    select
        -- The event as parsed, so two spellings of one instant or amount are one event; the raw
        -- text only where it did not parse, so such rows keep a deterministic key of their own.
        {{ surrogate_key([
            'user_id',
            'item_id',
            'event_type',
            'event_at',
            'case when event_at is null then event_at_raw end',
            'event_value',
            'case when event_value is null then event_value_raw end',
        ]) }} as event_id,
        *,
        coalesce(cast(event_at as date), cast('1900-01-01' as date)) as event_date

    from typed

),

windowed as (

    select * from keyed
    {%- if is_incremental() %}
    where
        event_at is null
        or event_date >= {{ incremental_window_start(
            'event_date', where='quarantine_reason is null'
        ) }}
    {%- endif %}

),

validated as (

    select
        *,
        case
            when user_id is null then 'missing_user_id'
            when item_id is null then 'missing_item_id'
            when event_type is null then 'missing_event_type'
            when event_at_raw is null then 'missing_event_at'
            when event_at is null then 'unparseable_event_at'
            when event_type not in {{ event_type_list() }} then 'unknown_event_type'
            when event_at > {{ as_of_timestamp() }} then 'future_event_at'
            -- Copies share their parsed fields; the raw text orders them so the same copy is kept
            -- by every run.
            when row_number() over (
                partition by event_id order by event_at_raw, event_value_raw
            ) > 1 then 'duplicate_event'
        end as quarantine_reason

    from windowed

)

select * from validated
