{#- Fails when `column_name` on the latest `date_column` (averaged over its rows) falls more
    than `max_drop` (a share) below its average over the `trailing_days` days before. Passes
    without earlier days. Used twice per metric, a warn-severity instance at the warn drop and
    an error-severity one at the error drop, so a small drop is reported and a large one stops
    the serving build. -#}
{% test metric_not_below_trailing_average(model, column_name, date_column, trailing_days,
    max_drop) %}

with

series as (

    select
        {{ date_column }} as metric_date,
        avg({{ column_name }}) as metric
    from {{ model }}
    group by 1

),

latest as (

    select max(metric_date) as metric_date
    from series

),

trailing_window as (

    select avg(series.metric) as trailing_metric
    from series
    cross join latest
    where
        series.metric_date < latest.metric_date
        and series.metric_date >= {{ dbt.dateadd('day', -trailing_days, 'latest.metric_date') }}

)

select
    series.metric_date,
    series.metric,
    trailing_window.trailing_metric
from series
inner join latest
    on series.metric_date = latest.metric_date
cross join trailing_window
where series.metric < trailing_window.trailing_metric * (1 - {{ max_drop }})

{% endtest %}
