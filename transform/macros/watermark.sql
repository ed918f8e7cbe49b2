{#- The newest `loaded_at` already in an incremental model, as a timestamptz literal ('-infinity' when
    empty). run_query while compiling, on purpose: read before the query is built, the planner sees a
    constant; with a sub-select (an InitPlan parameter) it guesses a third of the table is new and scans it
    all, making a one-day run as slow as a full build. It reads the model's own table, never the raw schema,
    so the compiled SQL of a full build (and the lineage) does not depend on the database. -#}
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
    run_query while compiling for the same reason as above: constant bounds let the planner pick an index
    range scan over the few affected hours or days. -#}
{% macro new_readings_span(relation, watermark, column='reading_at', loaded_at='loaded_at') %}
    {%- if not execute -%}
        {{ return(none) }}
    {%- endif -%}
    {%- set query -%}
        select min({{ column }})::text, max({{ column }})::text from {{ relation }} where {{ loaded_at }} > {{ watermark }}
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
