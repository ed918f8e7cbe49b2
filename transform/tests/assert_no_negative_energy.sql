-- Energy per interval is a meter's counted kWh in one direction: never negative.
select muid, obis_code, reading_at, energy_kwh
from {{ ref('fct_readings') }}
where energy_kwh < 0
    and {{ var('tested_readings') }}
