{{ config(tags = ['serving']) }}
-- Every known user is served: each user of known_users has recommendations at the latest cutoff
-- (the `ranks_are_complete` test on recommendations checks there are exactly K of them).

with

known_users as (

    select * from {{ ref('known_users') }}

),

recommendations as (

    select * from {{ ref('recommendations') }}

),

served_users as (

    select distinct user_id
    from recommendations

),

unserved as (

    select known_users.user_id

    from known_users
    left join served_users
        on known_users.user_id = served_users.user_id
    where served_users.user_id is null

)

select * from unserved
