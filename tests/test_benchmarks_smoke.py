"""A tiny run of the benchmark harness: it measures and reports (no timing assertions)."""

from __future__ import annotations

import json
import shutil

import pytest

from benchmarks import run

pytestmark = pytest.mark.e2e


def latest_results() -> dict:
    """The payload `benchmarks.run` wrote last (benchmarks/results/<UTC stamp>.json)."""
    return json.loads(max((run.HERE / "results").glob("*.json")).read_text())


def test_harness_measures_and_writes_the_report(tmp_path):
    report = tmp_path / "BENCHMARKS.md"
    report.write_text("stale figures\n\n## Changes and their effect\n\n| 2026-11-25 | a change | 1.1× |\n")
    run.main(
        [
            "--meters",
            "2",
            "--days",
            "2",
            "--repeat",
            "1",
            "--only",
            "physical,el,whole,quarter,slope",
            "--fleet-scale",
            "0.002",
            "--output",
            str(report),
        ]
    )
    text = report.read_text()
    assert "| physical limit: fetch + parse + COPY (psycopg 3) |" in text
    assert "| ours: meltano run tap-exnaton target-postgres (meter_day) |" in text
    assert "| ours: meltano run tap-exnaton target-postgres (reading) |" in text
    assert "(before/after) EL meter_day vs reading layout" in text
    assert f"| {run.WHOLE} |" in text and f"| {run.WHOLE_FIRST_RUN} |" in text
    # The fleet shapes at 20 meters (1 / 2 / 20 for the slope); the fleet backfill needs the peer's venv.
    assert "| quarter-hourly, one new reading per meter, whole run: 20 meters |" in text
    assert "| quarter-hourly, 50 ms added to every source response: 20 meters |" in text
    assert "Slope ≤ 1.5 ms of wall time per additional meter" in text
    # Extract+load and the dbt phase apart, from the same run, and where the CPU went.
    assert "| Quarter-hourly: extract+load ≤ 10 s |" in text
    assert "| Quarter-hourly: dbt phase ≤ 3 s |" in text
    assert (
        "| Quarter-hourly: no more than the new readings written to raw | 20 raw rows holding 20 readings"
        in text
    )
    assert "| Step | Wall s | CPU s per process |" in text
    # The hand-kept log of changes survives; the old figures do not.
    assert "stale figures" not in text
    assert text.rstrip().endswith("## Changes and their effect\n\n| 2026-11-25 | a change | 1.1× |")
    payload = latest_results()
    assert payload["size"] == {"meters": 2, "days": 2, "readings": 2 * 2 * 96}
    for name, figure in payload["results"].items():
        if name == "fleet slope":
            assert set(figure["walls_s"]) == {"1", "2", "20"}
        else:
            assert figure["wall_s"] > 0 and figure["rows_per_s"] > 0
            if name.startswith(("ours: meltano run", "quarter-hourly", "cost per meter")):
                assert 0 < figure["extract_load_s"] < figure["wall_s"]
                assert figure["cpu_s"]["tap-exnaton"] > 0


def test_http_clients_benchmark_measures_every_transport(capsys):
    from benchmarks import http_clients
    from tests.test_docs import free_port

    http_clients.main(["--requests", "8", "--port", str(free_port())])
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(":")[0] for line in lines] == [
        "requests (HTTPAdapter, urllib3)",
        "tap_exnaton.transport (http.client)",
        "urllib3 alone (no requests objects)",
    ]
    assert all("µs of CPU per request (8 requests)" in line for line in lines)


@pytest.mark.skipif(shutil.which("wrk") is None, reason="the API step needs wrk (apt-get install wrk)")
def test_api_step_splits_the_cpu_of_a_request_between_the_api_and_postgresql(tmp_path):
    report = tmp_path / "BENCHMARKS.md"
    report.write_text("## Changes and their effect\n")
    tiny = ["--meters", "1", "--days", "2", "--repeat", "1", "--api-seconds", "1", "--load-seconds", "0"]
    run.main([*tiny, "--only", "api", "--output", str(report)])
    api = latest_results()["results"]["api"]
    for name in ("one_day_readings", "month_readings", "year_daily_energy"):
        cpu = api[name]["cpu_ms_per_request"]
        # Both sides do work for every request: a split of zero would mean the processes were not found.
        assert cpu["api"] > 0 and cpu["postgres"] > 0, (name, cpu)
    assert (
        "| Scenario | Connections | Req/s | p50 ms | p99 ms | Errors | CPU ms per request: API, PostgreSQL |"
        in (report.read_text())
    )
