"""Helpers to run the real Meltano pipeline and to talk to the real PostgreSQL in tests."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from psycopg import sql

from tools.db import conninfo, ensure_meltano_schema, pg_environment

PROJECT_ROOT = Path(__file__).resolve().parent.parent
MELTANO = str(Path(sys.executable).parent / "meltano")
SHARED_DATA = PROJECT_ROOT.parent / "shared" / "data" / "exnaton"
REAL_METERS = {
    "muid_1": "95ce3367-cbce-4a4d-bbe3-da082831d7bd",
    "muid_2": "1db7649e-9342-4e04-97c7-f0ebb88ed1f8",
}
# The instant of a reading of a meter_day row `d` unnested as `u(t, v, n)`: a regular day has no
# timestamps array, its readings start at first_timestamp + (n - 1) * 15 minutes.
DAY_READING_AT = (
    "coalesce(u.t::timestamptz, (d.first_timestamp at time zone 'UTC') + (u.n - 1) * interval '15 minutes')"
)


# Variables of the caller's own set-up that must not leak into a test's pipeline.
FOREIGN_PREFIXES = ("TAP_EXNATON_", "TARGET_POSTGRES_", "DBT_", "MELTANO_")


def create_database(
    prefix: str = "exnaton_test", name: str | None = None, *, meltano_schema: bool = True
) -> dict[str, str]:
    """A fresh, empty database on the server in use (embedded unless PGHOST is set), prepared as
    ``tools.db`` prepares the project's: with Meltano's (empty) system tables, unless ``meltano_schema`` is
    false (a database as new as an orchestrator's or a container's, that the bare `meltano` must prepare)."""
    server = pg_environment({**os.environ, "PGDATABASE": "postgres"})
    name = name or f"{prefix}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(conninfo(server), autocommit=True) as conn:
        conn.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
    env = {**server, "PGDATABASE": name}
    if meltano_schema:
        ensure_meltano_schema(env)
    return env


def drop_database(env: dict[str, str]) -> None:
    admin = {**env, "PGDATABASE": "postgres"}
    with psycopg.connect(conninfo(admin), autocommit=True) as conn:
        conn.execute(
            sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(env["PGDATABASE"]))
        )


def private_meltano_dirs(workdir: Path) -> dict[str, str]:
    """A Meltano system dir of the test's own, sharing the installed plugins of the project's ``.meltano``.

    Meltano writes every run's catalog and incoming state to the same files (``.meltano/run/<plugin>/
    tap.properties.json``, ``state.json``), so two pipelines running at once in one project can read each
    other's state or a half-written catalog. A test pipeline gets its own ``run/`` this way.
    """
    sys_dir = workdir / "meltano-sys"
    sys_dir.mkdir(exist_ok=True)
    for kind in ("extractors", "loaders", "utilities", "mappers", "orchestrators", "transformers"):
        installed = PROJECT_ROOT / ".meltano" / kind
        if installed.is_dir() and not (sys_dir / kind).exists():
            (sys_dir / kind).symlink_to(installed, target_is_directory=True)
    return {"MELTANO_SYS_DIR_ROOT": str(sys_dir)}


@dataclass
class Pipeline:
    """One isolated pipeline: its own database (holding Meltano's state too, as in the project) and dbt
    target folder."""

    pg: dict[str, str]
    workdir: Path
    base_url: str
    settings: dict[str, str] = field(default_factory=dict)

    def env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(FOREIGN_PREFIXES)}
        env.update(self.pg)
        env.update(
            {
                "MELTANO_SEND_ANONYMOUS_USAGE_STATS": "false",
                "TAP_EXNATON_BASE_URL": self.base_url,
                "DBT_TARGET_PATH": str(self.workdir / "dbt-target"),
                "DBT_LOG_PATH": str(self.workdir / "dbt-logs"),
                **private_meltano_dirs(self.workdir),
            }
        )
        env.update(self.settings)
        env.update(extra or {})
        return env

    def meltano(self, *args: str, check: bool = True, extra_env: dict[str, str] | None = None):
        """Run ``meltano ARGS`` in the project; on an unexpected failure the log is in the assertion."""
        result = subprocess.run(
            [MELTANO, *args],
            cwd=PROJECT_ROOT,
            env=self.env(extra_env),
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"meltano {' '.join(args)} exited {result.returncode}\n{result.stdout[-3000:]}\n{result.stderr[-6000:]}"
            )
        return result

    def execute(self, statement: str, params: list | None = None) -> None:
        with psycopg.connect(conninfo(self.pg)) as conn:
            conn.execute(statement, params)

    def query(self, statement: str, params: list | None = None) -> list[tuple]:
        with psycopg.connect(conninfo(self.pg)) as conn:
            return conn.execute(statement, params).fetchall()

    def scalar(self, statement: str, params: list | None = None):
        return self.query(statement, params)[0][0]


def wait_until(condition: Callable[[], bool], *, timeout: float, what: str) -> None:
    """Poll ``condition`` every 0.1 s until it is true; fail naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what} after {timeout} s")
        time.sleep(0.1)
