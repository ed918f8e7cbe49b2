{#- One row per meter, OBIS code and 15-minute interval (UTC). Incremental: merges only the staging rows
    loaded after the newest `loaded_at` already here, so a run after one new day of data touches that day.
    The primary key (contract, fct_readings.yml) puts reading_at before obis_code: the API asks for one
    meter's time range over all its codes, which this order makes one contiguous index range (a day reads
    ~10x fewer pages). The pre-hook keeps the watermark for the tests of the new rows (macros/test_windows.sql). -#}
{{ config(
    materialized='incremental',
    unique_key=['muid', 'obis_code', 'reading_at'],
    incremental_strategy=var('incremental_strategy', 'merge'),
    indexes=[{'columns': ['loaded_at']}],
    pre_hook="{{ remember_watermark() }}",
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
