"""Crashes during a load: `kill -9` of the whole `meltano run`, and PostgreSQL restarting under it; and a
second run of the same pipeline started while one is running: while it extracts and loads (Meltano's job
lock refuses it), and while it builds with dbt (the pipeline lock refuses it, pipeline-lock/README.md).

Both use a slow source (every answer delayed) with several meters and small loader batches, so that the
crash lands while some streams are in raw and others are still coming. Afterwards a plain re-run must
leave every reading exactly once in raw and in marts.fct_readings.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import psycopg
import pytest
from pipeline_lock import holders

from tests.conftest import FAST_RETRIES
from tests.faulty_source import (
    FaultySource,
    mart_readings,
    raw_readings,
    schema_checksums,
    source_readings,
    stream_states,
)
from tests.pipeline import MELTANO, PROJECT_ROOT, Pipeline, conninfo, private_meltano_dirs, wait_until
from tools.db import ensure_meltano_schema
from tools.synthetic import Meter, day_start, meters_setting, synthetic_meters, write_exports

pytestmark = pytest.mark.e2e
METERS = synthetic_meters(6)
FIRST_DAY = day_start("2023-03-25")
HAS_MARTS = any((PROJECT_ROOT / "transform" / "models").rglob("*.sql"))
NO_MARTS = "transform/models has no dbt models yet: raw was checked, the marts part is skipped"
EL = ("run", "tap-exnaton", "target-postgres")
FULL_RUN = (*EL, "dbt") if HAS_MARTS else EL
# Each answer of the slow source waits this long; small batches make the loader write as it goes.
SLOW_ANSWER = 0.6
SMALL_BATCHES = {"TARGET_POSTGRES_BATCH_SIZE_ROWS": "50"}
# How the loader reports losing the server: a session terminated by the shutdown, or no server to reach.
CONNECTION_LOST = ("psycopg.errors.AdminShutdown", "psycopg.OperationalError")


@pytest.fixture
def slow_source(tmp_path):
    source_dir = write_exports(tmp_path / "source", METERS, FIRST_DAY, FIRST_DAY + timedelta(days=2))
    with FaultySource(source_dir, delay=SLOW_ANSWER) as source:
        yield source


def meters_pipeline(pg: dict[str, str], workdir: Path, source: FaultySource) -> Pipeline:
    settings = {
        "TAP_EXNATON_METERS": meters_setting(METERS),
        "TAP_EXNATON_START_DATE": "2023-01-01",
        **FAST_RETRIES,
        **SMALL_BATCHES,
        **private_meltano_dirs(workdir),
    }
    return Pipeline(pg=pg, workdir=workdir, base_url=source.base_url, settings=settings)


def start_in_background(pipeline: Pipeline, *args: str, log_name: str = "background.log") -> subprocess.Popen:
    """``meltano ARGS`` in a process group of its own (so the whole tree can be killed), log to a file."""
    log = (pipeline.workdir / log_name).open("wb")
    return subprocess.Popen(
        [MELTANO, *args],
        cwd=PROJECT_ROOT,
        env=pipeline.env(),
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def loaded_rows(pipeline: Pipeline) -> int:
    """Rows in all raw stream tables so far (0 while none exists yet); errors while the server is down."""
    tables = pipeline.query("select table_name from information_schema.tables where table_schema = 'raw'")
    return sum(pipeline.scalar(f'select count(*) from raw."{name}"') for (name,) in tables)


def mid_load(pipeline: Pipeline, process: subprocess.Popen) -> Callable[[], bool]:
    """True once some readings are in raw while the run is still going."""

    def check() -> bool:
        assert process.poll() is None, (pipeline.workdir / "background.log").read_text()[-3000:]
        return loaded_rows(pipeline) > 0

    return check


def total_readings(source_dir: Path) -> int:
    return sum(len(source_readings(source_dir, meter.muid)) for meter in METERS)


def assert_every_reading_once(pipeline: Pipeline, source_dir: Path) -> None:
    for meter in METERS:
        expected = source_readings(source_dir, meter.muid)
        # The loader appends (BRIEF contract 1): a reading re-sent after the crash is in raw twice, and fct_readings
        # keeps one. Raw must hold every reading; the marts each one once.
        assert sorted(set(raw_readings(pipeline, meter.stream_name))) == expected, meter.stream_name
        if HAS_MARTS:
            assert mart_readings(pipeline, meter.muid) == expected, meter.stream_name
    if not HAS_MARTS:
        pytest.skip(NO_MARTS)


def age_running_jobs(pipeline: Pipeline, minutes: int) -> None:
    """Move the heartbeat of jobs left RUNNING back in time, as if ``minutes`` had passed since the crash."""
    pipeline.execute(
        "update meltano.runs set last_heartbeat_at = last_heartbeat_at - make_interval(mins => %s), "
        "started_at = started_at - make_interval(mins => %s) where state = 'RUNNING'",
        [minutes, minutes],
    )


# --- a second run while one runs, then kill -9 ------------------------------------------------------------

# A meter only the second run asks for: anything that run did would show as a request for it or its table.
INTRUDER = Meter("intruder", "6c0d5a0e-8f1b-4c3e-9b7a-1d2e3f405162", "0100011D00FF")


def extracting(pipeline: Pipeline, source: FaultySource, process: subprocess.Popen) -> Callable[[], bool]:
    """True once the run's Meltano job is RUNNING and its tap has asked the source."""

    def check() -> bool:
        assert process.poll() is None, (pipeline.workdir / "background.log").read_text()[-3000:]
        if not pipeline.scalar("select to_regclass('meltano.runs') is not null"):
            return False  # Meltano has not created its tables yet
        running = pipeline.query("select 1 from meltano.runs where state = 'RUNNING'")
        return bool(running) and bool(source.seen())

    return check


