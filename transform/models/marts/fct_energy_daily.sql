{#- Energy per meter, OBIS code and local calendar day (var `timezone`): 92 readings on a spring-forward day,
    100 on a fall-back day. Incremental: only the local days holding newly loaded readings are recomputed,
    from all their readings. -#}
{{ config(
    materialized='incremental',
    unique_key=['muid', 'obis_code', 'day'],
    incremental_strategy=var('incremental_strategy', 'merge'),
    on_schema_change='fail',
    indexes=[
        {'columns': ['muid', 'obis_code', 'day'], 'unique': true},
        {'columns': ['loaded_at']},
    ],
) }}

with

{% if is_incremental() %}
touched_days as (
    select distinct muid, obis_code, {{ local_day('reading_at') }} as day
    from {{ ref('fct_readings') }}
    where loaded_at > (select coalesce(max(loaded_at), '-infinity') from {{ this }})
),

readings as (
    select readings.*
    from touched_days
    join {{ ref('fct_readings') }} as readings
        on readings.muid = touched_days.muid
        and readings.obis_code = touched_days.obis_code
        and readings.reading_at >= {{ local_day_start('touched_days.day') }}
        and readings.reading_at < {{ local_day_start('touched_days.day + 1') }}
)
{% else %}
readings as (
    select * from {{ ref('fct_readings') }}
)
{% endif %}

select
    muid,
    obis_code,
    {{ local_day('reading_at') }} as day,
    sum(energy_kwh) as energy_kwh,
    count(*)::integer as reading_count,
    max(loaded_at) as loaded_at
from readings
group by 1, 2, 3
