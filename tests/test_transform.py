"""The dbt project in transform/, run the way users run it: `meltano run tap-exnaton target-postgres dbt`
against a local HTTP source and a real PostgreSQL. Expected values are computed here in Python, from the
export files, with zoneinfo: independently of the SQL under test."""

from __future__ import annotations

import json
import re
from collections import Counter, defaultdict
from datetime import date, datetime, timedelta
from decimal import Decimal
from itertools import pairwise
from pathlib import Path
from zoneinfo import ZoneInfo

import psycopg
import pytest

from tests.conftest import FIXTURE_METERS
from tests.pipeline import REAL_METERS, Pipeline
from tools.synthetic import UTC, Meter, day_start, dump_export, meter_readings, meters_setting, write_exports

pytestmark = pytest.mark.e2e

OBIS_KEY = re.compile(r"^[0-9A-Fa-f]{12}$")
ZURICH = ZoneInfo("Europe/Zurich")
QUARTER = timedelta(minutes=15)
SCHEMAS = ("marts",)
# Load times change with every load by nature; everything else in the marts must not.
LOAD_TIME_COLUMNS = ("loaded_at", "last_loaded_at")
FULL_REFRESH_APPEND = {"TAP_EXNATON_APPEND_ONLY": "true"}
PIPELINE = ("run", "tap-exnaton", "target-postgres", "dbt")


# --- expected values, from the export files -------------------------------------------------------------


def export_readings(path: Path) -> dict[tuple[str, str, datetime], Decimal]:
    """(muid, obis_code, UTC start) -> exact value of one export file; a repeated reading keeps its last copy."""
    readings = {}
    for record in json.loads(path.read_bytes(), parse_float=Decimal)["data"]:
        moment = datetime.fromisoformat(record["timestamp"])
        for key, value in record.items():
            if OBIS_KEY.match(key):
                readings[(record["tags"]["muid"], key.upper(), moment)] = Decimal(value)
    return readings


def local_day(moment: datetime) -> date:
    return moment.astimezone(ZURICH).date()


def local_hour_start(moment: datetime) -> datetime:
    # astimezone sets `fold` in the repeated hour of a fall-back day and replace keeps it.
    return moment.astimezone(ZURICH).replace(minute=0, second=0, microsecond=0).astimezone(UTC)


def totals_by(readings: dict, bucket) -> dict[tuple, tuple[Decimal, int]]:
    sums: dict[tuple, Decimal] = defaultdict(Decimal)
    counts: Counter = Counter()
    for (muid, obis, moment), value in readings.items():
        key = (muid, obis, bucket(moment))
        sums[key] += value
        counts[key] += 1
    return {key: (sums[key], counts[key]) for key in sums}


def intervals_in_local_day(day: date) -> int:
    start = datetime(day.year, day.month, day.day, tzinfo=ZURICH).astimezone(UTC)
    after = day + timedelta(days=1)
    stop = datetime(after.year, after.month, after.day, tzinfo=ZURICH).astimezone(UTC)
    return int((stop - start) / QUARTER)


# --- reading the marts ----------------------------------------------------------------------------------


def mart_totals(pipeline, table: str, bucket: str, muids: set[str]) -> dict[tuple, tuple[Decimal, int]]:
    rows = pipeline.query(
        f"select muid, obis_code, {bucket}, energy_kwh, reading_count from marts.{table} where muid = any(%s)",
        [list(muids)],
    )
    return {(muid, obis, at): (energy, count) for muid, obis, at, energy, count in rows}


def relations(pipeline) -> list[tuple[str, str]]:
    return pipeline.query(
        "select table_schema, table_name from information_schema.tables"
        " where table_schema = any(%s) order by 1, 2",
        [list(SCHEMAS)],
    )


def snapshot(pipeline, *, skip: tuple[str, ...] = LOAD_TIME_COLUMNS) -> dict[str, tuple[int, str]]:
    """Row count and an ordered md5 over every column but ``skip``, for each relation of the marts."""
    result = {}
    for schema, table in relations(pipeline):
        columns = [
            name
            for (name,) in pipeline.query(
                "select column_name from information_schema.columns"
                " where table_schema = %s and table_name = %s order by ordinal_position",
                [schema, table],
            )
            if name not in skip
        ]
        listed = ", ".join(f'"{name}"' for name in columns)
        result[f"{schema}.{table}"] = pipeline.query(
            f"select count(*), md5(coalesce(string_agg(row_text, E'\\n' order by row_text), ''))"
            f' from (select row({listed})::text as row_text from "{schema}"."{table}") as rows'
        )[0]
    return result


