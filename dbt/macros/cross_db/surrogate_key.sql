{#- Deterministic hash of several column expressions, unambiguous whatever the values hold: each
    field is written as its length, ':' and its text, a null as '~' (no length starts with it),
    so ('a|b', 'c') and ('a', 'b|c') hash different texts. Rows share a key only when every
    field is equal. Built from dbt's cross-database macros only: the same SQL on every engine. -#}
{% macro surrogate_key(columns) %}
    {%- set fields = [] -%}
    {%- for column in columns -%}
        {%- set text = "cast(" ~ column ~ " as " ~ dbt.type_string() ~ ")" -%}
        {%- set length = "cast(" ~ dbt.length(text) ~ " as " ~ dbt.type_string() ~ ")" -%}
        {%- do fields.append(
            "case when " ~ text ~ " is null then '~' else "
            ~ dbt.concat([length, "':'", text]) ~ " end"
        ) -%}
    {%- endfor -%}
    {{ dbt.hash(dbt.concat(fields)) }}
{%- endmacro %}
