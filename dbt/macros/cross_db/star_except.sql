{#- Every column of a CTE or table alias but `columns`: `alias.* exclude (...)` on DuckDB,
    `alias.* except (...)` on BigQuery. Lets a model take a feature model's columns without
    listing them, so a new feature is written only where it is computed. Use as

        select candidates.*, {{ star_except('user_features', ['user_id', 'cutoff_date']) }}
-#}
{% macro star_except(alias, columns) %}
    {{ return(adapter.dispatch('star_except', 'recflow')(alias, columns)) }}
{% endmacro %}

{% macro default__star_except(alias, columns) %}
    {{ exceptions.raise_compiler_error(
        "star_except has no variant for the " ~ target.type ~ " adapter: add one in "
        ~ "macros/cross_db/star_except.sql."
    ) }}
{% endmacro %}

{% macro duckdb__star_except(alias, columns) -%}
    {{ alias }}.* exclude ({{ columns | join(', ') }})
{%- endmacro %}

{% macro bigquery__star_except(alias, columns) -%}
    {{ alias }}.* except ({{ columns | join(', ') }})
{%- endmacro %}
