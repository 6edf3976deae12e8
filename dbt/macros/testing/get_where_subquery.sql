{#- dbt's hook for a test's `where`: the relation a generic test reads. Overridden so that an
    incremental build can test only the partitions it rebuilt. With the var `data_test_scope`
    set to `recent` (recflow sets it on incremental builds, never on a full refresh), a test of
    a model stored by day or by cutoff reads only that model's recent partitions; otherwise,
    which includes CI, a full refresh and a plain `dbt build`, it reads the whole table. A
    test's own `where` still applies in both cases. -#}
{% macro get_where_subquery(relation) -%}
    {%- set conditions = [] -%}
    {%- set where = config.get('where') -%}
    {%- if where -%}
        {%- do conditions.append('(' ~ where ~ ')') -%}
    {%- endif -%}
    {%- set recent = recent_partitions_condition(relation) -%}
    {%- if recent -%}
        {%- do conditions.append(recent) -%}
    {%- endif -%}
    {%- if conditions -%}
        {%- set filtered -%}
            (select * from {{ relation }} where {{ conditions | join(' and ') }}) dbt_subquery
        {%- endset -%}
        {{ return(filtered) }}
    {%- endif -%}
    {{ return(relation) }}
{%- endmacro %}

{#- A condition keeping the partitions of `relation` an incremental build rebuilt, or '' when
    the whole table is to be tested (scope `all`, a full refresh, or a relation that is not a
    model stored by day or cutoff). A daily run recomputes at most `incremental_lookback_days`
    + `label_window_days` days back from the latest partition (cutoffs_to_rebuild); the window
    adds one `cutoff_interval_days`, so a run after a gap of up to that many days is covered. -#}
{% macro recent_partitions_condition(relation) -%}
    {%- if var('data_test_scope') not in ['all', 'recent'] -%}
        {{ exceptions.raise_compiler_error(
            "var data_test_scope must be 'all' or 'recent', got " ~ tojson(var('data_test_scope'))
        ) }}
    {%- endif -%}
    {#- Parsing has no graph to look the model up in, and needs no condition. -#}
    {%- if not execute or var('data_test_scope') != 'recent' or flags.FULL_REFRESH -%}
        {{ return('') }}
    {%- endif -%}
    {%- set column = partition_column_of(relation) -%}
    {%- if not column -%}
        {{ return('') }}
    {%- endif -%}
    {%- set days = var('incremental_lookback_days') + var('label_window_days')
        + var('cutoff_interval_days') -%}
    {%- set latest = '(select max(' ~ column ~ ') from ' ~ relation ~ ')' -%}
    {{ return(column ~ ' >= cast(' ~ dbt.dateadd('day', -days, latest) ~ ' as date)') }}
{%- endmacro %}

{#- The day or cutoff column an incremental model replaces partitions by (incremental_by_day:
    `unique_key` on DuckDB, `partition_by.field` on BigQuery), or none for any other relation. -#}
{% macro partition_column_of(relation) -%}
    {%- for node in graph.nodes.values() -%}
        {%- if node.resource_type == 'model'
                and (node.alias or node.name) == relation.identifier
                and node.config.materialized == 'incremental' -%}
            {%- set partition_by = node.config.get('partition_by') or {} -%}
            {%- set unique_key = node.config.get('unique_key') -%}
            {{ return(partition_by.get('field')
                or (unique_key if unique_key is string else none)) }}
        {%- endif -%}
    {%- endfor -%}
    {{ return(none) }}
{%- endmacro %}
