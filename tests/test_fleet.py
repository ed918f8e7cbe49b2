"""End to end: the fleet stream (`stream_per_meter: false`) through the real `meltano run` into PostgreSQL.

One stream `readings` (one raw table) carries every meter, with a bookmark per meter; the marts are the
same as through a stream per meter, and a project can move between the two without losing or doubling a
reading.
"""

from __future__ import annotations

import json

import pytest

from tests.conftest import FAST_RETRIES, FIXTURE_METERS
from tests.faulty_source import (
    FaultySource,
    error_lines,
    mart_readings,
    meter_bookmarks,
    slow,
    source_readings,
)
from tests.pipeline import Pipeline
from tests.test_transform import (
    LOAD_TIME_COLUMNS,
    PIPELINE,
    assert_dim_meters_match_readings,
    snapshot,
)
from tools.synthetic import day_start, write_exports

pytestmark = pytest.mark.e2e
FLEET = {"TAP_EXNATON_STREAM_PER_METER": "false"}
EL = ("run", "tap-exnaton", "target-postgres")


def assert_marts_hold_every_reading_once(pipeline: Pipeline, source) -> None:
    for meter in FIXTURE_METERS:
        assert mart_readings(pipeline, meter.muid) == source_readings(source, meter.muid), meter.stream_name
    count = pipeline.scalar("select count(*) from marts.fct_readings")
    assert count == sum(len(source_readings(source, meter.muid)) for meter in FIXTURE_METERS)


def test_fleet_stream_gives_the_same_marts_as_streams_per_meter(warehouse, database, mirror_of, tmp_path):
    """The warehouse loads the real files (when there) through the two default streams; the fleet stream
    loads the same files into raw.readings, and every mart is the same but for which stream loaded it."""
    fleet = Pipeline(
        pg=database,
        workdir=tmp_path,
        base_url=mirror_of(warehouse.workdir / "source").base_url,
        settings={**warehouse.settings, **FLEET},
    )
    fleet.meltano(*PIPELINE)

    tables = [row[0] for row in fleet.query("select tablename from pg_tables where schemaname = 'raw'")]
    assert tables == ["readings"]
    assert fleet.scalar("select count(distinct stream_name) from marts.fct_readings") == 1
    skip = (*LOAD_TIME_COLUMNS, "stream_name")
    assert snapshot(fleet, skip=skip) == snapshot(warehouse, skip=skip)
    assert fleet.scalar("select count(*) from marts.muid_1_transforms") == warehouse.scalar(
        "select count(*) from marts.muid_1_transforms"
    )


def test_moving_between_streams_per_meter_and_the_fleet_stream_keeps_each_reading_once(pipeline, tmp_path):
    source = tmp_path / "source"
    day_layout = {"TAP_EXNATON_RECORD_LAYOUT": "meter_day"}

    pipeline.meltano(*PIPELINE, extra_env=day_layout)
    assert_marts_hold_every_reading_once(pipeline, source)

    write_exports(source, FIXTURE_METERS, day_start("2023-03-25"), day_start("2023-03-29"))
    pipeline.meltano(*PIPELINE, extra_env={**day_layout, **FLEET})
    assert_marts_hold_every_reading_once(pipeline, source)
    assert pipeline.scalar("select count(*) from marts.fct_readings where stream_name = 'readings'") > 0
    # The meters' latest readings came through the fleet stream: dim_meters names it.
    assert_dim_meters_match_readings(pipeline)
    assert {row[0] for row in pipeline.query("select stream_name from marts.dim_meters")} == {"readings"}

    write_exports(source, FIXTURE_METERS, day_start("2023-03-25"), day_start("2023-03-30"))
    pipeline.meltano(*PIPELINE, extra_env=day_layout)
    assert_marts_hold_every_reading_once(pipeline, source)
    assert_dim_meters_match_readings(pipeline)
    assert pipeline.scalar("select count(*) from marts.muid_1_transforms") == len(
        source_readings(source, FIXTURE_METERS[0].muid)
    )


def test_a_meter_failing_midway_keeps_its_bookmark_the_others_load(database, tmp_path):
    """Measurement mode, a window a day: the third window of one meter never answers. The other meter loads
    whole and is bookmarked; the failing one keeps its bookmark; the run fails naming it; the re-run after
    the source heals loads every reading exactly once."""
    source = write_exports(
        tmp_path / "source", FIXTURE_METERS, day_start("2023-03-25"), day_start("2023-03-28")
    )
    failing, healthy = FIXTURE_METERS[1], FIXTURE_METERS[0]
    settings = {
        **FAST_RETRIES,
        **FLEET,
        "TAP_EXNATON_METERS": json.dumps([{"muid": m.muid} for m in FIXTURE_METERS]),
        "TAP_EXNATON_API_MODE": "measurement",
        "TAP_EXNATON_START_DATE": "2023-03-25",
        "TAP_EXNATON_END_DATE": "2023-03-28",
        "TAP_EXNATON_WINDOW_DAYS": "1",
    }
    with FaultySource(source) as faulty:
        pipeline = Pipeline(pg=database, workdir=tmp_path, base_url=faulty.base_url, settings=settings)
        faulty.on(f"muid={failing.muid}&measurement=energy&start=2023-03-27", then=slow(5))

        failed = pipeline.meltano(*EL, check=False)

        assert failed.returncode != 0
        [message] = error_lines(failed.stderr)
        assert f"muid={failing.muid}" in message and "ReadTimeout" in message, message
        bookmarks = meter_bookmarks(pipeline)
        assert bookmarks[healthy.muid] == "2023-03-27T23:45:00.000Z"
        # A meter's pages of a run are fetched whole before its records go out: the failing meter loaded
        # nothing and has no bookmark yet, so the next run asks from start_date again.
        assert bookmarks.get(failing.muid) is None
        assert pipeline.scalar("select count(*) from raw.readings where muid = %s", [failing.muid]) == 0
        assert pipeline.scalar("select count(*) from raw.readings where muid = %s", [healthy.muid]) == 3

        faulty.heal()
        pipeline.meltano(*PIPELINE)
    assert_marts_hold_every_reading_once(pipeline, source)
    assert set(meter_bookmarks(pipeline).values()) == {"2023-03-27T23:45:00.000Z"}
