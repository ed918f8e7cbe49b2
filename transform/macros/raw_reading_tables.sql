{#- The meter stream tables of the raw schema, found at run time: every table with the columns of a reading.
    So a meter added to the tap's `meters` setting (one more stream, one more table) needs no SQL or YAML
    change. One catalog query, whatever the number of meters. -#}

{% macro raw_reading_tables(schema=var('raw_schema', 'raw')) %}
    {%- if not execute -%}
        {{ return([]) }}
    {%- endif -%}
    {%- set reading_columns = ['muid', 'timestamp', 'obis_code', 'value'] -%}
    {%- set load_columns = ['measurement', 'quality', '_sdc_extracted_at', '_sdc_batched_at', '_sdc_sequence',
                            '_sdc_sync_started_at', '_sdc_deleted_at'] -%}
    {%- set query -%}
        select c.relname as table_name, array_agg(a.attname::text order by a.attname) as column_names
        from pg_catalog.pg_class c
        join pg_catalog.pg_namespace n on n.oid = c.relnamespace
        join pg_catalog.pg_attribute a on a.attrelid = c.oid and a.attnum > 0 and not a.attisdropped
        where n.nspname = {{ sql_literal(schema) }}
          and c.relkind in ('r', 'p')
          and not c.relispartition
        group by c.relname
        having count(*) filter (where a.attname in ('{{ reading_columns | join("', '") }}')) = {{ reading_columns | length }}
        order by c.relname
    {%- endset -%}
    {%- set found = run_query(query) -%}
    {%- set relations = [] -%}
    {%- for row in found.rows -%}
        {%- set missing = [] -%}
        {%- for column in load_columns if column not in row['column_names'] -%}
            {%- do missing.append(column) -%}
        {%- endfor -%}
        {%- if missing -%}
            {{ exceptions.raise_compiler_error(
                "Raw table " ~ schema ~ "." ~ row['table_name'] ~ " has the reading columns but lacks "
                ~ missing | join(", ") ~ ": load it with target-postgres and add_record_metadata: true") }}
        {%- endif -%}
        {%- do relations.append(api.Relation.create(database=target.database, schema=schema, identifier=row['table_name'])) -%}
    {%- endfor -%}
    {%- if not relations -%}
        {{ log("No meter stream tables in schema " ~ schema ~ " yet: the readings models stay empty", info=true) }}
    {%- endif -%}
    {{ return(relations) }}
{% endmacro %}
