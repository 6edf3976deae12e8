{{ config(tags = ['serving']) }}
-- With `exclude_seen_items`, no user is recommended an item they interacted with before the
-- recommendations' cutoff.

with

recommendations as (

    select * from {{ ref('recommendations') }}

),

user_items as (

    select * from {{ ref('user_item_history') }}

),

seen_recommended as (

    select
        recommendations.user_id,
        recommendations.item_id,
        recommendations.cutoff_date

    from recommendations
    inner join user_items
        on
            recommendations.cutoff_date = user_items.cutoff_date
            and recommendations.user_id = user_items.user_id
            and recommendations.item_id = user_items.item_id
    where {{ 'true' if var('exclude_seen_items') else 'false' }}

)

select * from seen_recommended
