{{
    config(physical_design(cluster_by=['user_id']))
}}
-- Every user the product knows at the latest cutoff: listed in the users table or seen in the
-- events. The batch serves each of them K items (users with history from their candidates, the
-- others the popularity fallback: trainer/serving.py), so the serving tests check coverage
-- against this table.

with

users as (

    select * from {{ ref('stg_app__users') }}

),

interactions as (

    select * from {{ ref('int_user_item_interactions_daily') }}

),

user_activity as (

    select
        user_id,
        min(first_event_at) as first_event_at,
        max(last_event_at) as last_event_at

    from interactions
    group by user_id

),

final as (

    select
        coalesce(users.user_id, user_activity.user_id) as user_id,
        users.segment,
        user_activity.user_id is not null as has_history,
        users.signup_at,
        user_activity.first_event_at,
        user_activity.last_event_at

    from users
    full outer join user_activity
        on users.user_id = user_activity.user_id

)

select * from final
