{{
    config(
        materialized = 'table',
    )
}}
-- A table, not a view: the catalogue feeds the quarantine and several per-cutoff models, and
-- the raw source should be scanned once per build.

with

source as (

    select * from {{ source('app', 'items') }}

),

typed as (

    select
        nullif(trim(cast(item_id as {{ dbt.type_string() }})), '') as item_id,
        nullif(lower(trim(cast(category as {{ dbt.type_string() }}))), '') as category,
        cast(created_at as {{ dbt.type_string() }}) as created_at_raw,
        {{ to_utc_timestamp('created_at') }} as created_at

    from source

),

validated as (

    select
        *,
        case
            when item_id is null then 'missing_item_id'
            when created_at_raw is not null and created_at is null then 'unparseable_created_at'
            -- Keep the earliest listing of an item; later rows for the same id are duplicates.
            when row_number() over (
                partition by item_id order by created_at, category
            ) > 1 then 'duplicate_item_id'
        end as quarantine_reason

    from typed

)

select * from validated
