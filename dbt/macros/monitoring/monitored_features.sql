{#- The features the monitoring watches: every column of training_examples whose `meta.roles`
    holds `feature`, read from the project graph, so a feature added to the YAML is watched
    with no edit here. Each is a dict {name, is_categorical}: categorical when its roles say so
    or its type is a string or a boolean (binned by value), numeric otherwise (binned by the
    reference's deciles). Empty while parsing, when the graph is not loaded. -#}
{% macro monitored_features() %}
    {%- set features = [] -%}
    {%- if not execute -%}
        {{ return(features) }}
    {%- endif -%}
    {%- for node in graph.nodes.values()
        if node.resource_type == 'model' and node.name == 'training_examples' -%}
        {%- for column in node.columns.values() -%}
            {%- set meta = column.get('config', {}).get('meta', {}) or column.get('meta', {}) -%}
            {%- set roles = meta.get('roles', []) -%}
            {%- if 'feature' in roles -%}
                {%- set data_type = (column.get('data_type') or '') | lower -%}
                {%- do features.append({
                    'name': column.name,
                    'is_categorical': 'categorical' in roles
                        or data_type in ['string', 'bool', 'boolean', 'varchar'],
                }) -%}
            {%- endif -%}
        {%- endfor -%}
    {%- endfor -%}
    {%- if features | length == 0 -%}
        {{ exceptions.raise_compiler_error(
            "No column of training_examples has the role `feature`: nothing to monitor."
        ) }}
    {%- endif -%}
    {{ return(features) }}
{% endmacro %}

{#- One row per population, feature and distinct value of `relation` (a CTE or table holding
    the features): the long form the drift models bin. `population` is a SQL expression (the
    split, or a literal); numeric features land in numeric_value, categorical ones in
    category_value (as text). -#}
{% macro monitored_feature_values(relation, population) %}
    {%- for feature in monitored_features() %}
    select
        {{ population }} as population,
        '{{ feature.name }}' as feature_name,
        {{ 'true' if feature.is_categorical else 'false' }} as is_categorical,
        {%- if feature.is_categorical %}
        cast(null as {{ type_float64() }}) as numeric_value,
        cast({{ feature.name }} as {{ dbt.type_string() }}) as category_value,
        {%- else %}
        cast({{ feature.name }} as {{ type_float64() }}) as numeric_value,
        cast(null as {{ dbt.type_string() }}) as category_value,
        {%- endif %}
        count(*) as row_count
    from {{ relation }}
    group by 1, 2, 3, 4, 5
    {%- if not loop.last %}
    union all
    {%- endif %}
    {%- endfor %}
{% endmacro %}

{#- The decile edges of each population's numeric features in `feature_values` (the columns of
    monitored_feature_values): for each decile, the largest value whose cumulative share of
    the population's rows falls in it, so a value spanning several deciles yields one edge.
    Weighted by row_count over distinct values, so no window runs over every row. Columns:
    reference_population (the population), feature_name, bin_upper_value. -#}
{% macro decile_edges(feature_values) %}
    select
        population as reference_population,
        feature_name,
        max(numeric_value) as bin_upper_value
    from (
        select
            population,
            feature_name,
            numeric_value,
            ceiling(10.0 * sum(row_count) over (
                partition by population, feature_name order by numeric_value
                rows between unbounded preceding and current row
            ) / sum(row_count) over (partition by population, feature_name)) as decile
        from {{ feature_values }}
        where not is_categorical and numeric_value is not null
    ) as cumulated
    group by population, feature_name, decile
{% endmacro %}

{#- Rows of `feature_values` counted per bin of each reference in `references` (a list of
    names that `edges` holds, as decile_edges gives them): a numeric value falls in bin
    1 + (edges below it), so values above the reference's maximum get a bin of their own; a
    categorical value is its own bin; null is the bin '(null)'. Columns: reference_population,
    population, feature_name, bin_key, row_count. -#}
{% macro feature_bins(feature_values, edges, references) %}
    select
        reference_population,
        population,
        feature_name,
        case
            when is_categorical then coalesce(category_value, '(null)')
            when numeric_value is null then '(null)'
            else cast(edges_below + 1 as {{ dbt.type_string() }})
        end as bin_key,
        sum(row_count) as row_count
    from (
        select
            reference_names.reference_population,
            feature_values.population,
            feature_values.feature_name,
            feature_values.is_categorical,
            feature_values.numeric_value,
            feature_values.category_value,
            feature_values.row_count,
            count(edges.bin_upper_value) as edges_below
        from {{ feature_values }} as feature_values
        cross join (
            {%- for reference in references %}
            select '{{ reference }}' as reference_population{{ ' union all' if not loop.last }}
            {%- endfor %}
        ) as reference_names
        left join {{ edges }} as edges
            on
                reference_names.reference_population = edges.reference_population
                and feature_values.feature_name = edges.feature_name
                and edges.bin_upper_value < feature_values.numeric_value
        group by 1, 2, 3, 4, 5, 6, 7
    ) as counted
    group by 1, 2, 3, 4
{% endmacro %}

{#- The population stability index of each reference and feature from `shares` (columns
    reference_population, feature_name, bin_key, reference_share, current_share; a bin missing
    on one side has a null share): sum over bins of (current - reference) * ln(current / reference), each
    share floored at 0.0001 so an empty bin counts as a large but finite shift. -#}
{% macro population_stability_index(shares) %}
    select
        reference_population,
        feature_name,
        count(*) as bins,
        sum(
            (greatest(coalesce(current_share, 0), 0.0001)
                - greatest(coalesce(reference_share, 0), 0.0001))
            * ln(greatest(coalesce(current_share, 0), 0.0001)
                / greatest(coalesce(reference_share, 0), 0.0001))
        ) as psi
    from {{ shares }}
    group by reference_population, feature_name
{% endmacro %}
