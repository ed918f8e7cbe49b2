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

{%- set window = incremental_window(ref('fct_readings'), 'reading_at',
                                    bucket_start=utc_hour_start, bucket_end=utc_hour_end) %}

with

readings as (
    select *, {{ utc_hour_start('reading_at') }} as hour_start
    from {{ ref('fct_readings') }}
    -- Incremental: the hours holding a newly loaded reading.
    where {{ window.where }}
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
-- Incremental: within the span, only the hours that received a reading since the last run.
having {{ window.having }}
