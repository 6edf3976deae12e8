{#- Configs for a per-cutoff model rebuilt one cutoff at a time: each run recomputes the
    cutoffs from `cutoffs_to_rebuild()` on and replaces exactly those cutoffs, through
    `incremental_by_day` on `cutoff_date` (insert_overwrite on BigQuery, delete+insert on
    DuckDB). Labelled cutoffs lie on a fixed calendar (int_cutoffs_scheduled), so a cutoff
    whose label window closed before the lookback is final and stays as stored. A post-hook
    drops the cutoffs that left the spine (the previous scoring date, the oldest train
    cutoff), so the table always holds the spine's cutoffs, as a full refresh would.
    The model must filter its per-cutoff inputs with `cutoffs_to_rebuild()`. -#}
{% macro incremental_by_cutoff(cluster_by=none) %}
    {%- set configs = incremental_by_day('cutoff_date', cluster_by) -%}
    {#- The marts among these models enforce contracts, which require a schema-change policy:
        a changed column list fails the run until it is rebuilt with --full-refresh. -#}
    {%- do configs.update({'on_schema_change': 'fail', 'post_hook': [
        "delete from {{ this }} where cutoff_date not in "
        ~ "(select cutoff_date from {{ ref('int_cutoffs_scheduled') }})"
    ]}) -%}
    {{ return(configs) }}
{% endmacro %}

{#- A condition on `column` (a cutoff date) keeping the cutoffs an incremental run must
    recompute; `true` on a full refresh. A cutoff changes when events before it (features) or
    in its label window arrive. Events arrive up to `incremental_lookback_days` before the
    latest stored event day, so:
      - a table holding the scoring cutoff (the day after the latest event day) recomputes
        every cutoff from (its latest cutoff - lookback - label window) on;
      - a table holding labelled cutoffs only (`labelled_only=true`) recomputes from (its
        latest cutoff - lookback) on: that cutoff's label window closed by the scoring date,
        so no earlier cutoff's window reaches the days that can still change. This keeps the
        validation and train cutoffs as stored; the latest one is recomputed, sometimes
        needlessly (the scoring date it was built with is not stored), never too few.
    Every call compares with a literal date (see `stored_date_bound`). -#}
{% macro cutoffs_to_rebuild(column='cutoff_date', labelled_only=false) %}
    {%- if is_incremental() -%}
        {%- set days_back = var('incremental_lookback_days')
            + (0 if labelled_only else var('label_window_days')) -%}
        {%- set query -%}
            select
                coalesce(
                    cast({{ dbt.dateadd('day', -days_back, 'max(cutoff_date)') }} as date),
                    cast('1900-01-01' as date)
                )
            from {{ this }}
        {%- endset -%}
        {{ column }} >= {{ stored_date_bound(query) }}
    {%- else -%}
        true
    {%- endif -%}
{% endmacro %}

{#- For a per-cutoff model that stores `split`: a condition on `column` keeping the stored
    cutoffs whose split in the spine (int_cutoffs_scheduled) is no longer the stored one, as
    happens when a label window closes; `false` on a full refresh. -#}
{% macro cutoffs_whose_split_changed(column='cutoff_date') %}
    {%- if is_incremental() -%}
        {%- set query -%}
            select spine.cutoff_date
            from {{ ref('int_cutoffs_scheduled') }} as spine
            inner join (select distinct cutoff_date, split from {{ this }}) as stored
                on spine.cutoff_date = stored.cutoff_date
            where spine.split != stored.split
        {%- endset -%}
        {%- if can_query_warehouse() -%}
            {%- set changed = run_query(query).columns[0].values() -%}
            {%- if changed | length == 0 -%}
                false
            {%- else -%}
                {{ column }} in (
                    {%- for cutoff_date in changed -%}
                        cast('{{ cutoff_date }}' as date){{ ", " if not loop.last }}
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
