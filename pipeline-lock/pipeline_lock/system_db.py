"""Meltano's system database in the project's PostgreSQL, prepared by whichever command reaches it first.

meltano.yml's ``database_uri`` ends in ``plugin=meltano_system_schema``: SQLAlchemy then loads
``SystemSchemaPlugin`` (entry point ``sqlalchemy.plugins``, SQLAlchemy's public hook for adding behaviour to
an engine "without the need for the target application to be modified") when Meltano creates its engine,
before any command reads a table. ``prepare`` creates the schema named first in the URL's ``search_path``
when it is missing and brings Meltano's tables to the revision this Meltano expects with Meltano's own
MigrationService, all under one advisory lock: of two commands started at once on a new database, one does
it and the other finds it done.

Without it Meltano fails on a new database with "Cannot upgrade the system database ... InvalidSchemaName"
(it never creates the schema of its search_path), and two first runs at once race each other's migration.
"""

from __future__ import annotations

import importlib.util
import re
import typing as t
from pathlib import Path

from pipeline_lock import _scalar, _sqlstate

if t.TYPE_CHECKING:
    from sqlalchemy.engine import URL, Engine

    from pipeline_lock import Connection

# Another fixed key than the pipeline lock's: "meltsys" in ASCII.
SYSTEM_DB_KEY = int.from_bytes(b"meltsys", "big")
SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]*$")
SEARCH_PATH = re.compile(r"search_path\s*=\s*([^\s,]+)")
INSUFFICIENT_PRIVILEGE = "42501"


class SystemSchemaError(Exception):
    """The schema is missing and this role may not create it."""


def prepare(engine: Engine, schema: str) -> None:
    """Schema and tables of Meltano's system database in ``schema``, at the revision Meltano expects."""
    if not SCHEMA_NAME.match(schema):
        msg = f"{schema!r} is not a plain schema name"
        raise ValueError(msg)
    head = migration_lock_path().read_text().strip()
    raw = engine.raw_connection()
    try:
        connection = raw.driver_connection
        connection.autocommit = True
        if _migrated(connection, schema, head):
            return  # every command after the first: two small queries, no lock
        _scalar(connection, "select pg_advisory_lock(%s)", SYSTEM_DB_KEY)
        try:
            # Checked again under the lock: a command that waited here finds the work done.
            if not _migrated(connection, schema, head):
                _create_schema(connection, schema)
                from meltano.core.migration_service import MigrationService

                MigrationService(engine).upgrade(silent=True)
        finally:
            _scalar(connection, "select pg_advisory_unlock(%s)", SYSTEM_DB_KEY)
    finally:
        raw.close()


def migration_lock_path() -> Path:
    """meltano.migrations.LOCK_PATH (the revision this Meltano expects), found without importing Meltano:
    its package imports most of Meltano (0.7 s), too slow for `python -m tools.db`, which runs before every
    make target."""
    spec = importlib.util.find_spec("meltano.migrations")  # imports the `meltano` namespace only
    return Path(spec.origin).parent / "db.lock"


def _migrated(connection: Connection, schema: str, head: str) -> bool:
    # to_regclass is null when the schema is missing too.
    if not _scalar(connection, "select to_regclass(%s) is not null", f"{schema}.alembic_version"):
        return False
    return _scalar(connection, f"select max(version_num) from {schema}.alembic_version") == head


def _create_schema(connection: Connection, schema: str) -> None:
    """Only when missing: CREATE needs a privilege on the database that the schema's users may lack."""
    if _scalar(connection, "select count(*) from pg_namespace where nspname = %s", schema):
        return
    try:
        connection.cursor().execute(f"create schema {schema}")
    except Exception as exc:
        if _sqlstate(exc) != INSUFFICIENT_PRIVILEGE:
            raise
        cursor = connection.cursor()
        cursor.execute("select current_user, current_database()")
        user, database = cursor.fetchone()
        msg = (
            f"schema {schema} of Meltano's system tables is missing in database {database} and role {user} "
            f"may not create it: run `create schema {schema} authorization {user}` as the database owner"
        )
        raise SystemSchemaError(msg) from exc


def schema_of(url: URL) -> str | None:
    """The first schema of the search_path that the URL's libpq ``options`` set, if any."""
    options = url.query.get("options", "")
    found = SEARCH_PATH.search(options if isinstance(options, str) else " ".join(options))
    return found.group(1) if found else None


try:
    from sqlalchemy.engine import CreateEnginePlugin
except ImportError:  # the dbt utility's virtualenv has no SQLAlchemy; it never loads the plugin
    CreateEnginePlugin = object  # type: ignore[assignment,misc]


class SystemSchemaPlugin(CreateEnginePlugin):
    """``?plugin=meltano_system_schema`` on Meltano's database_uri: ``prepare`` when the engine is made."""

    def __init__(self, url: URL, kwargs: dict) -> None:
        super().__init__(url, kwargs)
        self.schema = schema_of(url)

    def update_url(self, url: URL) -> URL:
        return url  # SQLAlchemy has taken `plugin` out already; the rest is libpq's

    def engine_created(self, engine: Engine) -> None:
        if engine.dialect.name != "postgresql" or not self.schema:
            return
        from meltano.core.error import MeltanoError

        try:
            prepare_when_reachable(engine, self.schema)
        except SystemSchemaError as exc:
            raise MeltanoError(str(exc)) from None
        except ConnectionError as exc:
            raise MeltanoError(str(exc)) from None


def prepare_when_reachable(engine: Engine, schema: str) -> None:
    """``prepare``, retried while the server cannot be reached as Meltano retries its own first connection
    (``MELTANO_DATABASE_MAX_RETRIES``, ``MELTANO_DATABASE_RETRY_TIMEOUT``: 3 times, 5 s apart by default, so
    a database that is still starting is waited for). Then a ConnectionError of one line: Meltano itself
    would end in a traceback."""
    import os
    import time

    from sqlalchemy.exc import OperationalError

    # A raw connection of the pool raises the driver's own error, not SQLAlchemy's wrapper of it.
    unreachable = (OperationalError, engine.dialect.loaded_dbapi.OperationalError)
    retries = int(os.environ.get("MELTANO_DATABASE_MAX_RETRIES", 3))
    for attempt in range(retries + 1):
        try:
            prepare(engine, schema)
            return
        except unreachable as exc:
            reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()
            if attempt == retries:
                where = ", ".join(
                    f"{k}={os.environ[k]}" for k in ("PGHOST", "PGPORT", "PGDATABASE") if k in os.environ
                )
                msg = (
                    f"cannot connect to the project's PostgreSQL ({where or 'libpq defaults'}): "
                    f"{' '.join(line.strip() for line in reason)}; set PGHOST, PGPORT, PGUSER, PGPASSWORD and "
                    "PGDATABASE to a running server and an existing database (createdb NAME)"
                )
                raise ConnectionError(msg) from None
            time.sleep(float(os.environ.get("MELTANO_DATABASE_RETRY_TIMEOUT", 5)))
