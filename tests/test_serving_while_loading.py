"""The API keeps serving while the pipeline runs: 16 connections against gunicorn on 127.0.0.1 (as `make api`
serves it) during a whole `meltano run tap-exnaton target-postgres dbt` that brings a new day, and during a
full rebuild (`meltano run --full-refresh tap-exnaton target-postgres dbt-postgres:full-refresh`).

Not one error (5xx or connection), never an empty meter list, and every answer about days that were complete
before the runs is exactly the answer from before: dbt swaps a rebuilt table in with renames inside one
transaction and merges an incremental model in one transaction, so a reader sees the old rows or the new.
"""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from datetime import timedelta

import pytest

from benchmarks.load import api_server
from tests.conftest import FIXTURE_METERS
from tests.pipeline import Pipeline
from tools.synthetic import day_start, meters_setting, write_exports

pytestmark = pytest.mark.e2e
CONNECTIONS = 16
REQUEST_TIMEOUT_S = 10
FIRST_DAY = day_start("2023-03-25")
# Complete before the runs: UTC days 2023-03-25 and -26 (readings), and the local day 2023-03-26 in
# Europe/Zurich (energy, completeness), which lies within them.
COMPLETE_UTC = "start=2023-03-25&end=2023-03-27"
COMPLETE_LOCAL = "start=2023-03-26&end=2023-03-27"


def urls_about_complete_days(muid: str) -> list[str]:
    meter = f"/api/v1/meters/{muid}"
    return [
        f"{meter}/readings?{COMPLETE_UTC}&page_size=500",
        f"{meter}/energy?interval=hour&{COMPLETE_LOCAL}",
        f"{meter}/energy?interval=day&{COMPLETE_LOCAL}",
        f"{meter}/completeness?{COMPLETE_LOCAL}",
    ]


def get(base: str, path: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(base + path, timeout=REQUEST_TIMEOUT_S) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


@dataclass
class Load:
    """CONNECTIONS clients asking in turn for the meter list and for every URL of ``expected``."""

    base: str
    expected: dict[str, object]
    muids: set[str]
    requests: int = 0
    failures: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __enter__(self) -> Load:
        paths = ["/api/v1/meters", *self.expected]
        self.threads = [
            threading.Thread(target=self.client, args=(paths[i % len(paths) :] + paths[: i % len(paths)],))
            for i in range(CONNECTIONS)
        ]
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=2 * REQUEST_TIMEOUT_S)

    def client(self, paths: list[str]) -> None:
        while not self.stop.is_set():
            for path in paths:
                failure = self.check(path)
                with self.lock:
                    self.requests += 1
                    if failure:
                        self.failures.append(failure)

    def check(self, path: str) -> str | None:
        try:
            status, body = get(self.base, path)
        except OSError as error:
            return f"{path}: connection error {error!r}"
        if status != 200:
            return f"{path}: HTTP {status} {body[:200]!r}"
        answer = json.loads(body)
        if path == "/api/v1/meters":
            muids = {meter["muid"] for meter in answer}
            return None if muids == self.muids else f"{path}: meters {sorted(muids)}"
        return None if answer == self.expected[path] else f"{path}: differs from before the run"


@pytest.fixture
def served(database, mirror_of, tmp_path):
    """Two meters with two complete UTC days loaded to the marts, and the API serving them."""
    source = write_exports(tmp_path / "source", FIXTURE_METERS, FIRST_DAY, FIRST_DAY + timedelta(days=2))
    settings = {"TAP_EXNATON_METERS": meters_setting(FIXTURE_METERS), "TAP_EXNATON_START_DATE": "2023-01-01"}
    pipeline = Pipeline(pg=database, workdir=tmp_path, base_url=mirror_of(source).base_url, settings=settings)
    pipeline.meltano("run", "tap-exnaton", "target-postgres", "dbt")
    with api_server(database) as base:
        yield pipeline, base


def test_api_serves_every_complete_day_unchanged_during_a_run_and_a_full_rebuild(served):
    pipeline, base = served
    expected = {}
    for meter in FIXTURE_METERS:
        for path in urls_about_complete_days(meter.muid):
            status, body = get(base, path)
            assert status == 200, (path, body)
            expected[path] = json.loads(body)
        assert len(expected[urls_about_complete_days(meter.muid)[0]]) == 2 * 96
    muids = {meter.muid for meter in FIXTURE_METERS}

    write_exports(pipeline.workdir / "source", FIXTURE_METERS, FIRST_DAY, FIRST_DAY + timedelta(days=3))
    with Load(base, expected, muids) as during_run:
        pipeline.meltano("run", "tap-exnaton", "target-postgres", "dbt")
    with Load(base, expected, muids) as during_rebuild:
        pipeline.meltano(
            "run", "--full-refresh", "tap-exnaton", "target-postgres", "dbt-postgres:full-refresh"
        )

    for load in (during_run, during_rebuild):
        assert load.failures == [], f"{len(load.failures)} of {load.requests}: {load.failures[:5]}"
        assert load.requests > 10 * CONNECTIONS, "too few requests to have served during the run"
    # The runs did their work: the new day is served.
    status, body = get(
        base, f"/api/v1/meters/{FIXTURE_METERS[0].muid}/readings?start=2023-03-27&end=2023-03-28"
    )
    assert status == 200 and len(json.loads(body)) == 96
