{#- The meter stream tables of the raw schema, found at run time by their columns, so a meter added to the
    tap's `meters` setting (one more stream, one more table) needs no SQL or YAML change. One catalog query,
    whatever the number of meters. Two layouts of the tap (setting `record_layout`) are recognised:
      reading    one row per reading: muid, "timestamp", obis_code, value, quality
      meter_day  one row per meter, OBIS code and UTC day: parallel arrays timestamps, "values", qualities;
                 timestamps is null when reading i starts at first_timestamp + i * 15 minutes, and qualities
                 is null when all readings share the one in quality
    Returns a list of {'relation': Relation, 'layout': 'reading' | 'meter_day'}. -#}
{% macro raw_reading_tables(schema=var('raw_schema', 'raw')) %}
    {%- if not execute -%}
        {{ return([]) }}
    {%- endif -%}
    {%- set layouts = {
        'reading': ['muid', 'timestamp', 'obis_code', 'value', 'quality'],
        'meter_day': ['muid', 'obis_code', 'day', 'first_timestamp', 'timestamps', 'values', 'qualities'],
    } -%}
    {%- set load_columns = ['measurement', '_sdc_extracted_at', '_sdc_batched_at', '_sdc_sequence',
                            '_sdc_sync_started_at', '_sdc_deleted_at'] -%}
    {%- set query -%}
        select c.relname as table_name, string_agg(a.attname::text, '/' order by a.attnum) as column_names
        from pg_catalog.pg_class c
        join pg_catalog.pg_namespace n on n.oid = c.relnamespace
        join pg_catalog.pg_attribute a on a.attrelid = c.oid and a.attnum > 0 and not a.attisdropped
        where n.nspname = {{ sql_literal(schema) }}
          and c.relkind in ('r', 'p')
          and not c.relispartition
        group by c.relname
        order by c.relname
    {%- endset -%}
    {%- set tables = [] -%}
    {%- for row in run_query(query).rows -%}
        {#- agate hands arrays over as JSON text: a '/'-joined list splits safely (no '/' in these names). -#}
        {%- set columns = row['column_names'].split('/') -%}
        {%- set matching = [] -%}
        {%- for layout, needed in layouts.items() -%}
            {%- if needed | reject('in', columns) | list | length == 0 -%}
                {%- do matching.append(layout) -%}
            {%- endif -%}
        {%- endfor -%}
        {%- if matching -%}
            {%- set missing = load_columns | reject('in', columns) | list -%}
            {%- if missing -%}
                {{ exceptions.raise_compiler_error(
                    "Raw table " ~ schema ~ "." ~ row['table_name'] ~ " holds meter readings but lacks "
                    ~ missing | join(", ") ~ ": load it with target-postgres and add_record_metadata: true") }}
            {%- endif -%}
            {%- do tables.append({
                'relation': api.Relation.create(database=target.database, schema=schema, identifier=row['table_name']),
                'layout': matching[0],
            }) -%}
        {%- endif -%}
    {%- endfor -%}
    {%- if not tables -%}
        {{ log("No meter stream tables in schema " ~ schema ~ " yet: the readings models stay empty", info=true) }}
    {%- endif -%}
    {{ return(tables) }}
{% endmacro %}


{#- The rows of one raw stream table as typed readings, whatever its layout; `batched_after` (SQL, a
    timestamp without time zone) keeps only rows the loader wrote later. -#}
{% macro raw_readings_select(table, batched_after=none) %}
    {%- set relation = table['relation'] -%}
    {%- if table['layout'] == 'reading' %}
    select
        muid::text as muid,
        obis_code::text as obis_code,
        "timestamp" at time zone 'UTC' as reading_at,
        trim_scale(value::numeric) as energy_kwh,
        measurement::text as measurement,
        quality::text as quality,
        {{ sql_literal(relation.identifier) }}::text as stream_name,
        _sdc_batched_at at time zone 'UTC' as loaded_at,
        _sdc_extracted_at as extracted_at,
        _sdc_sequence as sequence_number,
        0::bigint as position_in_record,
        _sdc_sync_started_at as sync_started_at
    from {{ relation }}
    {%- else %}
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
        {{ sql_literal(relation.identifier) }}::text as stream_name,
        _sdc_batched_at at time zone 'UTC' as loaded_at,
        _sdc_extracted_at as extracted_at,
        _sdc_sequence as sequence_number,
        readings.position_in_record,
        _sdc_sync_started_at as sync_started_at
    from {{ relation }} as day_record
    {#- unnest pads the arrays left out (null) with nulls, filled in above. #}
    cross join lateral unnest(timestamps, "values", qualities) with ordinality
        as readings (reading_at, energy_kwh, quality, position_in_record)
    {%- endif %}
    where _sdc_deleted_at is null
    {%- if batched_after is not none %}
      and _sdc_batched_at > {{ batched_after }}
    {%- endif %}
{% endmacro %}
