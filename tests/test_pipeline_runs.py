"""GET /api/v1/pipeline/runs and /freshness over a real run history (session fixture `run_history`: a
successful run, a run in which muid_2's source failed, and a successful run that caught up)."""

from __future__ import annotations

import csv
import io
import json
from datetime import timedelta

import psycopg
import pytest

from api import create_app
from api.resources.pipeline import RUN_COLUMNS
from tests.conftest import FIXTURE_METERS
from tools.db import conninfo
from tools.roles import API_ROLE, ensure_api_role

pytestmark = pytest.mark.e2e
RUNS = "/api/v1/pipeline/runs"
MUID_2 = FIXTURE_METERS[1].muid
STATE_ID = "dev:tap-exnaton-to-target-postgres"


@pytest.fixture(scope="module")
def client(run_history):
    return create_app({"conninfo": conninfo(run_history.pg)}).test_client()


@pytest.fixture(scope="module")
def runs(client) -> list[dict]:
    response = client.get(RUNS)
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()


def test_every_run_newest_first_with_its_state_readings_and_failed_meters(runs, run_history):
    recorded = run_history.query(
        "select id, run_id::text, state, started_at, ended_at from meltano.runs order by started_at desc"
    )
    assert [(r["id"], r["run_id"]) for r in runs] == [(row[0], row[1]) for row in recorded]
    caught_up, failed, first = runs
    assert [r["state"] for r in runs] == ["success", "failed", "success"]
    assert {r["state_id"] for r in runs} == {STATE_ID} and {r["trigger"] for r in runs} == {"cli"}
    # Two meters x two days, then muid_1's third day (loaded by the failed run), then muid_2's.
    assert [first["readings_loaded"], failed["readings_loaded"], caught_up["readings_loaded"]] == [
        384,
        96,
        96,
    ]
    assert sum(r["readings_loaded"] for r in runs) == run_history.scalar(
        "select count(*) from marts.fct_readings"
    )

    [meter] = failed["failed_meters"]
    assert meter["muid"] == MUID_2 and meter["stream_name"] == "muid_2"
    assert meter["error"].startswith("muid_2: GET ") and "HTTP 503" in meter["error"]
    assert failed["error"] == "Extractor failed"
    assert first["failed_meters"] == caught_up["failed_meters"] == [] and first["error"] is None

    for run, (_, _, _, started, ended) in zip(runs, recorded, strict=True):
        assert run["started_at"] == started.isoformat() + "+00:00"
        assert run["ended_at"] == ended.isoformat() + "+00:00"
        assert run["duration_seconds"] == pytest.approx((ended - started).total_seconds(), abs=1e-3)


def test_csv_has_the_same_runs_with_the_failed_muids(client, runs):
    response = client.get(RUNS + "?format=csv")
    assert response.status_code == 200 and response.mimetype == "text/csv"
    assert client.get(RUNS, headers={"Accept": "text/csv"}).get_data() == response.get_data()
    rows = list(csv.DictReader(io.StringIO(response.get_data(as_text=True))))
    assert list(rows[0]) == RUN_COLUMNS
    assert [(int(row["id"]), row["state"], int(row["readings_loaded"])) for row in rows] == [
        (r["id"], r["state"], r["readings_loaded"]) for r in runs
    ]
    assert [row["failed_meters"] for row in rows] == ["", MUID_2, ""]
    assert rows[1]["error"] == "Extractor failed" and rows[1]["started_at"] == runs[1]["started_at"]


def test_runs_are_paginated(client, runs):
    pages = []
    for page in (1, 2, 3):
        response = client.get(f"{RUNS}?page_size=1&page={page}")
        pagination = json.loads(response.headers["X-Pagination"])
        assert (pagination["total"], pagination["total_pages"], pagination["page"]) == (3, 3, page)
        pages += response.get_json()
    assert pages == runs
    assert client.get(f"{RUNS}?page_size=2&page=2").get_json() == runs[2:]
    assert client.get(f"{RUNS}?page_size=1&page=4").status_code == 404


