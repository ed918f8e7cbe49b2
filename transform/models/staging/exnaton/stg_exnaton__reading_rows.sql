{#- The readings of every raw table in the tap's `reading` layout (macros/raw_stream_tables.sql), typed and
    renamed. Ephemeral: inlined into fct_readings, whose incremental filter on `loaded_at`
    PostgreSQL pushes down into each table's scan. -#}
-- depends_on: {{ exnaton_stream_sources() }}

{%- for relation in raw_stream_tables('reading') %}
    select
        muid::text as muid,
        obis_code::text as obis_code,
        "timestamp" at time zone 'UTC' as reading_at,
        trim_scale(value::numeric) as energy_kwh,
        measurement::text as measurement,
        quality::text as quality,
        0::bigint as position_in_record,
        {{ raw_load_columns(relation) }}
    from {{ relation }}
    where _sdc_deleted_at is null
    {% if not loop.last %}union all{% endif %}
{%- else %}
    {{ no_raw_readings() }}
{%- endfor %}
