"""One advisory lock per database between the pipeline's loads and its dbt builds (README.md).

Loads hold it shared (parallel shards load side by side), a dbt build holds it alone. Meltano's own job lock
refuses a second run only while the first extracts and loads; this lock covers the dbt build that follows.
PostgreSQL frees an advisory lock with the session that holds it: a killed run leaves nothing to clean up.
"""

from __future__ import annotations

import typing as t

# Any fixed 64-bit number will do; this one spells "exnaton" in ASCII.
LOCK_KEY = int.from_bytes(b"exnaton", "big")
# How long a build waits for the loads that hold the lock (and for another build) before it gives up.
BUILD_WAIT = "15min"
LOCK_NOT_AVAILABLE = "55P03"


class Connection(t.Protocol):
    """A DB-API connection of psycopg 3 (the loader) or psycopg2 (dbt): both take %s parameters."""

    autocommit: bool

    def cursor(self) -> t.Any: ...


class PipelineBusyError(Exception):
    """The lock is held in a mode that excludes this process."""


def hold_for_load(connection: Connection) -> None:
    """Take the lock shared for a load, or raise at once when a dbt build holds it or waits for it."""
    connection.autocommit = True
    if not _scalar(connection, "select pg_try_advisory_lock_shared(%s)", LOCK_KEY):
        msg = (
            f"a dbt build is running or waiting on this database ({describe_holders(connection, 'build')}); "
            "this load stopped before writing anything: run it again when the build has finished"
        )
        raise PipelineBusyError(msg)


def hold_for_build(connection: Connection, wait: str = BUILD_WAIT) -> None:
    """Take the lock alone for a dbt build, waiting up to ``wait`` for running loads and builds.

    A waiting build already holds its place in PostgreSQL's lock queue: loads that start meanwhile are
    refused, so new loads never starve a build.
    """
    connection.autocommit = True
    _scalar(connection, "select set_config('lock_timeout', %s, false)", wait)
    try:
        _scalar(connection, "select pg_advisory_lock(%s)", LOCK_KEY)
    except Exception as exc:
        if _sqlstate(exc) != LOCK_NOT_AVAILABLE:
            raise
        msg = f"loads or another dbt build held this database for {wait} ({describe_holders(connection)})"
        raise PipelineBusyError(msg) from exc
    _scalar(connection, "select set_config('lock_timeout', '0', false)")


def holders(connection: Connection) -> list[tuple[int, str, bool, str]]:
    """(pid, 'load' or 'build', granted, application name) of the other sessions holding or awaiting the lock."""
    cursor = connection.cursor()
    # pg_stat_activity is read once per transaction; a caller inside one would miss the sessions since.
    cursor.execute("select pg_stat_clear_snapshot()")
    cursor.execute(
        "select l.pid, case l.mode when 'ShareLock' then 'load' else 'build' end, l.granted, "
        "coalesce(a.application_name, '') from pg_locks l left join pg_stat_activity a using (pid) "
        "where l.locktype = 'advisory' and l.objsubid = 1 "
        "and l.database = (select oid from pg_database where datname = current_database()) "
        "and (l.classid::bigint << 32) + l.objid::bigint = %s and l.pid <> pg_backend_pid() order by l.pid",
        [LOCK_KEY],
    )
    return [tuple(row) for row in cursor.fetchall()]


def describe_holders(connection: Connection, kind: str | None = None) -> str:
    sessions = [
        f"{held_by} pid {pid}{'' if granted else ' waiting'}" + (f" {name!r}" if name else "")
        for pid, held_by, granted, name in holders(connection)
        if kind in (None, held_by)
    ]
    return ", ".join(sessions) or "gone by now"


def _scalar(connection: Connection, sql: str, *parameters: object) -> t.Any:
    cursor = connection.cursor()
    cursor.execute(sql, parameters or None)
    return cursor.fetchone()[0]


def _sqlstate(exc: BaseException) -> str | None:
    return getattr(exc, "sqlstate", None) or getattr(exc, "pgcode", None)
