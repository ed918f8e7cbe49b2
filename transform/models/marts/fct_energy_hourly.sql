{#- Energy per meter, OBIS code and local hour (var `timezone`). `hour_start` is the instant the local hour
    begins, so the repeated hour of a fall-back day is two rows and a spring-forward day has 23.
    Incremental: only the hours holding newly loaded readings are recomputed, from all their readings. -#}
{{ config(
    materialized='incremental',
    unique_key=['muid', 'obis_code', 'hour_start'],
    incremental_strategy=var('incremental_strategy', 'merge'),
    on_schema_change='fail',
    indexes=[
        {'columns': ['muid', 'obis_code', 'hour_start'], 'unique': true},
        {'columns': ['loaded_at']},
    ],
) }}

with

{% if is_incremental() %}
touched_hours as (
    select distinct muid, obis_code, {{ local_hour_start('reading_at') }} as hour_start
    from {{ ref('fct_readings') }}
    where loaded_at > (select coalesce(max(loaded_at), '-infinity') from {{ this }})
),

readings as (
    select readings.*
    from touched_hours
    join {{ ref('fct_readings') }} as readings
        on readings.muid = touched_hours.muid
        and readings.obis_code = touched_hours.obis_code
        and readings.reading_at >= touched_hours.hour_start
        and readings.reading_at < touched_hours.hour_start + interval '1 hour'
)
{% else %}
readings as (
    select * from {{ ref('fct_readings') }}
)
{% endif %}

select
    muid,
    obis_code,
    {{ local_hour_start('reading_at') }} as hour_start,
    sum(energy_kwh) as energy_kwh,
    count(*)::integer as reading_count,
    max(loaded_at) as loaded_at
from readings
group by 1, 2, 3
