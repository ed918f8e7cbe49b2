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

{%- set window = incremental_window(ref('fct_energy_hourly'), 'hour_start',
                                    bucket_start=local_day_start_of, bucket_end=local_day_end_of) %}

with

hours as (
    select *, {{ local_day('hour_start') }} as day
    from {{ ref('fct_energy_hourly') }}
    -- Incremental: the local days holding a newly loaded hour.
    where {{ window.where }}
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
-- Incremental: within the span, only the days that received a reading since the last run.
having {{ window.having }}
