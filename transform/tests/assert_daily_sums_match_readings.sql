-- Each daily row equals the sum and count of its 15-minute readings in the local day, and no reading's day
-- is missing from the daily mart. A build checks the days that received tested readings (var
-- `tested_readings`, macros/test_windows.sql), so it costs what the new readings cost; the job dbt-full-test
-- checks every day, and so finds a daily row left without any reading too.
with

tested_days as (
    select distinct
        muid,
        obis_code,
        {{ local_day('reading_at') }} as day
    from {{ ref('fct_readings') }}
    where {{ var('tested_readings') }}
),

from_readings as (
    select
        readings.muid,
        readings.obis_code,
        tested_days.day,
        sum(readings.energy_kwh) as energy_kwh,
        count(*) as reading_count
    from tested_days
    inner join {{ ref('fct_readings') }} as readings
        on readings.muid = tested_days.muid
        and readings.obis_code = tested_days.obis_code
        and readings.reading_at >= {{ local_day_start('tested_days.day') }}
        and readings.reading_at < {{ local_day_start('tested_days.day + 1') }}
    group by 1, 2, 3
),

-- `tested_readings` here reads the daily rows' own loaded_at: the days rebuilt since fct_readings' watermark
-- (every day when it is 'true').
daily as (
    select daily.*
    from {{ ref('fct_energy_daily') }} as daily
    where {{ var('tested_readings') }}
        or exists (
            select from tested_days
            where tested_days.muid = daily.muid
                and tested_days.obis_code = daily.obis_code
                and tested_days.day = daily.day
        )
)

select
    coalesce(daily.muid, from_readings.muid) as muid,
    coalesce(daily.obis_code, from_readings.obis_code) as obis_code,
    coalesce(daily.day, from_readings.day) as day,
    daily.energy_kwh as daily_energy_kwh,
    from_readings.energy_kwh as readings_energy_kwh,
    daily.reading_count as daily_reading_count,
    from_readings.reading_count as readings_reading_count
from daily
full outer join from_readings
    on from_readings.muid = daily.muid
    and from_readings.obis_code = daily.obis_code
    and from_readings.day = daily.day
where daily.energy_kwh is distinct from from_readings.energy_kwh
    or daily.reading_count is distinct from from_readings.reading_count
