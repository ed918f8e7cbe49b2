"""Bad input from the source: the real `meltano run tap-exnaton target-postgres dbt` must stop loudly and
leave the marts exactly as they were.

One warehouse is loaded once for this module (a good full run). Each case then adds a day of readings to
both meters' exports and breaks only the second meter's answer, so the first stream is good and the second
is not: the good stream's rows may load into raw, but the failing EL block stops `meltano run` before dbt,
so no mart changes. A healthy run afterwards brings raw and marts to every reading exactly once.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest

from tests.conftest import FAST_RETRIES, FIXTURE_METERS, _meter_settings
from tests.faulty_source import (
    FaultySource,
    Reply,
    bookmarks,
    data_null,
    drop_timestamp,
    edit_readings,
    error_lines,
    html_error_page,
    malformed_json,
    mart_readings,
    non_numeric_value,
    raw_readings,
    schema_checksums,
    source_readings,
    truncated_body,
    unparsable_timestamp,
)
from tests.pipeline import PROJECT_ROOT, Pipeline, create_database, drop_database
from tools.synthetic import day_start, write_exports

pytestmark = pytest.mark.e2e
MUID_1, MUID_2 = (meter.muid for meter in FIXTURE_METERS)
FIRST_DAY = day_start("2023-03-25")
HAS_MARTS = any((PROJECT_ROOT / "transform" / "models").rglob("*.sql"))
NO_MARTS = "transform/models has no dbt models yet: raw was checked, the marts part is skipped"
# With models, the full pipeline as users run it; without, extract and load only.
FULL_RUN = (
    ("run", "tap-exnaton", "target-postgres", "dbt")
    if HAS_MARTS
    else ("run", "tap-exnaton", "target-postgres")
)

BAD_ANSWERS = [
    pytest.param(malformed_json(), "response body is not JSON", id="malformed JSON"),
    pytest.param(truncated_body(), "response body is not JSON", id="truncated body"),
    pytest.param(html_error_page(), "response body is not JSON", id="HTML page with 200"),
    pytest.param(data_null(), "field 'data' is NoneType, expected a list", id="data null"),
    pytest.param(
        edit_readings(drop_timestamp, "no timestamp"),
        "field 'timestamp' is not a parsable date-time: None",
        id="reading without timestamp",
    ),
    pytest.param(
        edit_readings(non_numeric_value, "non-numeric value"),
        "is not a number: 'n/a'",
        id="non-numeric value",
    ),
    pytest.param(
        edit_readings(unparsable_timestamp, "unparsable timestamp"),
        "field 'timestamp' is not a parsable date-time: '2023-02-30T25:61:00.000Z'",
        id="unparsable timestamp",
    ),
]


@dataclass
class GoodLoad:
    """A pipeline with a good full load behind it, and a source that can grow by a day and misbehave."""

    pipeline: Pipeline
    source: FaultySource
    source_dir: Path
    days: int = 3

    def add_day(self) -> None:
        self.days += 1
        write_exports(self.source_dir, FIXTURE_METERS, FIRST_DAY, FIRST_DAY + timedelta(days=self.days))

    def snapshot(self) -> dict:
        """Everything a failed run must leave alone."""
        return {
            "marts": schema_checksums(self.pipeline, "marts") if HAS_MARTS else None,
            "raw muid_2": raw_readings(self.pipeline, "muid_2"),
            "muid_2 bookmark": bookmarks(self.pipeline).get("muid_2"),
            "dbt results": self.dbt_results_stamp(),
        }

    def dbt_results_stamp(self) -> int | None:
        results = self.pipeline.workdir / "dbt-target" / "run_results.json"
        return results.stat().st_mtime_ns if results.exists() else None


@pytest.fixture(scope="module")
def good_load(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("faults-input")
    source_dir = write_exports(workdir / "source", FIXTURE_METERS, FIRST_DAY, FIRST_DAY + timedelta(days=3))
    database = create_database()
    settings = {**_meter_settings(), **FAST_RETRIES}
    try:
        with FaultySource(source_dir) as source:
            pipeline = Pipeline(pg=database, workdir=workdir, base_url=source.base_url, settings=settings)
            pipeline.meltano(*FULL_RUN)
            yield GoodLoad(pipeline, source, source_dir)
    finally:
        drop_database(database)


def run_with_bad_second_meter(good_load: GoodLoad, answer: Reply):
    """A new day for both meters; the second meter's answer is ``answer`` however often it is asked."""
    good_load.add_day()
    good_load.source.on(MUID_2, then=answer)
    try:
        return good_load.pipeline.meltano(*FULL_RUN, check=False)
    finally:
        good_load.source.heal()


@pytest.mark.parametrize(("answer", "complaint"), BAD_ANSWERS)
def test_bad_answer_fails_loudly_and_leaves_the_marts_alone(good_load, answer, complaint):
    before = good_load.snapshot()
    assert not HAS_MARTS or before["marts"]["fct_readings"][0] > 0, "no marts to protect"

    failed = run_with_bad_second_meter(good_load, answer)

    assert failed.returncode != 0, failed.stderr[-3000:]
    [message] = error_lines(failed.stderr)
    assert message.startswith(f"muid_2: GET {good_load.source.base_url}/{MUID_2}.json"), message
    assert complaint in message
    assert "Traceback" not in failed.stderr
    # The run stopped at the failing extract-load block: dbt never started, no mart changed.
    assert "dbt-postgres" not in failed.stderr
    assert good_load.snapshot() == before
    # The good stream is loaded in full and bookmarked; that is safe because marts only read it on
    # the next successful run.
    pipeline = good_load.pipeline
    assert raw_readings(pipeline, "muid_1") == source_readings(good_load.source_dir, MUID_1)
    last_day = (FIRST_DAY + timedelta(days=good_load.days, minutes=-15)).strftime("%Y-%m-%dT%H:%M:00.000Z")
    assert bookmarks(pipeline)["muid_1"] == last_day
    if not HAS_MARTS:
        pytest.skip(NO_MARTS)


def test_healthy_run_after_bad_answers_completes_raw_and_marts(good_load):
    failed = run_with_bad_second_meter(good_load, edit_readings(non_numeric_value, "non-numeric value"))
    assert failed.returncode != 0

    good_load.pipeline.meltano(*FULL_RUN)

    for meter in FIXTURE_METERS:
        expected = source_readings(good_load.source_dir, meter.muid)
        assert raw_readings(good_load.pipeline, meter.stream_name) == expected
        if HAS_MARTS:
            assert mart_readings(good_load.pipeline, meter.muid) == expected
    if not HAS_MARTS:
        pytest.skip(NO_MARTS)
