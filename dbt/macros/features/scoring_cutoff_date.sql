{#- The scoring cutoff (the spine's one `scoring` row) as a literal date, for a model that
    reads only that cutoff, or only the cutoffs before it. A constant reaches every scan of the
    per-cutoff inputs (DuckDB's zone maps, BigQuery's partition pruning), where a join to the
    spine would read every cutoff's rows first. While the spine cannot be asked (parsing, the
    offline BigQuery compile, or a spine not built yet) it is the scalar subquery itself. -#}
{% macro scoring_cutoff_date() %}
    {%- set spine = ref('int_cutoffs_scheduled') -%}
    {%- set query = "select max(cutoff_date) from " ~ spine ~ " where split = 'scoring'" -%}
    {%- if can_query_warehouse() and load_relation(spine) is not none -%}
        {%- set found = run_query(query).columns[0].values()[0] -%}
        {%- if found is not none -%}
            {{ return("cast('" ~ found ~ "' as date)") }}
        {%- endif -%}
    {%- endif -%}
    {{ return('(' ~ query ~ ')') }}
{% endmacro %}
