{#- Every meter reading once: the union of all raw stream tables (found at run time, in either of the
    tap's record layouts, see macros/raw_reading_tables.sql), typed, renamed and deduplicated on
    (muid, obis_code, reading_at), keeping the latest extraction. Incremental: a run reads only raw rows
    batched after the newest `loaded_at` here and keeps only readings that are new or changed, so append-only
    reloads of the same data any number of times leave the same rows, and a re-sent day costs its new
    readings. -#}
{{ config(
    materialized='incremental',
    unique_key=['muid', 'obis_code', 'reading_at'],
    incremental_strategy=var('incremental_strategy', 'merge'),
    indexes=[
        {'columns': ['muid', 'obis_code', 'reading_at'], 'unique': true},
        {'columns': ['loaded_at']},
    ],
) }}

{#- Lineage for the docs: the declared sources. The tables actually read are discovered below. -#}
-- depends_on: {{ source('exnaton', 'muid_1') }}, {{ source('exnaton', 'muid_2') }}

{%- set raw_tables = raw_reading_tables() %}

{#- The loader stores UTC without a zone; comparing in that type keeps any index on the raw column usable. -#}
{%- set batched_after = '(' ~ loaded_watermark() ~ " at time zone 'UTC')" if is_incremental() else none %}

with

raw_rows as (
    {%- for table in raw_tables %}
    {{ raw_readings_select(table, batched_after) }}
    {% if not loop.last %}union all{% endif %}
    {%- else %}
    -- No stream table yet: an empty, typed relation.
    select
        null::text as muid, null::text as obis_code, null::timestamptz as reading_at,
        null::numeric as energy_kwh, null::text as measurement, null::text as quality,
        null::text as stream_name, null::timestamptz as loaded_at, null::timestamp as extracted_at,
        null::bigint as sequence_number, null::bigint as position_in_record, null::bigint as sync_started_at
    where false
    {%- endfor %}
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
        count(*) over (partition by muid, obis_code, reading_at, sync_started_at) - 1 as duplicate_count
    from raw_rows
)

select
    muid,
    obis_code,
    reading_at,
    energy_kwh,
    measurement,
    quality,
    stream_name,
    loaded_at,
    duplicate_count
from ranked
where recency_rank = 1
{%- if is_incremental() %}
    {#- A re-sent day (a day record is sent whole when one reading is new) carries mostly readings that are
        here already, unchanged: leaving them out keeps every model downstream at the cost of what changed. #}
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
