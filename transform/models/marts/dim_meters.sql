{#- One row per meter and OBIS code, built from the small daily mart plus index look-ups for the first and
    last reading, so it stays cheap however many readings there are. The API pages through meters and looks
    one up on every request by its primary key (muid, obis_code; dim_meters.yml). Incremental: a run rebuilds
    the rows of the meters whose days were loaded since the newest load the table holds (all their codes, so
    last_loaded_at stays the maximum over a meter's codes); their first and last readings are the row's own
    widened by the readings loaded since, found by the index on loaded_at, instead of two index probes per meter
    and code into every reading (at 10,000 meters the probes were 0.65 s of a 3.3 s incremental build). -#}
{{ config(
    materialized='incremental',
    unique_key=['muid', 'obis_code'],
    incremental_strategy=var('incremental_strategy', 'merge'),
) }}

{%- set watermark = loaded_watermark(this, 'last_loaded_at') if is_incremental() else none %}

with

totals as (
    select
        muid,
        obis_code,
        sum(reading_count)::bigint as reading_count,
        max(loaded_at) as loaded_at
    from {{ ref('fct_energy_daily') }} as daily
    {%- if watermark %}
    where muid in (
        select muid from {{ ref('fct_energy_daily') }}
        where loaded_at > {{ watermark }}
    )
    {%- endif %}
    group by muid, obis_code
),

{%- if watermark %}

bounds as (
    -- The row kept here and every reading loaded since, aggregated together: the bounds widen, and on an equal
    -- last reading the new one's stream wins (a reading re-sent by another stream moves the meter to it). One
    -- aggregate, no join to the new readings: their count right after a merge is beyond the statistics
    -- (estimated at 1 row), and a nested loop over them took 70 s at 10,000 meters.
    select
        muid,
        obis_code,
        min(first_reading_at) as first_reading_at,
        max(last_reading_at) as last_reading_at,
        (array_agg(stream_name order by last_reading_at desc, is_new desc))[1] as stream_name
    from (
        select kept.muid, kept.obis_code, kept.first_reading_at, kept.last_reading_at, kept.stream_name,
               false as is_new
        from {{ this }} as kept
        where kept.muid in (select muid from totals)
        union all
        select muid, obis_code, reading_at, reading_at, stream_name, true
        from {{ ref('fct_readings') }}
        where loaded_at > {{ watermark }}
    ) as known
    group by muid, obis_code
)

{%- else %}

bounds as (
    select
        totals.muid,
        totals.obis_code,
        earliest.reading_at as first_reading_at,
        latest.reading_at as last_reading_at,
        latest.stream_name
    from totals
    cross join lateral (
        select reading_at
        from {{ ref('fct_readings') }} as readings
        where readings.muid = totals.muid and readings.obis_code = totals.obis_code
        order by reading_at
        limit 1
    ) as earliest
    cross join lateral (
        select reading_at, stream_name
        from {{ ref('fct_readings') }} as readings
        where readings.muid = totals.muid and readings.obis_code = totals.obis_code
        order by reading_at desc
        limit 1
    ) as latest
)

{%- endif %}

select
    totals.muid,
    bounds.stream_name,
    totals.obis_code,
    {{ obis_direction('totals.obis_code') }} as direction,
    bounds.first_reading_at,
    bounds.last_reading_at,
    totals.reading_count,
    -- The loader's time of the meter's latest load (max _sdc_batched_at of its raw rows), over all its codes.
    max(totals.loaded_at) over (partition by totals.muid) as last_loaded_at
from totals
join bounds using (muid, obis_code)
