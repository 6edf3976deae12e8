{#- Deterministic hash of several columns; a null hashes differently from any string, so exact
    duplicate rows (and only those) share a key. -#}
{% macro surrogate_key(columns) %}
    {%- set fields = [] -%}
    {%- for column in columns -%}
        {%- if not loop.first %}{% do fields.append("'|'") %}{% endif -%}
        {%- do fields.append(
            "coalesce(cast(" ~ column ~ " as " ~ dbt.type_string() ~ "), '<null>')"
        ) -%}
    {%- endfor -%}
    {{ dbt.hash(dbt.concat(fields)) }}
{%- endmacro %}
