{{
    config(incremental_by_cutoff(cluster_by=['user_id']))
}}
-- User features at each cutoff, from events strictly before it. A feature model: its keys
-- (user_id, cutoff_date), `last_event_at` (the point-in-time audit) and one column per feature,
-- named `user_*`; int_candidates_featurized takes every other column, so a new user feature is
-- one column here and one entry in training_examples' YAML.

with

interactions as (

    select * from {{ ref('int_user_item_interactions_daily') }}

),

cutoff_days as (

    select * from {{ ref('int_event_days_before_cutoffs') }}
    where {{ cutoffs_to_rebuild() }}

),

user_items as (

    select * from {{ ref('int_user_items_aggregated') }}
    where {{ cutoffs_to_rebuild() }}

),

users as (

    select * from {{ ref('stg_app__users') }}

),

affinities as (

    select * from {{ ref('int_user_category_affinities') }}
    where {{ cutoffs_to_rebuild() }}

),

-- One row per user and day before pairing with the cutoffs (the point-in-time join, through
-- int_event_days_before_cutoffs): it then multiplies user-days, not user-item-days, and active
-- days become a plain count.
user_days as (

    select
        user_id,
        event_date,
        sum(event_count) as event_count,
        sum(positive_event_count) as positive_event_count,
        sum(interaction_weight) as interaction_weight,
        min(first_event_at) as first_event_at,
        max(last_event_at) as last_event_at

    from interactions
    group by user_id, event_date

),

user_days_before_cutoffs as (

    select
        cutoff_days.cutoff_date,
        cutoff_days.days_ago,
        user_days.*

    from cutoff_days
    inner join user_days
        on cutoff_days.event_date = user_days.event_date

),

activity as (

    select
        cutoff_date,
        user_id,
        sum(case when days_ago <= 7 then event_count else 0 end) as events_7d,
        sum(case when days_ago <= 28 then event_count else 0 end) as events_28d,
        sum(event_count) as events_total,
        sum(case when days_ago <= 28 then positive_event_count else 0 end)
            as positive_events_28d,
        count(*) as active_days_total,
        min(first_event_at) as first_event_at,
        max(last_event_at) as last_event_at

    from user_days_before_cutoffs
    group by cutoff_date, user_id

),

-- int_user_items_aggregated holds one row per item a user touched before the cutoff.
distinct_items as (

    select
        cutoff_date,
        user_id,
        count(*) as distinct_items_total

    from user_items
    group by cutoff_date, user_id

),

favourite_categories as (

    select
        cutoff_date,
        user_id,
        affinity_share as favourite_category_share

    from affinities
    where affinity_rank = 1

),

final as (

    select
        activity.user_id,
        coalesce(users.segment, 'unknown') as user_segment,
        cast(activity.events_7d as {{ dbt.type_bigint() }}) as user_events_7d,
        cast(activity.events_28d as {{ dbt.type_bigint() }}) as user_events_28d,
        cast(activity.events_total as {{ dbt.type_bigint() }}) as user_events_total,
        cast(activity.positive_events_28d as {{ dbt.type_bigint() }})
            as user_positive_events_28d,
        distinct_items.distinct_items_total as user_distinct_items_total,
        activity.active_days_total as user_active_days_total,
        favourite_categories.favourite_category_share as user_favourite_category_share,
        {{ dbt.datediff('activity.last_event_at', 'activity.cutoff_date', 'day') }}
            as user_days_since_last_event,
        {{ dbt.datediff('activity.first_event_at', 'activity.cutoff_date', 'day') }}
            as user_days_since_first_event,
        {{ dbt.datediff('users.signup_at', 'activity.cutoff_date', 'day') }}
            as user_days_since_signup,
        activity.cutoff_date,
        activity.last_event_at

    from activity
    inner join distinct_items
        on
            activity.cutoff_date = distinct_items.cutoff_date
            and activity.user_id = distinct_items.user_id
    left join users
        on activity.user_id = users.user_id
    left join favourite_categories
        on
            activity.cutoff_date = favourite_categories.cutoff_date
            and activity.user_id = favourite_categories.user_id

)

select * from final
