"""The bare `meltano run` on a new, empty database: Meltano's engine prepares its own schema and tables
(meltano.yml's database_uri plugin, pipeline-lock/pipeline_lock/system_db.py), also when two runs start at once."""

from __future__ import annotations

import subprocess

import psycopg
import pytest
from psycopg import sql

from tests.conftest import FIXTURE_METERS, _meter_settings
from tests.pipeline import MELTANO, PROJECT_ROOT, Pipeline, create_database, drop_database
from tools.db import conninfo
from tools.synthetic import day_start, write_exports

pytestmark = pytest.mark.e2e
RUN = ("run", "tap-exnaton", "target-postgres", "dbt")
READINGS = len(FIXTURE_METERS) * 3 * 96  # two meters, 2023-03-25 .. 2023-03-28 UTC


@pytest.fixture
def new_database():
    """A database as an orchestrator or a container gets it: nothing in it, not even Meltano's schema."""
    env = create_database(meltano_schema=False)
    yield env
    drop_database(env)


@pytest.fixture
def source(mirror_of, tmp_path):
    exports = write_exports(
        tmp_path / "source", FIXTURE_METERS, day_start("2023-03-25"), day_start("2023-03-28")
    )
    return mirror_of(exports)


def pipeline_in(database: dict[str, str], workdir, source) -> Pipeline:
    workdir.mkdir(exist_ok=True)
    return Pipeline(pg=database, workdir=workdir, base_url=source.base_url, settings=_meter_settings())


def assert_complete_marts(pipeline: Pipeline) -> None:
    """Every reading once in the marts, each meter in dim_meters and in its stream's view."""
    assert pipeline.scalar("select count(*) from marts.fct_readings") == READINGS
    assert (
        pipeline.scalar(
            "select count(*) from (select distinct muid, obis_code, reading_at from marts.fct_readings) r"
        )
        == READINGS
    )
    assert pipeline.scalar("select count(distinct muid) from marts.dim_meters") == len(FIXTURE_METERS)
    for meter in FIXTURE_METERS:
        assert pipeline.scalar(f"select count(*) from marts.{meter.stream_name}_transforms") > 0


def test_two_bare_meltano_runs_started_at_once_on_a_new_database_build_complete_marts(
    new_database, source, tmp_path
):
    """The mission's command, twice at once, on a database without even Meltano's schema: one run prepares
    the schema and tables while the other waits for it (without the lock, one fails with "Cannot upgrade the
    system database"); then Meltano's job lock or the pipeline lock decides: each run succeeds or is refused
    with one line, and the marts hold every reading once."""
    pipelines = [pipeline_in(new_database, tmp_path / f"run{n}", source) for n in (1, 2)]
    started = [
        subprocess.Popen(
            [MELTANO, *RUN],
            cwd=PROJECT_ROOT,
            env=p.env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for p in pipelines
    ]
    results = [(process.wait(timeout=600), process.communicate()[1]) for process in started]

    assert any(code == 0 for code, _ in results), results[0][1][-3000:] + results[1][1][-3000:]
    for code, stderr in results:
        assert "Traceback" not in stderr and "MigrationError" not in stderr, stderr[-4000:]
        if code:
            # The refusal is the first error line (Meltano adds "Block run completed" after it).
            reason = next(line for line in stderr.splitlines() if "[error" in line)
            assert "pipeline is already running" in reason or "is running or waiting" in reason, stderr[
                -4000:
            ]
    assert pipelines[0].scalar("select count(*) from meltano.alembic_version") == 1
    succeeded = sum(code == 0 for code, _ in results)
    assert pipelines[0].scalar("select count(*) from meltano.runs where state = 'SUCCESS'") == succeeded
    assert_complete_marts(pipelines[0])


def test_a_role_that_may_not_create_the_schema_is_told_what_to_run(new_database, tmp_path):
    role = f"nocreate_{new_database['PGDATABASE'][-8:]}"
    with psycopg.connect(conninfo(new_database), autocommit=True) as conn:
        conn.execute(sql.SQL("create role {} login").format(sql.Identifier(role)))
    try:
        done = subprocess.run(
            [MELTANO, "state", "list"],
            cwd=PROJECT_ROOT,
            env=Pipeline(pg={**new_database, "PGUSER": role}, workdir=tmp_path, base_url="").env(),
            capture_output=True,
            text=True,
            check=False,
        )
        assert done.returncode == 1
        assert "Traceback" not in done.stderr
        errors = [line for line in done.stderr.splitlines() if "[error" in line]
        assert len(errors) == 1, done.stderr
        assert f"may not create it: run `create schema meltano authorization {role}`" in errors[0]
    finally:
        with psycopg.connect(conninfo(new_database), autocommit=True) as conn:
            conn.execute(sql.SQL("drop role {}").format(sql.Identifier(role)))


def test_the_revision_file_read_without_importing_meltano_is_meltanos():
    """system_db finds Meltano's migration lock file by path (importing meltano.migrations costs 0.7 s)."""
    from meltano.migrations import LOCK_PATH
    from pipeline_lock.system_db import migration_lock_path

    assert migration_lock_path() == LOCK_PATH
    assert LOCK_PATH.read_text().strip()


def test_a_database_that_does_not_exist_is_one_line_not_a_traceback(new_database, tmp_path):
    missing = {**new_database, "PGDATABASE": new_database["PGDATABASE"] + "_missing"}
    done = subprocess.run(
        [MELTANO, *RUN],
        cwd=PROJECT_ROOT,
        env=Pipeline(pg=missing, workdir=tmp_path, base_url="").env({"MELTANO_DATABASE_MAX_RETRIES": "0"}),
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 1 and "Traceback" not in done.stderr
    [error] = [line for line in done.stderr.splitlines() if "[error" in line]
    assert "cannot connect to the project's PostgreSQL" in error and "does not exist" in error
    assert "createdb NAME" in error
