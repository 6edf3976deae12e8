{{
    config(
        materialized = 'table',
    )
}}
-- A table, not a view, like the other base models: the raw source is scanned once per build
-- however many models come to read the users.

with

source as (

    select * from {{ source('app', 'users') }}

),

typed as (

    select
        nullif(trim(cast(user_id as {{ dbt.type_string() }})), '') as user_id,
        nullif(lower(trim(cast(segment as {{ dbt.type_string() }}))), '') as segment,
        cast(signup_at as {{ dbt.type_string() }}) as signup_at_raw,
        {{ to_utc_timestamp('signup_at') }} as signup_at

    from source

),

validated as (

    select
        *,
        case
            when user_id is null then 'missing_user_id'
            when signup_at_raw is not null and signup_at is null then 'unparseable_signup_at'
            when row_number() over (
                partition by user_id order by signup_at, segment
            ) > 1 then 'duplicate_user_id'
        end as quarantine_reason

    from typed

)

select * from validated