def assert_refused_changing_nothing(pipeline: Pipeline, source: FaultySource) -> None:
    runs = pipeline.scalar("select count(*) from meltano.runs")
    refused = pipeline.meltano(
        *FULL_RUN, check=False, extra_env={"TAP_EXNATON_METERS": meters_setting([*METERS, INTRUDER])}
    )
    assert refused.returncode != 0
    assert "pipeline is already running" in refused.stderr and "--force" in refused.stderr, refused.stderr[
        -6000:
    ]
    assert not source.seen(INTRUDER.muid), "the refused run asked the source"
    assert pipeline.scalar("select to_regclass('raw.intruder') is null"), "the refused run loaded"
    assert pipeline.scalar("select count(*) from meltano.runs") == runs, "the refused run left a job"


def test_second_run_is_refused_while_one_runs_and_after_kill_9_a_plain_rerun_has_every_reading_once(
    database, slow_source, tmp_path
):
    pipeline = meters_pipeline(database, tmp_path, slow_source)
    source_dir = tmp_path / "source"
    # Slower answers at first: the first run must still be extracting and loading for a while (Meltano's
    # job, which a second run checks, spans that part of `meltano run`; dbt comes after it).
    slow_source.set_delay(4 * SLOW_ANSWER)
    pipeline.settings["TAP_EXNATON_REQUEST_TIMEOUT"] = "10"
    run = start_in_background(pipeline, *FULL_RUN)
    wait_until(extracting(pipeline, slow_source, run), timeout=120, what="the first run's job and requests")
    wait_until(lock_held(pipeline, "load"), timeout=60, what="the loader's share of the pipeline lock")

    # The first run is going: a second one is refused without waiting for it, and changes nothing.
    assert_refused_changing_nothing(pipeline, slow_source)
    assert run.poll() is None, "the refusal waited for the running pipeline"

    slow_source.set_delay(SLOW_ANSWER)
    wait_until(mid_load(pipeline, run), timeout=120, what="the first readings in raw")
    os.killpg(run.pid, signal.SIGKILL)
    assert run.wait(timeout=30) == -signal.SIGKILL
    assert 0 < loaded_rows(pipeline) < total_readings(source_dir), "the kill did not land mid-load"
    slow_source.set_delay(0)

    # Meltano still sees the killed job as running: a re-run at once is refused the same way.
    loaded = loaded_rows(pipeline)
    assert_refused_changing_nothing(pipeline, slow_source)
    assert loaded_rows(pipeline) == loaded

    # Without a heartbeat for 5 minutes Meltano marks the job as failed and a plain re-run goes ahead.
    age_running_jobs(pipeline, minutes=6)
    pipeline.meltano(*FULL_RUN)
    assert_every_reading_once(pipeline, source_dir)


# --- a second run while one builds with dbt, then kill -9 of the build --------------------------------------


def lock_held(pipeline: Pipeline, holder: str, *, granted: bool = True) -> Callable[[], bool]:
    """True once a ``holder`` ('load' or 'build') holds the pipeline lock (``granted``) or waits for it."""

    def check() -> bool:
        with psycopg.connect(conninfo(pipeline.pg)) as observer:
            return any(kind == holder and held == granted for _, kind, held, _ in holders(observer))

    return check


