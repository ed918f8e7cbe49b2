{#- Meltano's bookmarks never run ahead of the marts. The tap extracts only what is newer than a stream's
    bookmark, so a bookmark whose readings are not in the marts (raw tables dropped or emptied, only part of a
    backup restored, the state copied from elsewhere) would make every later run end in success with those
    readings missing for good. This fails the run instead; its failing rows (stored: dbt prints the query
    that shows them) name the state, the stream, the meter, the bookmark and the command that reloads it.

    One set-based query over Meltano's state table in this database (source `meltano.state`, see
    `database_uri` in meltano.yml; var `check_bookmarks: false` turns the test off when the state is kept
    elsewhere). Both shapes of a stream's state are read: a stream-level bookmark
    (`bookmarks.<stream>.replication_key_value`) and one per partition (`partitions[].replication_key_value`
    with `context.muid`, the fleet stream). A bookmark is the newest reading loaded, so dim_meters must hold a
    meter of it whose last reading is at or after it: the partition's meter; for a stream-level bookmark a
    meter whose latest reading came through that stream, or one in the stream's raw table (a reading keeps
    the stream that loaded it last, which changes when a project moves between streams per meter and the
    fleet stream). -#}
{{ config(enabled=var('check_bookmarks', true), store_failures=true, schema='dbt_test__audit') }}

with

documents as (
    select state_id, document::jsonb -> 'singer_state' -> 'bookmarks' as bookmarks
    from {{ source('meltano', 'state') }}
    cross join lateral (values (completed_state), (partial_state)) as states (document)
    where state_id like {{ sql_literal('%' ~ var('meltano_state_pipeline') ~ '%') }}
      and nullif(document, '') is not null
),

streams as (
    select documents.state_id, stream.key as stream_name, stream.value as bookmark
    from documents
    cross join lateral jsonb_each(coalesce(documents.bookmarks, '{}'::jsonb)) as stream
),

bookmarks as (
    select distinct state_id, stream_name, muid, value::timestamptz as bookmark_at, value
    from (
        select state_id, stream_name, null::text as muid, bookmark ->> 'replication_key_value' as value
        from streams
        union all
        select state_id, stream_name, part -> 'context' ->> 'muid', part ->> 'replication_key_value'
        from streams
        cross join lateral jsonb_array_elements(
            case when jsonb_typeof(bookmark -> 'partitions') = 'array' then bookmark -> 'partitions'
            else '[]'::jsonb end
        ) as part
    ) as all_bookmarks
    where value is not null
),

{#- The meters in each raw stream table, read only while some stream-level bookmark names that stream (the
    uncorrelated condition is evaluated once, before the table is scanned). -#}
stream_meters as (
    {%- for relation in raw_stream_tables('meter_day') + raw_stream_tables('reading') %}
    select distinct muid::text as muid, {{ sql_literal(relation.identifier) }} as stream_name
    from {{ relation }}
    where exists (
        select 1 from bookmarks
        where bookmarks.muid is null and bookmarks.stream_name = {{ sql_literal(relation.identifier) }}
    )
    union all
    {%- endfor %}
    select null::text, null::text where false
)

select
    state_id,
    stream_name,
    muid,
    value as bookmark,
    'meltano state clear ' || state_id || ' --force && meltano run tap-exnaton target-postgres dbt' as way_out
from bookmarks
-- Three anti-joins, not one with `or`: each can hash (one with `or` compared every bookmark with every
-- meter: 2.1 s instead of 0.04 s at 10,000 meters).
where not exists (
        select 1
        from {{ ref('dim_meters') }} as meters
        where meters.muid = bookmarks.muid
          and meters.last_reading_at >= bookmarks.bookmark_at
    )
    and not exists (
        select 1
        from {{ ref('dim_meters') }} as meters
        where bookmarks.muid is null
          and meters.stream_name = bookmarks.stream_name
          and meters.last_reading_at >= bookmarks.bookmark_at
    )
    and not exists (
        select 1
        from stream_meters
        join {{ ref('dim_meters') }} as meters on meters.muid = stream_meters.muid
        where bookmarks.muid is null
          and stream_meters.stream_name = bookmarks.stream_name
          and meters.last_reading_at >= bookmarks.bookmark_at
    )
