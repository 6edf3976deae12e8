{#- Run as on-run-start. Contracts in the YAML use BigQuery's type names so one YAML serves both
    engines; DuckDB knows all of them but float64, which gets an alias here. -#}
{% macro register_portable_types() %}
    {{ return(adapter.dispatch('register_portable_types', 'recflow')()) }}
{% endmacro %}

{#- BigQuery knows every contract type. The hook renders empty, which dbt skips, so nothing runs
    and an offline `dbt compile` (recflow check-bigquery) needs no warehouse. -#}
{% macro default__register_portable_types() %}
    {{ return('') }}
{% endmacro %}

{% macro duckdb__register_portable_types() %}
    {%- if execute -%}
        {%- set exists = run_query(
            "select count(*) from duckdb_types() where type_name = 'float64'"
        ).columns[0].values()[0] -%}
        {%- if exists == 0 -%}
            {% do run_query("create type float64 as double") %}
        {%- endif -%}
    {%- endif -%}
    {{ return('') }}
{% endmacro %}
