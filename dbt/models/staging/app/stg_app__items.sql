with

validated as (

    select * from {{ ref('base_app__items_validated') }}

),

renamed as (

    select
        item_id,
        coalesce(category, 'unknown') as category,
        created_at

    from validated
    where quarantine_reason is null

)

select * from renamed
