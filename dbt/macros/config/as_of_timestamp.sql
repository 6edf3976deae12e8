{#- The instant after which events count as "in the future": the `as_of` var when set (for
    reproducible backfills), else the start of this dbt invocation. -#}
{% macro as_of_timestamp() %}
    {%- set as_of = var('as_of') or run_started_at.strftime('%Y-%m-%d %H:%M:%S') -%}
    cast('{{ as_of }}' as {{ api.Column.translate_type('timestamp') }})
{%- endmacro %}