def test_filters_state_since_and_state_id(client, runs):
    def ids(query: str) -> list[int]:
        response = client.get(f"{RUNS}?{query}")
        assert response.status_code == 200, response.get_data(as_text=True)
        return [r["id"] for r in response.get_json()]

    assert ids("state=failed") == [runs[1]["id"]]
    assert ids("state=success") == [runs[0]["id"], runs[2]["id"]]
    assert ids("state=running") == []
    since = runs[1]["started_at"]
    assert ids(f"since={since.replace('+00:00', 'Z')}") == [runs[0]["id"], runs[1]["id"]]
    assert ids(f"since={since[:26]}") == [runs[0]["id"], runs[1]["id"]]  # no offset: UTC
    assert ids("since=2100-01-01") == []
    assert ids(f"state=success&since={since.replace('+', '%2B')}") == [runs[0]["id"]]
    assert ids(f"state_id={STATE_ID}") == [r["id"] for r in runs]
    assert ids("state_id=dev:another-pipeline") == []


@pytest.mark.parametrize(
    ("query", "parameter"),
    [
        ("state=crashed", "state"),
        ("since=yesterday", "since"),
        ("since=2023-02-30", "since"),
        ("page_size=0", "page_size"),
        ("page_size=501", "page_size"),
        ("page=0", "page"),
        ("format=xml", "format"),
        ("state_id=a%00b", "state_id"),
    ],
)
def test_bad_parameters_are_422_naming_them(client, query, parameter):
    response = client.get(f"{RUNS}?{query}")
    assert response.status_code == 422, response.get_data(as_text=True)
    body = response.get_json()
    assert body["code"] == 422 and parameter in body["message"] and parameter in json.dumps(body["errors"])


def test_freshness_follows_the_last_successful_run(client, run_history, runs):
    default = client.get("/api/v1/pipeline/freshness").get_json()
    assert default["last_success_at"] == runs[0]["ended_at"] and default["stale_after_seconds"] == 1800
    # Thresholds of the test's own: the history may be older than 30 minutes when the whole suite runs.
    for threshold, stale in ((86_400, False), (0, True)):
        app = create_app({"conninfo": conninfo(run_history.pg), "stale_after_s": threshold})
        fresh = app.test_client().get("/api/v1/pipeline/freshness").get_json()
        assert fresh["stale"] is stale and fresh["stale_after_seconds"] == threshold
        assert 0 <= fresh["age_seconds"] < 86_400 and fresh["last_loaded_at"]


def test_the_openapi_document_types_the_run_fields(client):
    spec = client.get("/openapi.json").get_json()
    operation = spec["paths"][RUNS]["get"]
    assert {p["name"] for p in operation["parameters"]} >= {"state", "since", "state_id", "page", "page_size"}
    assert "text/csv" in operation["responses"]["200"]["content"]
    run = spec["components"]["schemas"]["Run"]["properties"]
    assert run["started_at"]["format"] == run["ended_at"]["format"] == "date-time"
    assert run["state"]["enum"] == ["success", "failed", "running"]
    assert run["readings_loaded"]["type"] == "integer" and run["duration_seconds"]["type"] == "number"
    assert spec["components"]["schemas"]["FailedMeter"]["properties"]["error"]["type"] == "string"


def test_the_api_role_reads_the_run_history_and_no_other_meltano_table(run_history, runs):
    ensure_api_role(run_history.pg)
    as_api = {**run_history.pg, "PGUSER": API_ROLE}
    client = create_app({"conninfo": conninfo(as_api)}).test_client()
    assert client.get(RUNS).get_json() == runs
    with psycopg.connect(conninfo(as_api), autocommit=True) as conn:
        assert conn.execute("select count(*) from meltano.runs").fetchone() == (3,)
        for statement in (
            "select count(*) from meltano.state",
            "select count(*) from meltano.alembic_version",
            "update meltano.runs set state = 'SUCCESS'",
            "delete from meltano.runs",
            "create table meltano.intruder (x int)",
        ):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(statement)


