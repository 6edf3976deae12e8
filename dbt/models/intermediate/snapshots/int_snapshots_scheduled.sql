{%- set interval_days = var('snapshot_interval_days') -%}
{%- set label_window_days = var('label_window_days') -%}
{%- if label_window_days > interval_days -%}
    {{ exceptions.raise_compiler_error(
        "label_window_days (" ~ label_window_days ~ ") must not exceed snapshot_interval_days ("
        ~ interval_days ~ "): a snapshot's labels would overlap the next snapshot's, and the "
        ~ "test window would leak into validation. Fix the vars in dbt/dbt_project.yml."
    ) }}
{%- endif -%}
-- The spine every mart is keyed on: cutoffs every `snapshot_interval_days`, counted back from
-- the day after the last event. The latest cutoff is for scoring (no labels yet), the one before
-- for test, then validation, then training; splits are by time, never at random.

with

events as (

    select * from {{ ref('stg_app__events') }}

),

bounds as (

    select
        min(event_date) as first_event_date,
        cast({{ dbt.dateadd('day', 1, 'max(event_date)') }} as date) as scoring_date

    from events

),

offsets as (

    {{ dbt.generate_series(var('train_snapshots') + 3) }}

),

spine as (

    select
        offsets.generated_number - 1 as snapshots_before_latest,
        cast({{ dbt.dateadd(
            'day',
            '-' ~ interval_days ~ ' * (offsets.generated_number - 1)',
            'bounds.scoring_date'
        ) }} as date) as snapshot_date,
        bounds.first_event_date

    from offsets
    cross join bounds

),

scheduled as (

    select
        snapshot_date,
        case snapshots_before_latest
            when 0 then 'scoring'
            when 1 then 'test'
            when 2 then 'validation'
            else 'train'
        end as split,
        cast({{ dbt.dateadd('day', label_window_days, 'snapshot_date') }} as date)
            as label_window_end_date

    from spine
    -- A cutoff needs enough history before it for its features to mean anything.
    where snapshot_date >= cast({{ dbt.dateadd(
        'day', var('min_history_days'), 'first_event_date'
    ) }} as date)

)

select * from scheduled
