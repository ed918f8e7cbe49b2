"""The API under load: gunicorn on 127.0.0.1, wrk as the client, psycopg running the same SQL as baseline."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
from psycopg.rows import dict_row

from tools.db import conninfo

PROJECT_ROOT = Path(__file__).resolve().parent.parent
GUNICORN = str(Path(sys.executable).parent / "gunicorn")
# As `make api` serves it. On 2 cores, 3 processes of 4 threads beat 2 of 8 by ~15% (less GIL contention).
GUNICORN_WORKERS, GUNICORN_THREADS = 3, 4
WRK_HINT = "wrk is not installed: `apt-get install wrk` (Debian/Ubuntu) or `brew install wrk`"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def api_server(pg: dict[str, str]):
    port = free_port()
    env = {**os.environ, **pg}
    command = [
        GUNICORN,
        "--bind",
        f"127.0.0.1:{port}",
        "--workers",
        str(GUNICORN_WORKERS),
        "--threads",
        str(GUNICORN_THREADS),
        "--preload",
        "--log-level",
        "warning",
        "api:create_app()",
    ]
    server = subprocess.Popen(command, cwd=PROJECT_ROOT, env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            with contextlib.suppress(OSError):
                urllib.request.urlopen(f"{base}/health", timeout=1)
                break
            time.sleep(0.1)
        wait_for_every_worker(server.pid)
        yield base
    finally:
        server.terminate()
        server.wait(timeout=10)


def wait_for_every_worker(master_pid: int) -> None:
    """Returns once every gunicorn worker has been forked and had time to reach its accept loop.

    wrk opens its keep-alive connections at once and keeps them: a worker that is up before the others takes
    them all and serves every request of the run on one core (one day of readings at 16 connections: 650-700
    req/s instead of 1,400-1,500, seen in about half the runs before this wait)."""
    import psutil

    master = psutil.Process(master_pid)
    for _ in range(100):
        if len(master.children()) >= GUNICORN_WORKERS:
            break
        time.sleep(0.1)
    time.sleep(0.5)


def wrk(url: str, *, connections: int, seconds: int) -> dict:
    """Requests/s, p50 and p99 in ms, errors (socket errors plus non-2xx answers), and the CPU time per
    request of the API's gunicorn processes and of PostgreSQL's: where a request's time goes."""
    server = urlsplit(url).netloc  # gunicorn's `--bind` argument
    before = _cpu_seconds(server)
    out = subprocess.run(
        [
            "wrk",
            "-t",
            str(min(connections, 2)),
            "-c",
            str(connections),
            "-d",
            f"{seconds}s",
            "--latency",
            url,
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    after = _cpu_seconds(server)
    requests = int(re.search(r"(\d+) requests in", out).group(1))
    return {
        "requests_per_s": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
        "p50_ms": _latency(out, "50%"),
        "p99_ms": _latency(out, "99%"),
        "errors": _errors(out),
        "connections": connections,
        "cpu_ms_per_request": {
            side: round((after[side] - before[side]) / max(requests, 1) * 1000, 3) for side in before
        },
    }


def _cpu_seconds(server: str) -> dict[str, float]:
    """User + system CPU seconds so far of the gunicorn processes bound to ``server`` (host:port) and of
    every PostgreSQL process on the machine (the server the API reads does the work; others sit idle)."""
    import psutil

    seconds = {"api": 0.0, "postgres": 0.0}
    for process in psutil.process_iter(["name", "cmdline", "cpu_times"]):
        cmdline, times = process.info["cmdline"] or [], process.info["cpu_times"]
        if times is None:
            continue
        if process.info["name"] == "postgres" or (cmdline and cmdline[0].startswith("postgres:")):
            seconds["postgres"] += times.user + times.system
        elif server in cmdline and any("gunicorn" in part for part in cmdline[:2]):
            seconds["api"] += times.user + times.system
    return seconds


def _latency(out: str, percentile: str) -> float:
    value, unit = re.search(rf"{percentile}\s+([\d.]+)(us|ms|s)", out).groups()
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def _errors(out: str) -> int:
    errors = 0
    if match := re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out):
        errors += int(match.group(1))
    if match := re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out):
        errors += sum(map(int, match.groups()))
    return errors


class DirectConnection:
    """The API's database interface over one plain psycopg connection: its SQL without Flask and the pool."""

    def __init__(self, conn):
        self.conn = conn

    def fetch_all(self, query, params=None):
        return self.conn.execute(query, params).fetchall()

    def fetch_one(self, query, params=None):
        return self.conn.execute(query, params).fetchone()


def psycopg_month_baseline(pg: dict[str, str], muid: str, start: str, end: str, repeat: int = 50) -> float:
    """Median ms of the SQL the readings endpoint runs for a page with both bounds, on a warm connection."""
    from api.queries import Queries

    timings = []
    with psycopg.connect(conninfo(pg), row_factory=dict_row) as conn:
        queries = Queries(DirectConnection(conn), "marts")
        for _ in range(repeat):
            began = time.perf_counter()
            queries.readings_page_json(muid, start, end, None, 0, 5000)
            timings.append((time.perf_counter() - began) * 1000)
    return statistics.median(timings)


def api_figures(pg: dict[str, str], muid: str, seconds: int, load_seconds: int = 60) -> dict:
    if shutil.which("wrk") is None:
        return {"skipped": WRK_HINT}
    try:
        import api  # noqa: F401
    except ImportError as exc:
        return {"skipped": f"the API is not importable: {exc}"}
    readings = f"/api/v1/meters/{muid}/readings"
    with api_server(pg) as base:
        figures = {
            "one_day_readings": wrk(
                f"{base}{readings}?start=2023-06-01&end=2023-06-02&page_size=500",
                connections=16,
                seconds=seconds,
            ),
            "month_readings": wrk(
                f"{base}{readings}?start=2023-02-01&end=2023-03-01&page_size=5000",
                connections=1,
                seconds=seconds,
            ),
            "year_daily_energy": wrk(
                f"{base}/api/v1/meters/{muid}/energy?interval=day&start=2023-01-01&end=2024-01-01",
                connections=16,
                seconds=seconds,
            ),
        }
        if load_seconds:
            # The load test of the reliability issue: 32 connections for a minute, errors must be 0.
            figures["load_readings_32c"] = wrk(
                f"{base}{readings}?start=2023-06-01&end=2023-06-08&page_size=1000",
                connections=32,
                seconds=load_seconds,
            )
            figures["load_energy_32c"] = wrk(
                f"{base}/api/v1/meters/{muid}/energy?interval=hour&start=2023-06-01&end=2023-06-08",
                connections=32,
                seconds=load_seconds,
            )
    figures["month_readings_psycopg_p50_ms"] = psycopg_month_baseline(
        pg, muid, "2023-02-01T00:00Z", "2023-03-01T00:00Z"
    )
    return figures
