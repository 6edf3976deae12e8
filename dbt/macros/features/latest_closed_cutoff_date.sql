{#- The latest calendar cutoff (every `cutoff_interval_days` from `cutoff_calendar_anchor`)
    whose label window has closed by `scoring_date`, the day after the last event. The spine's
    test cutoff; the event log summary uses it too, to say how much history the cutoffs leave. -#}
{% macro latest_closed_cutoff_date(scoring_date) %}
    {%- set interval_days = var('cutoff_interval_days') -%}
    {%- set anchor = "cast('" ~ var('cutoff_calendar_anchor') ~ "' as date)" -%}
    cast({{ dbt.dateadd(
        'day',
        interval_days ~ ' * cast(floor(' ~ dbt.datediff(
            anchor,
            dbt.dateadd('day', -var('label_window_days'), scoring_date),
            'day'
        ) ~ ' / ' ~ interval_days ~ ') as ' ~ dbt.type_bigint() ~ ')',
        anchor
    ) }} as date)
{%- endmacro %}
