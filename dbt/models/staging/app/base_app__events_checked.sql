{%- set unknown_users = var('events_of_unknown_users') -%}
{%- if unknown_users not in ('quarantine', 'keep') -%}
    {{ exceptions.raise_compiler_error(
        "The dbt var 'events_of_unknown_users' must be 'quarantine' or 'keep', not '"
        ~ unknown_users ~ "'."
    ) }}
{%- endif -%}
-- The stored events checked against the current catalogue and user table. A view, not part of
-- the incremental base_app__events_validated: the items and users tables change from one export
-- to the next, so an event whose item joins the catalogue later is staged as soon as it does,
-- whatever day it belongs to. Both stg_app__events and the quarantine read it, so every event
-- has exactly one fate.

with

validated as (

    select * from {{ ref('base_app__events_validated') }}

),

items as (

    select * from {{ ref('base_app__items_validated') }}
    where quarantine_reason is null

),

{%- if unknown_users == 'quarantine' %}

users as (

    select * from {{ ref('base_app__users_validated') }}
    where quarantine_reason is null

),
{%- endif %}

checked as (

    select
        validated.event_id,
        validated.user_id,
        validated.item_id,
        validated.event_type,
        validated.event_at_raw,
        validated.event_value_raw,
        validated.event_value,
        validated.event_date,
        validated.event_at,
        case
            when validated.quarantine_reason is not null then validated.quarantine_reason
            when items.item_id is null then 'unknown_item'
            {%- if unknown_users == 'quarantine' %}
            when users.user_id is null then 'unknown_user'
            {%- endif %}
        end as quarantine_reason

    from validated
    -- Valid item and user ids are unique, so neither join adds rows.
    left join items
        on validated.item_id = items.item_id
    {%- if unknown_users == 'quarantine' %}
    left join users
        on validated.user_id = users.user_id
    {%- endif %}

)

select * from checked
