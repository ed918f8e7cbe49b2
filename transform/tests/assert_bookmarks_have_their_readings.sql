{#- Meltano's bookmarks never run ahead of the marts. The tap extracts only what is newer than a stream's
    bookmark, so a bookmark whose readings are not in the marts (raw tables dropped or emptied, only part of a
    backup restored, the state copied from elsewhere) would make every later run end in success with those
    readings missing for good. This fails the run instead, naming the stream and the command that reloads it.

    The bookmarks are read from Meltano's state table in this database (schema var `meltano_schema`, see
    `database_uri` in meltano.yml); without that table (state kept elsewhere) there is nothing to compare.
    A stream's bookmark is its newest reading loaded, so the marts must hold a reading of that stream's meters
    at or after it; a partitioned stream's bookmark (the fleet stream `readings`) is checked per meter (`muid`
    of the partition context). The small dim_meters answers for almost every stream; fct_readings is only
    read for the others. -#}
-- depends_on: {{ ref('dim_meters') }}, {{ ref('fct_readings') }}

{%- if execute %}
    {%- set state_table = adapter.get_relation(
        database=target.database, schema=var('meltano_schema', 'meltano'), identifier='state') %}
    {%- if state_table is not none %}
        {%- set bookmarks -%}
            with documents as (
                select state_id, document::jsonb -> 'singer_state' -> 'bookmarks' as bookmarks
                from {{ state_table }}
                cross join lateral (values (completed_state), (partial_state)) as states (document)
                where state_id like {{ sql_literal('%' ~ var('meltano_state_pipeline')  ~ '%') }}
                  and nullif(document, '') is not null
            ),

            streams as (
                select documents.state_id, stream.key as stream_name, stream.value as bookmark
                from documents
                cross join lateral jsonb_each(coalesce(documents.bookmarks, '{}'::jsonb)) as stream
            ),

            bookmarks as (
                select state_id, stream_name, null::text as muid, bookmark ->> 'replication_key_value' as value
                from streams
                union all
                select state_id, stream_name, part -> 'context' ->> 'muid', part ->> 'replication_key_value'
                from streams
                cross join lateral jsonb_array_elements(
                    case when jsonb_typeof(bookmark -> 'partitions') = 'array' then bookmark -> 'partitions'
                    else '[]'::jsonb end
                ) as part
            )

            select distinct state_id, stream_name, muid, value
            from bookmarks
            where value is not null
              -- Two anti-joins, not one with `or`: each can hash (one with `or` compared every bookmark with
              -- every meter: 2.1 s instead of 0.04 s at 10,000 meters).
              and not exists (
                  select 1
                  from {{ ref('dim_meters') }} as meters
                  where meters.muid = bookmarks.muid
                    and meters.last_reading_at >= bookmarks.value::timestamptz
              )
              and not exists (
                  select 1
                  from {{ ref('dim_meters') }} as meters
                  where bookmarks.muid is null
                    and meters.stream_name = bookmarks.stream_name
                    and meters.last_reading_at >= bookmarks.value::timestamptz
              )
            order by 1, 2, 3
        {%- endset %}
        {%- set missing = [] %}
        {%- for row in run_query(bookmarks).rows %}
            {#- The meters of a stream's bookmark: the partition's muid, else those in the stream's raw table (a
                reading keeps the name of the stream that loaded it last, which changes when a project moves
                between streams per meter and the fleet stream). -#}
            {%- set raw_table = adapter.get_relation(
                database=target.database, schema=var('raw_schema', 'raw'), identifier=row['stream_name']) %}
            {%- set loaded = false %}
            {%- if row['muid'] is not none or raw_table is not none %}
                {%- set found -%}
                    select exists (
                        select 1 from {{ ref('fct_readings') }}
                        where reading_at >= {{ sql_literal(row['value']) }}::timestamptz
                        {%- if row['muid'] is not none %}
                          and muid = {{ sql_literal(row['muid']) }}
                        {%- else %}
                          and muid in (select distinct muid::text from {{ raw_table }})
                        {%- endif %}
                    )
                {%- endset %}
                {%- set loaded = run_query(found).columns[0].values()[0] %}
            {%- endif %}
            {%- if not loaded %}
                {%- do missing.append(row) %}
            {%- endif %}
        {%- endfor %}
        {%- if missing %}
            {%- set streams = [] %}
            {%- for row in missing %}
                {%- do streams.append(row['stream_name'] ~ (' (meter ' ~ row['muid'] ~ ')' if row['muid'] else '')
                    ~ ' up to ' ~ row['value']) %}
            {%- endfor %}
            {{ exceptions.raise_compiler_error(
                "Meltano's bookmarks are ahead of the marts: state " ~ missing[0]['state_id'] ~ " says "
                ~ streams | join(', ') ~ " is loaded, but the marts hold no reading of it from then on, so "
                ~ "incremental runs would never load what is missing (was the raw data dropped, or only part of "
                ~ "a backup restored?). Reload from the source: meltano state clear " ~ missing[0]['state_id']
                ~ " --force && meltano run tap-exnaton target-postgres dbt") }}
        {%- endif %}
    {%- endif %}
{%- endif %}

select null::text as stream_name
where false
