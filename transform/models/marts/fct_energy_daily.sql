{#- Energy per meter, OBIS code and local calendar day (var `timezone`): 92 readings on a spring-forward day,
    100 on a fall-back day. Summed from the local hours of fct_energy_hourly (in every zone a local day is
    whole local hours), a quarter of the rows of fct_readings. Incremental: only the local days holding
    newly loaded hours are recomputed, from all their hours. -#}
{{ config(
    materialized='incremental',
    unique_key=['muid', 'obis_code', 'day'],
    incremental_strategy=var('incremental_strategy', 'merge'),
    indexes=[
        {'columns': ['muid', 'obis_code', 'day'], 'unique': true},
        {'columns': ['loaded_at']},
    ],
) }}

{%- if is_incremental() %}
    {%- set watermark = loaded_watermark() %}
    {%- set span = new_readings_span(ref('fct_energy_hourly'), watermark, column='hour_start') %}
{%- endif %}

with

hours as (
    select *, {{ local_day('hour_start') }} as day
    from {{ ref('fct_energy_hourly') }}
    {%- if is_incremental() %}
    {%- if span %}
    where hour_start >= {{ local_day_start(local_day(span.first)) }}
      and hour_start < {{ local_day_start(local_day(span.last) ~ ' + 1') }}
    {%- else %}
    where false
    {%- endif %}
    {%- endif %}
)

select
    muid,
    obis_code,
    day,
    sum(energy_kwh) as energy_kwh,
    sum(reading_count)::integer as reading_count,
    max(loaded_at) as loaded_at
from hours
group by muid, obis_code, day
{%- if is_incremental() %}
-- Within the span, only the days that received a reading since the last run.
having max(loaded_at) > {{ watermark }}
{%- endif %}
