-- The local hours of a day add up to that day: same energy, same number of readings. A full build makes the
-- daily mart from the hourly one; this catches the two drifting apart over incremental runs (each recomputes
-- its own span), and with assert_daily_sums_match_readings it ties the hours to the readings.
-- Whole-table: every day of every meter is read, so an ordinary build leaves it out (tag whole_table,
-- transform/README.md "Tests"); the full refresh and the job dbt-full-test run it.
{{ config(tags=['whole_table']) }}

with

hours_by_day as (
    select
        muid,
        obis_code,
        {{ local_day('hour_start') }} as day,
        sum(energy_kwh) as energy_kwh,
        sum(reading_count) as reading_count
    from {{ ref('fct_energy_hourly') }}
    group by 1, 2, 3
)

select
    coalesce(daily.muid, hours_by_day.muid) as muid,
    coalesce(daily.obis_code, hours_by_day.obis_code) as obis_code,
    coalesce(daily.day, hours_by_day.day) as day,
    daily.energy_kwh as daily_energy_kwh,
    hours_by_day.energy_kwh as hourly_energy_kwh
from {{ ref('fct_energy_daily') }} as daily
full outer join hours_by_day
    on hours_by_day.muid = daily.muid
    and hours_by_day.obis_code = daily.obis_code
    and hours_by_day.day = daily.day
where daily.energy_kwh is distinct from hours_by_day.energy_kwh
    or daily.reading_count is distinct from hours_by_day.reading_count
