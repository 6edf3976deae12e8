-- Candidate recall by source: of all positive interactions in the test label window, the share
-- that each candidate source (and their union) put in front of the ranker. The union is the
-- ceiling of any ranker's recall; `already_seen` is the share of positives on items the user
-- already had (what the repeat source can reach, and what `exclude_seen_items` gives up).
{%- set sources = [
    'covisitation', 'itemknn', 'popularity', 'popularity_all', 'category', 'repeat'
] %}

with

cutoffs as (

    select * from {{ ref('int_cutoffs_scheduled') }}
    where split = 'test'

),

labels as (

    select * from {{ ref('int_user_item_labels') }}

),

candidates as (

    select * from {{ ref('int_candidates_generated') }}

),

user_items as (

    select * from {{ ref('int_user_items_aggregated') }}

),

test_positives as (

    select labels.*

    from labels
    inner join cutoffs
        on labels.cutoff_date = cutoffs.cutoff_date

),

matched as (

    select
        test_positives.user_id,
        test_positives.item_id,
        {%- for source in sources %}
        coalesce(candidates.is_from_{{ source }}, false) as is_from_{{ source }},
        {%- endfor %}
        candidates.item_id is not null as is_candidate,
        seen.item_id is not null as is_already_seen

    from test_positives
    left join candidates
        on
            test_positives.cutoff_date = candidates.cutoff_date
            and test_positives.user_id = candidates.user_id
            and test_positives.item_id = candidates.item_id
    left join user_items as seen
        on
            test_positives.cutoff_date = seen.cutoff_date
            and test_positives.user_id = seen.user_id
            and test_positives.item_id = seen.item_id

),

recall as (

    select
        count(*) as test_positives,
        {%- for source in sources %}
        avg(case when is_from_{{ source }} then 1.0 else 0.0 end) as {{ source }},
        {%- endfor %}
        avg(case when is_candidate then 1.0 else 0.0 end) as all_sources,
        avg(case when is_already_seen then 1.0 else 0.0 end) as already_seen

    from matched

)

select * from recall
