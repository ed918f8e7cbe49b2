{#- Energy per meter, OBIS code and local hour (var `timezone`). `hour_start` is the instant the local hour
    begins, so the repeated hour of a fall-back day is two rows and a spring-forward day has 23.
    Incremental: only the hours holding newly loaded readings are recomputed, from all their readings. -#}
{{ config(
    materialized='incremental',
    unique_key=['muid', 'obis_code', 'hour_start'],
    incremental_strategy=var('incremental_strategy', 'merge'),
    indexes=[
        {'columns': ['muid', 'obis_code', 'hour_start'], 'unique': true},
        {'columns': ['loaded_at']},
    ],
) }}

{%- if is_incremental() %}
    {%- set watermark = loaded_watermark() %}
    {%- set span = new_readings_span(ref('fct_readings'), watermark) %}
{%- endif %}

with

readings as (
    select *, {{ local_hour_start('reading_at') }} as hour_start
    from {{ ref('fct_readings') }}
    {%- if is_incremental() %}
    {%- if span %}
    where reading_at >= {{ local_hour_start(span.first) }}
      and reading_at < {{ local_hour_start(span.last) }} + interval '1 hour'
    {%- else %}
    where false
    {%- endif %}
    {%- endif %}
)

select
    muid,
    obis_code,
    hour_start,
    sum(energy_kwh) as energy_kwh,
    count(*)::integer as reading_count,
    max(loaded_at) as loaded_at
from readings
group by muid, obis_code, hour_start
{%- if is_incremental() %}
-- Within the span, only the hours that received a reading since the last run.
having max(loaded_at) > {{ watermark }}
{%- endif %}
