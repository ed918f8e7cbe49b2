{#- The clean 15-minute series of one of the mission's meters, as in the Airbyte original's per-meter models.
    Filters the marts by the meter's muid (var `mission_meters`), so the view is the same whether the meter
    was loaded by its own stream or by the fleet stream `readings`, and empty while the meter has no data. -#}
{% macro meter_transforms(name) -%}
select
    reading_at,
    energy_kwh,
    {{ obis_direction('obis_code') }} as direction,
    quality
from {{ ref('fct_readings') }}
where muid = {{ sql_literal(var('mission_meters')[name]) }}
{%- endmacro %}
