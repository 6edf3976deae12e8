{{
    config(
        on_schema_change='fail',
        full_refresh=false,
        **incremental_by_day(partition_date='serving_date', cluster_by=['feature_name'])
    )
}}
-- Drift of each monitored feature at each serving day: the population stability index (PSI)
-- of the scoring candidates' distribution against each training split (train, validation,
-- test cutoffs of training_examples) and against the previous stored serving day
-- (feature_distributions_served). Numeric features are binned by the reference's deciles,
-- categorical ones by value. Appended per serving day; a rerun replaces that day only.

with

training_examples as (

    select * from {{ ref('training_examples') }}

),

scoring_candidates as (

    select * from {{ ref('scoring_candidates') }}

),

served_distributions as (

    select * from {{ ref('feature_distributions_served') }}

),

serving_day as (

    select max(cutoff_date) as serving_date
    from scoring_candidates

),

previous_day as (

    select max(served_distributions.serving_date) as previous_serving_date
    from served_distributions
    cross join serving_day
    where served_distributions.serving_date < serving_day.serving_date

),

previous_distributions as (

    select served_distributions.*
    from served_distributions
    inner join previous_day
        on served_distributions.serving_date = previous_day.previous_serving_date

),

training_values as (
    {{ monitored_feature_values('training_examples', 'split') }}
),

scoring_values as (
    {{ monitored_feature_values('scoring_candidates', "'scoring'") }}
),

split_edges as (
    {{ decile_edges('training_values') }}
),

previous_edges as (

    select
        'previous_serving_day' as reference_population,
        feature_name,
        bin_upper_value

    from previous_distributions
    where bin_upper_value is not null

),

reference_edges as (

    select * from split_edges
    union all
    select * from previous_edges

),

split_bins as (
    {{ feature_bins('training_values', 'split_edges', ['train', 'validation', 'test']) }}
),

split_shares as (

    select
        reference_population,
        feature_name,
        bin_key,
        cast(row_count as {{ type_float64() }})
        / sum(row_count) over (partition by reference_population, feature_name)
            as row_share

    from split_bins
    -- Each split against its own edges only.
    where reference_population = population

),

reference_shares as (

    select * from split_shares
    union all
    select
        'previous_serving_day' as reference_population,
        feature_name,
        bin_key,
        row_share
    from previous_distributions

),

available_references as (

    select distinct reference_population
    from reference_shares

),

current_bins as (
    {{ feature_bins('scoring_values', 'reference_edges',
        ['train', 'validation', 'test', 'previous_serving_day']) }}
),

current_shares as (

    select
        current_bins.reference_population,
        current_bins.feature_name,
        current_bins.bin_key,
        cast(current_bins.row_count as {{ type_float64() }})
        / sum(current_bins.row_count) over (
            partition by current_bins.reference_population, current_bins.feature_name
        ) as row_share

    from current_bins
    -- A reference with no rows (no previous serving day yet, an empty split) gives no PSI.
    inner join available_references
        on current_bins.reference_population = available_references.reference_population

),

shares as (

    select
        coalesce(
            reference_shares.reference_population, current_shares.reference_population
        ) as reference_population,
        coalesce(reference_shares.feature_name, current_shares.feature_name) as feature_name,
        coalesce(reference_shares.bin_key, current_shares.bin_key) as bin_key,
        reference_shares.row_share as reference_share,
        current_shares.row_share as current_share

    from reference_shares
    full outer join current_shares
        on
            reference_shares.reference_population = current_shares.reference_population
            and reference_shares.feature_name = current_shares.feature_name
            and reference_shares.bin_key = current_shares.bin_key

),

psi as (
    {{ population_stability_index('shares') }}
),

final as (

    select
        psi.feature_name,
        psi.reference_population,
        psi.bins,
        psi.psi,
        serving_day.serving_date,
        case
            when psi.reference_population = 'previous_serving_day'
                then previous_day.previous_serving_date
        end as reference_serving_date

    from psi
    cross join serving_day
    cross join previous_day

)

select * from final
