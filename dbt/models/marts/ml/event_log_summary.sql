{%- set held_out = var('test_cutoff_count') + var('validation_cutoff_count') -%}
{%- set as_of = var('as_of') -%}
{%- set as_of_text = "'" ~ as_of ~ "'" if as_of else 'cast(null as ' ~ dbt.type_string() ~ ')' -%}
-- One row saying what the event log can support: raw events staged or quarantined (and the
-- commonest reason), positive events, the days they cover, the labelled cutoffs the spine found,
-- and the vars that decided it. `recflow run`, the trainer and the gate read it to name a
-- whole-data problem (trainer/data_problems.py) instead of failing on an empty training table;
-- the vars travel with the numbers, so a reader on BigQuery needs no dbt project.

with

events as (

    select * from {{ ref('stg_app__events') }}

),

quarantined_events as (

    select * from {{ ref('stg_app__quarantined_rows') }}
    where source_table = 'events'

),

cutoffs as (

    select * from {{ ref('int_cutoffs_scheduled') }}

),

staged as (

    select
        count(*) as staged_events,
        sum(case when is_positive then 1 else 0 end) as positive_events,
        count(distinct event_date) as event_days,
        min(event_date) as first_event_date,
        max(event_date) as last_event_date

    from events

),

staged_types as (

    select distinct event_type

    from events

),

staged_type_list as (

    select {{ dbt.listagg('event_type', "', '", 'order by event_type') }} as staged_event_types

    from staged_types

),

reasons as (

    select
        quarantine_reason,
        count(*) as reason_events

    from quarantined_events
    group by quarantine_reason

),

reasons_ranked as (

    select
        quarantine_reason,
        reason_events,
        row_number() over (
            order by reason_events desc, quarantine_reason asc
        ) as reason_rank

    from reasons

),

quarantine as (

    select
        max(case when reason_rank = 1 then quarantine_reason end) as top_quarantine_reason,
        coalesce(sum(reason_events), 0) as quarantined_events,
        coalesce(max(case when reason_rank = 1 then reason_events end), 0)
            as top_quarantine_reason_events

    from reasons_ranked

),

cutoff_counts as (

    select
        sum(case when split = 'train' then 1 else 0 end) as train_cutoffs,
        sum(case when split = 'validation' then 1 else 0 end) as validation_cutoffs,
        sum(case when split = 'test' then 1 else 0 end) as test_cutoffs

    from cutoffs

),

-- The earliest cutoff training needs (the train one before the held-out test and validation
-- cutoffs), wherever min_history_days would put the spine's first cutoff.
history_bound as (

    select
        first_event_date,
        cast({{ dbt.dateadd(
            'day',
            -var('cutoff_interval_days') * held_out,
            latest_closed_cutoff_date(dbt.dateadd('day', 1, 'last_event_date'))
        ) }} as date) as earliest_train_cutoff_date

    from staged

),

final as (

    select
        staged_type_list.staged_event_types,
        '{{ positive_event_types() | join(", ") }}' as positive_event_types,
        quarantine.top_quarantine_reason,
        {{ as_of_text }} as as_of,
        cast(staged.staged_events + quarantine.quarantined_events as {{ dbt.type_bigint() }})
            as raw_events,
        cast(staged.staged_events as {{ dbt.type_bigint() }}) as staged_events,
        cast(quarantine.quarantined_events as {{ dbt.type_bigint() }}) as quarantined_events,
        cast(quarantine.top_quarantine_reason_events as {{ dbt.type_bigint() }})
            as top_quarantine_reason_events,
        cast(coalesce(staged.positive_events, 0) as {{ dbt.type_bigint() }}) as positive_events,
        cast(staged.event_days as {{ dbt.type_bigint() }}) as event_days,
        cast(coalesce(cutoff_counts.train_cutoffs, 0) as {{ dbt.type_bigint() }}) as train_cutoffs,
        cast(coalesce(cutoff_counts.validation_cutoffs, 0) as {{ dbt.type_bigint() }})
            as validation_cutoffs,
        cast(coalesce(cutoff_counts.test_cutoffs, 0) as {{ dbt.type_bigint() }}) as test_cutoffs,
        cast({{ dbt.datediff(
            'history_bound.first_event_date', 'history_bound.earliest_train_cutoff_date', 'day'
        ) }} as {{ dbt.type_bigint() }}) as max_min_history_days,
        cast({{ var('min_history_days') }} as {{ dbt.type_bigint() }}) as min_history_days,
        cast({{ var('cutoff_interval_days') }} as {{ dbt.type_bigint() }})
            as cutoff_interval_days,
        cast({{ var('label_window_days') }} as {{ dbt.type_bigint() }}) as label_window_days,
        cast({{ var('test_cutoff_count') }} as {{ dbt.type_bigint() }}) as test_cutoff_count,
        cast({{ var('validation_cutoff_count') }} as {{ dbt.type_bigint() }})
            as validation_cutoff_count,
        staged.first_event_date,
        staged.last_event_date

    from staged
    cross join quarantine
    cross join cutoff_counts
    cross join staged_type_list
    cross join history_bound

)

select * from final
