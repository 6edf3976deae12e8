{{
    config(physical_design(
        partition_date='cutoff_date', cluster_by=['item_id']
    ))
}}
-- Item features at each cutoff, under the names the trainer and the evaluation read, with the
-- popularity ranks the fallback and coverage use. No computation of its own: the features come
-- from int_items_featurized, the ranks and counts from int_item_popularity_ranked. A table, not a
-- view: the trainer reads it through BigQuery's table read APIs, which do not read views.

with

item_features as (

    select * from {{ ref('int_items_featurized') }}

),

popularity as (

    select * from {{ ref('int_item_popularity_ranked') }}

),

final as (

    select
        item_features.item_id,
        item_features.item_category as category,
        item_features.item_users_1d as users_1d,
        item_features.item_users_7d as users_7d,
        item_features.item_users_28d as users_28d,
        item_features.item_users_total as users_total,
        coalesce(popularity.events_28d, 0) as events_28d,
        coalesce(popularity.positive_events_28d, 0) as positive_events_28d,
        item_features.item_positive_rate_28d as positive_rate_28d,
        popularity.popularity_rank,
        popularity.popularity_all_rank,
        item_features.item_category_popularity_rank as category_popularity_rank,
        item_features.item_days_since_created as days_since_created,
        item_features.item_days_since_last_event as days_since_last_event,
        item_features.cutoff_date,
        item_features.last_event_at

    from item_features
    left join popularity
        on
            item_features.cutoff_date = popularity.cutoff_date
            and item_features.item_id = popularity.item_id

)

select * from final
