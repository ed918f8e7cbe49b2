"""The dashboard in headless Chromium: page weight (gzipped) and time from navigation to the first chart.

    .venv/bin/python -m benchmarks.dashboard [--meters 10000] [--loads 10]

The marts of benchmarks.api_meters (a real pipeline run of 2 meters x 28 days, the rest of the fleet as
dim_meters rows), the API under gunicorn as `make api` runs it, and a cold load each time (browser cache
off) of `/#<a loaded meter>`: the page asks for the first page of the meter list and draws that meter's
month. "First chart" is the page's own `performance.mark("first-chart")`, set when the first chart's SVG
is in the document, in ms since the navigation started.
"""

from __future__ import annotations

import argparse
import gzip
import os
import statistics
import sys
import urllib.request
from urllib.parse import urlparse

from selenium.webdriver.support.ui import WebDriverWait

from benchmarks.api_meters import LOADED, fleet_database
from benchmarks.load import api_server
from tests.browser import chrome, foreign, requested_urls

FIRST_CHART_JS = (
    "const m = performance.getEntriesByName('first-chart'); return m.length ? m[0].startTime : null"
)


def first_chart_ms(driver, url: str) -> tuple[float, list[str]]:
    driver.get("about:blank")
    requested_urls(driver)
    driver.get(url)
    started = WebDriverWait(driver, 60).until(lambda d: d.execute_script(FIRST_CHART_JS))
    WebDriverWait(driver, 60).until(
        lambda d: d.execute_script("return document.body.dataset.state") == "ready"
    )
    return started, requested_urls(driver)


def weight(urls: list[str]) -> dict[str, dict]:
    """Bytes as served and gzipped (level 6), for the page itself and for the API data it asked for."""
    totals = {kind: {"requests": 0, "bytes": 0, "gzip_bytes": 0} for kind in ("page", "data")}
    for url in dict.fromkeys(u for u in urls if urlparse(u).scheme == "http"):
        with urllib.request.urlopen(url, timeout=30) as response:
            body = response.read()
        kind = "data" if urlparse(url).path.startswith("/api/") else "page"
        totals[kind]["requests"] += 1
        totals[kind]["bytes"] += len(body)
        totals[kind]["gzip_bytes"] += len(gzip.compress(body, compresslevel=6))
    return totals


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.dashboard", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--meters", type=int, default=10_000)
    parser.add_argument("--loads", type=int, default=10)
    args = parser.parse_args(argv)
    driver = chrome()
    try:
        driver.execute_cdp_cmd("Network.enable", {})
        driver.execute_cdp_cmd("Network.setCacheDisabled", {"cacheDisabled": True})
        with fleet_database(args.meters) as (pg, fleet), api_server(pg) as base:
            url = f"{base}/#{fleet[LOADED - 1].muid}"
            first_chart_ms(driver, url)  # warm-up: gunicorn workers and their connection pools
            timings, urls = [], []
            for _ in range(args.loads):
                ms, urls = first_chart_ms(driver, url)
                timings.append(ms)
            if foreign(urls):
                raise SystemExit(f"requests left 127.0.0.1: {foreign(urls)}")
            sizes = weight(urls)
    finally:
        driver.quit()
    print(f"first chart: median {statistics.median(timings):.0f} ms of {timings}", file=sys.stderr)
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(
        f"\nDashboard, headless Chromium, {args.meters:,} meters in the marts, {args.loads} cold loads "
        f"(load average at the end: {load})\n"
    )
    print("| Figure | Value |")
    print("|---|---:|")
    print(f"| navigation to first chart drawn, median ms | {statistics.median(timings):.0f} |")
    print(f"| navigation to first chart drawn, slowest ms | {max(timings):.0f} |")
    for kind, label in (("page", "page (HTML, JS, CSS)"), ("data", "API data of the first view (JSON)")):
        figure = sizes[kind]
        print(
            f"| {label}: {figure['requests']} requests, KiB as served / gzipped | "
            f"{figure['bytes'] / 1024:.1f} / {figure['gzip_bytes'] / 1024:.1f} |"
        )


if __name__ == "__main__":
    main()
