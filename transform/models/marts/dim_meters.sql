{#- One row per meter and OBIS code, built from the small daily mart plus index look-ups for the first and
    last reading, so it stays cheap however many readings there are. The API pages through meters and looks
    one up on every request by its primary key (muid, obis_code; dim_meters.yml). Incremental: a run rebuilds
    the rows of the meters whose days were loaded since the newest load the table holds (all their codes, so
    last_loaded_at stays the maximum over a meter's codes). -#}
{{ config(
    materialized='incremental',
    unique_key=['muid', 'obis_code'],
    incremental_strategy=var('incremental_strategy', 'merge'),
) }}

with

totals as (
    select
        muid,
        obis_code,
        sum(reading_count)::bigint as reading_count,
        max(loaded_at) as loaded_at
    from {{ ref('fct_energy_daily') }} as daily
    {%- if is_incremental() %}
    where muid in (
        select muid from {{ ref('fct_energy_daily') }}
        where loaded_at > {{ loaded_watermark(this, 'last_loaded_at') }}
    )
    {%- endif %}
    group by muid, obis_code
)

select
    totals.muid,
    latest.stream_name,
    totals.obis_code,
    {{ obis_direction('totals.obis_code') }} as direction,
    earliest.reading_at as first_reading_at,
    latest.reading_at as last_reading_at,
    totals.reading_count,
    -- The loader's time of the meter's latest load (max _sdc_batched_at of its raw rows), over all its codes.
    max(totals.loaded_at) over (partition by totals.muid) as last_loaded_at
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
