"""All SQL of the API: read-only queries over the dbt marts, composed with `psycopg.sql` (the marts schema
as an Identifier, every value a parameter).

Local time buckets are never computed here: the SQL functions dbt creates in the marts schema
(transform/macros/local_buckets.sql: `local_bucket_starts`, `local_bucket_start`, `local_bucket_end`,
`expected_intervals`, `marts_timezone`) are the one definition the marts are built with too.
"""

from __future__ import annotations

import re
import typing as t

import psycopg
from psycopg import sql

from api.db import DatabaseUnavailable

if t.TYPE_CHECKING:
    from datetime import datetime

    from api.db import Database

INTERVALS = ("15min", "hour", "day", "week", "month")
SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]*$")
# OFFSET is a bigint: a page number past any table asks for the empty page at the end (then a 404).
MAX_OFFSET = 2**63 - 1


def _muid_match(muid: str | None = None, muid_prefix: str = "") -> sql.SQL:
    """The muid test: one meter (an index look-up), a prefix search, or none. Written out per case, not as
    `(%(x)s is null or ...)`: a prepared statement's generic plan would keep every branch, and scan the fleet
    (a lower() per meter) where one index probe does. The prefix is lowered once, in a sub-select: a generic
    plan would otherwise lower the parameter again for every meter it tests (+30% on 10,000 meters)."""
    if muid is not None:
        return sql.SQL("muid = %(muid)s")
    return sql.SQL("starts_with(lower(muid), (select lower(%(prefix)s)))" if muid_prefix else "true")


# Where the buckets come from, the first that can answer (`source` below):
# - fct_energy_daily, framed by dim_local_days (`calendar` below): days, weeks and months in the zone the marts
#   were built for, every bound and interval count read from the calendar's rows;
# - fct_energy_hourly (UTC-aligned hours): any bucket whose bounds all fall on whole UTC hours, i.e. every
#   zone whose offsets in the range are whole hours (a DST zone included);
# - fct_readings: 15-minute buckets, and zones like Asia/Kathmandu (+05:45) or Asia/Kolkata (+05:30).
# The last two are framed and grouped by the bucket functions the calendar is built with, so all three agree
# wherever more than one could answer.
BUCKET_SUMS = {
    "fct_energy_hourly": """
        select hourly.obis_code, {marts}.local_bucket_start(hourly.hour_start, %(unit)s, %(tz)s),
               sum(hourly.energy_kwh), sum(hourly.reading_count)
        from source join {marts}.fct_energy_hourly as hourly
          on hourly.muid = %(muid)s and hourly.obis_code in (select obis_code from codes)
         and hourly.hour_start >= source.first_start and hourly.hour_start < source.last_end
        where source.name = 'fct_energy_hourly'
        group by 1, 2""",
    "fct_readings": """
        select readings.obis_code, {marts}.local_bucket_start(readings.reading_at, %(unit)s, %(tz)s),
               sum(readings.energy_kwh), count(*)
        from source join {marts}.fct_readings as readings
          on readings.muid = %(muid)s and readings.obis_code in (select obis_code from codes)
         and readings.reading_at >= source.first_start and readings.reading_at < source.last_end
        where source.name = 'fct_readings'
        group by 1, 2""",
}


def _compact(template: str) -> str:
    """The SQL without its indentation and comment lines: what psycopg sends and parses per call (it caches
    the parse of statements up to 4 KiB only; the energy query is 4.5 KiB as written, 2.9 KiB compact)."""
    lines = (line.strip() for line in template.splitlines())
    return "\n".join(line for line in lines if line and not line.startswith("--"))