def test_a_run_that_stopped_heartbeating_is_failed_not_running(run_history, client):
    """A crashed run stays RUNNING in Meltano's table until the pipeline's next start marks it failed."""
    with psycopg.connect(conninfo(run_history.pg), autocommit=True) as conn:
        started = conn.execute("select now() at time zone 'UTC'").fetchone()[0]
        rows = [
            ("RUNNING", started, started),
            ("RUNNING", started - timedelta(hours=1), started - timedelta(minutes=50)),
        ]
        ids = [
            conn.execute(
                "insert into meltano.runs (job_name, run_id, state, started_at, last_heartbeat_at, payload, "
                "payload_flags) values ('dev:crash-test', gen_random_uuid(), %s, %s, %s, '{}', 0) returning id",
                row,
            ).fetchone()[0]
            for row in rows
        ]
    try:
        listed = client.get(f"{RUNS}?state_id=dev:crash-test").get_json()
        assert [(r["id"], r["state"], r["ended_at"]) for r in listed] == [
            (ids[0], "running", None),
            (ids[1], "failed", None),
        ]
        assert listed[0]["readings_loaded"] == 0 and listed[0]["duration_seconds"] >= 0
    finally:
        run_history.execute("delete from meltano.runs where job_name = 'dev:crash-test'")


def test_a_fleet_run_that_failed_before_its_dbt_build(faulty_pipeline, faulty_source):
    """The fleet stream (partitions, one per meter): the failed meter comes from its partition's state. Before
    the first dbt build (no marts yet) the run is listed with nothing loaded; the build then shows what it
    loaded for the meter that did not fail."""
    from tests.faulty_source import status

    faulty_source.on(MUID_2, status(503), then=status(503))
    fleet = {"TAP_EXNATON_STREAM_PER_METER": "false"}
    failed = faulty_pipeline.meltano(
        "run", "tap-exnaton", "target-postgres", "dbt", check=False, extra_env=fleet
    )
    assert failed.returncode != 0
    client = create_app({"conninfo": conninfo(faulty_pipeline.pg)}).test_client()

    response = client.get(RUNS)
    assert response.status_code == 200, response.get_data(as_text=True)
    [run] = response.get_json()
    assert (run["state"], run["readings_loaded"], run["error"]) == ("failed", 0, "Extractor failed")
    [meter] = run["failed_meters"]
    assert (meter["muid"], meter["stream_name"]) == (MUID_2, "readings") and "HTTP 503" in meter["error"]
    fresh = client.get("/api/v1/pipeline/freshness").get_json()
    assert fresh["stale"] is True and fresh["last_success_at"] is None and fresh["last_loaded_at"] is None

    faulty_pipeline.meltano("run", "dbt", extra_env=fleet)
    [built] = client.get(RUNS).get_json()
    assert (
        built["readings_loaded"]
        == 3 * 96
        == faulty_pipeline.scalar("select count(*) from marts.fct_readings")
    )
    assert built["failed_meters"] == run["failed_meters"]


def test_a_meter_is_failed_only_in_the_run_that_recorded_its_error(run_history, client):
    """A meter's error stays in the state until the meter next succeeds (a run stopped by a bad setting, a
    meter taken out of the settings): later runs that carry it did not fail it. A state of a tap from before
    `error_at` keeps the old reading: every run that carries the error lists it."""
    [(payload, ended)] = run_history.query(
        "select payload::jsonb, ended_at from meltano.runs where state = 'FAIL'"
    )
    legacy = json.loads(json.dumps(payload).replace('"error_at"', '"error_at_unknown"'))
    with psycopg.connect(conninfo(run_history.pg), autocommit=True) as conn:
        for state_id, carried in (("dev:carried-error", payload), ("dev:carried-legacy", legacy)):
            conn.execute(
                "insert into meltano.runs (job_name, run_id, state, started_at, ended_at, payload, "
                "payload_flags) values (%s, gen_random_uuid(), 'FAIL', %s, %s, %s, 0)",
                (state_id, ended + timedelta(minutes=1), ended + timedelta(minutes=2), json.dumps(carried)),
            )
    try:
        [carried] = client.get(f"{RUNS}?state_id=dev:carried-error").get_json()
        assert carried["state"] == "failed" and carried["failed_meters"] == []
        [old] = client.get(f"{RUNS}?state_id=dev:carried-legacy").get_json()
        assert [m["muid"] for m in old["failed_meters"]] == [MUID_2]
        [original] = [
            r for r in client.get(f"{RUNS}?state_id={STATE_ID}").get_json() if r["state"] == "failed"
        ]
        assert [m["muid"] for m in original["failed_meters"]] == [MUID_2]
    finally:
        run_history.execute("delete from meltano.runs where job_name like 'dev:carried-%'")
