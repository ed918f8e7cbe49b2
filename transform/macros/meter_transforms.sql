{#- The clean 15-minute series of one meter stream, as in the Airbyte original's per-meter models. Filters the
    marts by stream name, so a stream without data (or without a raw table) gives an empty view. -#}
{% macro meter_transforms(stream_name) -%}
select
    reading_at,
    energy_kwh,
    {{ obis_direction('obis_code') }} as direction,
    quality
from {{ ref('fct_readings') }}
where stream_name = {{ sql_literal(stream_name) }}
{%- endmacro %}
