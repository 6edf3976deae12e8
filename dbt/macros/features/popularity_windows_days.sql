{#- The item popularity windows, in days before a cutoff. Fixed rather than a var: each window is
    a contracted column (`users_<n>d` in item_features, `item_users_<n>d` in the training and
    scoring marts), so changing them is a change to the models and their YAML, reviewed as one. -#}
{% macro popularity_windows_days() %}
    {{ return([1, 7, 28]) }}
{% endmacro %}
