"""The orchestrator as `make orchestrate` starts it: Dagster's webserver and daemon on 127.0.0.1, two Celery
workers through the local Redis, storage in a fresh PostgreSQL database, a real source on 127.0.0.1.

One orchestrator for the module; the fleet's backfill (4 shards, one of them failing its first run) runs once
and the tests read what it did through Dagster's GraphQL API, the database and the workers' processes.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import time
import zlib
from pathlib import Path

import pytest
import requests
import yaml
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from tests.browser import NoBrowser, chrome, foreign, requested_urls
from tests.conftest import FAST_RETRIES
from tests.faulty_source import FaultySource, raw_readings, slow, source_readings, status
from tests.pipeline import (
    FOREIGN_PREFIXES,
    PROJECT_ROOT,
    create_database,
    drop_database,
    private_meltano_dirs,
    wait_until,
)
from tests.test_docs import free_port
from tools.synthetic import day_start, meters_setting, synthetic_meters, write_exports

pytestmark = pytest.mark.e2e
SHARDS = 4
LOAD_LIMIT = 2
METERS = synthetic_meters(8)  # every shard of 4 gets at least one (crc32(muid) mod 4: 3 3 2 1 1 3 3 0)
DAYS = 2
# A meter of shard 1 whose source fails every try of the shard's first run (the tap tries 1 + max_retries
# times): that run fails, Dagster's retry of the step loads it.
FAILING = METERS[3]
FAILING_TRIES = int(FAST_RETRIES["TAP_EXNATON_MAX_RETRIES"]) + 1
# The other meters answer slowly, so that every shard is still loading when the next ones start: the four
# want to run at once. Three workers could run three: what holds them at two is the pool.
SLOW_S = 6
WORKERS = 3
SHARDS_KEY = ["raw", "meter_shards"]
LOCATION = "exnaton_orchestrate.definitions"
RUN_TIMEOUT = 600


def shard_of(muid: str) -> int:
    return zlib.crc32(muid.encode()) % SHARDS


class Dagster:
    """The webserver's GraphQL API, the one the UI uses."""

    def __init__(self, url: str) -> None:
        self.url = url

    def query(self, document: str, **variables) -> dict:
        response = requests.post(
            f"{self.url}/graphql", json={"query": document, "variables": variables}, timeout=60
        )
        response.raise_for_status()
        body = response.json()
        assert "errors" not in body, body["errors"]
        return body["data"]

    def repository(self) -> dict:
        data = self.query(
            "{ repositoriesOrError { ... on RepositoryConnection { nodes { name location { name } } } } }"
        )
        (repo,) = data["repositoriesOrError"]["nodes"]
        return {"repositoryName": repo["name"], "repositoryLocationName": repo["location"]["name"]}

    def runs(self, tags: dict[str, str] | None = None, run_ids: list[str] | None = None) -> list[dict]:
        filter_ = {}
        if tags:
            filter_["tags"] = [{"key": k, "value": v} for k, v in tags.items()]
        if run_ids:
            filter_["runIds"] = run_ids
        data = self.query(RUNS, filter=filter_)
        return data["runsOrError"]["results"]

    def launch(self, job: str) -> dict:
        """Launch ``job`` as the UI's Materialize button does; its run once finished."""
        data = self.query(
            """
            mutation ($params: ExecutionParams!) {
              launchRun(executionParams: $params) {
                __typename ... on LaunchRunSuccess { run { runId } } ... on PythonError { message }
              }
            }
            """,
            params={"selector": {**self.repository(), "jobName": job}, "runConfigData": {}},
        )
        launched = data["launchRun"]
        assert launched["__typename"] == "LaunchRunSuccess", launched
        (run,) = self.wait_for_runs(count=1, run_ids=[launched["run"]["runId"]])
        return run

    def wait_for_runs(self, *, count: int, timeout: float = RUN_TIMEOUT, **filters) -> list[dict]:
        deadline = time.monotonic() + timeout
        while True:
            runs = self.runs(**filters)
            if len(runs) >= count and all(run["status"] in FINISHED for run in runs):
                return runs
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"runs not finished after {timeout} s: {[(r['runId'], r['status']) for r in runs]}"
                )
            time.sleep(1)


