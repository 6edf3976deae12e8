{#- Fails with one row per difference when `model` does not have exactly the columns of
    `compare_model`, with the same data types, leaving out `except_columns` of the latter: two
    marts that must agree (scoring_candidates is training_examples without the label) share one
    declaration, and this proves the built tables agree. Column order is not compared. Reads the
    built tables' columns, so only `dbt test` and `dbt build` look; a compile sees no rows. -#}
{% test has_the_columns_of(model, compare_model, except_columns=[]) %}
    {%- set excluded = except_columns | map('lower') | list -%}
    {%- set problems = [] -%}
    {%- if execute and flags.WHICH in ('test', 'build') -%}
        {%- set expected = {} -%}
        {%- for column in adapter.get_columns_in_relation(compare_model) -%}
            {%- if column.name | lower not in excluded -%}
                {%- do expected.update({column.name | lower: column.data_type | lower}) -%}
            {%- endif -%}
        {%- endfor -%}
        {%- set actual = {} -%}
        {%- for column in adapter.get_columns_in_relation(model) -%}
            {%- do actual.update({column.name | lower: column.data_type | lower}) -%}
        {%- endfor -%}
        {%- if not expected -%}
            {%- do problems.append(compare_model ~ ' has no columns (not built?)') -%}
        {%- endif -%}
        {%- for name, data_type in expected.items() -%}
            {%- if name not in actual -%}
                {%- do problems.append('missing ' ~ name ~ ' ' ~ data_type) -%}
            {%- elif actual[name] != data_type -%}
                {%- do problems.append(name ~ ' is ' ~ actual[name] ~ ', not ' ~ data_type) -%}
            {%- endif -%}
        {%- endfor -%}
        {%- for name, data_type in actual.items() if name not in expected -%}
            {%- do problems.append('unexpected ' ~ name ~ ' ' ~ data_type) -%}
        {%- endfor -%}
    {%- endif %}

    with

    problems as (

        select cast(null as {{ dbt.type_string() }}) as problem
        {%- for problem in problems %}
        union all
        select '{{ problem | replace("'", "") }}' as problem
        {%- endfor %}

    )

    select problem from problems
    where problem is not null

{% endtest %}
