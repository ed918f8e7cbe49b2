{#- Local calendar arithmetic in the IANA zone of var `timezone`, through the bucket functions of
    local_buckets.sql (the same SQL the API calls). PostgreSQL's zone rules make DST days come out right: a
    spring-forward day is 23 hours long, a fall-back day 25. -#}

{% macro local_timezone() -%}
    {{ sql_literal(var('timezone', 'Europe/Zurich')) }}
{%- endmacro %}

{#- The local calendar day of an instant (timestamptz). -#}
{% macro local_day(instant) -%}
    ({{ local_bucket_fn('local_bucket_start') }}({{ instant }}, 'day', {{ local_timezone() }}) at time zone {{ local_timezone() }})::date
{%- endmacro %}

{#- The instant (timestamptz) at which a local calendar day begins. -#}
{% macro local_day_start(day) -%}
    (({{ day }})::timestamp at time zone {{ local_timezone() }})
{%- endmacro %}

{#- The UTC-aligned hour of an instant: the key of fct_energy_hourly. It is the local hour in every zone whose
    offset is whole hours (Europe/Zurich in winter and summer), so such a zone's days, weeks and months are
    sums of these rows; the repeated hour of a fall-back day stays two hours. -#}
{% macro utc_hour_start(instant) -%}
    {{ local_bucket_fn('local_bucket_start') }}({{ instant }}, 'hour', 'UTC')
{%- endmacro %}

{#- The end of the UTC-aligned hour holding an instant (the start of the next one): with utc_hour_start, the
    bucket bounds fct_energy_hourly gives incremental_window. -#}
{% macro utc_hour_end(instant) -%}
    {{ utc_hour_start(instant) }} + interval '1 hour'
{%- endmacro %}

{#- The instants at which the local day holding an instant begins and ends (the next day begins): the bucket
    bounds the daily marts give incremental_window. -#}
{% macro local_day_start_of(instant) -%}
    {{ local_day_start(local_day(instant)) }}
{%- endmacro %}

{% macro local_day_end_of(instant) -%}
    {{ local_day_start(local_day(instant) ~ ' + 1') }}
{%- endmacro %}

{#- The number of 15-minute intervals in a local day: 96, or 92/100 on DST days. -#}
{% macro expected_intervals(day) -%}
    {{ local_bucket_fn('expected_intervals') }}({{ local_day_start(day) }}, {{ local_day_start('(' ~ day ~ ') + 1') }})
{%- endmacro %}
