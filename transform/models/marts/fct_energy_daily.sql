{#- Energy per meter, OBIS code and local calendar day (var `timezone`): 92 readings on a spring-forward day,
    100 on a fall-back day. Summed from the hours of fct_energy_hourly, a quarter of the rows of fct_readings:
    right while every local day of var `timezone` begins on a whole UTC hour (any zone of whole-hour offsets;
    the data test assert_daily_sums_match_readings fails otherwise). Incremental: only the local days holding
    newly loaded hours are recomputed, from all their hours. -#}
{#- on_schema_change: an enforced contract on an incremental model needs `fail`, not the project's `ignore`;
    the primary key of the contract is the model's unique index. -#}
{{ config(
    materialized='incremental',
    unique_key=['muid', 'obis_code', 'day'],
    incremental_strategy=var('incremental_strategy', 'merge'),
    on_schema_change='fail',
    indexes=[{'columns': ['loaded_at']}],
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
