"""All SQL of the API: read-only queries over the dbt marts, parameters only."""

from __future__ import annotations

import re
import typing as t

import psycopg
from psycopg import sql

from api.db import DatabaseUnavailable

if t.TYPE_CHECKING:
    from datetime import datetime

    from api.db import Database

# date_trunc units of the energy intervals; 15min keeps each reading as its own bucket.
INTERVAL_UNITS = {"15min": None, "hour": "hour", "day": "day", "week": "week", "month": "month"}
# Calendar intervals are added in local time (a local day can be 23 or 25 hours long); the others are
# fixed lengths.
CALENDAR_INTERVALS = {"day", "week", "month"}
SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]*$")
# OFFSET is a bigint: a page number past any table asks for the empty page at the end (then a 404).
MAX_OFFSET = 2**63 - 1


def _muid_match(muid: str | None = None, muid_prefix: str = "") -> str:
    """The muid test: one meter (an index look-up), a prefix search, or none. Written out per case, not as
    `(%(x)s is null or ...)`: a prepared statement's generic plan would keep every branch, and scan the fleet
    (a lower() per meter) where one index probe does."""
    if muid is not None:
        return "muid = %(muid)s"
    return "starts_with(lower(muid), lower(%(prefix)s))" if muid_prefix else "true"


class Queries:
    def __init__(self, db: Database, marts_schema: str) -> None:
        if not SCHEMA_NAME.match(marts_schema):
            msg = f"API_MARTS_SCHEMA {marts_schema!r} is not a plain schema name"
            raise ValueError(msg)
        self.db = db
        self.marts = marts_schema

    def _sql(self, template: str) -> str:
        return template.replace("{marts}", self.marts)

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
                    where """
                + _muid_match(muid, muid_prefix)
                + """
                    order by muid
                    offset %(offset)s limit %(limit)s
                ) as page using (muid)
                order by muid, obis_code
                """
            ),
            {"muid": muid, "prefix": muid_prefix, "offset": min(offset, MAX_OFFSET), "limit": limit},
        )

    def meter_count(self, muid_prefix: str = "") -> int:
        row = self.db.fetch_one(
            self._sql(
                "select count(*) as n from (select distinct muid from {marts}.dim_meters where "
                + _muid_match(muid_prefix=muid_prefix)
                + ") as meters"
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

    def energy_buckets(
        self, muid: str, interval: str, start: datetime, end: datetime, tz: str, obis_codes: list[str]
    ) -> list[dict]:
        """Every bucket of [start, end) per OBIS code, empty ones included, with sums and completeness."""
        unit = INTERVAL_UNITS[interval]
        step = "15 minutes" if unit is None else f"1 {unit}"
        calendar = interval in CALENDAR_INTERVALS
        return self.db.fetch_all(
            self._sql(
                f"""
                with bounds as (
                    select {self._bucket_of("%(start)s::timestamptz", unit)} as first_start
                ),
                buckets as (
                    select bucket_start,
                           {self._add_step("bucket_start", step, calendar)} as bucket_end
                    from bounds,
                         lateral (
                            select {self._series(step, calendar)} as bucket_start
                         ) as series
                    where bucket_start < %(end)s
                ),
                sums as (
                    select obis_code,
                           {self._bucket_of("reading_at", unit)} as bucket_start,
                           sum(energy_kwh) as energy_kwh,
                           count(*) as reading_count
                    from {{marts}}.fct_readings
                    where muid = %(muid)s and reading_at >= %(start)s and reading_at < %(end)s
                      and obis_code = any(%(obis_codes)s)
                    group by 1, 2
                )
                select codes.obis_code, buckets.bucket_start, buckets.bucket_end,
                       coalesce(sums.energy_kwh, 0) as energy_kwh,
                       coalesce(sums.reading_count, 0) as reading_count,
                       (extract(epoch from buckets.bucket_end - buckets.bucket_start) / 900)::int
                           as expected_intervals
                from buckets
                cross join unnest(%(obis_codes)s::text[]) as codes(obis_code)
                left join sums on sums.obis_code = codes.obis_code and sums.bucket_start = buckets.bucket_start
                order by buckets.bucket_start, codes.obis_code
                """
            ),
            {"muid": muid, "start": start, "end": end, "tz": tz, "obis_codes": obis_codes},
        )

    @staticmethod
    def _bucket_of(instant: str, unit: str | None) -> str:
        if unit is None:
            return f"date_bin('15 minutes', {instant}, timestamptz '2000-01-01 00:00+00')"
        return f"date_trunc('{unit}', {instant}, %(tz)s)"

    @staticmethod
    def _add_step(instant: str, step: str, calendar: bool) -> str:
        if calendar:
            return f"(({instant} at time zone %(tz)s) + interval '{step}') at time zone %(tz)s"
        return f"{instant} + interval '{step}'"

    @staticmethod
    def _series(step: str, calendar: bool) -> str:
        if calendar:
            # Step in local wall time, then back to instants: DST days keep their 23 or 25 hours.
            return (
                "generate_series(first_start at time zone %(tz)s, %(end)s::timestamptz at time zone %(tz)s, "
                f"interval '{step}') at time zone %(tz)s"
            )
        return f"generate_series(first_start, %(end)s::timestamptz, interval '{step}')"

    def daily_completeness(self, muid: str, start: datetime, end: datetime, tz: str) -> list[dict]:
        """Per local day of [start, end): expected, received and missing 15-minute intervals per OBIS code."""
        return self.energy_buckets(muid, "day", start, end, tz, self.obis_codes(muid))

    def obis_codes(self, muid: str) -> list[str]:
        rows = self.db.fetch_all(
            self._sql("select obis_code from {marts}.dim_meters where muid = %(muid)s order by obis_code"),
            {"muid": muid},
        )
        return [row["obis_code"] for row in rows]

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
            "select exists(select 1 from pg_timezone_names where name = %(tz)s) as ok", {"tz": tz}
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
        marts = sql.Identifier(self.marts)
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
                           'error', case when p is null then s ->> 'error' else p ->> 'error' end
                       ) order by b.stream, p -> 'context' ->> 'muid'), '[]') as failed_meters
                from jsonb_each(page.payload -> 'singer_state' -> 'bookmarks') as b(stream, s)
                left join lateral jsonb_array_elements(s -> 'partitions') as p on true
                where case when p is null then s ->> 'error' else p ->> 'error' end is not null
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
