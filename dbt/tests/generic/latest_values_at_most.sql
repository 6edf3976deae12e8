{#- Fails for each row of the latest `date_column` whose `column_name` exceeds `maximum`: a
    threshold on today's monitoring rows that an old excursion no longer trips. -#}
{% test latest_values_at_most(model, column_name, date_column, maximum) %}

select *
from {{ model }}
where
    {{ date_column }} = (select max({{ date_column }}) from {{ model }})
    and {{ column_name }} > {{ maximum }}

{% endtest %}
