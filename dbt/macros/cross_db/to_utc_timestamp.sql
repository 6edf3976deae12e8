{#- Parse a raw timestamp (typed, or an ISO-8601 string with or without an offset) into a UTC
    timestamp; unparseable values become null so staging can quarantine them. -#}
{% macro to_utc_timestamp(expression) %}
    {{ return(adapter.dispatch('to_utc_timestamp', 'recflow')(expression)) }}
{% endmacro %}

{% macro default__to_utc_timestamp(expression) %}
    {{ dbt.safe_cast(expression, api.Column.translate_type('timestamp')) }}
{% endmacro %}

{#- A plain cast to timestamp would ignore the offset; timestamptz honours it and the session
    time zone (UTC, set in profiles.yml) turns it back into a UTC wall clock. -#}
{% macro duckdb__to_utc_timestamp(expression) %}
    cast(try_cast({{ expression }} as timestamptz) as timestamp)
{% endmacro %}

{% macro bigquery__to_utc_timestamp(expression) %}
    safe_cast({{ expression }} as timestamp)
{% endmacro %}
