{{
    config(
        on_schema_change='fail',
        full_refresh=false,
        **incremental_by_day(partition_date='serving_date', cluster_by=['feature_name'])
    )
}}
-- How each monitored feature (macros/monitoring: training_examples' `feature` columns) was
-- distributed over the scoring candidates on each serving day: one row per feature and bin,
-- numeric features binned by that day's own deciles, categorical ones by value. Kept per
-- serving day (scoring_candidates holds only the latest cutoff), so the next day's drift has
-- a reference; a rerun the same day replaces that day only.

with

scoring_candidates as (

    select * from {{ ref('scoring_candidates') }}

),

serving_day as (

    select max(cutoff_date) as serving_date
    from scoring_candidates

),

feature_values as (
    {{ monitored_feature_values('scoring_candidates', "'scoring'") }}
),

edges as (
    {{ decile_edges('feature_values') }}
),

binned as (
    {{ feature_bins('feature_values', 'edges', ['scoring']) }}
),

numbered_edges as (

    select
        feature_name,
        bin_upper_value,
        cast(row_number() over (
            partition by feature_name order by bin_upper_value
        ) as {{ dbt.type_string() }}) as bin_key

    from edges

),

final as (

    select
        binned.feature_name,
        binned.bin_key,
        numbered_edges.bin_upper_value,
        cast(binned.row_count as {{ dbt.type_bigint() }}) as row_count,
        cast(binned.row_count as {{ type_float64() }})
        / sum(binned.row_count) over (partition by binned.feature_name) as row_share,
        serving_day.serving_date

    from binned
    cross join serving_day
    left join numbered_edges
        on
            binned.feature_name = numbered_edges.feature_name
            and binned.bin_key = numbered_edges.bin_key

)

select * from final