def row_versions(pipeline, table: str, key: str) -> dict[tuple, str]:
    """Key -> xmin, the id of the transaction that last wrote the row: tells which rows a run touched."""
    rows = pipeline.query(f"select {key}, xmin::text from marts.{table}")
    return {tuple(row[:-1]): row[-1] for row in rows}


# --- the warehouse: real files (or synthetic ones) loaded once -----------------------------------------


def test_daily_and_hourly_totals_equal_totals_from_the_files(warehouse):
    source = warehouse.workdir / "source"
    readings = {}
    for path in source.glob("*.json"):
        readings.update(export_readings(path))
    muids = {muid for muid, _, _ in readings}

    assert mart_totals(warehouse, "fct_energy_daily", "day", muids) == totals_by(readings, local_day)
    assert mart_totals(warehouse, "fct_energy_hourly", "hour_start", muids) == totals_by(
        readings, local_hour_start
    )
    assert warehouse.scalar("select count(*) from marts.fct_readings") == len(readings)


def test_real_files_daily_totals_and_meters(warehouse, real_files):
    readings = {}
    for muid in REAL_METERS.values():
        readings.update(export_readings(real_files / f"{muid}.json"))
    expected = totals_by(readings, local_day)

    assert mart_totals(warehouse, "fct_energy_daily", "day", set(REAL_METERS.values())) == expected
    # Feb 2023 in UTC is 2023-02-01 01:00 .. 2023-03-01 01:00 in Zurich: 29 local days per meter.
    assert len(expected) == 2 * 29
    meters = warehouse.query(
        "select stream_name, muid, obis_code, direction, reading_count, first_reading_at, last_reading_at"
        " from marts.dim_meters where muid = any(%s) order by stream_name",
        [list(REAL_METERS.values())],
    )
    first, last = datetime(2023, 2, 1, tzinfo=UTC), datetime(2023, 2, 28, 23, 45, tzinfo=UTC)
    assert meters == [
        ("muid_1", REAL_METERS["muid_1"], "0100011D00FF", "import", 2688, first, last),
        ("muid_2", REAL_METERS["muid_2"], "0100021D00FF", "export", 2688, first, last),
    ]


def test_dim_meters_last_loaded_at_is_the_latest_raw_batch(warehouse):
    for stream, muid, last_loaded_at in warehouse.query(
        "select stream_name, muid, last_loaded_at from marts.dim_meters"
    ):
        raw_latest = warehouse.scalar(
            f"select max(_sdc_batched_at) at time zone 'UTC' from raw.\"{stream}\" where muid = %s", [muid]
        )
        assert last_loaded_at == raw_latest


def test_spring_forward_day_has_23_local_hours_and_92_intervals(warehouse):
    spring = date(2023, 3, 26)
    days = warehouse.query(
        "select muid, obis_code, reading_count from marts.fct_energy_daily where day = %s", [spring]
    )
    assert days, "the warehouse fixture has a meter spanning 2023-03-26"
    for muid, obis, reading_count in days:
        assert reading_count == 92
        hours = warehouse.query(
            "select hour_start, reading_count from marts.fct_energy_hourly"
            " where muid = %s and obis_code = %s and (hour_start at time zone 'Europe/Zurich')::date = %s"
            " order by hour_start",
            [muid, obis, spring],
        )
        assert len(hours) == 23
        assert all(count == 4 for _, count in hours)
        # Local 02:00 does not exist: 01:00 CET is followed by 03:00 CEST, one hour later.
        assert [start.astimezone(ZURICH).hour for start, _ in hours] == [0, 1, *range(3, 24)]
        starts = [start for start, _ in hours]
        assert all(later - earlier == timedelta(hours=1) for earlier, later in pairwise(starts))
    completeness = warehouse.query(
        "select muid, obis_code, expected_intervals, received_intervals, missing_intervals, completeness_pct"
        " from marts.fct_meter_completeness_daily where day = %s",
        [spring],
    )
    # One row per channel: the grain of the daily energy (and of the API's /completeness).
    assert sorted(row[:2] for row in completeness) == sorted(row[:2] for row in days)
    assert all(row[2:] == (92, 92, 0, Decimal("100.00")) for row in completeness)


