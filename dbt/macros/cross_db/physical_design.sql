{#- Table layout configs for a model's `config()`: BigQuery partitions the table by day on a
    DATE column and clusters it, so queries filtering on that date (every point-in-time join)
    scan only the days they need. Other engines get no configs: dbt-duckdb reads `partition_by`
    itself (it rejects BigQuery's dict form and warns outside DuckLake), so the configs may not
    reach it. Use as

        {{ config(physical_design(partition_date='event_date', cluster_by=['user_id'])) }}

    passing the dict positionally (dbt rejects `config(**{})`, what DuckDB would get), or
    next to other configs as `config(materialized='table', **physical_design(...))`.
    `partition_date` must name a DATE column of the model; `cluster_by` lists up to four
    columns, most selective filter first. `recflow check-bigquery` checks both against the
    model's compiled columns. -#}
{% macro physical_design(partition_date=none, cluster_by=none) %}
    {{ return(adapter.dispatch('physical_design', 'recflow')(partition_date, cluster_by)) }}
{% endmacro %}

{% macro default__physical_design(partition_date, cluster_by) %}
    {{ return({}) }}
{% endmacro %}

{% macro bigquery__physical_design(partition_date, cluster_by) %}
    {%- set configs = {} -%}
    {%- if partition_date -%}
        {%- do configs.update({'partition_by': {
            'field': partition_date, 'data_type': 'date', 'granularity': 'day'
        }}) -%}
    {%- endif -%}
    {%- if cluster_by -%}
        {%- if cluster_by | length > 4 -%}
            {{ exceptions.raise_compiler_error(
                "BigQuery clusters on at most four columns, got: " ~ (cluster_by | join(', '))
            ) }}
        {%- endif -%}
        {%- do configs.update({'cluster_by': cluster_by}) -%}
    {%- endif -%}
    {{ return(configs) }}
{% endmacro %}
