"""What must exist in the database before loads run side by side, and Dagster's own storage in it.

Two loads creating the raw schema, or two Meltano commands creating Meltano's tables, at the same moment
collide (PostgreSQL's CREATE ... IF NOT EXISTS is not safe against a concurrent create: docs/scaling.md).
Every load step first makes them under one advisory lock, so shards can start together on a new database.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from urllib.parse import quote, urlencode

# Dagster's runs, events, schedules and concurrency slots: the project's database, a schema of its own.
DAGSTER_SCHEMA = "dagster"
MELTANO_SCHEMA = "meltano"
# pg_advisory_lock key of this preparation (any constant distinct from the pipeline lock's).
PREPARE_LOCK = 0x45584F52  # "EXOR"


def connect():
    import psycopg2  # in the utility's virtualenv with dagster-postgres

    return psycopg2.connect("", application_name="exnaton orchestrate", connect_timeout=10)


def _schema_exists(cursor, name: str) -> bool:
    cursor.execute("select 1 from pg_namespace where nspname = %s", [name])
    return cursor.fetchone() is not None


def _meltano_tables_exist(cursor) -> bool:
    cursor.execute("select to_regclass(%s) is not null", [f"{MELTANO_SCHEMA}.alembic_version"])
    return cursor.fetchone()[0]


@contextlib.contextmanager
def prepare_lock():
    """A cursor holding the preparation's advisory lock: one process at a time creates what is missing."""
    connection = connect()
    connection.autocommit = True
    try:
        with connection.cursor() as cursor:
            cursor.execute("select pg_advisory_lock(%s)", [PREPARE_LOCK])
            yield cursor
    finally:
        connection.close()  # releases the lock


def _create_missing(cursor, schemas: tuple[str, ...]) -> None:
    for name in schemas:
        if not _schema_exists(cursor, name):
            cursor.execute(f'create schema "{name}"')


def create_schemas(*names: str) -> None:
    with prepare_lock() as cursor:
        _create_missing(cursor, names)


def prepare(log) -> None:
    """The raw schema and Meltano's tables, made once, whoever comes first; the others wait a moment."""
    from exnaton_orchestrate.project import PROJECT_ROOT, meltano_executable

    with prepare_lock() as cursor:
        _create_missing(cursor, ("raw", MELTANO_SCHEMA))
        if not _meltano_tables_exist(cursor):
            log.info("creating Meltano's system tables (a new database)")
            command = [meltano_executable(), "state", "list"]
            subprocess.run(command, cwd=PROJECT_ROOT, env=os.environ, capture_output=True, check=True)


def dagster_postgres_url(environ: dict[str, str] | None = None) -> str:
    """A SQLAlchemy URL of the PG* database for dagster-postgres, with search_path = the dagster schema.

    Host and port go in the query string: PGHOST may be a unix-socket directory (the embedded PostgreSQL).
    """
    env = os.environ if environ is None else environ
    user = quote(env.get("PGUSER", "postgres"), safe="")
    password = env.get("PGPASSWORD")
    credentials = f"{user}:{quote(password, safe='')}" if password else user
    query = {"host": env.get("PGHOST", "127.0.0.1"), "port": env.get("PGPORT", "5432")}
    query["options"] = f"-csearch_path={DAGSTER_SCHEMA}"
    return f"postgresql+psycopg2://{credentials}@/{quote(env['PGDATABASE'], safe='')}?{urlencode(query)}"