def test_fall_back_day_has_25_hours_and_100_intervals(warehouse):
    fall = date(2023, 10, 29)
    rows = warehouse.query(
        "select d.muid, d.reading_count, c.expected_intervals, c.received_intervals,"
        " (select count(*) from marts.fct_energy_hourly h where h.muid = d.muid and h.obis_code = d.obis_code"
        "   and (h.hour_start at time zone 'Europe/Zurich')::date = d.day)"
        " from marts.fct_energy_daily d join marts.fct_meter_completeness_daily c using (muid, obis_code, day)"
        " where d.day = %s",
        [fall],
    )
    assert rows and all(row[1:] == (100, 100, 100, 25) for row in rows)
    # The hourly mart is keyed by UTC hours, whatever the zone: the repeated local 02:00 is two rows.
    assert (
        warehouse.scalar(
            "select count(*) from marts.fct_energy_hourly where date_trunc('hour', hour_start, 'UTC') <> hour_start"
        )
        == 0
    )


def test_per_meter_transforms_views(warehouse):
    for stream in ("muid_1", "muid_2"):
        expected = warehouse.query(
            "select r.reading_at, r.energy_kwh, m.direction, r.quality from marts.fct_readings r"
            " join marts.dim_meters m using (muid, obis_code) where m.stream_name = %s order by 1",
            [stream],
        )
        rows = warehouse.query(f"select * from marts.{stream}_transforms order by reading_at")
        assert rows == expected
        assert len(rows) > 0


def test_both_record_layouts_give_the_same_marts(warehouse, database, mirror_of, tmp_path):
    """The warehouse loads the default fast layout (a record per meter-day with arrays, unnested by dbt); the
    per-reading layout of any other Singer set-up gives the very same marts."""
    assert warehouse.scalar(
        "select count(*) from information_schema.columns where column_name = 'timestamps'"
    )
    pipeline = Pipeline(
        pg=database,
        workdir=tmp_path,
        base_url=mirror_of(warehouse.workdir / "source").base_url,
        settings={**warehouse.settings, "TAP_EXNATON_RECORD_LAYOUT": "reading"},
    )
    pipeline.meltano(*PIPELINE)
    assert not pipeline.scalar(
        "select count(*) from information_schema.columns where column_name = 'timestamps'"
    )
    assert snapshot(pipeline) == snapshot(warehouse)


def test_docs_freshness_and_debug_through_meltano(warehouse):
    warehouse.meltano("invoke", "dbt-postgres:debug")
    freshness = warehouse.meltano("invoke", "dbt-postgres:source-freshness")
    assert "PASS" in freshness.stdout + freshness.stderr
    warehouse.meltano("invoke", "dbt-postgres:docs-generate")

    target = warehouse.workdir / "dbt-target"
    manifest = json.loads((target / "manifest.json").read_text())
    catalog = json.loads((target / "catalog.json").read_text())
    assert (target / "index.html").is_file()
    models = {uid: node for uid, node in manifest["nodes"].items() if node["resource_type"] == "model"}
    assert {node["name"] for node in models.values()} >= {
        "stg_exnaton__meter_day_readings",
        "stg_exnaton__reading_rows",
        "fct_readings",
        "fct_energy_hourly",
        "fct_energy_daily",
        "fct_meter_completeness_daily",
        "dim_meters",
        "dim_local_days",
        "muid_1_transforms",
        "muid_2_transforms",
    }
    # Lineage (the docs' graph): every raw table the tap writes is a declared source that staging reads.
    edges = {(parent, node["name"]) for node in models.values() for parent in node["depends_on"]["nodes"]}
    for table in ("muid_1", "muid_2", "readings"):
        for layout in ("stg_exnaton__meter_day_readings", "stg_exnaton__reading_rows"):
            assert (f"source.exnaton.exnaton.{table}", layout) in edges
    assert "source.exnaton.meltano.state" in manifest["child_map"]
    assert manifest["child_map"]["source.exnaton.meltano.state"]
    # The readings are stored once, in fct_readings: staging is inlined, it writes no copy of its own.
    staging = {
        node["name"]: node["config"]["materialized"] for node in models.values() if "staging" in node["fqn"]
    }
    assert staging == dict.fromkeys(
        ("stg_exnaton__meter_day_readings", "stg_exnaton__reading_rows"), "ephemeral"
    )
    for uid, node in models.items():
        assert node["description"].strip(), f"{node['name']} has no description"
        if node["config"]["materialized"] == "ephemeral":
            continue  # built into the models that read it: no relation of its own in the catalog
        built_columns = set(catalog["nodes"][uid]["columns"])
        documented = {name for name, column in node["columns"].items() if column["description"].strip()}
        assert built_columns <= documented, f"{node['name']}: undocumented {built_columns - documented}"


