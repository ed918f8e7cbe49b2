{#- Per meter and local day (var `timezone`): how many 15-minute intervals the day has (96, or 92/100 on DST
    days), how many arrived, how many are missing, and how many readings the source sent twice. Every day
    from a meter's first to its last reading is listed, also a day with no reading at all.
    Incremental: recomputes the local days holding newly loaded readings, and adds the days between the
    days already built and the new ones. -#}
{{ config(
    materialized='incremental',
    unique_key=['muid', 'day'],
    incremental_strategy=var('incremental_strategy', 'merge'),
    indexes=[
        {'columns': ['muid', 'day'], 'unique': true},
        {'columns': ['loaded_at']},
    ],
) }}

{%- if is_incremental() %}
    {%- set watermark = loaded_watermark() %}
    {%- set span = new_readings_span(ref('stg_exnaton__readings'), watermark) %}
{%- endif %}

with

readings as (
    select *, {{ local_day('reading_at') }} as day
    from {{ ref('stg_exnaton__readings') }}
    {%- if is_incremental() %}
    {%- if span %}
    -- Only days with a new reading are recomputed, and all their readings lie in this span.
    where reading_at >= {{ local_day_start(local_day(span.first)) }}
      and reading_at < {{ local_day_start(local_day(span.last) ~ ' + 1') }}
    {%- else %}
    where false
    {%- endif %}
    {%- endif %}
),

received as (
    select
        muid,
        day,
        -- A meter with several OBIS codes counts an interval once.
        count(distinct reading_at)::integer as received_intervals,
        sum(duplicate_count)::integer as duplicate_readings,
        max(loaded_at) as loaded_at
    from readings
    group by muid, day
),

{% if is_incremental() %}
touched_days as (
    select muid, day from received where loaded_at > {{ watermark }}
),

built_days as (
    select muid, min(day) as first_day, max(day) as last_day
    from {{ this }}
    where muid in (select muid from touched_days)
    group by muid
),

day_ranges as (
    -- least/greatest skip nulls: a meter new to this table spans only its touched days.
    select
        touched_days.muid,
        least(min(touched_days.day), built_days.first_day) as first_day,
        greatest(max(touched_days.day), built_days.last_day) as last_day
    from touched_days
    left join built_days on built_days.muid = touched_days.muid
    group by touched_days.muid, built_days.first_day, built_days.last_day
),

calendar as (
    select day_ranges.muid, series.day::date as day
    from day_ranges
    cross join generate_series(day_ranges.first_day, day_ranges.last_day, interval '1 day') as series (day)
),

days as (
    -- The touched days, and days of the range not built yet (they had no reading so far).
    select calendar.muid, calendar.day
    from calendar
    where exists (
        select 1 from touched_days
        where touched_days.muid = calendar.muid and touched_days.day = calendar.day
    )
    or not exists (
        select 1 from {{ this }} as built
        where built.muid = calendar.muid and built.day = calendar.day
    )
),
{% else %}
days as (
    select day_ranges.muid, series.day::date as day
    from (select muid, min(day) as first_day, max(day) as last_day from received group by muid) as day_ranges
    cross join generate_series(day_ranges.first_day, day_ranges.last_day, interval '1 day') as series (day)
),
{% endif %}

completeness as (
    select
        days.muid,
        days.day,
        {{ expected_intervals('days.day') }} as expected_intervals,
        coalesce(received.received_intervals, 0) as received_intervals,
        coalesce(received.duplicate_readings, 0) as duplicate_readings,
        received.loaded_at
    from days
    left join received on received.muid = days.muid and received.day = days.day
)

select
    muid,
    day,
    expected_intervals,
    received_intervals,
    expected_intervals - received_intervals as missing_intervals,
    duplicate_readings,
    round(100.0 * received_intervals / expected_intervals, 2) as completeness_pct,
    loaded_at
from completeness
