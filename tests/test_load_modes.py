"""Load modes switch in both directions on one database, with identical marts: merge, then the README's
append-only full refresh, append-only again, then merge again, in both record layouts of the tap and
through the fleet stream."""

from __future__ import annotations

import pytest

from tests.conftest import FIXTURE_METERS
from tests.faulty_source import mart_readings, source_readings
from tests.test_transform import snapshot
from tools.synthetic import day_start, write_exports

pytestmark = pytest.mark.e2e
PIPELINE = ("run", "tap-exnaton", "target-postgres", "dbt")
APPEND_FULL_REFRESH = ("run", "--full-refresh", *PIPELINE[1:])
APPEND = {"TAP_EXNATON_APPEND_ONLY": "true"}


def raw_rows(pipeline, table: str) -> int:
    return pipeline.scalar(f"select count(*) from raw.{table}")


@pytest.mark.parametrize(
    ("layout", "stream_per_meter", "table"),
    [("reading", "true", "muid_1"), ("meter_day", "true", "muid_1"), ("meter_day", "false", "readings")],
    ids=["reading", "meter_day", "fleet stream"],
)
def test_merge_append_append_merge_keep_the_marts(layout, stream_per_meter, table, pipeline, tmp_path):
    pipeline.settings["TAP_EXNATON_RECORD_LAYOUT"] = layout
    pipeline.settings["TAP_EXNATON_STREAM_PER_METER"] = stream_per_meter
    pipeline.meltano(*PIPELINE)
    merged = snapshot(pipeline)
    rows = raw_rows(pipeline, table)
    assert merged["marts.fct_readings"][0] == 2 * 3 * 96

    pipeline.meltano(*APPEND_FULL_REFRESH, extra_env=APPEND)
    assert raw_rows(pipeline, table) == 2 * rows, "the full refresh appended a second copy"
    assert snapshot(pipeline) == merged
    pipeline.meltano(*APPEND_FULL_REFRESH, extra_env=APPEND)
    assert raw_rows(pipeline, table) == 3 * rows
    assert snapshot(pipeline) == merged

    # Back to merging, with a new day in the source: it is merged into raw tables holding three copies of
    # every earlier key, and the marts hold every reading of the source once.
    write_exports(tmp_path / "source", FIXTURE_METERS, day_start("2023-03-25"), day_start("2023-03-29"))
    pipeline.meltano(*PIPELINE)
    for meter in FIXTURE_METERS:
        assert mart_readings(pipeline, meter.muid) == source_readings(tmp_path / "source", meter.muid)
    after = snapshot(pipeline)
    assert after["marts.fct_readings"][0] == 2 * 4 * 96
    assert pipeline.scalar("select sum(duplicate_readings) from marts.fct_meter_completeness_daily") == 0
