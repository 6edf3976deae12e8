with

validated as (

    select * from {{ ref('base_app__users_validated') }}

),

renamed as (

    select
        user_id,
        coalesce(segment, 'unknown') as segment,
        signup_at

    from validated
    where quarantine_reason is null

)

select * from renamed
