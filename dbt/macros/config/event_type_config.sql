{#- Event types come from the `event_types` var in dbt_project.yml; these macros turn that
    configuration into SQL so no model hard-codes an event type. -#}

{% macro configured_event_types() %}
    {%- set event_types = var('event_types') -%}
    {%- if not event_types -%}
        {{ exceptions.raise_compiler_error(
            "The dbt var 'event_types' is empty: list each event type with its weight and "
            ~ "is_positive flag in dbt/dbt_project.yml (see README, 'Configuration')."
        ) }}
    {%- endif -%}
    {{ return(event_types) }}
{% endmacro %}

{% macro event_type_list() %}
    {%- set quoted = [] -%}
    {%- for event_type in configured_event_types() -%}
        {%- do quoted.append("'" ~ event_type ~ "'") -%}
    {%- endfor -%}
    ({{ quoted | join(', ') }})
{%- endmacro %}

{% macro event_type_weight(event_type_column) %}
    case {{ event_type_column }}
        {%- for event_type, settings in configured_event_types().items() %}
        when '{{ event_type }}' then cast({{ settings['weight'] | float }} as {{ type_float64() }})
        {%- endfor %}
    end
{%- endmacro %}

{#- The names of the event types marked is_positive (the training label), in the var's order. -#}
{% macro positive_event_types() %}
    {%- set positives = [] -%}
    {%- for event_type, settings in configured_event_types().items() -%}
        {%- if settings.get('is_positive') -%}{% do positives.append(event_type) %}{%- endif -%}
    {%- endfor -%}
    {%- if not positives -%}
        {{ exceptions.raise_compiler_error(
            "No event type in the dbt var 'event_types' has is_positive: true, so there is no "
            ~ "training label. Mark at least one (for example purchase) in dbt/dbt_project.yml."
        ) }}
    {%- endif -%}
    {{ return(positives) }}
{% endmacro %}

{% macro event_type_is_positive(event_type_column) %}
    {%- set quoted = [] -%}
    {%- for event_type in positive_event_types() -%}
        {%- do quoted.append("'" ~ event_type ~ "'") -%}
    {%- endfor -%}
    {{ event_type_column }} in ({{ quoted | join(', ') }})
{%- endmacro %}