# --- pipelines of their own -----------------------------------------------------------------------------


def test_append_only_full_refresh_three_times_leaves_marts_identical(pipeline):
    snapshots = []
    for run in range(1, 4):
        pipeline.meltano("run", "--full-refresh", *PIPELINE[1:], extra_env=FULL_REFRESH_APPEND)
        assert pipeline.scalar("select count(*) from raw.muid_1") == run * 3 * 96
        snapshots.append(snapshot(pipeline))

    assert snapshots[0]["marts.fct_readings"][0] == 2 * 3 * 96
    assert set(snapshots[0]) >= {f"marts.{name}" for name in ("dim_meters", "fct_energy_daily")}
    assert snapshots[1] == snapshots[0]
    assert snapshots[2] == snapshots[0]
    # Reloads are not source duplicates.
    assert pipeline.scalar("select sum(duplicate_readings) from marts.fct_meter_completeness_daily") == 0


def test_incremental_run_after_one_new_day_touches_only_that_day(pipeline):
    pipeline.meltano(*PIPELINE)
    readings_before = row_versions(pipeline, "fct_readings", "muid, obis_code, reading_at")
    hourly_before = row_versions(pipeline, "fct_energy_hourly", "muid, obis_code, hour_start")
    daily_before = row_versions(pipeline, "fct_energy_daily", "muid, obis_code, day")
    completeness_before = row_versions(pipeline, "fct_meter_completeness_daily", "muid, obis_code, day")
    calendar_before = row_versions(pipeline, "dim_local_days", "day")

    # One more UTC day at the source (the same deterministic values for the days already there).
    meters = FIXTURE_METERS
    source = pipeline.workdir / "source"
    write_exports(source, meters, day_start("2023-03-25"), day_start("2023-03-29"))
    pipeline.meltano(*PIPELINE)

    new_day = [day_start("2023-03-28") + QUARTER * i for i in range(96)]
    new_keys = {(m.muid, m.obis_code, moment) for m in meters for moment in new_day}
    assert changed(
        readings_before, row_versions(pipeline, "fct_readings", "muid, obis_code, reading_at")
    ) == (new_keys)
    assert changed(
        hourly_before, row_versions(pipeline, "fct_energy_hourly", "muid, obis_code, hour_start")
    ) == {(muid, obis, local_hour_start(moment)) for muid, obis, moment in new_keys}
    assert changed(daily_before, row_versions(pipeline, "fct_energy_daily", "muid, obis_code, day")) == {
        (muid, obis, local_day(moment)) for muid, obis, moment in new_keys
    }
    assert changed(
        completeness_before, row_versions(pipeline, "fct_meter_completeness_daily", "muid, obis_code, day")
    ) == {(muid, obis, local_day(moment)) for muid, obis, moment in new_keys}
    # The calendar's days do not depend on the readings: an incremental run writes none of its rows.
    assert changed(calendar_before, row_versions(pipeline, "dim_local_days", "day")) == set()

    # The incremental result is exactly what a rebuild from scratch gives, load times included.
    incremental = snapshot(pipeline, skip=())
    pipeline.meltano("invoke", "dbt-postgres:full-refresh")
    assert snapshot(pipeline, skip=()) == incremental
    assert incremental["marts.fct_readings"][0] == 2 * 4 * 96


def changed(before: dict, after: dict) -> set:
    return {key for key, version in after.items() if before.get(key) != version}


def assert_dim_meters_match_readings(pipeline) -> None:
    """Each dim_meters row says what fct_readings holds: first and last reading, count, and the stream of the
    latest reading (counted here from the readings, not by the model's incremental shortcut)."""
    expected = pipeline.query(
        """
        select muid, obis_code, min(reading_at), max(reading_at), count(*),
               (array_agg(stream_name order by reading_at desc))[1]
        from marts.fct_readings group by 1, 2 order by 1, 2
        """
    )
    built = pipeline.query(
        "select muid, obis_code, first_reading_at, last_reading_at, reading_count, stream_name"
        " from marts.dim_meters order by 1, 2"
    )
    assert built == expected


