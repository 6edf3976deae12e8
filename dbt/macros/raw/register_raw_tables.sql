{#- Run as on-run-start. Makes the raw tables of the data contract available as the `app`
    source: on DuckDB, views over the Parquet or CSV files in the data directory, checked against
    the columns the source YAML marks as required; in a warehouse the sources already exist. -#}
{% macro register_raw_tables() %}
    {{ return(adapter.dispatch('register_raw_tables', 'recflow')()) }}
{% endmacro %}

{#- In a warehouse the raw tables already exist (the `app` source's project and dataset come
    from RECFLOW_RAW_PROJECT and RECFLOW_RAW_SCHEMA). The hook renders empty, which dbt skips,
    so nothing runs and an offline `dbt compile` (recflow check-bigquery) needs no warehouse. -#}
{% macro default__register_raw_tables() %}
    {{ return('') }}
{% endmacro %}

{% macro raw_data_dir() %}
    {{ return(var('data_dir', env_var('RECFLOW_DATA_DIR', '../data/sample')).rstrip('/')) }}
{% endmacro %}

{% macro duckdb__register_raw_tables() %}
    {%- if not execute -%}{{ return('') }}{%- endif -%}
    {%- set data_dir = raw_data_dir() -%}
    {%- set hint = "Set RECFLOW_DATA_DIR (or the dbt var data_dir) to a directory holding "
        ~ "events, items and users as .parquet or .csv files, or run `make sample` to "
        ~ "generate one (README: 'Bring your own data')." -%}
    {%- set sources = graph.sources.values()
        | selectattr('package_name', 'equalto', 'recflow')
        | selectattr('source_name', 'equalto', 'app') | list -%}
    {%- set files_by_table = {} -%}
    {%- for source_node in sources -%}
        {%- set files = _raw_table_files(data_dir, source_node.name) -%}
        {%- do files_by_table.update({source_node.name: files}) -%}
    {%- endfor -%}
    {%- if files_by_table.values() | map('length') | sum == 0 -%}
        {{ exceptions.raise_compiler_error(
            "Data directory '" ~ data_dir ~ "' does not exist or is empty. " ~ hint) }}
    {%- endif -%}
    {%- for source_node in sources -%}
        {%- if loop.first -%}
            {% do run_query("create schema if not exists " ~ source_node.schema) %}
        {%- endif -%}
        {%- set files = files_by_table[source_node.name] -%}
        {%- do _register_raw_table(source_node, files, data_dir, hint) -%}
    {%- endfor -%}
    {{ return('') }}
{% endmacro %}

{#- The table's files in the data directory, looked up by exact name: DuckDB reads [ ] * ? in
    a path as a glob, so a directory 'export[1]' would otherwise read 'export1'. -#}
{% macro _raw_table_files(data_dir, name) %}
    {%- set files = [] -%}
    {%- for extension in ['parquet', 'csv'] -%}
        {%- set file = data_dir ~ "/" ~ name ~ "." ~ extension -%}
        {%- if run_query("select count(*) from glob('" ~ _sql_string(_glob_literal(file)) ~ "')")
                .columns[0].values()[0] > 0 -%}
            {%- do files.append(file) -%}
        {%- endif -%}
    {%- endfor -%}
    {{ return(files) }}
{% endmacro %}

{% macro _register_raw_table(source_node, files, data_dir, hint) %}
    {%- set name = source_node.name -%}
    {%- if files | length == 0 -%}
        {{ exceptions.raise_compiler_error(
            "Data directory '" ~ data_dir ~ "' has no '" ~ name ~ "' table: expected "
            ~ name ~ ".parquet or " ~ name ~ ".csv. " ~ hint) }}
    {%- elif files | length > 1 -%}
        {{ exceptions.raise_compiler_error(
            "Data directory '" ~ data_dir ~ "' holds both " ~ (files | sort | join(' and '))
            ~ ": keep exactly one file per table.") }}
    {%- endif -%}
    {%- set file = files[0] -%}
    {%- set path_literal = "'" ~ _sql_string(_glob_literal(file)) ~ "'" -%}
    {%- if file.endswith('.csv') -%}
        {#- Read CSV as text: staging casts and quarantines values that do not parse. -#}
        {%- set reader = "read_csv(" ~ path_literal ~ ", header = true, all_varchar = true)" -%}
    {%- else -%}
        {%- set reader = "read_parquet(" ~ path_literal ~ ")" -%}
    {%- endif -%}
    {%- set found = run_query("describe select * from " ~ reader).columns[0].values()
        | map('lower') | list -%}
    {%- set select_list = [] -%}
    {%- for column in source_node.columns.values() -%}
        {%- set is_required = column.meta.get('required', true) -%}
        {%- if column.name in found -%}
            {%- do select_list.append(column.name) -%}
        {%- elif is_required -%}
            {{ exceptions.raise_compiler_error(
                "'" ~ file ~ "' has no column '" ~ column.name ~ "', which the raw data "
                ~ "contract requires for " ~ name ~ " (found: " ~ (found | join(', '))
                ~ "). Rename or add the column in your export (README: 'Bring your own data').") }}
        {%- else -%}
            {%- do select_list.append("cast(null as " ~ column.data_type ~ ") as " ~ column.name) -%}
        {%- endif -%}
    {%- endfor -%}
    {%- if source_node.meta.get('must_have_rows') -%}
        {%- set has_rows = run_query("select count(*) from (select 1 from " ~ reader ~ " limit 1)")
            .columns[0].values()[0] -%}
        {%- if has_rows == 0 -%}
            {{ exceptions.raise_compiler_error(
                "'" ~ file ~ "' holds no rows: the " ~ name ~ " table must not be empty. "
                ~ "Check the export that wrote it.") }}
        {%- endif -%}
    {%- endif -%}
    {%- do run_query(
        "create or replace view " ~ source_node.schema ~ "." ~ source_node.identifier
        ~ " as select " ~ (select_list | join(', ')) ~ " from " ~ reader
    ) -%}
{% endmacro %}

{#- A path as a DuckDB glob pattern that matches exactly that path: each glob character in a
    one-character class ('[' becomes '[[]'). DuckDB has no other escape. -#}
{% macro _glob_literal(path) %}
    {{ return(modules.re.sub('([\\[\\]*?])', '[\\1]', path)) }}
{% endmacro %}

{% macro _sql_string(value) %}
    {{ return(value | replace("'", "''")) }}
{% endmacro %}
