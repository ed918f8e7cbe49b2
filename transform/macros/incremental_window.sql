{#- The one incremental window of the models that aggregate newer rows into buckets (hours, days):

        {%- set window = incremental_window(ref('fct_readings'), 'reading_at',
                                            bucket_start=utc_hour_start, bucket_end=utc_hour_end) %}
        select ... from {{ ref('fct_readings') }}
        where {{ window.where }}
        group by ...
        having {{ window.having }}

    watermark  the newest `loaded_at` already in this model (a timestamptz literal, '-infinity' when empty;
               none on a full build)
    span       first and last `column` among the rows of `relation` loaded after the watermark
               ({'first': literal, 'last': literal}), none when nothing is new or on a full build
    where      a predicate on `column`: the rows of every bucket holding a new row ('true' on a full build,
               'false' when nothing is new). `bucket_start(instant)` / `bucket_end(instant)` are macros giving
               the start of the bucket holding an instant and the end of it (the start of the next one); left
               out, the window is the span itself. macros/local_time.sql has the pairs the marts pass:
               utc_hour_start / utc_hour_end, local_day_start_of / local_day_end_of.
    having     `max(loaded_at) > watermark`: of those buckets, the ones that received a row since the last run
               ('true' on a full build)

    Both bounds are constants read before the query is built (macros/watermark.sql says why they cannot be
    sub-selects). -#}
{% macro incremental_window(relation, column='reading_at', bucket_start=none, bucket_end=none,
                            loaded_at='loaded_at') %}
    {%- if not is_incremental() -%}
        {{ return({'watermark': none, 'span': none, 'where': 'true', 'having': 'true'}) }}
    {%- endif -%}
    {%- set watermark = loaded_watermark(this, loaded_at) -%}
    {%- set span = new_readings_span(relation, watermark, column, loaded_at) -%}
    {%- if span is none -%}
        {%- set where = 'false' -%}
    {%- else -%}
        {%- set first = bucket_start(span.first) if bucket_start is not none else span.first -%}
        {%- if bucket_end is not none -%}
            {%- set where = column ~ ' >= ' ~ first ~ ' and ' ~ column ~ ' < ' ~ bucket_end(span.last) -%}
        {%- else -%}
            {%- set where = column ~ ' >= ' ~ first ~ ' and ' ~ column ~ ' <= ' ~ span.last -%}
        {%- endif -%}
    {%- endif -%}
    {{ return({
        'watermark': watermark,
        'span': span,
        'where': where,
        'having': 'max(' ~ loaded_at ~ ') > ' ~ watermark,
    }) }}
{% endmacro %}
