{#- The raw stream tables of one record layout of the tap (`meter_day` or `reading`), as relations.

    The one catalog query left while compiling, and why it stays: which tables exist, and in which layout,
    is decided by the tap's settings (`meters`, `stream_per_meter`, `record_layout`), which Meltano does not
    hand to the dbt utility, and a declared source can say neither whether its table exists yet (`readings`
    in a project with streams per meter, a new empty database) nor which of the two layouts the loader wrote.
    Creating the missing tables from dbt instead would put columns of dbt's choosing into raw (a layout the
    loader then mixes with its own). So one query on pg_attribute, whatever the number of tables, answers both;
    the compiled SQL reads every table it finds, the declared ones through source() (stg_exnaton__* list them
    for lineage, see exnaton_stream_sources()), and a missing table is simply not read.
      reading    one row per reading: muid, "timestamp", obis_code, value, quality
      meter_day  one row per meter, OBIS code and UTC day (or part of one): parallel arrays timestamps,
                 "values", qualities; timestamps is null when reading i starts at first_timestamp + i * 15
                 minutes, and qualities is null when all readings share the one in quality -#}
{% macro raw_stream_tables(layout, schema=var('raw_schema', 'raw')) %}
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
    {%- set declared = {} -%}
    {%- for node in graph.sources.values() if node.source_name == 'exnaton' -%}
        {%- do declared.update({node.name: node}) -%}
    {%- endfor -%}
    {%- set tables = [] -%}
    {%- for row in run_query(query).rows -%}
        {#- agate hands arrays over as JSON text: a '/'-joined list splits safely (no '/' in these names). -#}
        {%- set columns = row['column_names'].split('/') -%}
        {%- set needed = layouts[layout] -%}
        {%- if needed | reject('in', columns) | list | length == 0 -%}
            {%- set missing = load_columns | reject('in', columns) | list -%}
            {%- if missing -%}
                {{ exceptions.raise_compiler_error(
                    "Raw table " ~ schema ~ "." ~ row['table_name'] ~ " holds meter readings but lacks "
                    ~ missing | join(", ") ~ ": load it with target-postgres and add_record_metadata: true") }}
            {%- endif -%}
            {%- if row['table_name'] in declared and schema == var('raw_schema', 'raw') -%}
                {%- do tables.append(source('exnaton', row['table_name'])) -%}
            {%- else -%}
                {%- do tables.append(api.Relation.create(
                    database=target.database, schema=schema, identifier=row['table_name'])) -%}
            {%- endif -%}
        {%- endif -%}
    {%- endfor -%}
    {{ return(tables) }}
{% endmacro %}


{#- The declared stream tables (models/staging/exnaton/_exnaton__sources.yml), for the lineage of the models
    that read raw: calling source() while dbt parses records the edge, whether the table exists or not. -#}
{% macro exnaton_stream_sources() -%}
    {{ source('exnaton', 'muid_1') }}, {{ source('exnaton', 'muid_2') }}, {{ source('exnaton', 'readings') }}
{%- endmacro %}


{#- Columns every layout's staging model ends with, from the loader's metadata. -#}
{% macro raw_load_columns(relation) -%}
        {{ sql_literal(relation.identifier) }}::text as stream_name,
        _sdc_batched_at at time zone 'UTC' as loaded_at,
        _sdc_extracted_at as extracted_at,
        _sdc_sequence as sequence_number,
        _sdc_sync_started_at as sync_started_at
{%- endmacro %}


{#- An empty relation with the columns of a layout's staging model, while no table of the layout exists. -#}
{% macro no_raw_readings() -%}
    select
        null::text as muid, null::text as obis_code, null::timestamptz as reading_at,
        null::numeric as energy_kwh, null::text as measurement, null::text as quality,
        null::bigint as position_in_record, null::text as stream_name, null::timestamptz as loaded_at,
        null::timestamp as extracted_at, null::bigint as sequence_number, null::bigint as sync_started_at
    where false
{%- endmacro %}
