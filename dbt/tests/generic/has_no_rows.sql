{#- Passes when the model is empty. At severity warn it turns a quarantine into a count that
    every `dbt build` prints. -#}
{% test has_no_rows(model) %}

select * from {{ model }}

{% endtest %}
