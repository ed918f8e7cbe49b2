"""End to end: the real `meltano run tap-exnaton target-postgres` into a real PostgreSQL."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pytest

from tests.conftest import FIXTURE_METERS
from tests.pipeline import DAY_READING_AT, REAL_METERS, Pipeline
from tools.synthetic import Meter, day_start, meter_readings, meters_setting, write_exports

pytestmark = pytest.mark.e2e
EL = ("run", "tap-exnaton", "target-postgres")
SDC_COLUMNS = {
    "_sdc_extracted_at",
    "_sdc_received_at",
    "_sdc_batched_at",
    "_sdc_deleted_at",
    "_sdc_sequence",
    "_sdc_table_version",
    "_sdc_sync_started_at",
}


def source_rows(path: Path) -> list[tuple]:
    """(muid, obis_code, timestamp, value as exact decimal text, tags) for every OBIS value in a file."""
    rows = []
    for reading in json.loads(path.read_bytes())["data"]:
        for key, value in reading.items():
            if key.startswith("0100"):
                stamp = reading["timestamp"].replace("T", " ").replace(".000Z", "")
                rows.append((reading["tags"]["muid"], key, stamp, Decimal(repr(value)), reading["tags"]))
    return sorted(rows, key=lambda row: row[:3])


def loaded_rows(pipeline: Pipeline, table: str) -> list[tuple]:
    return pipeline.query(
        f"select muid, obis_code, to_char(timestamp, 'YYYY-MM-DD HH24:MI:SS'), value, tags from raw.{table} "
        "order by muid, obis_code, timestamp"
    )


def test_every_reading_lands_exactly_in_raw(pipeline, tmp_path):
    pipeline.meltano(*EL)
    for meter in FIXTURE_METERS:
        expected = source_rows(tmp_path / "source" / f"{meter.muid}.json")
        assert loaded_rows(pipeline, meter.stream_name) == expected
    columns = {
        name
        for (name,) in pipeline.query(
            "select column_name from information_schema.columns where table_schema = 'raw' and table_name = 'muid_1'"
        )
    }
    assert columns >= SDC_COLUMNS | {
        "muid",
        "measurement",
        "timestamp",
        "quality",
        "obis_code",
        "value",
        "tags",
    }
    assert pipeline.scalar("select count(*) from raw.muid_1 where quality = 'measured'") == 3 * 96


def test_second_run_with_state_loads_nothing_new(pipeline):
    first = pipeline.meltano(*EL)
    batched = pipeline.scalar("select max(_sdc_batched_at) from raw.muid_1")
    second = pipeline.meltano(*EL)
    assert pipeline.scalar("select count(*) from raw.muid_1") == 3 * 96
    assert pipeline.scalar("select max(_sdc_batched_at) from raw.muid_1") == batched
    assert '"metric":"record_count","value":288' in first.stderr.replace(" ", "")
    assert '"metric":"record_count","value":288' not in second.stderr.replace(" ", "")
    state = pipeline.meltano("state", "get", "dev:tap-exnaton-to-target-postgres").stdout
    bookmarks = json.loads(state)["singer_state"]["bookmarks"]
    # Every stream is partitioned by meter: a stream per meter has one partition.
    (partition,) = bookmarks["muid_1"]["partitions"]
    assert partition["context"]["muid"] == FIXTURE_METERS[0].muid
    assert partition["replication_key_value"] == "2023-03-27T23:45:00.000Z"


def test_new_readings_are_picked_up_incrementally(pipeline, tmp_path):
    pipeline.meltano(*EL)
    first_load = pipeline.scalar("select max(_sdc_batched_at) from raw.muid_2")
    write_exports(tmp_path / "source", FIXTURE_METERS, day_start("2023-03-25"), day_start("2023-03-29"))
    pipeline.meltano(*EL)
    assert pipeline.scalar("select count(*) from raw.muid_2") == 4 * 96
    assert pipeline.scalar("select count(*) from raw.muid_2 where _sdc_batched_at > %s", [first_load]) == 96


def test_full_refresh_with_keys_appends_into_a_table_without_primary_key(pipeline):
    pipeline.meltano(*EL)
    pipeline.meltano("run", "--full-refresh", "tap-exnaton", "target-postgres")
    # The loader appends (contract 1: no merge, fct_readings keeps one copy of each reading) ...
    assert pipeline.scalar("select count(*) from raw.muid_1") == 2 * 3 * 96
    assert pipeline.scalar("select count(distinct (muid, obis_code, timestamp)) from raw.muid_1") == 3 * 96
    # ... so the table has no primary key (it would refuse the copies), only a plain index on the stream's
    # key properties (target-postgres-raw/README.md).
    assert pipeline.query("select conname from pg_constraint where conrelid = 'raw.muid_1'::regclass") == []
    indexes = pipeline.query(
        "select indexdef from pg_indexes where schemaname = 'raw' and tablename = 'muid_1'"
    )
    assert indexes == [('CREATE INDEX muid_1_keys ON raw.muid_1 USING btree (muid, obis_code, "timestamp")',)]


def test_append_mode_full_refresh_appends(pipeline):
    append = {"TAP_EXNATON_APPEND_ONLY": "true"}
    pipeline.meltano(*EL, extra_env=append)
    pipeline.meltano("run", "--full-refresh", "tap-exnaton", "target-postgres", extra_env=append)
    assert pipeline.scalar("select count(*) from raw.muid_1") == 2 * 3 * 96
    assert pipeline.scalar("select count(distinct (muid, obis_code, timestamp)) from raw.muid_1") == 3 * 96


def test_meters_setting_from_environment_adds_a_stream(pipeline, tmp_path):
    extra = Meter("garage", "0a7c2c61-7d3c-4b41-9d59-4f2e3f0f2b11", "0100011D00FF")
    write_exports(tmp_path / "source", [extra], day_start("2023-03-25"), day_start("2023-03-26"))
    pipeline.meltano(*EL, extra_env={"TAP_EXNATON_METERS": meters_setting([*FIXTURE_METERS, extra])})
    assert pipeline.scalar("select count(*) from raw.garage") == 96
    assert pipeline.scalar("select count(*) from raw.muid_1") == 3 * 96


def test_measurement_mode_loads_the_same_rows(pipeline, tmp_path):
    measurement = {
        "TAP_EXNATON_API_MODE": "measurement",
        "TAP_EXNATON_START_DATE": "2023-03-25",
        "TAP_EXNATON_END_DATE": "2023-04-01",
        "TAP_EXNATON_PAGE_SIZE": "100",
    }
    pipeline.meltano(*EL, extra_env=measurement)
    for meter in FIXTURE_METERS:
        assert loaded_rows(pipeline, meter.stream_name) == source_rows(
            tmp_path / "source" / f"{meter.muid}.json"
        )


def test_source_error_fails_the_run_and_keeps_state(pipeline, tmp_path):
    pipeline.meltano(*EL)
    (tmp_path / "source" / f"{FIXTURE_METERS[0].muid}.json").write_text('{"data": [{"timestamp": "soon"}]}')
    failed = pipeline.meltano(*EL, check=False)
    assert failed.returncode != 0
    assert "muid_1: GET http://127.0.0.1" in failed.stderr and "'timestamp'" in failed.stderr
    assert pipeline.scalar("select count(*) from raw.muid_1") == 3 * 96


def test_the_real_files_load_completely(real_files, database, mirror_of, tmp_path):
    pipeline = Pipeline(
        pg=database,
        workdir=tmp_path,
        base_url=mirror_of(real_files).base_url,
        settings={"TAP_EXNATON_RECORD_LAYOUT": "reading"},
    )
    pipeline.meltano(*EL)
    for stream, muid in REAL_METERS.items():
        expected = source_rows(real_files / f"{muid}.json")
        assert len(expected) == 2688
        assert pipeline.scalar(f"select count(*) from raw.{stream}") == 2688
        assert pipeline.scalar(f"select sum(value) from raw.{stream}") == sum(row[3] for row in expected)
        assert loaded_rows(pipeline, stream) == expected


def test_synthetic_source_matches_the_real_format(real_files):
    real = json.loads((real_files / f"{REAL_METERS['muid_2']}.json").read_bytes())["data"][0]
    synthetic = meter_readings(FIXTURE_METERS[1], day_start("2023-02-28"), day_start("2023-03-01"))[0]
    assert real.keys() == synthetic.keys()
    assert real["tags"].keys() == synthetic["tags"].keys()
    assert real["timestamp"] == synthetic["timestamp"] == "2023-02-28T23:45:00.000Z"


def test_schedules_are_defined(pipeline):
    listed = pipeline.meltano("schedule", "list", "--format", "json").stdout
    schedules = {s["name"]: s for s in json.loads(listed)["schedules"]["job"]}
    assert schedules["daily-pipeline"]["interval"] == "@daily"
    assert schedules["quarter-hourly-pipeline"]["cron_interval"] == "7,22,37,52 * * * *"
    assert schedules["daily-pipeline"]["job"]["tasks"] == ["tap-exnaton target-postgres dbt-postgres:build"]


def test_schedule_run_runs_the_whole_pipeline(pipeline):
    pipeline.meltano("schedule", "run", "daily-pipeline")
    assert pipeline.scalar("select count(*) from raw.muid_1") == 3 * 96
    assert (
        pipeline.scalar("select count(*) from marts.fct_readings where muid = %s", [FIXTURE_METERS[0].muid])
        == 3 * 96
    )


# --- the default meter_day layout: one raw row per meter, OBIS code and UTC day -----------------------

UNNESTED = (
    f"select d.muid, d.obis_code, to_char({DAY_READING_AT} at time zone 'UTC', 'YYYY-MM-DD HH24:MI:SS'), v "
    "from raw.{table} d, unnest(d.timestamps, d.values) with ordinality as u(t, v, n) order by 1, 2, 3"
)


def test_default_layout_loads_the_real_files_as_day_rows(real_files, database, mirror_of, tmp_path):
    pipeline = Pipeline(pg=database, workdir=tmp_path, base_url=mirror_of(real_files).base_url)
    pipeline.meltano(*EL)
    for stream, muid in REAL_METERS.items():
        expected = [row[:4] for row in source_rows(real_files / f"{muid}.json")]
        assert pipeline.scalar(f"select count(*) from raw.{stream}") == 28
        assert pipeline.scalar(f"select sum(reading_count) from raw.{stream}") == 2688
        assert pipeline.query(UNNESTED.format(table=stream)) == expected


def test_default_layout_state_merge_and_append(pipeline):
    day_layout = {"TAP_EXNATON_RECORD_LAYOUT": "meter_day"}
    pipeline.meltano(*EL, extra_env=day_layout)
    assert pipeline.scalar("select count(*) from raw.muid_1") == 3
    batched = pipeline.scalar("select max(_sdc_batched_at) from raw.muid_1")
    pipeline.meltano(*EL, extra_env=day_layout)
    assert pipeline.scalar("select max(_sdc_batched_at) from raw.muid_1") == batched  # nothing new loaded
    pipeline.meltano("run", "--full-refresh", "tap-exnaton", "target-postgres", extra_env=day_layout)
    # The loader appends (no merge): the full refresh adds a second copy of each day, fct_readings keeps one.
    assert pipeline.scalar("select count(*) from raw.muid_1") == 2 * 3
    assert pipeline.scalar("select count(distinct (muid, obis_code, day)) from raw.muid_1") == 3
    assert pipeline.scalar("select sum(reading_count) from raw.muid_1") == 2 * 3 * 96


def test_default_layout_append_mode_appends(pipeline):
    append = {"TAP_EXNATON_RECORD_LAYOUT": "meter_day", "TAP_EXNATON_APPEND_ONLY": "true"}
    pipeline.meltano(*EL, extra_env=append)
    pipeline.meltano("run", "--full-refresh", "tap-exnaton", "target-postgres", extra_env=append)
    assert pipeline.scalar("select count(*) from raw.muid_2") == 2 * 3
