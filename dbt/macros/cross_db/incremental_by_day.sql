{#- Configs for a model rebuilt one day at a time: each run recomputes the days from
    `incremental_window_start()` on and replaces exactly those days in the table.
      BigQuery: insert_overwrite on a day-partitioned, clustered table (partition swap).
      DuckDB:   delete+insert keyed on the day column (deletes the recomputed days, inserts them).
    Use as {{ config(incremental_by_day(partition_date='event_date', cluster_by=['user_id'])) }}.
    The model must filter its input with `incremental_window_start` under `is_incremental()`. -#}
{% macro incremental_by_day(partition_date, cluster_by=none) %}
    {{ return(adapter.dispatch('incremental_by_day', 'recflow')(partition_date, cluster_by)) }}
{% endmacro %}

{% macro default__incremental_by_day(partition_date, cluster_by) %}
    {{ return({
        'materialized': 'incremental',
        'incremental_strategy': 'delete+insert',
        'unique_key': partition_date,
    }) }}
{% endmacro %}

{% macro bigquery__incremental_by_day(partition_date, cluster_by) %}
    {%- set configs = {'materialized': 'incremental', 'incremental_strategy': 'insert_overwrite'} -%}
    {%- do configs.update(bigquery__physical_design(partition_date, cluster_by)) -%}
    {{ return(configs) }}
{% endmacro %}

{#- The first day an incremental run recomputes: the latest day already in the table minus
    `incremental_lookback_days`, so events that arrive late (up to that many days) are counted
    and duplicates of already stored events are recognised. `where` narrows which rows define
    "already in the table". -#}
{% macro incremental_window_start(date_column, where=none) %}
    {{ stored_date_bound(incremental_window_start_query(this, date_column, where)) }}
{% endmacro %}

{#- The query behind incremental_window_start for any stored `relation`: one row, one DATE
    column, `first_recomputed_day`. The export record (macros/provenance) asks it of the events
    staging, so it compares exactly the days an incremental build keeps. -#}
{% macro incremental_window_start_query(relation, date_column, where=none) %}
    select
        coalesce(
            cast({{ dbt.dateadd('day', -var('incremental_lookback_days'),
                'max(' ~ date_column ~ ')') }} as date),
            cast('1900-01-01' as date)
        ) as first_recomputed_day
    from {{ relation }}
    {%- if where %}
    where {{ where }}
    {%- endif %}
{% endmacro %}

{#- A date computed from the model's stored table by `query` (one row, one DATE column), as a
    literal: a constant the engine pushes into scans, which BigQuery needs to prune partitions
    (a scalar subquery would scan them all). When the warehouse cannot be asked (parsing, or the
    offline BigQuery compile check) it is the scalar subquery itself, which means the same. -#}
{% macro stored_date_bound(query) %}
    {%- if can_query_warehouse() -%}
        {%- set bound = run_query(query).columns[0].values()[0] -%}
        cast('{{ bound }}' as date)
    {%- else -%}
        ({{ query }})
    {%- endif -%}
{% endmacro %}

{#- Whether a macro may run a query while compiling: not while parsing, nor during the offline
    BigQuery compile check (which has no warehouse; see is_incremental.sql). -#}
{% macro can_query_warehouse() %}
    {{ return(execute and var('recflow_offline_compile', none) is none) }}
{% endmacro %}
