-- The local hours of a day add up to that day: same energy, same number of readings. A full build makes the
-- daily mart from the hourly one; this catches the two drifting apart over incremental runs (each recomputes
-- its own span), and with assert_daily_sums_match_readings it ties the hours to the readings. A build checks
-- the days that received tested readings (var `tested_readings`); the job dbt-full-test checks every day.
with

tested_days as (
    select distinct
        muid,
        obis_code,
        {{ local_day('reading_at') }} as day
    from {{ ref('fct_readings') }}
    where {{ var('tested_readings') }}
),

hours_by_day as (
    select
        hourly.muid,
        hourly.obis_code,
        tested_days.day,
        sum(hourly.energy_kwh) as energy_kwh,
        sum(hourly.reading_count) as reading_count
    from tested_days
    inner join {{ ref('fct_energy_hourly') }} as hourly
        on hourly.muid = tested_days.muid
        and hourly.obis_code = tested_days.obis_code
        and hourly.hour_start >= {{ local_day_start('tested_days.day') }}
        and hourly.hour_start < {{ local_day_start('tested_days.day + 1') }}
    group by 1, 2, 3
),

daily as (
    select daily.*
    from {{ ref('fct_energy_daily') }} as daily
    inner join tested_days using (muid, obis_code, day)
)

select
    coalesce(daily.muid, hours_by_day.muid) as muid,
    coalesce(daily.obis_code, hours_by_day.obis_code) as obis_code,
    coalesce(daily.day, hours_by_day.day) as day,
    daily.energy_kwh as daily_energy_kwh,
    hours_by_day.energy_kwh as hourly_energy_kwh
from daily
full outer join hours_by_day
    on hours_by_day.muid = daily.muid
    and hours_by_day.obis_code = daily.obis_code
    and hours_by_day.day = daily.day
where daily.energy_kwh is distinct from hours_by_day.energy_kwh
    or daily.reading_count is distinct from hours_by_day.reading_count