def test_an_older_day_loaded_later_widens_dim_meters_as_a_rebuild_does(pipeline):
    """Incremental dim_meters widens a meter's first/last reading by the readings loaded since its last build:
    a day older than everything loaded moves first_reading_at back, as a rebuild from scratch would."""
    source = pipeline.workdir / "source"
    write_exports(source, FIXTURE_METERS, day_start("2023-03-26"), day_start("2023-03-28"))
    pipeline.meltano(*PIPELINE)
    assert {row[0] for row in pipeline.query("select first_reading_at from marts.dim_meters")} == {
        day_start("2023-03-26")
    }

    write_exports(source, FIXTURE_METERS, day_start("2023-03-25"), day_start("2023-03-29"))
    pipeline.meltano("run", "--full-refresh", "tap-exnaton", "target-postgres")  # everything, once more
    pipeline.meltano("run", "dbt")
    assert {row[0] for row in pipeline.query("select first_reading_at from marts.dim_meters")} == {
        day_start("2023-03-25")
    }
    assert_dim_meters_match_readings(pipeline)
    incremental = snapshot(pipeline, skip=())
    pipeline.meltano("invoke", "dbt-postgres:full-refresh")
    assert snapshot(pipeline, skip=())["marts.dim_meters"] == incremental["marts.dim_meters"]


GAP_METER = Meter("meter_gap", "5b8c2f0e-7a41-4d3b-9e62-1c0d9a7f3e55", "0100011D00FF")


def gappy_export(path: Path) -> list[dict]:
    """2023-10-28 .. 2023-10-31 UTC around the fall-back switch, with holes and repeated readings."""
    readings = meter_readings(GAP_METER, day_start("2023-10-28"), day_start("2023-11-01"))
    by_local_day: dict[date, list[dict]] = defaultdict(list)
    for reading in readings:
        by_local_day[local_day(datetime.fromisoformat(reading["timestamp"]))].append(reading)
    fall_back = by_local_day[date(2023, 10, 29)]
    # Holes on the 25-hour day, one of them in the repeated hour (00:30 UTC = 02:30 CEST).
    holes = {"2023-10-29T00:30:00.000Z", "2023-10-29T09:00:00.000Z", "2023-10-29T09:15:00.000Z"}
    assert holes <= {r["timestamp"] for r in fall_back}
    kept = [r for r in readings if r["timestamp"] not in holes]
    # A whole local day missing.
    kept = [r for r in kept if local_day(datetime.fromisoformat(r["timestamp"])) != date(2023, 10, 30)]
    # The source sends three readings of Oct 31 twice and one of them a third time.
    repeated = by_local_day[date(2023, 10, 31)][10:13]
    kept = kept + repeated + repeated[:1]
    # One reading with another quality flag: kept, and listed by a warn-level test.
    kept[0] = {**kept[0], "tags": {**kept[0]["tags"], "quality": "estimated"}}
    path.write_bytes(dump_export(kept))
    return kept


