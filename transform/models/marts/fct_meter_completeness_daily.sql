{#- Per meter, OBIS code and local day (var `timezone`): how many 15-minute intervals the day has (96, or
    92/100 on DST days: the function expected_intervals of local_buckets.sql, which the API calls too), how
    many arrived, how many are missing, and how many readings the source sent twice. Every day from a
    channel's first to its last reading is listed, also a day with no reading at all. The grain is the API's
    (`/completeness` answers from these rows): an import and an export channel can miss different intervals.
    Incremental: recomputes the local days holding newly loaded readings, and adds the days between the
    days already built and the new ones. -#}
{#- on_schema_change: an enforced contract on an incremental model needs `fail`, not the project's `ignore`;
    the primary key of the contract is the model's unique index. -#}
{{ config(
    materialized='incremental',
    unique_key=['muid', 'obis_code', 'day'],
    incremental_strategy=var('incremental_strategy', 'merge'),
    on_schema_change='fail',
    indexes=[{'columns': ['loaded_at']}],
) }}

{%- set window = incremental_window(ref('fct_readings'), 'reading_at',
                                    bucket_start=local_day_start_of, bucket_end=local_day_end_of) %}

with

readings as (
    select *, {{ local_day('reading_at') }} as day
    from {{ ref('fct_readings') }}
    -- Incremental: only days with a new reading are recomputed, and all their readings lie in this window.
    where {{ window.where }}
),

received as (
    select
        muid,
        obis_code,
        day,
        count(distinct reading_at)::integer as received_intervals,
        sum(duplicate_count)::integer as duplicate_readings,
        max(loaded_at) as loaded_at
    from readings
    group by muid, obis_code, day
),

{% if is_incremental() %}
touched_days as (
    select muid, obis_code, day from received where loaded_at > {{ window.watermark }}
),

built_days as (
    select muid, obis_code, min(day) as first_day, max(day) as last_day
    from {{ this }}
    where muid in (select muid from touched_days)
    group by muid, obis_code
),

day_ranges as (
    -- least/greatest skip nulls: a channel new to this table spans only its touched days.
    select
        touched_days.muid,
        touched_days.obis_code,
        least(min(touched_days.day), built_days.first_day) as first_day,
        greatest(max(touched_days.day), built_days.last_day) as last_day
    from touched_days
    left join built_days
        on built_days.muid = touched_days.muid and built_days.obis_code = touched_days.obis_code
    group by touched_days.muid, touched_days.obis_code, built_days.first_day, built_days.last_day
),

calendar as (
    select day_ranges.muid, day_ranges.obis_code, series.day::date as day
    from day_ranges
    cross join generate_series(day_ranges.first_day, day_ranges.last_day, interval '1 day') as series (day)
),

days as (
    -- The touched days, and days of the range not built yet (they had no reading so far).
    select calendar.muid, calendar.obis_code, calendar.day
    from calendar
    where exists (
        select 1 from touched_days
        where touched_days.muid = calendar.muid and touched_days.obis_code = calendar.obis_code
          and touched_days.day = calendar.day
    )
    or not exists (
        select 1 from {{ this }} as built
        where built.muid = calendar.muid and built.obis_code = calendar.obis_code and built.day = calendar.day
    )
),
{% else %}
days as (
    select day_ranges.muid, day_ranges.obis_code, series.day::date as day
    from (
        select muid, obis_code, min(day) as first_day, max(day) as last_day
        from received
        group by muid, obis_code
    ) as day_ranges
    cross join generate_series(day_ranges.first_day, day_ranges.last_day, interval '1 day') as series (day)
),
{% endif %}

completeness as (
    select
        days.muid,
        days.obis_code,
        days.day,
        {{ expected_intervals('days.day') }} as expected_intervals,
        coalesce(received.received_intervals, 0) as received_intervals,
        coalesce(received.duplicate_readings, 0) as duplicate_readings,
        received.loaded_at
    from days
    left join received
        on received.muid = days.muid and received.obis_code = days.obis_code and received.day = days.day
)

select
    muid,
    obis_code,
    day,
    expected_intervals,
    received_intervals,
    expected_intervals - received_intervals as missing_intervals,
    duplicate_readings,
    round(100.0 * received_intervals / expected_intervals, 2) as completeness_pct,
    loaded_at
from completeness
