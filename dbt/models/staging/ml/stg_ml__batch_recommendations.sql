with

source as (

    select * from {{ source('ml', 'batch_recommendations') }}

),

renamed as (

    select
        cast(user_id as {{ dbt.type_string() }}) as user_id,
        cast(item_id as {{ dbt.type_string() }}) as item_id,
        cast(model_version as {{ dbt.type_string() }}) as model_version,
        cast(recommendation_rank as {{ dbt.type_bigint() }}) as recommendation_rank,
        cast(score as {{ type_float64() }}) as score,
        cast(cutoff_date as date) as cutoff_date,
        cast(generated_at as {{ api.Column.translate_type('timestamp') }}) as generated_at

    from source

)

select * from renamed
