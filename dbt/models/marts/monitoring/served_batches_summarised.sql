{{
    config(
        on_schema_change='fail',
        full_refresh=false,
        **incremental_by_day(partition_date='serving_date')
    )
}}
-- One row per serving day: who the batch reached and how its scores were spread. The share of
-- known users with candidates is read from scoring_candidates and known_users as they stand at
-- serving time, so it is appended per serving day like the history it summarises; a rerun the
-- same day replaces that day only.

with

history as (

    select * from {{ ref('served_recommendations_history') }}

),

scoring_candidates as (

    select * from {{ ref('scoring_candidates') }}

),

known_users as (

    select * from {{ ref('known_users') }}

),

serving_day as (

    select max(serving_date) as serving_date
    from history

),

served as (

    select history.*
    from history
    inner join serving_day
        on history.serving_date = serving_day.serving_date

),

candidate_users as (

    select distinct user_id
    from scoring_candidates

),

user_counts as (

    select
        count(*) as known_users,
        count(candidate_users.user_id) as known_users_with_candidates

    from known_users
    left join candidate_users
        on known_users.user_id = candidate_users.user_id

),

final as (

    select
        served.model_version,
        count(distinct served.user_id) as served_users,
        max(user_counts.known_users) as known_users,
        max(user_counts.known_users_with_candidates) as known_users_with_candidates,
        cast(max(user_counts.known_users_with_candidates) as {{ type_float64() }})
        / nullif(max(user_counts.known_users), 0) as candidate_user_share,
        cast(avg(case when served.score is null then 1.0 else 0.0 end) as {{ type_float64() }})
            as fallback_row_share,
        cast(min(served.score) as {{ type_float64() }}) as score_min,
        cast(avg(served.score) as {{ type_float64() }}) as score_mean,
        cast(stddev(served.score) as {{ type_float64() }}) as score_stddev,
        cast(max(served.score) as {{ type_float64() }}) as score_max,
        served.serving_date,
        max(served.generated_at) as generated_at

    from served
    cross join user_counts
    group by served.model_version, served.serving_date

)

select * from final
