-- Each daily row equals the sum and count of its 15-minute readings in the local day, and no reading's day
-- is missing from the daily mart.
-- Whole-table: every day of every meter is read, so an ordinary build leaves it out (tag whole_table,
-- transform/README.md "Tests"); the full refresh and the job dbt-full-test run it.
{{ config(tags=['whole_table']) }}

with

from_readings as (
    select
        muid,
        obis_code,
        {{ local_day('reading_at') }} as day,
        sum(energy_kwh) as energy_kwh,
        count(*) as reading_count
    from {{ ref('fct_readings') }}
    group by 1, 2, 3
)

select
    coalesce(daily.muid, from_readings.muid) as muid,
    coalesce(daily.obis_code, from_readings.obis_code) as obis_code,
    coalesce(daily.day, from_readings.day) as day,
    daily.energy_kwh as daily_energy_kwh,
    from_readings.energy_kwh as readings_energy_kwh,
    daily.reading_count as daily_reading_count,
    from_readings.reading_count as readings_reading_count
from {{ ref('fct_energy_daily') }} as daily
full outer join from_readings
    on from_readings.muid = daily.muid
    and from_readings.obis_code = daily.obis_code
    and from_readings.day = daily.day
where daily.energy_kwh is distinct from from_readings.energy_kwh
    or daily.reading_count is distinct from from_readings.reading_count
