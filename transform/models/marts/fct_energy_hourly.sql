{#- Energy per meter, OBIS code and UTC-aligned hour. In every zone whose UTC offset is whole hours (Europe/Zurich
    all year) that is the local hour: the repeated hour of a fall-back day is two rows, a spring-forward day
    has 23, and the zone's days, weeks and months are sums of these rows (the API sums them for any such
    zone). Incremental: only the hours holding newly loaded readings are recomputed, from all their readings. -#}
{#- on_schema_change: an enforced contract on an incremental model needs `fail`, not the project's `ignore`;
    the primary key of the contract is the model's unique index. -#}
{{ config(
    materialized='incremental',
    unique_key=['muid', 'obis_code', 'hour_start'],
    incremental_strategy=var('incremental_strategy', 'merge'),
    on_schema_change='fail',
    indexes=[{'columns': ['loaded_at']}],
) }}

{%- if is_incremental() %}
    {%- set watermark = loaded_watermark() %}
    {%- set span = new_readings_span(ref('fct_readings'), watermark) %}
{%- endif %}

with

readings as (
    select *, {{ utc_hour_start('reading_at') }} as hour_start
    from {{ ref('fct_readings') }}
    {%- if is_incremental() %}
    {%- if span %}
    where reading_at >= {{ utc_hour_start(span.first) }}
      and reading_at < {{ utc_hour_start(span.last) }} + interval '1 hour'
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
