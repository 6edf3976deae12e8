{#- One JSON string holding the given columns of a row, so rows of different tables can share
    one quarantine model without losing what they held. -#}
{% macro record_to_json(columns) %}
    {{ return(adapter.dispatch('record_to_json', 'recflow')(columns)) }}
{% endmacro %}

{% macro default__record_to_json(columns) %}
    {{ exceptions.raise_compiler_error(
        "record_to_json has no implementation for adapter '" ~ adapter.type() ~ "'"
    ) }}
{% endmacro %}

{% macro duckdb__record_to_json(columns) %}
    cast(to_json(struct_pack(
        {%- for column in columns %}
        {{ column }} := {{ column }}{{ "," if not loop.last }}
        {%- endfor %}
    )) as varchar)
{% endmacro %}

{% macro bigquery__record_to_json(columns) %}
    to_json_string(struct(
        {%- for column in columns %}
        {{ column }} as {{ column }}{{ "," if not loop.last }}
        {%- endfor %}
    ))
{% endmacro %}