FINISHED = {"SUCCESS", "FAILURE", "CANCELED"}
RUNS = """
query ($filter: RunsFilter) {
  runsOrError(filter: $filter) {
    ... on Runs {
      results {
        runId status jobName startTime endTime
        tags { key value }
        stepStats { stepKey status attempts { startTime endTime } }
      }
    }
  }
}
"""


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    directory = write_exports(
        tmp_path_factory.mktemp("orchestrate-source"),
        METERS,
        day_start("2023-03-01"),
        day_start(f"2023-03-0{1 + DAYS}"),
    )
    with FaultySource(directory) as server:
        server.on(FAILING.muid, *[status(503)] * FAILING_TRIES)
        for meter in METERS:
            if meter is not FAILING:
                server.on(meter.muid, then=slow(SLOW_S))
        yield server


@pytest.fixture(scope="module")
def orchestrator(orchestrator_installed, source, tmp_path_factory):
    """`make orchestrate` on a fresh database; stopped (with every process it started) at the end."""
    workdir = tmp_path_factory.mktemp("orchestrate")
    pg = create_database()
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(FOREIGN_PREFIXES)}
    env.update(
        {
            **pg,
            **private_meltano_dirs(workdir),
            **FAST_RETRIES,
            "MELTANO_SEND_ANONYMOUS_USAGE_STATS": "false",
            "TAP_EXNATON_BASE_URL": source.base_url,
            "TAP_EXNATON_METERS": meters_setting(METERS),
            "TAP_EXNATON_START_DATE": "2023-01-01",
            "TAP_EXNATON_REQUEST_TIMEOUT": str(10 * SLOW_S),
            "DAGSTER_WORKERS": str(WORKERS),
            "EXNATON_SCHEDULES": "stopped",
            "DAGSTER_HOME": str(workdir / "dagster-home"),
            "DAGSTER_PORT": str(port),
            # A Redis database of its own: no other orchestrator's worker takes this one's steps.
            "EXNATON_CELERY_BROKER": f"redis://127.0.0.1:6379/{random.randint(1, 15)}",
        }
    )
    log = (workdir / "orchestrate.log").open("w")
    process = subprocess.Popen(
        ["make", "--no-print-directory", "orchestrate"],
        cwd=PROJECT_ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    dagster = Dagster(f"http://127.0.0.1:{port}")
    try:
        wait_until(lambda: _answers(dagster) or process.poll() is not None, timeout=180, what="the webserver")
        assert process.poll() is None, (workdir / "orchestrate.log").read_text()[-5000:]
        dagster.pg = pg  # type: ignore[attr-defined]
        dagster.log = workdir / "orchestrate.log"  # type: ignore[attr-defined]
        dagster.group = process.pid  # type: ignore[attr-defined]
        yield dagster
    finally:
        _stop_group(process)
        log.close()
        drop_database(pg)


def _answers(dagster: Dagster) -> bool:
    try:
        return bool(dagster.repository())
    except (requests.RequestException, AssertionError, KeyError, ValueError):
        return False


def _stop_group(process: subprocess.Popen) -> None:
    """SIGTERM to make and the orchestrator (one process group); it stops its own children, then exits."""
    try:
        os.killpg(process.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    process.wait(timeout=60)

    def group_gone() -> bool:
        try:
            os.killpg(process.pid, 0)
        except ProcessLookupError:
            return True
        return False

    wait_until(group_gone, timeout=90, what="the orchestrator to stop")


@pytest.fixture(scope="module")
def backfill(orchestrator):
    """A backfill of the 4 shards, launched as from the UI; returns its finished runs."""
    data = orchestrator.query(
        """
        mutation ($params: LaunchBackfillParams!) {
          launchPartitionBackfill(backfillParams: $params) {
            __typename
            ... on LaunchBackfillSuccess { backfillId }
            ... on PythonError { message }
          }
        }
        """,
        params={"assetSelection": [{"path": SHARDS_KEY}], "partitionNames": [str(k) for k in range(SHARDS)]},
    )
    launched = data["launchPartitionBackfill"]
    assert launched["__typename"] == "LaunchBackfillSuccess", launched
    runs = orchestrator.wait_for_runs(count=SHARDS, tags={"dagster/backfill": launched["backfillId"]})
    return runs


def materializations(dagster: Dagster, key: list[str]) -> list[dict]:
    data = dagster.query(
        """
        query ($key: AssetKeyInput!) {
          assetOrError(assetKey: $key) {
            ... on Asset {
              assetMaterializations {
                partition runId
                metadataEntries { label ... on TextMetadataEntry { text } ... on IntMetadataEntry { intValue } }
              }
            }
          }
        }
        """,
        key={"path": key},
    )
    return data["assetOrError"]["assetMaterializations"]


def metadata(materialization: dict) -> dict:
    return {e["label"]: e.get("text", e.get("intValue")) for e in materialization["metadataEntries"]}


def test_schedules_are_meltano_ymls(orchestrator):
    repository = orchestrator.repository()
    data = orchestrator.query(
        """
        query ($repo: RepositorySelector!) {
          schedulesOrError(repositorySelector: $repo) {
            ... on Schedules { results { name cronSchedule pipelineName scheduleState { status } } }
          }
        }
        """,
        repo=repository,
    )
    schedules = {
        s["name"]: (s["cronSchedule"], s["pipelineName"], s["scheduleState"]["status"])
        for s in data["schedulesOrError"]["results"]
    }
    meltano = yaml.safe_load((PROJECT_ROOT / "meltano.yml").read_text())["schedules"]
    assert schedules == {
        s["name"].replace("-", "_"): (s["interval"], s["job"].replace("-", "_"), "STOPPED") for s in meltano
    }


def test_backfill_materializes_every_shard_as_a_partition(orchestrator, backfill):
    assert {run["status"] for run in backfill} == {"SUCCESS"}, backfill
    partitions = sorted(m["partition"] for m in materializations(orchestrator, SHARDS_KEY))
    assert partitions == [str(k) for k in range(SHARDS)]


def test_at_most_two_shards_load_at_once(backfill):
    intervals = [
        (attempt["startTime"], attempt["endTime"])
        for run in backfill
        for step in run["stepStats"]
        for attempt in step["attempts"]
    ]
    assert len(intervals) >= SHARDS
    moments = sorted([(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals])
    running, most = 0, 0
    for _, change in moments:  # an end before a start at the same instant: sorted by (time, -1 < 1)
        running += change
        most = max(most, running)
    assert most == LOAD_LIMIT, intervals  # the limit held, and it was reached: loads did run side by side


def test_steps_ran_on_separate_celery_workers(orchestrator, backfill):
    """Every step ran in a pool process of a Celery worker (`celery ... -n exnaton-N`, one step at a time each),
    and steps that overlapped ran on different workers: two at once on two workers, through the broker."""
    worker_of = {}
    for materialization in materializations(orchestrator, SHARDS_KEY):
        pid = int(metadata(materialization)["worker"].rsplit(":", 1)[1])
        command = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        assert b"celery" in command[1] and b"worker" in command, command
        worker_of[materialization["runId"]] = command[command.index(b"-n") + 1].decode().split("@")[0]
    assert set(worker_of.values()) <= {f"exnaton-{n}" for n in range(1, WORKERS + 1)}
    assert len(set(worker_of.values())) >= 2, worker_of
    successes = {
        run["runId"]: (step["attempts"][-1]["startTime"], step["attempts"][-1]["endTime"])
        for run in backfill
        for step in run["stepStats"]
    }
    overlapping = [
        (a, b)
        for a in successes
        for b in successes
        if a < b and successes[a][0] < successes[b][1] and successes[b][0] < successes[a][1]
    ]
    assert overlapping, successes
    assert all(worker_of[a] != worker_of[b] for a, b in overlapping), (worker_of, successes)


def test_failed_shard_is_retried_and_loses_or_duplicates_nothing(orchestrator, backfill, source):
    (failed,) = [
        run
        for run in backfill
        if dict((t["key"], t["value"]) for t in run["tags"])["dagster/partition"]
        == str(shard_of(FAILING.muid))
    ]
    (step,) = failed["stepStats"]
    assert len(step["attempts"]) == 2, step  # failed once, succeeded on the retry
    assert len(source.seen(FAILING.muid)) == FAILING_TRIES + 1
    pipeline = _reader(orchestrator)
    for meter in METERS:
        assert sorted(set(raw_readings(pipeline, meter.stream_name))) == source_readings(
            Path(source.state.data.directory), meter.muid
        ), meter.stream_name


def test_dbt_assets_build_complete_marts_after_the_shards(orchestrator, backfill):
    run = orchestrator.launch("dbt")
    assert run["status"] == "SUCCESS", orchestrator.log.read_text()[-5000:]
    assert _marts_per_meter(orchestrator) == {meter.muid: DAYS * 96 for meter in METERS}
    dbt_assets = {tuple(key["path"]) for key in _materialized_keys(orchestrator, run["runId"])}
    assert {("marts", "fct_readings"), ("marts", "fct_energy_daily"), ("marts", "dim_meters")} <= dbt_assets


def test_default_job_is_the_missions_pipeline(orchestrator, backfill):
    """`exnaton_pipeline`: the mission's `meltano run tap-exnaton target-postgres dbt`. Its state id is a plain
    run's, not a shard's, so it extracts every meter again: the marts still hold each reading once."""
    run = orchestrator.launch("exnaton_pipeline")
    assert run["status"] == "SUCCESS", orchestrator.log.read_text()[-5000:]
    keys = {tuple(key["path"]) for key in _materialized_keys(orchestrator, run["runId"])}
    assert {("raw", "muid_1"), ("raw", "muid_2"), ("marts", "fct_readings")} <= keys
    assert _marts_per_meter(orchestrator) == {meter.muid: DAYS * 96 for meter in METERS}
    state_ids = {s for (s,) in _reader(orchestrator).query("select state_id from meltano.state")}
    assert state_ids == {"dev:tap-exnaton-to-target-postgres"} | {
        f"dev:tap-exnaton-to-target-postgres:shard-{k}" for k in range(SHARDS)
    }


def _marts_per_meter(dagster: Dagster) -> dict[str, int]:
    return dict(_reader(dagster).query("select muid, count(*) from marts.fct_readings group by muid"))


def test_browser_opens_the_asset_graph(orchestrator, backfill):
    try:
        driver = chrome()
    except NoBrowser as exc:
        pytest.fail(str(exc), pytrace=False)
    try:
        driver.get(
            f"{orchestrator.url}/assets/raw/meter_shards?view=lineage&lineageScope=neighbors&lineageDepth=5"
        )
        # The graph draws a node per asset, named: the shards and the dbt models downstream of them.
        WebDriverWait(driver, 90).until(
            lambda d: all(
                d.find_elements(By.XPATH, f"//*[contains(text(), '{name}')]")
                for name in ("meter_shards", "fct_readings", "dim_meters")
            )
        )
        assert foreign(requested_urls(driver)) == []
    except Exception:
        driver.save_screenshot(str(orchestrator.log.with_name("asset-graph.png")))  # beside the log
        raise
    finally:
        driver.quit()


def _materialized_keys(dagster: Dagster, run_id: str) -> list[dict]:
    data = dagster.query(
        """
        query ($runId: ID!) {
          runOrError(runId: $runId) { ... on Run { assetMaterializations { assetKey { path } } } }
        }
        """,
        runId=run_id,
    )
    return [m["assetKey"] for m in data["runOrError"]["assetMaterializations"]]


def _reader(dagster: Dagster):
    from tests.pipeline import Pipeline

    return Pipeline(pg=dagster.pg, workdir=Path("/nonexistent"), base_url="")
