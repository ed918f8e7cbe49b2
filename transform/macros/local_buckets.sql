{#- The one definition of a local time bucket and of its expected 15-minute intervals, as SQL functions in
    the marts schema that the models and the API (api/queries.py) both call. Created by the `on-run-start`
    hook of every dbt command (dbt_project.yml): dbt's own function resources are built by `dbt build` only,
    and `dbt run` over a fresh database would then find no function.

    A bucket has a unit (15min, hour, day, week, month) and an IANA zone; it is named by the instant it
    begins. Hours and quarter-hours are fixed lengths (the repeated hour of a fall-back day is two buckets);
    days, weeks (from Monday) and months follow the local calendar (a local day is 23, 24 or 25 hours).

    The bodies are single SQL expressions declared STABLE (time zone rules may change with the server's tz
    data): PostgreSQL inlines them into the calling query, so a call costs what the expression costs. -#}

{% macro bucket_functions_schema() -%}
    {{ adapter.quote(generate_schema_name('marts', none) | trim) }}
{%- endmacro %}

{#- A function of this file, schema-qualified: {{ local_bucket_fn('local_bucket_start') }}(reading_at, 'day', 'UTC'). -#}
{% macro local_bucket_fn(name) -%}
    {{ bucket_functions_schema() }}.{{ name }}
{%- endmacro %}

{% macro create_local_bucket_functions() %}
{%- set s = bucket_functions_schema() -%}
-- Two dbt processes may start at once (the pipeline lock covers writing commands only): one replaces the
-- functions at a time, else PostgreSQL may answer "tuple concurrently updated".
select pg_advisory_xact_lock(hashtext('exnaton.local_bucket_functions'));
create schema if not exists {{ s }};

create or replace function {{ s }}.local_bucket_step(unit text) returns interval
language sql immutable parallel safe as $$
    select case unit
        when '15min' then interval '15 minutes'
        when 'hour' then interval '1 hour'
        when 'day' then interval '1 day'
        when 'week' then interval '1 week'
        when 'month' then interval '1 month'
    end
$$;

create or replace function {{ s }}.local_bucket_start(instant timestamptz, unit text, zone text)
returns timestamptz
language sql stable parallel safe as $$
    -- A local quarter-hour is a quarter of its local hour (the same as UTC's in every zone of today).
    select case unit
        when '15min' then date_bin(interval '15 minutes', instant, date_trunc('hour', instant, zone))
        else date_trunc(unit, instant, zone)
    end
$$;

create or replace function {{ s }}.local_bucket_end(bucket_start timestamptz, unit text, zone text)
returns timestamptz
language sql stable parallel safe as $$
    -- Fixed lengths are added to the instant, calendar steps to the local wall time.
    select case
        when unit in ('15min', 'hour') then bucket_start + {{ s }}.local_bucket_step(unit)
        else ((bucket_start at time zone zone) + {{ s }}.local_bucket_step(unit)) at time zone zone
    end
$$;

-- The denominator of completeness: 15-minute intervals a complete bucket [bucket_start, bucket_end) holds,
-- 96 a day, 92 on a spring-forward day in Europe/Zurich. Takes the bounds (local_bucket_end of the start)
-- rather than a unit and zone, so that a caller with both at hand does not convert them twice.
create or replace function {{ s }}.expected_intervals(bucket_start timestamptz, bucket_end timestamptz)
returns integer
language sql immutable parallel safe as $$
    select round(extract(epoch from bucket_end - bucket_start) / 900)::integer
$$;

create or replace function {{ s }}.local_bucket_starts(
    range_start timestamptz, range_end timestamptz, unit text, zone text
) returns setof timestamptz
language sql stable parallel safe as $$
    -- Every bucket overlapping [range_start, range_end), in order.
    select instant
    from generate_series(
        {{ s }}.local_bucket_start(range_start, unit, zone), range_end, {{ s }}.local_bucket_step(unit)
    ) as instant
    where unit in ('15min', 'hour') and instant < range_end
    union all
    select wall_time at time zone zone
    from generate_series(
        {{ s }}.local_bucket_start(range_start, unit, zone) at time zone zone,
        range_end at time zone zone,
        {{ s }}.local_bucket_step(unit)
    ) as wall_time
    where unit not in ('15min', 'hour') and wall_time at time zone zone < range_end
$$;

create or replace function {{ s }}.marts_timezone() returns text
language sql immutable parallel safe as $$
    -- The zone of the local days in fct_energy_daily and fct_meter_completeness_daily (var `timezone`).
    select {{ local_timezone() }}::text
$$;
{% endmacro %}
