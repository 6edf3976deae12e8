{#- dbt-duckdb has no safe_cast, so dbt falls back to a plain cast, which aborts the build on the
    first unparseable value instead of returning null for staging to quarantine. dbt searches the
    root project first for its own macros, so this variant takes over. -#}
{% macro duckdb__safe_cast(field, type) %}
    try_cast({{ field }} as {{ type }})
{% endmacro %}
