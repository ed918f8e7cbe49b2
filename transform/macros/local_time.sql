{#- Local calendar arithmetic in the IANA zone of var `timezone`. PostgreSQL's zone rules make DST days
    come out right: a spring-forward day is 23 hours long, a fall-back day 25. -#}

{% macro local_timezone() -%}
    {{ sql_literal(var('timezone', 'Europe/Zurich')) }}
{%- endmacro %}

{#- The local calendar day of an instant (timestamptz). -#}
{% macro local_day(instant) -%}
    (({{ instant }}) at time zone {{ local_timezone() }})::date
{%- endmacro %}

{#- The instant (timestamptz) at which a local calendar day begins. -#}
{% macro local_day_start(day) -%}
    (({{ day }})::timestamp at time zone {{ local_timezone() }})
{%- endmacro %}

{#- The instant at which the local hour of an instant begins; the repeated hour of a fall-back day stays
    two distinct hours because the truncation keeps the instant's own UTC offset. -#}
{% macro local_hour_start(instant) -%}
    date_trunc('hour', {{ instant }}, {{ local_timezone() }})
{%- endmacro %}

{#- The number of 15-minute intervals in a local day: 96, or 92/100 on DST days. -#}
{% macro expected_intervals(day) -%}
    (extract(epoch from {{ local_day_start('(' ~ day ~ ') + 1') }} - {{ local_day_start(day) }}) / 900)::integer
{%- endmacro %}
