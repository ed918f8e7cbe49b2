{#- on-run-end: when assert_bookmarks_have_their_readings failed, say what it means and the way out, with
    its failing rows (stored by the test). Only then is a query run: a run whose bookmarks are fine reads
    nothing more and executes no SQL here. -#}
{% macro explain_bookmark_failures(results) %}
    {%- if not execute -%}
        {{ return('') }}
    {%- endif -%}
    {%- for result in results
        if result.node.name == 'assert_bookmarks_have_their_readings' and result.status == 'fail'
        and result.node.relation_name -%}
        {%- set rows = run_query(
            'select state_id, stream_name, muid, bookmark, way_out from ' ~ result.node.relation_name
            ~ ' order by 1, 2, 3').rows -%}
        {%- set streams = [] -%}
        {%- for row in rows -%}
            {%- do streams.append(row['stream_name'] ~ (' (meter ' ~ row['muid'] ~ ')' if row['muid'] else '')
                ~ ' up to ' ~ row['bookmark']) -%}
        {%- endfor -%}
        {%- if rows -%}
            {{ log("Meltano's bookmarks are ahead of the marts: state " ~ rows[0]['state_id'] ~ " says "
                ~ streams | join(', ') ~ " is loaded, but the marts hold no reading of it from then on, so "
                ~ "incremental runs would never load what is missing (was the raw data dropped, or only part "
                ~ "of a backup restored?). Reload from the source: " ~ rows[0]['way_out'], info=true) }}
        {%- endif -%}
    {%- endfor -%}
    {{ return('') }}
{% endmacro %}
