{%- set interval_days = var('cutoff_interval_days') -%}
{%- set label_window_days = var('label_window_days') -%}
{%- if label_window_days > interval_days -%}
    {{ exceptions.raise_compiler_error(
        "label_window_days (" ~ label_window_days ~ ") must not exceed cutoff_interval_days ("
        ~ interval_days ~ "): a cutoff's labels would overlap the next cutoff's, and the "
        ~ "test window would leak into validation. Fix the vars in dbt/dbt_project.yml."
    ) }}
{%- endif -%}
-- The spine every mart is keyed on. Labelled cutoffs lie on a fixed calendar: every
-- `cutoff_interval_days` from `cutoff_calendar_anchor`, so appending a day of events moves
-- no cutoff and a cutoff whose label window has closed never changes (incremental builds keep
-- it as stored). The `test_cutoff_count` latest calendar cutoffs whose label windows have closed by
-- the last event are test, the `validation_cutoff_count` before them validation, up to
-- `train_cutoff_count` before those train; scoring is the day after the last event (no labels yet).
-- Splits are by time, never at random, and no label window reaches the next split's cutoffs.
-- Several test and validation cutoffs average the metrics and early stopping over more than one
-- week of behaviour.

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

-- The latest calendar cutoff whose label window ends by the scoring date (is closed).
latest_closed as (

    select
        first_event_date,
        scoring_date,
        {{ latest_closed_cutoff_date('scoring_date') }} as test_date

    from bounds

),

offsets as (

    {{ dbt.generate_series(
        var('train_cutoff_count') + var('validation_cutoff_count') + var('test_cutoff_count')
    ) }}

),

labelled as (

    select
        offsets.generated_number as closed_rank,
        cast({{ dbt.dateadd(
            'day',
            '-' ~ interval_days ~ ' * (offsets.generated_number - 1)',
            'latest_closed.test_date'
        ) }} as date) as cutoff_date,
        latest_closed.first_event_date

    from offsets
    cross join latest_closed

),

spine as (

    select
        cutoff_date,
        case
            when closed_rank <= {{ var('test_cutoff_count') }} then 'test'
            when
                closed_rank <= {{ var('test_cutoff_count') + var('validation_cutoff_count') }}
                then 'validation'
            else 'train'
        end as split,
        first_event_date

    from labelled

    union all

    select
        scoring_date as cutoff_date,
        'scoring' as split,
        first_event_date

    from bounds

),

scheduled as (

    select
        cutoff_date,
        split,
        cast({{ dbt.dateadd('day', label_window_days, 'cutoff_date') }} as date)
            as label_window_end_date

    from spine
    -- A cutoff needs enough history before it for its features to mean anything.
    where cutoff_date >= cast({{ dbt.dateadd(
        'day', var('min_history_days'), 'first_event_date'
    ) }} as date)

)

select * from scheduled
