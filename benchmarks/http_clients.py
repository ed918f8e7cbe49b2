"""CPU per request of the tap's HTTP transport against requests' own adapter and urllib3, same server.

    python -m benchmarks.http_clients --requests 4000

The source (tools.mirror's measurement endpoint, one day of synthetic meters) runs in a process of its own,
so this process's CPU time is the client's alone. Every client sends the same GETs with the same headers,
over one kept-alive connection, and reads the body; the clients take turns in rounds, so a machine that
slows down mid-run slows all of them.
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlencode

import requests
import urllib3
from tap_exnaton.transport import StdlibTransport

from tools.synthetic import synthetic_meters, write_exports

HERE = Path(__file__).resolve().parent
ROUNDS = 4
HEADERS = {"User-Agent": "bench", "Accept-Encoding": "gzip, deflate", "Accept": "*/*"}


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def session(adapter) -> requests.Session:
    s = requests.Session()
    s.trust_env = False
    s.mount("http://", adapter)
    return s


def clients(port: int) -> dict:
    """name -> send(path): each sends one GET and returns the body."""
    through_requests = session(requests.adapters.HTTPAdapter())
    through_transport = session(StdlibTransport())
    pool = urllib3.HTTPConnectionPool("127.0.0.1", port, maxsize=1)
    origin = f"http://127.0.0.1:{port}"

    def prepared(path: str) -> requests.PreparedRequest:
        return requests.Request("GET", origin + path, headers=HEADERS).prepare()

    return {
        "requests (HTTPAdapter, urllib3)": lambda path: (
            through_requests.send(prepared(path), timeout=60).content
        ),
        "tap_exnaton.transport (http.client)": lambda path: (
            through_transport.send(prepared(path), timeout=60).content
        ),
        "urllib3 alone (no requests objects)": lambda path: (
            pool.urlopen("GET", path, headers=HEADERS, retries=False, redirect=False, timeout=60).data
        ),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=4000, help="per client")
    parser.add_argument("--port", type=int, default=8765)
    args = parser.parse_args(argv)
    meters = synthetic_meters(max(1, args.requests // ROUNDS), seed=5)
    directory = HERE / ".work" / f"http-clients-{len(meters)}"
    if not (directory / f"{meters[-1].muid}.json").exists():
        from benchmarks.fleet import DAY, START

        write_exports(directory, meters, START, START + DAY)
    server = subprocess.Popen(
        [sys.executable, "-u", "-m", "tools.mirror", str(directory), "--port", str(args.port)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        server.stdout.readline()  # "serving ..."
        paths = [
            "/challenge/meterdata/measurement?"
            + urlencode({"muid": m.muid, "measurement": "energy", "start": "2023-01-01T23:45:00Z",
                         "stop": "2023-01-02", "limit": 5000})
            for m in meters
        ]  # fmt: skip
        sends = clients(args.port)
        spent = dict.fromkeys(sends, 0.0)
        for _ in range(ROUNDS):
            for name, send in sends.items():
                before = cpu_seconds()
                for path in paths:
                    send(path)
                spent[name] += cpu_seconds() - before
        sent = ROUNDS * len(paths)
        for name, seconds in spent.items():
            print(f"{name}: {seconds / sent * 1e6:.0f} µs of CPU per request ({sent} requests)")
    finally:
        server.terminate()
        server.wait(timeout=10)


if __name__ == "__main__":
    main()
