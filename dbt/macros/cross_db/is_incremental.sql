{#- dbt's is_incremental() looks the model's table up in the warehouse before it checks
    --full-refresh, so an offline compile (`recflow check-bigquery`, no credentials, no network)
    cannot evaluate it. While the dbt var `recflow_offline_compile` is set, answer from the var
    instead: 'full_refresh' compiles the full-refresh SQL, 'incremental' the incremental SQL,
    without any lookup. Otherwise, which is every real run, this is dbt's own macro. -#}
{% macro is_incremental() %}
    {%- set offline_mode = var('recflow_offline_compile', none) -%}
    {%- if offline_mode is not none -%}
        {{ return(offline_mode == 'incremental') }}
    {%- endif -%}
    {{ return(dbt.is_incremental()) }}
{% endmacro %}
