"""p50 of `GET /api/v1/meters` with a fleet of 10,000 meters in the marts.

    .venv/bin/python -m benchmarks.api_meters [--meters 10000] [--requests 300]

The marts come from a real pipeline run (`meltano run tap-exnaton target-postgres dbt`, 2 synthetic meters x
28 days), then `marts.dim_meters` gets the rest of the fleet as synthetic rows of the same shape (the meter
list reads `dim_meters` only; running the pipeline for 10,000 meters would take many minutes and change
nothing this endpoint reads). gunicorn serves the API as `make api` does; one keep-alive client asks each URL
in turn, and the SQL of the same requests runs alone through psycopg for comparison.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import statistics
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlparse

import psycopg
from psycopg.rows import dict_row

from benchmarks.load import api_server
from tests.pipeline import Pipeline, create_database, drop_database
from tools.db import conninfo
from tools.mirror import Mirror
from tools.synthetic import EXPORT_OBIS, day_start, meters_setting, synthetic_meters, write_exports

LOADED = 2  # meters that go through the real pipeline
FIRST_DAY, DAYS = "2023-02-01", 28
WARM_UP = 20


@contextlib.contextmanager
def fleet_database(meters: int):
    """A scratch database whose marts hold `meters` meters; yields (PG* variables, the meters)."""
    fleet = synthetic_meters(meters)
    pg = create_database("exnaton_bench_meters")
    try:
        with tempfile.TemporaryDirectory(prefix="bench-meters-") as work:
            source = write_exports(
                Path(work) / "source",
                fleet[:LOADED],
                day_start(FIRST_DAY),
                day_start(FIRST_DAY) + timedelta(days=DAYS),
            )
            with Mirror(source) as mirror:
                pipeline = Pipeline(
                    pg=pg,
                    workdir=Path(work),
                    base_url=mirror.base_url,
                    settings={
                        "TAP_EXNATON_METERS": meters_setting(fleet[:LOADED]),
                        "TAP_EXNATON_START_DATE": FIRST_DAY,
                    },
                )
                pipeline.meltano("run", "tap-exnaton", "target-postgres", "dbt")
        add_synthetic_meters(pg, fleet[LOADED:])
        yield pg, fleet
    finally:
        drop_database(pg)


def add_synthetic_meters(pg: dict[str, str], meters: list) -> None:
    """dim_meters rows like the loaded ones: one channel each, a month of readings."""
    with psycopg.connect(conninfo(pg)) as conn:
        template = conn.execute(
            "select first_reading_at, last_reading_at, reading_count, last_loaded_at from marts.dim_meters limit 1"
        ).fetchone()
        with conn.cursor().copy(
            "copy marts.dim_meters (muid, stream_name, obis_code, direction, first_reading_at, last_reading_at, "
            "reading_count, last_loaded_at) from stdin"
        ) as copy:
            for meter in meters:
                direction = "export" if meter.obis_code == EXPORT_OBIS else "import"
                copy.write_row((meter.muid, meter.stream_name, meter.obis_code, direction, *template))
        conn.execute("analyze marts.dim_meters")


def p50_p95(timings_ms: list[float]) -> dict:
    ordered = sorted(timings_ms)
    return {
        "p50_ms": round(statistics.median(ordered), 2),
        "p95_ms": round(ordered[int(0.95 * (len(ordered) - 1))], 2),
    }


def time_http(base: str, path: str, requests: int) -> dict:
    """Latency of one keep-alive client asking `path` again and again (after a warm-up)."""
    address = urlparse(base)
    connection = http.client.HTTPConnection(address.hostname, address.port, timeout=30)
    timings, size, total = [], 0, None
    for index in range(WARM_UP + requests):
        began = time.perf_counter()
        connection.request("GET", path)
        response = connection.getresponse()
        body = response.read()
        elapsed = (time.perf_counter() - began) * 1000
        if response.status != 200:
            raise SystemExit(f"GET {path}: {response.status} {body[:300]!r}")
        if index >= WARM_UP:
            timings.append(elapsed)
        size = len(body)
        total = json.loads(response.headers["X-Pagination"])["total"]
    connection.close()
    return {**p50_p95(timings), "bytes": size, "total": total}


def time_sql(pg: dict[str, str], prefix: str, offset: int, limit: int, requests: int) -> dict:
    """The same two queries (count, page) through psycopg on a warm connection: the floor under the API."""
    from api.queries import Queries
    from benchmarks.load import DirectConnection

    timings = []
    with psycopg.connect(conninfo(pg), row_factory=dict_row) as conn:
        queries = Queries(DirectConnection(conn), "marts")
        for index in range(WARM_UP + requests):
            began = time.perf_counter()
            queries.meter_count(prefix)
            queries.meter_channels(muid_prefix=prefix, offset=offset, limit=limit)
            if index >= WARM_UP:
                timings.append((time.perf_counter() - began) * 1000)
    return p50_p95(timings)


def scenarios(fleet: list) -> list[tuple[str, str, str, int, int]]:
    """(name, query string, prefix, offset, limit) of the requests timed."""
    prefix = fleet[LOADED + 100].muid[:3]
    middle = len(fleet) // 200
    return [
        ("first page (default page_size 100)", "", "", 0, 100),
        ("the dashboard's page (page_size 20)", "?page_size=20", "", 0, 20),
        (f"page {middle} of 100", f"?page={middle}", "", (middle - 1) * 100, 100),
        (f"muid_prefix={prefix} (page_size 20)", f"?muid_prefix={prefix}&page_size=20", prefix, 0, 20),
        ("page_size 1000", "?page_size=1000", "", 0, 1000),
    ]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.api_meters", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--meters", type=int, default=10_000)
    parser.add_argument("--requests", type=int, default=300)
    args = parser.parse_args(argv)
    results = []
    with fleet_database(args.meters) as (pg, fleet), api_server(pg) as base:
        for name, query, prefix, offset, limit in scenarios(fleet):
            http_figures = time_http(base, "/api/v1/meters" + query, args.requests)
            if not query.startswith("?muid_prefix") and http_figures["total"] != args.meters:
                raise SystemExit(f"{http_figures['total']} meters listed, {args.meters} expected")
            sql = time_sql(pg, prefix, offset, limit, args.requests)
            results.append({"scenario": name, **http_figures, "sql_p50_ms": sql["p50_ms"]})
            print(
                f"{name}: p50 {http_figures['p50_ms']} ms, p95 {http_figures['p95_ms']} ms", file=sys.stderr
            )
    print(
        f"\nGET /api/v1/meters, {args.meters:,} meters, {args.requests} requests each, one keep-alive client "
        f"(load average at the end: {', '.join(f'{x:.1f}' for x in os.getloadavg())})\n"
    )
    print("| Request | p50 ms | p95 ms | SQL alone p50 ms | Meters matched | Body bytes |")
    print("|---|---:|---:|---:|---:|---:|")
    for row in results:
        print(
            f"| {row['scenario']} | {row['p50_ms']} | {row['p95_ms']} | {row['sql_p50_ms']} | "
            f"{row['total']:,} | {row['bytes']:,} |"
        )


if __name__ == "__main__":
    main()
