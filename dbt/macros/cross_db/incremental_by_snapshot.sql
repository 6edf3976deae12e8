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
    in its label window arrive; events arrive up to `incremental_lookback_days` before the latest
    stored day, and the latest stored snapshot is at most the day after it, so every snapshot
    from (latest stored snapshot - lookback - label window) on is recomputed. Tables holding
    only labelled snapshots recompute a little more than needed this way, never less. -#}
{% macro snapshots_to_rebuild(column='snapshot_date') %}
    {%- if is_incremental() -%}
        {{ column }} >= (
            select
                coalesce(
                    cast({{ dbt.dateadd(
                        'day',
                        -(var('incremental_lookback_days') + var('label_window_days')),
                        'max(snapshot_date)'
                    ) }} as date),
                    cast('1900-01-01' as date)
                )
            from {{ this }}
        )
    {%- else -%}
        true
    {%- endif -%}
{% endmacro %}
