{#- One row per meter, OBIS code and 15-minute interval (UTC): every reading once, from the union of the two
    layouts' staging models (every raw stream table, see macros/raw_stream_tables.sql), deduplicated on
    (muid, obis_code, reading_at) keeping the latest extraction (a day may come in several rows: the loader
    appends). Incremental: a run reads only raw rows batched after the newest `loaded_at` here and merges
    only readings that are new or changed, so append-only reloads of the same data any number of times leave
    the same rows, and a run after one new day of data touches that day. The deduplication is here, not in a
    staging table of its own: that table was a second full copy of every reading, written and merged on
    every run for the same rows.
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

{%- set watermark = loaded_watermark() if is_incremental() else none %}

with

raw_rows as (
    select * from {{ ref('stg_exnaton__meter_day_readings') }}
    {%- if watermark %} where loaded_at > {{ watermark }}{% endif %}
    union all
    select * from {{ ref('stg_exnaton__reading_rows') }}
    {%- if watermark %} where loaded_at > {{ watermark }}{% endif %}
),

ranked as (
    select
        *,
        row_number() over (
            partition by muid, obis_code, reading_at
            order by
                extracted_at desc nulls last, loaded_at desc, sequence_number desc nulls last,
                position_in_record desc
        ) as recency_rank,
        -- Copies of the reading within one load: duplicates sent by the source. Copies from repeated
        -- loads (append mode) are reloads, not source duplicates, and do not count.
        (count(*) over (partition by muid, obis_code, reading_at, sync_started_at) - 1)::integer
            as duplicate_count
    from raw_rows
)

select
    muid,
    obis_code,
    reading_at,
    energy_kwh,
    quality,
    measurement,
    stream_name,
    loaded_at,
    duplicate_count
from ranked
where recency_rank = 1
{%- if is_incremental() %}
    {#- A reading sent again (a retried page, a run after `meltano state clear`, a mode switch) that is here
        already, unchanged, is left out: every model downstream then costs what changed. #}
    and not exists (
        select 1
        from {{ this }} as loaded
        where loaded.muid = ranked.muid
          and loaded.obis_code = ranked.obis_code
          and loaded.reading_at = ranked.reading_at
          and loaded.energy_kwh is not distinct from ranked.energy_kwh
          and loaded.quality is not distinct from ranked.quality
          and loaded.measurement is not distinct from ranked.measurement
          and loaded.duplicate_count = ranked.duplicate_count
          and loaded.stream_name = ranked.stream_name
    )
{%- endif %}
