-- Every reading starts on a 15-minute boundary of UTC (and so of every zone with whole-quarter offsets).
select muid, obis_code, reading_at
from {{ ref('fct_readings') }}
where mod(extract(epoch from reading_at)::numeric, 900) <> 0
    and {{ var('tested_readings') }}
