{#- Configs for a per-snapshot model rebuilt one snapshot at a time: each run recomputes the
    snapshots from `snapshots_to_rebuild()` on and replaces exactly those snapshots, through
    `incremental_by_day` on `snapshot_date` (insert_overwrite on BigQuery, delete+insert on
    DuckDB). Labelled cutoffs lie on a fixed calendar (int_snapshots_scheduled), so a snapshot
    whose label window closed before the lookback is final and stays as stored. A post-hook
    drops the snapshots that left the spine (the previous scoring date, the oldest train
    cutoff), so the table always holds the spine's snapshots, as a full refresh would.
    The model must filter its per-snapshot inputs with `snapshots_to_rebuild()`. -#}
{% macro incremental_by_snapshot(cluster_by=none) %}
    {%- set configs = incremental_by_day('snapshot_date', cluster_by) -%}
    {#- The marts among these models enforce contracts, which require a schema-change policy:
        a changed column list fails the run until it is rebuilt with --full-refresh. -#}
    {%- do configs.update({'on_schema_change': 'fail', 'post_hook': [
        "delete from {{ this }} where snapshot_date not in "
        ~ "(select snapshot_date from {{ ref('int_snapshots_scheduled') }})"
    ]}) -%}
    {{ return(configs) }}
{% endmacro %}

{#- A condition on `column` (a snapshot date) keeping the snapshots an incremental run must
    recompute; `true` on a full refresh. A snapshot changes when events before it (features) or
    in its label window arrive. Events arrive up to `incremental_lookback_days` before the
    latest stored event day, so:
      - a table holding the scoring snapshot (the day after the latest event day) recomputes
        every snapshot from (its latest snapshot - lookback - label window) on;
      - a table holding labelled snapshots only (`labelled_only=true`) recomputes from (its
        latest snapshot - lookback) on: that snapshot's label window closed by the scoring date,
        so no earlier snapshot's window reaches the days that can still change. This keeps the
        validation and train snapshots as stored; the latest one is recomputed, sometimes
        needlessly (the scoring date it was built with is not stored), never too few.
    Every call compares with a literal date (see `stored_date_bound`). -#}
{% macro snapshots_to_rebuild(column='snapshot_date', labelled_only=false) %}
    {%- if is_incremental() -%}
        {%- set days_back = var('incremental_lookback_days')
            + (0 if labelled_only else var('label_window_days')) -%}
        {%- set query -%}
            select
                coalesce(
                    cast({{ dbt.dateadd('day', -days_back, 'max(snapshot_date)') }} as date),
                    cast('1900-01-01' as date)
                )
            from {{ this }}
        {%- endset -%}
        {{ column }} >= {{ stored_date_bound(query) }}
    {%- else -%}
        true
    {%- endif -%}
{% endmacro %}

{#- For a per-snapshot model that stores `split`: a condition on `column` keeping the stored
    snapshots whose split in the spine (int_snapshots_scheduled) is no longer the stored one, as
    happens when a label window closes; `false` on a full refresh. -#}
{% macro snapshots_whose_split_changed(column='snapshot_date') %}
    {%- if is_incremental() -%}
        {%- set query -%}
            select spine.snapshot_date
            from {{ ref('int_snapshots_scheduled') }} as spine
            inner join (select distinct snapshot_date, split from {{ this }}) as stored
                on spine.snapshot_date = stored.snapshot_date
            where spine.split != stored.split
        {%- endset -%}
        {%- if can_query_warehouse() -%}
            {%- set changed = run_query(query).columns[0].values() -%}
            {%- if changed | length == 0 -%}
                false
            {%- else -%}
                {{ column }} in (
                    {%- for snapshot_date in changed -%}
                        cast('{{ snapshot_date }}' as date){{ ", " if not loop.last }}
                    {%- endfor -%}
                )
            {%- endif -%}
        {%- else -%}
            {{ column }} in ({{ query }})
        {%- endif -%}
    {%- else -%}
        false
    {%- endif -%}
{% endmacro %}
