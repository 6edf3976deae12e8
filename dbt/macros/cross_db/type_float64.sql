{#- A 64-bit float on every engine (dbt.type_float() is 32-bit on DuckDB). -#}
{% macro type_float64() %}
    {{ return(adapter.dispatch('type_float64', 'recflow')()) }}
{% endmacro %}

{% macro default__type_float64() %}
    {{ return('double precision') }}
{% endmacro %}

{% macro duckdb__type_float64() %}
    {{ return('double') }}
{% endmacro %}

{% macro bigquery__type_float64() %}
    {{ return('float64') }}
{% endmacro %}
