{{
    config(incremental_by_cutoff(cluster_by=['user_id', 'item_id']))
}}
-- What each user positively interacted with in the label window after each cutoff. Only
-- events at or after the cutoff count here; features only ever see events before it.

with

events as (

    select * from {{ ref('stg_app__events') }}

),

cutoffs as (

    select * from {{ ref('int_cutoffs_scheduled') }}
    where split != 'scoring' and {{ cutoffs_to_rebuild(labelled_only=true) }}

),

labelled as (

    select
        cutoffs.cutoff_date,
        events.user_id,
        events.item_id,
        count(*) as positive_event_count

    from cutoffs
    inner join events
        on
            cutoffs.cutoff_date <= events.event_date
            and cutoffs.label_window_end_date > events.event_date
    where events.is_positive
    group by cutoffs.cutoff_date, events.user_id, events.item_id

)

select * from labelled