def test_a_run_started_during_another_runs_dbt_build_is_refused_and_builds_never_overlap(database, tmp_path):
    source_dir = write_exports(tmp_path / "source", METERS, FIRST_DAY, FIRST_DAY + timedelta(days=1))
    with FaultySource(source_dir) as source:
        pipeline = meters_pipeline(database, tmp_path, source)
        pipeline.meltano(*FULL_RUN)
        write_exports(source_dir, METERS, FIRST_DAY, FIRST_DAY + timedelta(days=2))  # a new day comes in
        with psycopg.connect(conninfo(database)) as blocker:
            # The first run's build stops at the fact table (holding the build lock) for as long as we like.
            blocker.execute("lock table marts.fct_readings in access exclusive mode")
            run = start_in_background(pipeline, *FULL_RUN)
            wait_until(lock_held(pipeline, "build"), timeout=180, what="the first run's dbt build")

            raw, state = schema_checksums(pipeline, "raw"), stream_states(pipeline)
            refused = pipeline.meltano(
                *FULL_RUN, check=False, extra_env={"TAP_EXNATON_METERS": meters_setting([*METERS, INTRUDER])}
            )
            assert refused.returncode != 0
            assert "target-postgres: error: a dbt build is running or waiting on this database" in (
                refused.stderr
            ), refused.stderr[-6000:]
            noise = [line for line in refused.stderr.splitlines() if "Traceback" in line or "Warning" in line]
            assert not noise, refused.stderr[-6000:]
            assert pipeline.scalar("select to_regclass('raw.intruder') is null"), "the refused run loaded"
            assert schema_checksums(pipeline, "raw") == raw and stream_states(pipeline) == state

            # A build on its own waits for the running one instead of overlapping it ...
            standalone = start_in_background(pipeline, "run", "dbt", log_name="standalone-dbt.log")
            wait_until(
                lock_held(pipeline, "build", granted=False), timeout=120, what="the second build to queue"
            )
            # ... and gets its turn as soon as the first is killed: the lock went with the killed session.
            os.killpg(run.pid, signal.SIGKILL)
            assert run.wait(timeout=30) == -signal.SIGKILL
            wait_until(lock_held(pipeline, "build"), timeout=60, what="the lock after kill -9")
            blocker.rollback()
        assert standalone.wait(timeout=300) == 0, (tmp_path / "standalone-dbt.log").read_text()[-6000:]
        assert_every_reading_once(pipeline, source_dir)  # the new day too, built by the second build
        pipeline.meltano(*FULL_RUN)  # and a plain re-run goes ahead at once: nothing stale to wait out
        assert_every_reading_once(pipeline, source_dir)


# --- PostgreSQL restarted during a load -------------------------------------------------------------------


def server_environment(server) -> dict[str, str]:
    info = server.get_postmaster_info()
    env = {"PGHOST": str(info.socket_dir), "PGPORT": str(info.port or 5432), "PGUSER": "postgres"}
    with psycopg.connect(conninfo({**env, "PGDATABASE": "postgres"}), autocommit=True) as conn:
        conn.execute("create database exnaton_restart")
    env = {**env, "PGDATABASE": "exnaton_restart"}
    ensure_meltano_schema(env)
    return env


def test_postgres_restart_mid_load_fails_clearly_and_rerun_loses_nothing(
    private_postgres, slow_source, tmp_path
):
    pipeline = meters_pipeline(server_environment(private_postgres), tmp_path, slow_source)
    source_dir = tmp_path / "source"
    run = start_in_background(pipeline, *EL)
    wait_until(mid_load(pipeline, run), timeout=120, what="the first readings in raw")

    assert loaded_rows(pipeline) < total_readings(source_dir) and run.poll() is None, "not mid-load"
    private_postgres.stop()  # pg_ctl stop, fast mode: open sessions are terminated
    time.sleep(1.0)
    private_postgres.start()
    exit_code = run.wait(timeout=300)
    log = (tmp_path / "background.log").read_text()

    if exit_code != 0:
        # Failing is fine, failing quietly is not: the database error is in the log. (Meltano 4.4 itself
        # then ends with a traceback: writing to the dead loader, or its own heartbeat to the system tables.)
        assert any(cause in log for cause in CONNECTION_LOST), log[-3000:]
    slow_source.set_delay(0)
    # Meltano's heartbeat went down with the server, so its job may be left marked as running, as after a
    # kill -9: the README's recovery when no run is active is --force.
    pipeline.meltano("run", "--force", *FULL_RUN[1:])
    assert_every_reading_once(pipeline, source_dir)