class Queries:
    def __init__(self, db: Database, marts_schema: str) -> None:
        if not SCHEMA_NAME.match(marts_schema):
            msg = f"API_MARTS_SCHEMA {marts_schema!r} is not a plain schema name"
            raise ValueError(msg)
        self.db = db
        self.marts = sql.Identifier(marts_schema)

    def _sql(self, template: str, **parts: sql.Composable) -> sql.Composed:
        """`template` with {marts} (and any other `parts`) filled in; %(name)s stay parameters."""
        return sql.SQL(_compact(template)).format(marts=self.marts, **parts)

    def _in_marts_zone(self) -> sql.Composed:
        """Whether the request's zone is the one the marts (dim_local_days, the daily marts) were built for:
        the one test that picks the marts' days over the functions', a constant of the statement."""
        return sql.SQL("%(tz)s = {marts}.marts_timezone()").format(marts=self.marts)

    def _calendar_range(self, unit: sql.Composable) -> sql.Composed:
        """The days of dim_local_days (alias `days`) in every `unit` bucket overlapping [start, end): from the
        first bucket's first day to the last bucket's end, as bounds of its primary key."""
        return sql.SQL(
            _compact(
                """
                days.day >= ({marts}.local_bucket_start(%(start)s, {unit}, %(tz)s) at time zone %(tz)s)::date
                and days.day < ({marts}.local_bucket_end(
                    {marts}.local_bucket_start(%(end)s - interval '1 microsecond', {unit}, %(tz)s), {unit}, %(tz)s
                ) at time zone %(tz)s)::date
                """
            )
        ).format(marts=self.marts, unit=unit)

    def last_loaded_at(self) -> datetime | None:
        row = self.db.fetch_one(self._sql("select max(last_loaded_at) as loaded_at from {marts}.dim_meters"))
        return row["loaded_at"] if row else None

    def meter_channels(
        self, muid: str | None = None, muid_prefix: str = "", offset: int = 0, limit: int | None = None
    ) -> list[dict]:
        """dim_meters rows (one per meter and OBIS code) in muid order: of one meter, or of ``limit`` meters
        from ``offset`` among those whose muid starts with ``muid_prefix`` (any case).

        The page of muids walks the unique index (muid, obis_code) instead of sorting every meter.
        """
        return self.db.fetch_all(
            self._sql(
                """
                select muid, stream_name, obis_code, direction, first_reading_at, last_reading_at,
                       reading_count, last_loaded_at
                from {marts}.dim_meters
                join (
                    select distinct muid from {marts}.dim_meters
                    where {match}
                    order by muid
                    offset %(offset)s limit %(limit)s
                ) as page using (muid)
                order by muid, obis_code
                """,
                match=_muid_match(muid, muid_prefix),
            ),
            {"muid": muid, "prefix": muid_prefix, "offset": min(offset, MAX_OFFSET), "limit": limit},
        )

    def meter_count(self, muid_prefix: str = "") -> int:
        row = self.db.fetch_one(
            self._sql(
                "select count(*) as n from (select distinct muid from {marts}.dim_meters where {match}) as meters",
                match=_muid_match(muid_prefix=muid_prefix),
            ),
            {"prefix": muid_prefix},
        )
        return int(row["n"]) if row else 0

    def readings_page_json(
        self, muid: str, start: datetime, end: datetime, obis: str | None, offset: int, limit: int
    ) -> tuple[str, int]:
        """One page as a JSON array rendered by PostgreSQL, and the count of the whole range (also when the
        page lies beyond it).

        PostgreSQL writes the JSON (exact numerics, ISO timestamps): no per-row Python work, which is what
        keeps a month of readings close to the bare query's time.
        """
        row = self.db.fetch_one(
            self._sql(
                """
                with page as (
                    select obis_code, reading_at, energy_kwh, quality
                    from {marts}.fct_readings
                    where muid = %(muid)s and reading_at >= %(start)s and reading_at < %(end)s
                      and (%(obis)s::text is null or obis_code = %(obis)s)
                    order by reading_at, obis_code
                    offset %(offset)s limit %(limit)s
                )
                select (
                           select coalesce(json_agg(json_build_object(
                                      'obis_code', obis_code, 'reading_at', reading_at,
                                      'energy_kwh', energy_kwh, 'quality', quality
                                  ) order by reading_at, obis_code), '[]')::text
                           from page
                       ) as body,
                       (
                           select count(*) from {marts}.fct_readings
                           where muid = %(muid)s and reading_at >= %(start)s and reading_at < %(end)s
                             and (%(obis)s::text is null or obis_code = %(obis)s)
                       ) as total
                """
            ),
            {
                "muid": muid,
                "start": start,
                "end": end,
                "obis": obis,
                "offset": min(offset, MAX_OFFSET),
                "limit": limit,
            },
        )
        return row["body"], int(row["total"])

    def energy_buckets_json(
        self, muid: str, interval: str, start: datetime, end: datetime, tz: str, obis: str | None = None
    ) -> tuple[str, str]:
        """Every bucket overlapping [start, end) per OBIS code of the meter (or only ``obis``), empty ones
        included, each whole (its sums cover the whole bucket), as a JSON array rendered by PostgreSQL
        (``[]`` for a meter without such a channel); and the table that answered (fct_energy_daily,
        fct_energy_hourly or fct_readings)."""
        sums = sql.SQL("\nunion all\n").join(
            sql.SQL(_compact(branch)).format(marts=self.marts) for branch in BUCKET_SUMS.values()
        )
        row = self.db.fetch_one(
            self._sql(
                """
                with codes as (
                    -- The meter's channels (one when asked): none for an unknown meter.
                    select obis_code from {marts}.dim_meters
                    where muid = %(muid)s and (%(obis)s::text is null or obis_code = %(obis)s)
                ),
                -- The JSON below shows instants in the session's zone: the request's, for this statement
                -- only (its transaction). Every output row is joined to this one row, so the zone is set
                -- once, before the first instant is written; the bucket SQL names its zones explicitly.
                session_zone as materialized (
                    select set_config('TimeZone', %(tz)s, true) as zone
                ),
                -- Days, weeks and months in the marts' zone: the calendar's days of every bucket overlapping
                -- the range (the first bucket's first day up to the last bucket's end), each with its row of
                -- fct_energy_daily, summed per bucket. The day bounds are index bounds of dim_local_days.
                calendar as (
                    select codes.obis_code, min(days.day_start) as start, max(days.day_end) as "end",
                           coalesce(sum(daily.energy_kwh), 0) as energy_kwh,
                           coalesce(sum(daily.reading_count), 0) as reading_count,
                           sum(days.expected_intervals)::integer as expected_intervals
                    from session_zone, {marts}.dim_local_days as days
                    cross join codes
                    left join {marts}.fct_energy_daily as daily
                      on daily.muid = %(muid)s and daily.obis_code = codes.obis_code and daily.day = days.day
                    where {by_calendar}
                      and {calendar_range}
                    group by codes.obis_code,
                             case %(unit)s when 'week' then days.week_start when 'month' then days.month_start
                                           else days.day end
                ),
                -- Any other unit or zone: the buckets from the functions, summed from hours or readings.
                buckets as materialized (
                    select bucket_start as start,
                           {marts}.local_bucket_end(bucket_start, %(unit)s, %(tz)s) as "end"
                    from session_zone,
                         {marts}.local_bucket_starts(%(start)s, %(end)s, %(unit)s, %(tz)s) as bucket_start
                    where not {by_calendar}
                ),
                source as (
                    select case
                               when {by_calendar} then 'fct_energy_daily'
                               when %(unit)s <> '15min'
                                    and bool_and(date_trunc('hour', buckets.start, 'UTC') = buckets.start
                                                 and date_trunc('hour', buckets."end", 'UTC') = buckets."end")
                                   then 'fct_energy_hourly'
                               else 'fct_readings'
                           end as name,
                           min(buckets.start) as first_start,
                           max(buckets."end") as last_end
                    from buckets
                ),
                sums (obis_code, bucket_start, energy_kwh, reading_count) as ({sums}
                )
                select (select name from source) as source,
                       coalesce(json_agg(bucket order by bucket.start, bucket.obis_code), '[]')::text as body
                from (
                    select obis_code, start, "end", energy_kwh, reading_count, expected_intervals,
                           round(100.0 * reading_count / nullif(expected_intervals, 0), 2) as completeness_pct
                    from calendar
                    union all
                    select codes.obis_code, buckets.start, buckets."end",
                           coalesce(sums.energy_kwh, 0) as energy_kwh,
                           coalesce(sums.reading_count, 0) as reading_count,
                           expected.intervals as expected_intervals,
                           round(100.0 * coalesce(sums.reading_count, 0) / nullif(expected.intervals, 0), 2)
                               as completeness_pct
                    from buckets
                    cross join lateral (
                        select {marts}.expected_intervals(buckets.start, buckets."end") as intervals
                    ) as expected
                    cross join codes
                    left join sums on sums.obis_code = codes.obis_code and sums.bucket_start = buckets.start
                ) as bucket
                """,
                sums=sums,
                calendar_range=self._calendar_range(sql.SQL("%(unit)s")),
                by_calendar=sql.SQL("(%(unit)s in ('day', 'week', 'month') and {})").format(
                    self._in_marts_zone()
                ),
            ),
            {"muid": muid, "unit": interval, "start": start, "end": end, "tz": tz, "obis": obis},
        )
        return row["body"], row["source"]

    def daily_completeness(self, muid: str, start: datetime, end: datetime, tz: str) -> list[dict]:
        """Per local day overlapping [start, end) and OBIS code of the meter: expected, received and missing
        15-minute intervals. From fct_meter_completeness_daily over the days of dim_local_days in the zone
        they were built for; in any other zone counted from fct_readings by the same functions
        (local_bucket_starts, expected_intervals, local_bucket_start)."""
        return self.db.fetch_all(
            self._sql(
                """
                with days as materialized (
                    -- The local days overlapping the range: the calendar's in the marts' zone, else the
                    -- functions'.
                    select days.day_start, days.day_end, days.day, days.expected_intervals
                    from {marts}.dim_local_days as days
                    where {in_marts_zone} and {calendar_range}
                    union all
                    select day_start, day_end, (day_start at time zone %(tz)s)::date,
                           {marts}.expected_intervals(day_start, day_end)
                    from (
                        select day_start, {marts}.local_bucket_end(day_start, 'day', %(tz)s) as day_end
                        from {marts}.local_bucket_starts(%(start)s, %(end)s, 'day', %(tz)s) as day_start
                    ) as other_zone
                    where not {in_marts_zone}
                ),
                span as (
                    select min(day) as first_day, max(day) as last_day,
                           min(day_start) as first_start, max(day_end) as last_end
                    from days
                ),
                codes as (
                    select obis_code from {marts}.dim_meters where muid = %(muid)s
                ),
                received as (
                    select mart.obis_code, mart.day, mart.received_intervals, mart.missing_intervals,
                           mart.completeness_pct
                    from span join {marts}.fct_meter_completeness_daily as mart
                      on mart.muid = %(muid)s and mart.day between span.first_day and span.last_day
                    where {in_marts_zone}
                    union all
                    select counted.obis_code, counted.day, counted.received_intervals,
                           days.expected_intervals - counted.received_intervals,
                           round(100.0 * counted.received_intervals / days.expected_intervals, 2)
                    from (
                        select readings.obis_code,
                               ({marts}.local_bucket_start(readings.reading_at, 'day', %(tz)s)
                                   at time zone %(tz)s)::date as day,
                               count(*)::integer as received_intervals
                        from span join {marts}.fct_readings as readings
                          on readings.muid = %(muid)s
                         and readings.reading_at >= span.first_start and readings.reading_at < span.last_end
                        where not {in_marts_zone}
                        group by 1, 2
                    ) as counted
                    join days using (day)
                )
                select codes.obis_code, days.day, days.expected_intervals,
                       coalesce(received.received_intervals, 0) as received_intervals,
                       coalesce(received.missing_intervals, days.expected_intervals) as missing_intervals,
                       coalesce(received.completeness_pct, 0) as completeness_pct
                from days
                cross join codes
                left join received on received.obis_code = codes.obis_code and received.day = days.day
                order by days.day, codes.obis_code
                """,
                calendar_range=self._calendar_range(sql.Literal("day")),
                in_marts_zone=self._in_marts_zone(),
            ),
            {"muid": muid, "start": start, "end": end, "tz": tz},
        )

    def measurement_readings(
        self, muid: str, measurement: str, start: datetime, stop: datetime, limit: int
    ) -> list[dict]:
        """Readings of the newest ``limit`` timestamps in [start, stop), newest first (the upstream's order)."""
        return self.db.fetch_all(
            self._sql(
                """
                with stamps as (
                    select distinct reading_at from {marts}.fct_readings
                    where muid = %(muid)s and measurement = %(measurement)s
                      and reading_at >= %(start)s and reading_at < %(stop)s
                    order by reading_at desc
                    limit %(limit)s
                )
                select r.reading_at, r.obis_code, r.energy_kwh, r.quality, r.measurement
                from {marts}.fct_readings r
                join stamps using (reading_at)
                where r.muid = %(muid)s and r.measurement = %(measurement)s
                order by r.reading_at desc, r.obis_code
                """
            ),
            {"muid": muid, "measurement": measurement, "start": start, "stop": stop, "limit": limit},
        )

    def timezone_exists(self, tz: str) -> bool:
        row = self.db.fetch_one(
            sql.SQL("select exists(select 1 from pg_timezone_names where name = %(tz)s) as ok"), {"tz": tz}
        )
        return bool(row and row["ok"])

    # --- Pipeline runs: Meltano's run history (schema meltano, table runs) --------------------------------

    # meltano.yml's database_uri keeps Meltano's system tables in this schema of the project's database.
    meltano_schema = "meltano"

    def pipeline_runs(self, filters: dict, offset: int, limit: int) -> list[dict]:
        """A page of runs, newest first, each with the readings it loaded and the meters that failed in it."""
        params = {**filters, "offset": min(offset, MAX_OFFSET), "limit": limit}
        try:
            return self._from_run_history(
                self._runs_page(filters, marts_built=True), params, missing_ok=False
            )
        except psycopg.errors.UndefinedTable:
            # No marts before the first dbt build (a first run that failed, `make el` only): nothing loaded yet.
            return self._from_run_history(self._runs_page(filters, marts_built=False), params)

    def _runs_page(self, filters: dict, *, marts_built: bool) -> sql.Composed:
        marts = self.marts
        # Readings of the run's meters whose kept copy in the marts was loaded while the run ran.
        readings = sql.SQL(
            """(select count(*) from {marts}.fct_readings as f
                where f.loaded_at >= page.started_at and f.loaded_at <= coalesce(page.ended_at, now())
                  and (f.muid = any(meters.muids) or f.stream_name = any(meters.streams)))"""
        ).format(marts=marts)
        stream_muid = sql.SQL(
            "(select d.muid from {marts}.dim_meters as d where d.stream_name = b.stream limit 1)"
        ).format(marts=marts)
        return sql.SQL(
            """
            with page as (
                select * from ({runs}) as runs
                where {where}
                order by started_at desc, id desc
                offset %(offset)s limit %(limit)s
            )
            select page.id, page.run_id::text as run_id, page.state_id, page.state, page.trigger,
                   page.started_at, page.ended_at,
                   extract(epoch from coalesce(page.ended_at, now()) - page.started_at)::float8
                       as duration_seconds,
                   page.payload ->> 'error' as error,
                   loaded.readings_loaded,
                   failed.failed_meters
            from page
            cross join lateral (
                -- The meters of the run: the partitions of a fleet stream, or the streams of one meter each.
                select array(select p -> 'context' ->> 'muid' from jsonb_each(page.payload -> 'singer_state'
                                 -> 'bookmarks') as b(stream, s), jsonb_array_elements(s -> 'partitions') as p)
                           as muids,
                       array(select stream from jsonb_each(page.payload -> 'singer_state' -> 'bookmarks')
                                 as b(stream, s) where not s ? 'partitions') as streams
            ) as meters
            cross join lateral (select {readings} as readings_loaded) as loaded
            cross join lateral (
                select coalesce(json_agg(json_build_object(
                           'muid', coalesce(p -> 'context' ->> 'muid', {stream_muid}),
                           'stream_name', b.stream,
                           'error', meter.state ->> 'error'
                       ) order by b.stream, p -> 'context' ->> 'muid'), '[]') as failed_meters
                from jsonb_each(page.payload -> 'singer_state' -> 'bookmarks') as b(stream, s)
                left join lateral jsonb_array_elements(s -> 'partitions') as p on true
                cross join lateral (select coalesce(p, s) as state) as meter
                where meter.state ->> 'error' is not null
                  -- A meter's error stays in the state until it next succeeds: it is this run's failure only
                  -- when the tap recorded it during this run (states of a tap before error_at: every run).
                  and coalesce((meter.state ->> 'error_at')::timestamptz >= page.started_at, true)
            ) as failed
            order by page.started_at desc, page.id desc
            """
        ).format(
            runs=self._runs(),
            where=self._run_filters(filters),
            readings=readings if marts_built else sql.SQL("0::bigint"),
            stream_muid=stream_muid if marts_built else sql.SQL("null::text"),
        )

    def pipeline_run_count(self, filters: dict) -> int:
        query = sql.SQL("select count(*) as n from ({runs}) as runs where {where}").format(
            runs=self._runs(), where=self._run_filters(filters)
        )
        rows = self._from_run_history(query, filters)
        return int(rows[0]["n"]) if rows else 0

    def pipeline_last_success_at(self) -> datetime | None:
        """When the newest successful run ended (any state id)."""
        query = sql.SQL(
            "select max(ended_at) as ended_at from ({runs}) as runs where state = 'success'"
        ).format(runs=self._runs())
        rows = self._from_run_history(query, {})
        return rows[0]["ended_at"] if rows else None

    def _runs(self) -> sql.Composed:
        """Meltano's runs as the API names them: UTC instants, the state as success/failed/running.

        A run still marked running whose heartbeat stopped is failed: Meltano itself fails it as stale at the
        pipeline's next start (heartbeat older than 5 minutes, or 24 hours after a start without heartbeat).
        """
        return sql.SQL(
            """
            select id, run_id, job_name as state_id, trigger, payload::jsonb as payload,
                   started_at at time zone 'UTC' as started_at,
                   ended_at at time zone 'UTC' as ended_at,
                   case
                       when state = 'SUCCESS' then 'success'
                       when state in ('RUNNING', 'IDLE') and now() at time zone 'UTC' < coalesce(
                           last_heartbeat_at + interval '5 minutes', started_at + interval '24 hours')
                           then 'running'
                       else 'failed'
                   end as state
            from {meltano}.runs
            where state <> 'STATE_EDIT'
            """
        ).format(meltano=sql.Identifier(self.meltano_schema))

    @staticmethod
    def _run_filters(filters: dict) -> sql.Composable:
        """Only the filters given, each written out (a prepared statement's generic plan keeps no dead branch)."""
        conditions = [
            sql.SQL(condition)
            for key, condition in (
                ("state", "state = %(state)s"),
                ("since", "started_at >= %(since)s"),
                ("state_id", "state_id = %(state_id)s"),
            )
            if filters.get(key) is not None
        ]
        return sql.SQL(" and ").join(conditions) if conditions else sql.SQL("true")

    def _from_run_history(
        self, query: sql.Composable, params: dict, *, missing_ok: bool = True
    ) -> list[dict]:
        """Rows of a run-history query; none when Meltano never ran on this database (no runs table yet)."""
        try:
            return self.db.fetch_all(query, params)
        except psycopg.errors.UndefinedTable:
            if missing_ok:
                return []
            raise
        except psycopg.errors.InsufficientPrivilege as exc:
            msg = f"the API's role may not read {self.meltano_schema}.runs: run `make roles` (tools.roles)"
            raise DatabaseUnavailable(msg) from exc
