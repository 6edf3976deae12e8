{#- What the warehouse was built from. Incremental models recompute only the days from
    `incremental_window_start` on, so an export that changed before that window (another export,
    a backfilled day, deleted rows or users, an item that joined or left the catalogue) would be
    merged silently. Each build therefore fingerprints the raw tables (events per day: rows and
    an order-free hash of the rows; the item and user ids) and, when every model built, records
    it: `recflow_build_sources` (one row per build: source, row counts, first and last event day,
    the vars that shape stored tables), `recflow_built_event_days`, `recflow_built_catalogue`.
    The next build compares the export with that record over the stored days it will not
    recompute; any difference means only a full refresh is right. Cost: one scan of the raw
    events per build, as staging already does, and one of the stored events' ids. -#}

{#- The vars the stored incremental tables were built with: when one changes, the stored days
    no longer mean what the new value says. Run-time vars (as_of, data_dir,
    recommendations_per_user, incremental_lookback_days, recflow_offline_compile) do not
    shape stored rows; tests/dbt/test_export_changes.py keeps this list and the project's vars
    in step. -#}
{% macro vars_shaping_stored_tables() %}
    {%- set names = [
        'event_types', 'cutoff_interval_days', 'cutoff_calendar_anchor', 'label_window_days',
        'min_history_days', 'train_cutoff_count', 'test_cutoff_count', 'validation_cutoff_count',
        'train_negative_sample_percent', 'train_users_per_cutoff', 'labelled_users_per_cutoff',
        'popularity_rank_window_days', 'covisit_max_positions', 'covisit_max_minutes',
        'covisit_lookback_days', 'covisit_neighbours_per_item', 'itemknn_items_per_user',
        'itemknn_neighbours_per_item', 'itemknn_min_cooccurrence', 'recent_items_per_user',
        'candidates_per_source', 'category_affinity_lookback_days', 'exclude_seen_items',
        'events_of_unknown_users',
    ] -%}
    {%- set shaping = {} -%}
    {%- for name in names -%}
        {%- do shaping.update({name: var(name)}) -%}
    {%- endfor -%}
    {{ return(shaping) }}
{% endmacro %}

{#- Where the raw tables come from, as the record names it: the data directory locally, the
    raw dataset in a warehouse. -#}
{% macro export_location() %}
    {{ return(adapter.dispatch('export_location', 'recflow')()) }}
{% endmacro %}

{% macro default__export_location() %}
    {%- set events = _provenance_source('events') -%}
    {{ return(events.database ~ '.' ~ events.schema) }}
{% endmacro %}

{% macro duckdb__export_location() %}
    {{ return(raw_data_dir()) }}
{% endmacro %}

{#- An order-free hash of a set of rows: xor of one 64-bit hash per row. -#}
{% macro rows_fingerprint(columns) %}
    {{ return(adapter.dispatch('rows_fingerprint', 'recflow')(columns)) }}
{% endmacro %}

{% macro duckdb__rows_fingerprint(columns) %}
    {%- set fields = [] -%}
    {%- for column in columns -%}
        {%- do fields.append('cast(' ~ column ~ ' as varchar)') -%}
    {%- endfor -%}
    cast(bit_xor(hash([{{ fields | join(', ') }}])) as varchar)
{% endmacro %}

{% macro bigquery__rows_fingerprint(columns) %}
    {%- set fields = [] -%}
    {%- for column in columns -%}
        {%- do fields.append('cast(' ~ column ~ ' as string)') -%}
    {%- endfor -%}
    cast(bit_xor(farm_fingerprint(to_json_string([{{ fields | join(', ') }}]))) as string)
{% endmacro %}

{#- Fingerprint the raw tables now into `recflow_export_pending` (events one row per UTC day,
    items and users one row each) and return how the export differs from the last recorded
    build over the stored days an incremental build keeps: a list of sentences, empty when
    nothing differs or nothing is stored yet. -#}
{% macro export_changes_since_last_build() %}
    {%- set pending = _provenance_relation('recflow_export_pending') -%}
    {%- set built_days = _provenance_relation('recflow_built_event_days') -%}
    {%- set builds = _provenance_relation('recflow_build_sources') -%}
    {%- set catalogue = _provenance_relation('recflow_catalogue_pending') -%}
    {%- set built_catalogue = _provenance_relation('recflow_built_catalogue') -%}
    {%- set events_model = _provenance_model('base_app__events_validated') -%}
    {%- do run_query(_export_pending_sql(pending)) -%}
    {%- do run_query(_catalogue_pending_sql(catalogue)) -%}
    {%- set changes = [] -%}
    {%- if load_relation(events_model) is none -%}
        {{ return(changes) }}
    {%- endif -%}
    {%- if load_relation(builds) is none or load_relation(built_days) is none
            or load_relation(built_catalogue) is none -%}
        {%- do changes.append(
            "the warehouse holds tables but no record of the export they were built from") -%}
        {{ return(changes) }}
    {%- endif -%}
    {%- set last_build = run_query(
        "select source_location, vars_json from " ~ builds
        ~ " order by built_at desc limit 1").rows[0] -%}
    {%- set built_vars = fromjson(last_build[1]) -%}
    {%- for name, value in vars_shaping_stored_tables().items() -%}
        {%- if tojson(built_vars.get(name)) != tojson(value) -%}
            {%- do changes.append("var " ~ name ~ " was " ~ tojson(built_vars.get(name))
                ~ " when the stored tables were built, now " ~ tojson(value)) -%}
        {%- endif -%}
    {%- endfor -%}
    {%- for change, days, first_day, last_day in
            run_query(_differing_days_sql(pending, built_days, events_model)).rows -%}
        {%- do changes.append(days ~ " stored day(s) of events " ~ change ~ " (" ~ first_day
            ~ (" to " ~ last_day if last_day != first_day else "") ~ ")") -%}
    {%- endfor -%}
    {%- for table, change, ids in
            run_query(_catalogue_changes_sql(catalogue, built_catalogue, events_model)).rows -%}
        {%- do changes.append(ids ~ " " ~ table ~ " " ~ change ~ " the " ~ table
            ~ " table have events stored before the incremental window") -%}
    {%- endfor -%}
    {#- Another path to the same stored days (a copy, a moved directory) needs no rebuild; named
        only as the likely cause of a difference. -#}
    {%- if changes and last_build[0] != export_location() -%}
        {%- do changes.insert(0, "the stored tables were built from '" ~ last_build[0]
            ~ "', this build reads '" ~ export_location() ~ "'") -%}
    {%- endif -%}
    {{ return(changes) }}
{% endmacro %}

{#- on-run-start: in a build or run that includes the events staging, stop when the export
    changed before the incremental window, unless this is a full refresh. -#}
{% macro check_export_unchanged() %}
    {%- if not _provenance_applies() -%}{{ return('') }}{%- endif -%}
    {%- set changes = export_changes_since_last_build() -%}
    {%- if changes and not flags.FULL_REFRESH -%}
        {{ exceptions.raise_compiler_error(
            "The export changed where an incremental build would keep the stored rows: "
            ~ (changes | join('; ')) ~ ". Rebuild the tables from this export with "
            ~ "`recflow run --full-refresh` (or `dbt build --full-refresh`).") }}
    {%- elif changes -%}
        {{ log("Full refresh: " ~ (changes | join('; ')), info=true) }}
    {%- endif -%}
    {{ return('') }}
{% endmacro %}

{#- on-run-end: when every model of a build that included the events staging succeeded, the
    stored tables reflect the fingerprinted export: record it. -#}
{% macro record_export_built(results) %}
    {%- if not _provenance_applies() -%}{{ return('') }}{%- endif -%}
    {%- for result in results -%}
        {%- if result.node.resource_type == 'model' and result.status != 'success' -%}
            {{ return('') }}
        {%- endif -%}
    {%- endfor -%}
    {%- set pending = _provenance_relation('recflow_export_pending') -%}
    {%- set built_days = _provenance_relation('recflow_built_event_days') -%}
    {%- set builds = _provenance_relation('recflow_build_sources') -%}
    {%- do run_query(
        "create or replace table " ~ built_days ~ " as select event_day, row_count, fingerprint"
        ~ " from " ~ pending ~ " where source_table = 'events' and event_day is not null") -%}
    {%- do run_query(
        "create or replace table " ~ _provenance_relation('recflow_built_catalogue')
        ~ " as select source_table, id from " ~ _provenance_relation('recflow_catalogue_pending')) -%}
    {%- set record -%}
        select
            current_timestamp as built_at,
            {{ sql_string_literal(export_location()) }} as source_location,
            {{ 'true' if flags.FULL_REFRESH else 'false' }} as full_refresh,
            {%- for table in ['events', 'items', 'users'] %}
            sum(case when source_table = '{{ table }}' then row_count else 0 end)
                as {{ table }}_rows,
            {%- endfor %}
            min(case when source_table = 'events' then event_day end) as first_event_day,
            max(case when source_table = 'events' then event_day end) as last_event_day,
            {{ sql_string_literal(tojson(vars_shaping_stored_tables())) }} as vars_json
        from {{ pending }}
    {%- endset -%}
    {%- if load_relation(builds) is none -%}
        {%- do run_query("create table " ~ builds ~ " as " ~ record) -%}
    {%- else -%}
        {%- do run_query("insert into " ~ builds ~ " " ~ record) -%}
    {%- endif -%}
    {{ return('') }}
{% endmacro %}

{#- `dbt run-operation export_changes`: what a build would find, as one JSON line on stdout
    (`recflow run` reads it to decide on a full refresh, and says why). -#}
{% macro export_changes() %}
    {%- do register_raw_tables() -%}
    {%- set changes = export_changes_since_last_build() if can_query_warehouse() else [] -%}
    {%- set stored = can_query_warehouse()
        and load_relation(_provenance_model('base_app__events_validated')) is not none -%}
    {%- do print(tojson({'export_changes': changes, 'tables_stored': stored})) -%}
{% endmacro %}

{#- A quoted SQL string literal of any text (BigQuery escapes with backslashes). -#}
{% macro sql_string_literal(value) %}
    {{ return(adapter.dispatch('sql_string_literal', 'recflow')(value)) }}
{% endmacro %}

{% macro default__sql_string_literal(value) %}
    {{ return("'" ~ (value | replace("'", "''")) ~ "'") }}
{% endmacro %}

{% macro bigquery__sql_string_literal(value) %}
    {{ return("'" ~ (value | replace("\\", "\\\\") | replace("'", "\\'")) ~ "'") }}
{% endmacro %}

{% macro _provenance_applies() %}
    {{ return(can_query_warehouse() and flags.WHICH in ['build', 'run']
        and 'model.recflow.base_app__events_validated' in selected_resources) }}
{% endmacro %}

{% macro _export_pending_sql(pending) %}
    {%- set events = _provenance_source('events') -%}
    {%- set event_columns = _provenance_columns('events') -%}
    create or replace table {{ pending }} as
    select
        'events' as source_table,
        cast({{ to_utc_timestamp('event_at') }} as date) as event_day,
        count(*) as row_count,
        {{ rows_fingerprint(event_columns) }} as fingerprint
    from {{ events }}
    group by 2
    {%- for table in ['items', 'users'] %}
    union all
    select
        '{{ table }}' as source_table,
        cast(null as date) as event_day,
        count(*) as row_count,
        {{ rows_fingerprint(_provenance_columns(table)) }} as fingerprint
    from {{ _provenance_source(table) }}
    {%- endfor %}
{% endmacro %}

{#- The ids of the items and users tables as staging reads them: events are staged or
    quarantined by them (unknown_item, unknown_user). -#}
{% macro _catalogue_pending_sql(catalogue) %}
    create or replace table {{ catalogue }} as
    {%- for table, id in [('items', 'item_id'), ('users', 'user_id')] %}
    {{ 'union all' if not loop.first }}
    select distinct
        '{{ table }}' as source_table,
        nullif(trim(cast({{ id }} as {{ dbt.type_string() }})), '') as id
    from {{ _provenance_source(table) }}
    {%- endfor %}
{% endmacro %}

{#- Ids that joined or left the items or users table since the last build and have events in
    the stored days an incremental build keeps: those events were staged (or quarantined) by the
    old catalogue, and only a full refresh stages them by the new one. Users count only while
    `events_of_unknown_users` quarantines their events. -#}
{% macro _catalogue_changes_sql(catalogue, built_catalogue, events_model) %}
    {%- set checked = [('items', 'item_id')] -%}
    {%- if var('events_of_unknown_users') == 'quarantine' -%}
        {%- do checked.append(('users', 'user_id')) -%}
    {%- endif -%}
    with

    window_start as (
        {{ _first_recomputed_day_sql(events_model) }}
    ),

    kept_events as (
        select events.user_id, events.item_id
        from {{ events_model }} as events
        cross join window_start
        where events.event_date < window_start.first_recomputed_day
    ),

    changed as (
        select
            coalesce(current_ids.source_table, built.source_table) as source_table,
            coalesce(current_ids.id, built.id) as id,
            case when built.id is null then 'added to' else 'removed from' end as change
        from {{ catalogue }} as current_ids
        full outer join {{ built_catalogue }} as built
            on current_ids.source_table = built.source_table and current_ids.id = built.id
        where current_ids.id is null or built.id is null
    )
    {%- for table, id in checked %}
    {{ 'union all' if not loop.first }}
    select '{{ table }}' as source_table, change, count(*) as ids
    from changed
    where
        source_table = '{{ table }}'
        and id in (select {{ id }} from kept_events)
    group by change
    {%- endfor %}
{% endmacro %}

{% macro _first_recomputed_day_sql(events_model) %}
    {{ incremental_window_start_query(
        events_model, 'event_date', where='quarantine_reason is null') }}
{% endmacro %}

{#- Stored days before the window the next incremental build recomputes (the same bound as
    incremental_window_start) whose rows differ, grouped by how. Rows without a parseable time
    (no day) are recomputed by every build and are left out. -#}
{% macro _differing_days_sql(pending, built_days, events_model) %}
    with

    window_start as (
        {{ _first_recomputed_day_sql(events_model) }}
    ),

    current_days as (
        select event_day, row_count, fingerprint
        from {{ pending }}
        where source_table = 'events' and event_day is not null
    ),

    compared as (
        select
            coalesce(current_days.event_day, built.event_day) as event_day,
            case
                when built.event_day is null then 'added (a backfill)'
                when current_days.event_day is null then 'deleted'
                else 'changed'
            end as change
        from current_days
        full outer join {{ built_days }} as built
            on current_days.event_day = built.event_day
        where
            current_days.event_day is null
            or built.event_day is null
            or current_days.row_count != built.row_count
            or current_days.fingerprint != built.fingerprint
    )

    select
        change,
        count(*) as days,
        cast(min(event_day) as {{ dbt.type_string() }}) as first_day,
        cast(max(event_day) as {{ dbt.type_string() }}) as last_day
    from compared
    cross join window_start
    where compared.event_day < window_start.first_recomputed_day
    group by change
    order by change
{% endmacro %}

{% macro _provenance_relation(identifier) %}
    {{ return(api.Relation.create(
        database=target.database, schema=target.schema, identifier=identifier)) }}
{% endmacro %}

{% macro _provenance_model(name) %}
    {%- set node = graph.nodes['model.recflow.' ~ name] -%}
    {{ return(api.Relation.create(
        database=node.database, schema=node.schema, identifier=node.alias)) }}
{% endmacro %}

{% macro _provenance_source(name) %}
    {%- set node = graph.sources['source.recflow.app.' ~ name] -%}
    {{ return(api.Relation.create(
        database=node.database, schema=node.schema, identifier=node.identifier)) }}
{% endmacro %}

{% macro _provenance_columns(name) %}
    {{ return(graph.sources['source.recflow.app.' ~ name].columns.keys() | list) }}
{% endmacro %}
