{#- Each group holds exactly `expected_count` rows ranked 1..expected_count, with no gaps and no
    repeated rank. -#}
{% test ranks_are_complete(model, column_name, group_by, expected_count) %}

select
    {{ group_by }},
    count(*) as row_count,
    count(distinct {{ column_name }}) as distinct_ranks,
    min({{ column_name }}) as min_rank,
    max({{ column_name }}) as max_rank

from {{ model }}
group by {{ group_by }}
having
    count(*) != {{ expected_count }}
    or count(distinct {{ column_name }}) != {{ expected_count }}
    or min({{ column_name }}) != 1
    or max({{ column_name }}) != {{ expected_count }}

{% endtest %}
