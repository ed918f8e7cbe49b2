{#- The newest `loaded_at` already in an incremental model, as a timestamptz literal ('-infinity' when
    empty). Read before the query is built, so the planner sees a constant: with a sub-select instead it
    guesses a third of the table is new and scans it all, making a one-day run as slow as a full build. -#}
{% macro loaded_watermark(relation=this, column='loaded_at') %}
    {%- if not execute -%}
        {{ return("'-infinity'::timestamptz") }}
    {%- endif -%}
    {%- set query -%}
        select coalesce(max({{ column }}), '-infinity'::timestamptz)::text from {{ relation }}
    {%- endset -%}
    {%- set newest = run_query(query).columns[0].values()[0] -%}
    {{ return(sql_literal(newest) ~ "::timestamptz") }}
{% endmacro %}


{#- First and last `reading_at` (or another instant `column`) among the rows of `relation` loaded after
    `watermark`, as timestamptz literals ({'first': ..., 'last': ...}), or none when nothing is new.
    Constant bounds let the planner pick an index range scan over the few affected hours or days. -#}
{% macro new_readings_span(relation, watermark, column='reading_at') %}
    {%- if not execute -%}
        {{ return(none) }}
    {%- endif -%}
    {%- set query -%}
        select min({{ column }})::text, max({{ column }})::text from {{ relation }} where loaded_at > {{ watermark }}
    {%- endset -%}
    {%- set row = run_query(query).rows[0] -%}
    {%- if row[0] is none -%}
        {{ return(none) }}
    {%- endif -%}
    {{ return({
        'first': sql_literal(row[0]) ~ '::timestamptz',
        'last': sql_literal(row[1]) ~ '::timestamptz',
    }) }}
{% endmacro %}
