{#- A user's place in a cutoff's sample order: row_number over each cutoff_date, ordered by a
    hash of user and cutoff (ties by user_id). Keeping ranks <= N takes at most N users per
    cutoff, the same ones on every rebuild and engine-independent in which users it favours.
    Shared by every per-cutoff user sample, so they all draw users the same way. -#}
{% macro user_sample_rank() %}
    row_number() over (
        partition by cutoff_date
        order by
            {{ hash_bucket(dbt.concat([
                'user_id', "'|'", 'cast(cutoff_date as ' ~ dbt.type_string() ~ ')'
            ]), 2147483647) }},
            user_id
    )
{%- endmacro %}
