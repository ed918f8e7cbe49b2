"""Bookmarks and data never disagree: Meltano's state lives in the database it describes (schema meltano).

Through the real `meltano run tap-exnaton target-postgres dbt` on a real PostgreSQL: a dropped and recreated
database, a backup restored over newer data, and data lost while its bookmarks stayed. Whatever happens to
the database, a run never ends in success while readings of the source are missing from the marts.
"""

from __future__ import annotations

import re
import subprocess
from datetime import timedelta

import pytest

from tests.conftest import FIXTURE_METERS
from tests.faulty_source import STATE_ID, bookmarks, mart_readings, source_readings
from tests.pipeline import Pipeline, create_database, drop_database
from tools.db import conninfo, wheel_program
from tools.synthetic import day_start, meters_setting, write_exports

pytestmark = pytest.mark.e2e
PIPELINE = ("run", "tap-exnaton", "target-postgres", "dbt")
DAY_1 = day_start("2023-03-25")


@pytest.fixture
def one_day_pipeline(database, mirror_of, tmp_path):
    """Two meters whose source holds one day (2023-03-25 UTC) so far, in the default meter_day layout."""
    source = write_exports(tmp_path / "source", FIXTURE_METERS, DAY_1, DAY_1 + timedelta(days=1))
    settings = {"TAP_EXNATON_METERS": meters_setting(FIXTURE_METERS), "TAP_EXNATON_START_DATE": "2023-01-01"}
    return Pipeline(pg=database, workdir=tmp_path, base_url=mirror_of(source).base_url, settings=settings)


def source_gets_days(pipeline: Pipeline, days: int) -> None:
    write_exports(pipeline.workdir / "source", FIXTURE_METERS, DAY_1, DAY_1 + timedelta(days=days))


def assert_marts_hold_the_source(pipeline: Pipeline, days: int) -> None:
    for meter in FIXTURE_METERS:
        expected = source_readings(pipeline.workdir / "source", meter.muid)
        assert len(expected) == days * 96
        assert mart_readings(pipeline, meter.muid) == expected, meter.stream_name


def test_state_is_kept_in_the_database_it_describes(one_day_pipeline):
    one_day_pipeline.meltano(*PIPELINE)
    assert bookmarks(one_day_pipeline) == {
        meter.stream_name: "2023-03-25T23:45:00.000Z" for meter in FIXTURE_METERS
    }
    assert one_day_pipeline.scalar("select count(*) from meltano.runs where state = 'SUCCESS'") == 1
    # ... and nowhere else: no system database file beside the project's plugins.
    assert not list(one_day_pipeline.workdir.rglob("meltano.db"))
    listed = one_day_pipeline.meltano("state", "list")
    assert STATE_ID in listed.stdout


def test_a_dropped_and_recreated_database_is_loaded_again_in_full(one_day_pipeline):
    one_day_pipeline.meltano(*PIPELINE)
    drop_database(one_day_pipeline.pg)
    create_database(name=one_day_pipeline.pg["PGDATABASE"])

    one_day_pipeline.meltano(*PIPELINE)
    assert_marts_hold_the_source(one_day_pipeline, days=1)


def client(pipeline: Pipeline, program: str, *args: str) -> None:
    """Run pg_dump or pg_restore (from the pgserver wheel, of a version the server accepts) on the database."""
    server_major = pipeline.scalar("select current_setting('server_version_num')::int / 10000")
    command = [wheel_program(program, server_major), *args]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    assert done.returncode == 0, f"{' '.join(command)}: {done.stderr}"


def test_a_backup_restored_over_newer_data_gets_the_newer_days_on_the_next_run(one_day_pipeline):
    pipeline = one_day_pipeline
    pipeline.meltano(*PIPELINE)
    backup = pipeline.workdir / "after-day-1.dump"
    client(pipeline, "pg_dump", "--format=custom", f"--file={backup}", conninfo(pipeline.pg))

    source_gets_days(pipeline, 2)
    pipeline.meltano(*PIPELINE)
    assert_marts_hold_the_source(pipeline, days=2)

    restore = (
        "--clean",
        "--if-exists",
        "--no-owner",
        "--single-transaction",
        f"--dbname={conninfo(pipeline.pg)}",
    )
    client(pipeline, "pg_restore", *restore, str(backup))
    assert pipeline.scalar("select count(*) from marts.fct_readings") == 2 * 96  # day 1 only, as backed up
    assert bookmarks(pipeline)["muid_1"] == "2023-03-25T23:45:00.000Z"  # and so are the bookmarks

    pipeline.meltano(*PIPELINE)
    assert_marts_hold_the_source(pipeline, days=2)


def test_bookmarks_ahead_of_the_marts_fail_the_run_with_the_way_out(one_day_pipeline):
    """The data is lost but the bookmarks are not (say, a backup restored without schema meltano)."""
    pipeline = one_day_pipeline
    pipeline.meltano(*PIPELINE)
    pipeline.execute("drop schema raw, marts cascade")

    failed = pipeline.meltano(*PIPELINE, check=False)
    assert failed.returncode != 0
    log = failed.stdout + failed.stderr
    assert "Meltano's bookmarks are ahead of the marts" in log
    # A stream per meter keeps its bookmark in its meter's partition: the message may name the meter.
    assert re.search(r"muid_1( \(meter [0-9a-f-]+\))? up to 2023-03-25T23:45:00\.000Z", log), log[-2000:]
    assert f"meltano state clear {STATE_ID} --force" in log

    # The way out the message gives.
    pipeline.meltano("state", "clear", STATE_ID, "--force")
    pipeline.meltano(*PIPELINE)
    assert_marts_hold_the_source(pipeline, days=1)
