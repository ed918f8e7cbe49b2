{#- The local calendar of var `timezone`: one row per local day from var `calendar_start` to `calendar_end`
    (the API's accepted range, 1970 to 2100, widened to whole months), with the instants it begins and ends,
    its 15-minute intervals and the week and month it belongs to; all from the bucket functions of
    local_buckets.sql, the one definition. The API frames days, weeks and months in this zone from these rows
    instead of calling the functions per bucket and request (api/queries.py).

    Incremental with nothing to add: the days of a calendar do not change from run to run, so a run costs one
    empty insert. A full refresh rebuilds it, as after changing var `timezone` (transform/README.md). -#}
{{ config(materialized='incremental', unique_key='day') }}

{%- set zone = local_timezone() %}

with

days as (
    select
        day_start,
        {{ local_bucket_fn('local_bucket_end') }}(day_start, 'day', {{ zone }}) as day_end
    from {{ local_bucket_fn('local_bucket_starts') }}(
        {{ local_day_start(sql_literal(var('calendar_start'))) }},
        {{ local_day_start(sql_literal(var('calendar_end'))) }},
        'day',
        {{ zone }}
    ) as day_start
    {%- if is_incremental() %}
    where false
    {%- endif %}
)

select
    (day_start at time zone {{ zone }})::date as day,
    day_start,
    day_end,
    {{ local_bucket_fn('expected_intervals') }}(day_start, day_end) as expected_intervals,
    ({{ local_bucket_fn('local_bucket_start') }}(day_start, 'week', {{ zone }}) at time zone {{ zone }})::date
        as week_start,
    ({{ local_bucket_fn('local_bucket_start') }}(day_start, 'month', {{ zone }}) at time zone {{ zone }})::date
        as month_start
from days
