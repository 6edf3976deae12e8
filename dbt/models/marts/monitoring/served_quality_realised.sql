-- What each served batch achieved once its label window closed: hit rate, recall and NDCG at
-- K (`recommendations_per_user`) per model version and serving day, over the served users with
-- a positive event in the `label_window_days` from the serving day (the trainer's evaluation
-- definitions, trainer/metrics.py), beside the popularity ranking at that day (distinct users
-- in the `popularity_rank_window_days` before it, as int_item_popularity_ranked ranks) served
-- to the same users, without their seen items when `exclude_seen_items` is set, as the
-- trainer serves. A day appears once the latest staged event day reaches its window's end.
{%- set k = var('recommendations_per_user') %}
{%- set popularity_days = var('popularity_rank_window_days') %}

with

history as (

    select * from {{ ref('served_recommendations_history') }}

),

events as (

    select * from {{ ref('stg_app__events') }}

),

daily_interactions as (

    select * from {{ ref('int_user_item_interactions_daily') }}

),

latest_event_day as (

    select max(event_date) as last_event_date
    from events

),

served_days as (

    select distinct
        model_version,
        serving_date,
        cast({{ dbt.dateadd('day', var('label_window_days'), 'serving_date') }} as date)
            as label_window_end_date

    from history

),

closed_days as (

    select
        served_days.model_version,
        served_days.serving_date,
        served_days.label_window_end_date

    from served_days
    cross join latest_event_day
    where
        served_days.label_window_end_date
        <= {{ dbt.dateadd('day', 1, 'latest_event_day.last_event_date') }}

),

positives as (

    select distinct
        closed_days.serving_date,
        events.user_id,
        events.item_id

    from closed_days
    inner join events
        on
            closed_days.serving_date <= events.event_date
            and closed_days.label_window_end_date > events.event_date
    where events.is_positive

),

served_users as (

    select distinct
        model_version,
        serving_date,
        user_id

    from history

),

evaluated_users as (

    select
        served_users.model_version,
        served_users.serving_date,
        served_users.user_id,
        count(*) as positive_items

    from served_users
    inner join positives
        on
            served_users.serving_date = positives.serving_date
            and served_users.user_id = positives.user_id
    group by served_users.model_version, served_users.serving_date, served_users.user_id

),

-- The ideal list puts every positive first; their order among themselves does not matter.
ideal_ranked as (

    select
        serving_date,
        user_id,
        row_number() over (partition by serving_date, user_id order by item_id) as ideal_rank

    from positives

),

ideal_gains as (

    select
        serving_date,
        user_id,
        sum(1.0 / (ln(ideal_rank + 1) / ln(2))) as idcg

    from ideal_ranked
    where ideal_rank <= {{ k }}
    group by serving_date, user_id

),

served_lists as (

    select
        serving_date,
        user_id,
        item_id,
        recommendation_rank

    from history
    where recommendation_rank <= {{ k }}

),

popularity_windowed as (

    select
        closed_days.serving_date,
        daily_interactions.item_id,
        count(distinct daily_interactions.user_id) as window_users

    from closed_days
    inner join daily_interactions
        on
            closed_days.serving_date > daily_interactions.event_date
            and daily_interactions.event_date
            >= {{ dbt.dateadd('day', -popularity_days, 'closed_days.serving_date') }}
    group by closed_days.serving_date, daily_interactions.item_id

),

popularity_ranked as (

    select
        serving_date,
        item_id,
        row_number() over (
            partition by serving_date order by window_users desc, item_id asc
        ) as popularity_rank

    from popularity_windowed

),

{%- if var('exclude_seen_items') %}

seen_items as (

    select distinct
        evaluated_users.serving_date,
        evaluated_users.user_id,
        daily_interactions.item_id

    from evaluated_users
    inner join daily_interactions
        on
            evaluated_users.user_id = daily_interactions.user_id
            and daily_interactions.event_date < evaluated_users.serving_date

),

