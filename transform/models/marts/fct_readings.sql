{#- One row per meter, OBIS code and 15-minute interval (UTC). Incremental: merges only the staging rows
    loaded after the newest `loaded_at` already here, so a run after one new day of data touches that day. -#}
{{ config(
    materialized='incremental',
    unique_key=['muid', 'obis_code', 'reading_at'],
    incremental_strategy=var('incremental_strategy', 'merge'),
    indexes=[
        {'columns': ['muid', 'obis_code', 'reading_at'], 'unique': true},
        {'columns': ['loaded_at']},
    ],
) }}

select
    muid,
    obis_code,
    reading_at,
    energy_kwh,
    quality,
    measurement,
    stream_name,
    loaded_at
from {{ ref('stg_exnaton__readings') }}
{% if is_incremental() %}
where loaded_at > {{ loaded_watermark() }}
{% endif %}
