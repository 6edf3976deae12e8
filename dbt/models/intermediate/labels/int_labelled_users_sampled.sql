-- The users each labelled cutoff trains or evaluates on: those with a positive in its label
-- window, at most `labelled_users_per_cutoff` of them, chosen by a hash of user and cutoff. One
-- sample that candidates (who gets candidates) and label_window_positives (whose positives are
-- scored) both read, so the evaluation scores exactly the users it served and a large user base
-- keeps the trainer's validation and test rows bounded. A table rebuilt whole on every run: it
-- is one row per labelled user and cutoff, and a closed cutoff's labels, so its sample, are final.

with

labels as (

    select * from {{ ref('int_user_item_labels') }}

),

labelled_users as (

    select distinct
        cutoff_date,
        user_id

    from labels

),

ranked as (

    select
        cutoff_date,
        user_id,
        {{ user_sample_rank() }} as sample_rank

    from labelled_users

)

select * from ranked
where sample_rank <= {{ var('labelled_users_per_cutoff') }}