unseen_popularity_ranked as (

    select
        evaluated_users.serving_date,
        evaluated_users.user_id,
        popularity_ranked.item_id,
        row_number() over (
            partition by evaluated_users.serving_date, evaluated_users.user_id
            order by popularity_ranked.popularity_rank
        ) as recommendation_rank

    from evaluated_users
    inner join popularity_ranked
        on evaluated_users.serving_date = popularity_ranked.serving_date
    left join seen_items
        on
            evaluated_users.serving_date = seen_items.serving_date
            and evaluated_users.user_id = seen_items.user_id
            and popularity_ranked.item_id = seen_items.item_id
    where seen_items.item_id is null

),

popularity_lists as (

    select
        serving_date,
        user_id,
        item_id,
        recommendation_rank

    from unseen_popularity_ranked
    where recommendation_rank <= {{ k }}

),

{%- else %}

popularity_lists as (

    select
        evaluated_users.serving_date,
        evaluated_users.user_id,
        popularity_ranked.item_id,
        popularity_ranked.popularity_rank as recommendation_rank

    from evaluated_users
    inner join popularity_ranked
        on evaluated_users.serving_date = popularity_ranked.serving_date
    where popularity_ranked.popularity_rank <= {{ k }}

),

{%- endif %}

served_gains as (

    select
        served_lists.serving_date,
        served_lists.user_id,
        count(*) as hits,
        sum(1.0 / (ln(served_lists.recommendation_rank + 1) / ln(2))) as dcg

    from served_lists
    inner join positives
        on
            served_lists.serving_date = positives.serving_date
            and served_lists.user_id = positives.user_id
            and served_lists.item_id = positives.item_id
    group by served_lists.serving_date, served_lists.user_id

),

popularity_gains as (

    select
        popularity_lists.serving_date,
        popularity_lists.user_id,
        count(*) as hits,
        sum(1.0 / (ln(popularity_lists.recommendation_rank + 1) / ln(2))) as dcg

    from popularity_lists
    inner join positives
        on
            popularity_lists.serving_date = positives.serving_date
            and popularity_lists.user_id = positives.user_id
            and popularity_lists.item_id = positives.item_id
    group by popularity_lists.serving_date, popularity_lists.user_id

),

per_user as (

    select
        evaluated_users.model_version,
        evaluated_users.serving_date,
        evaluated_users.user_id,
        evaluated_users.positive_items,
        ideal_gains.idcg,
        coalesce(served_gains.hits, 0) as hits,
        coalesce(served_gains.dcg, 0) as dcg,
        coalesce(popularity_gains.hits, 0) as popularity_hits,
        coalesce(popularity_gains.dcg, 0) as popularity_dcg

    from evaluated_users
    inner join ideal_gains
        on
            evaluated_users.serving_date = ideal_gains.serving_date
            and evaluated_users.user_id = ideal_gains.user_id
    left join served_gains
        on
            evaluated_users.serving_date = served_gains.serving_date
            and evaluated_users.user_id = served_gains.user_id
    left join popularity_gains
        on
            evaluated_users.serving_date = popularity_gains.serving_date
            and evaluated_users.user_id = popularity_gains.user_id

),

final as (

    select
        per_user.model_version,
        count(*) as evaluated_users,
        cast({{ k }} as {{ dbt.type_bigint() }}) as k,
        cast(avg(case when per_user.hits > 0 then 1.0 else 0.0 end) as {{ type_float64() }})
            as hit_rate,
        cast(avg(per_user.hits / per_user.positive_items) as {{ type_float64() }}) as recall,
        cast(avg(per_user.dcg / per_user.idcg) as {{ type_float64() }}) as ndcg,
        cast(
            avg(case when per_user.popularity_hits > 0 then 1.0 else 0.0 end)
            as {{ type_float64() }}
        ) as popularity_hit_rate,
        cast(avg(per_user.popularity_hits / per_user.positive_items) as {{ type_float64() }})
            as popularity_recall,
        cast(avg(per_user.popularity_dcg / per_user.idcg) as {{ type_float64() }})
            as popularity_ndcg,
        per_user.serving_date,
        closed_days.label_window_end_date

    from per_user
    inner join closed_days
        on
            per_user.model_version = closed_days.model_version
            and per_user.serving_date = closed_days.serving_date
    group by per_user.model_version, per_user.serving_date, closed_days.label_window_end_date

)

select * from final
