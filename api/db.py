"""A small psycopg 3 connection pool with a short connect timeout and a statement timeout per session."""

from __future__ import annotations

import contextlib
import typing as t

import psycopg
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool, PoolTimeout

T = t.TypeVar("T")

if t.TYPE_CHECKING:
    from collections.abc import Iterator

    from psycopg.abc import Query

    from api.config import Settings


class DatabaseUnavailable(Exception):
    """The database cannot be reached or did not answer in time: the API answers 503."""


class Database:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        # UTC sessions: timestamps that PostgreSQL renders as JSON come out as ...+00:00.
        # Generic plans: psycopg prepares a statement after its fifth call, and PostgreSQL would then still plan
        # it anew per call for its parameters (a custom plan), 0.7 ms of the 2.7 ms of a year of days. The
        # queries (api/queries.py) are written for a plan that holds for any parameters: a case per statement
        # where a branch would change the plan, index bounds that are parameters.
        options = (
            f"-c statement_timeout={settings.statement_timeout_ms} -c default_transaction_read_only=on "
            "-c TimeZone=UTC -c plan_cache_mode=force_generic_plan"
        )
        self.pool = ConnectionPool(
            settings.conninfo,
            kwargs={
                "connect_timeout": settings.connect_timeout_s,
                "options": options,
                "row_factory": dict_row,
                # Every query is one read-only statement: no BEGIN/ROLLBACK round trips around it.
                "autocommit": True,
            },
            min_size=1,
            max_size=settings.pool_size,
            timeout=settings.connect_timeout_s,
            # No check on every checkout (a round trip per query): a connection found broken (the server
            # restarted) is dropped by the pool and the query runs again on a fresh one (`_run`).
            open=False,
        )
        self._opened = False

    @contextlib.contextmanager
    def connection(self) -> Iterator[psycopg.Connection]:
        if not self._opened:
            self.pool.open(wait=False)
            self._opened = True
        try:
            with self.pool.connection() as conn:
                yield conn
        except PoolTimeout as exc:
            raise DatabaseUnavailable("the database is not reachable") from exc
        except psycopg.errors.QueryCanceled as exc:
            raise DatabaseUnavailable("the query took longer than the API allows") from exc
        except psycopg.OperationalError as exc:
            raise DatabaseUnavailable("the database connection failed") from exc

    def _run(self, work: t.Callable[[psycopg.Connection], T]) -> T:
        """``work`` on a pooled connection; once more when that connection turns out broken (the server was
        restarted since it was opened): the pool drops it and hands out a fresh one, so the API recovers
        without a restart and without an error. The queries are read-only: running one again is safe."""
        for attempt in (1, 2):
            with self.connection() as conn:
                try:
                    return work(conn)
                except psycopg.OperationalError:
                    if attempt == 2 or not conn.broken:
                        raise
        raise AssertionError("unreachable")

    def fetch_all(self, query: Query, params: dict | None = None) -> list[dict]:
        return self._run(lambda conn: conn.execute(query, params).fetchall())

    def fetch_one(self, query: Query, params: dict | None = None) -> dict | None:
        return self._run(lambda conn: conn.execute(query, params).fetchone())

    def close(self) -> None:
        if self._opened:
            self.pool.close()