@pytest.mark.parametrize("layout", ["reading", "meter_day"])
def test_gap_and_duplicates_give_the_right_completeness(layout, database, mirror_of, tmp_path):
    source = tmp_path / "source"
    source.mkdir()
    sent = gappy_export(source / f"{GAP_METER.muid}.json")
    pipeline = Pipeline(
        pg=database,
        workdir=tmp_path,
        base_url=mirror_of(source).base_url,
        settings={
            "TAP_EXNATON_METERS": meters_setting([GAP_METER]),
            "TAP_EXNATON_START_DATE": "2023-01-01",
            "TAP_EXNATON_RECORD_LAYOUT": layout,
            **FULL_REFRESH_APPEND,
        },
    )
    # Only raw.meter_gap exists: the muid_1/muid_2 views are empty, the build still passes.
    run = pipeline.meltano(*PIPELINE)
    assert re.search(r"WARN 1 accepted_values_fct_readings_quality__measured", run.stdout + run.stderr)

    moments = Counter(datetime.fromisoformat(r["timestamp"]) for r in sent)
    first, last = local_day(min(moments)), local_day(max(moments))
    expected = []
    day = first
    while day <= last:
        received = {m for m in moments if local_day(m) == day}
        duplicates = sum(moments[m] - 1 for m in received)
        slots = intervals_in_local_day(day)
        percent = (Decimal(100) * len(received) / slots).quantize(Decimal("0.01"))
        expected.append((day, slots, len(received), slots - len(received), duplicates, percent))
        day += timedelta(days=1)

    rows = pipeline.query(
        "select day, expected_intervals, received_intervals, missing_intervals, duplicate_readings,"
        " completeness_pct from marts.fct_meter_completeness_daily where muid = %s order by day",
        [GAP_METER.muid],
    )
    assert rows == expected
    by_day = {row[0]: row for row in rows}
    assert by_day[date(2023, 10, 29)][1:4] == (100, 97, 3)
    assert by_day[date(2023, 10, 30)][1:4] == (96, 0, 96)
    assert by_day[date(2023, 10, 31)][4] == 4
    assert (
        pipeline.scalar(
            "select count(*) from marts.fct_energy_hourly"
            " where (hour_start at time zone 'Europe/Zurich')::date = '2023-10-29'"
        )
        == 25
    )
    assert pipeline.scalar("select count(*) from marts.muid_1_transforms") == 0
    assert pipeline.scalar("select count(*) from marts.fct_readings") == len(moments)
    assert pipeline.query("select quality, count(*) from marts.fct_readings group by 1 order by 1") == [
        ("estimated", 1),
        ("measured", len(moments) - 1),
    ]


def test_keys_are_primary_keys_that_postgresql_enforces(pipeline):
    """The contracts' primary keys and not-null constraints, as dbt-postgres created them."""
    pipeline.meltano(*PIPELINE)
    keys = dict(
        pipeline.query(
            "select indrelid::regclass::text, array_agg(attname::text order by position) from pg_index "
            "cross join lateral unnest(indkey) with ordinality as key (attnum, position) "
            "join pg_attribute on attrelid = indrelid and pg_attribute.attnum = key.attnum "
            "where indisprimary group by indrelid"
        )
    )
    # The API's order: one meter's time range over all its codes is one index range.
    assert keys["marts.fct_readings"] == ["muid", "reading_at", "obis_code"]
    assert keys["marts.dim_meters"] == ["muid", "obis_code"]
    with pytest.raises(psycopg.errors.UniqueViolation):
        pipeline.execute("insert into marts.fct_readings select * from marts.fct_readings limit 1")
    with pytest.raises(psycopg.errors.NotNullViolation):
        pipeline.execute("update marts.dim_meters set stream_name = null")


def test_build_tests_the_new_readings_and_the_full_test_job_every_row(pipeline):
    """A build's data tests over fct_readings read the rows loaded since its last build and the whole-table
    tests (tag whole_table) are left out of it; the periodic job dbt-full-test (and a full refresh) reads
    every row and runs them all."""
    first = pipeline.meltano(*PIPELINE)
    assert "assert_no_negative_energy" in first.stdout + first.stderr
    assert "assert_daily_sums_match_readings" not in first.stdout + first.stderr
    # An old reading off the 15-minute grid (same local hour and day: the whole-table sums still agree).
    pipeline.execute(
        "update marts.fct_readings set reading_at = reading_at + interval '1 minute' "
        "where reading_at = (select min(reading_at) from marts.fct_readings)"
    )
    # A daily row that no longer adds up to its readings and hours: only the whole-table tests see it.
    pipeline.execute(
        "update marts.fct_energy_daily set energy_kwh = energy_kwh + 1 "
        "where (muid, obis_code, day) = (select muid, obis_code, day from marts.fct_energy_daily limit 1)"
    )
    build = pipeline.meltano("run", "dbt")  # nothing new loaded: the old rows are not read again
    # An ordinary second run reuses the first one's parse of the project (target/partial_parse.msgpack).
    assert "Unable to do partial parsing" not in build.stdout + build.stderr
    failed = pipeline.meltano("run", "dbt-full-test", check=False)
    assert failed.returncode != 0
    log = failed.stdout + failed.stderr
    for test in (
        "assert_reading_at_on_15_minute_boundary",
        "assert_daily_sums_match_readings",
        "assert_hourly_sums_match_daily",
    ):
        assert re.search(rf"FAIL \d+ {test}", log), test
    failed = pipeline.meltano("invoke", "dbt-postgres:full-refresh", check=False)
    assert failed.returncode == 0  # rebuilt from raw: the row is right again
