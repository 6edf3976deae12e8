{#- A deterministic bucket in [0, buckets) from a string expression, the same on every run and
    for every row order: for sampling that a rebuild reproduces exactly. -#}
{% macro hash_bucket(expression, buckets) %}
    {{ return(adapter.dispatch('hash_bucket', 'recflow')(expression, buckets)) }}
{% endmacro %}

{% macro default__hash_bucket(expression, buckets) -%}
    cast(hash({{ expression }}) % {{ buckets }} as {{ dbt.type_bigint() }})
{%- endmacro %}

{% macro bigquery__hash_bucket(expression, buckets) -%}
    abs(mod(farm_fingerprint({{ expression }}), {{ buckets }}))
{%- endmacro %}
