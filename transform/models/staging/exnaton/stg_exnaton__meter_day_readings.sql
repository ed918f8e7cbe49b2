{#- The readings of every raw table in the tap's `meter_day` layout (macros/raw_stream_tables.sql), one row
    per reading: the arrays unnested, typed and renamed. Ephemeral: inlined into fct_readings, whose
    incremental filter on `loaded_at` PostgreSQL pushes down into each table's scan. -#}
-- depends_on: {{ exnaton_stream_sources() }}

{%- for relation in raw_stream_tables('meter_day') %}
    select
        muid::text as muid,
        obis_code::text as obis_code,
        coalesce(
            readings.reading_at::timestamptz,
            (day_record.first_timestamp at time zone 'UTC')
                + (readings.position_in_record - 1) * interval '15 minutes'
        ) as reading_at,
        trim_scale(readings.energy_kwh::numeric) as energy_kwh,
        measurement::text as measurement,
        coalesce(readings.quality, day_record.quality)::text as quality,
        readings.position_in_record,
        {{ raw_load_columns(relation) }}
    from {{ relation }} as day_record
    {#- unnest pads the arrays left out (null) with nulls, filled in above. #}
    cross join lateral unnest(timestamps, "values", qualities) with ordinality
        as readings (reading_at, energy_kwh, quality, position_in_record)
    where _sdc_deleted_at is null
    {% if not loop.last %}union all{% endif %}
{%- else %}
    {{ no_raw_readings() }}
{%- endfor %}
