"""A local mirror of the Exnaton source on 127.0.0.1, in both of the tap's API modes.

``GET /<anything>/<muid>.json`` returns the export file byte for byte (the S3 layout), and
``GET /<anything>/meterdata/measurement?muid=&measurement=&start=&stop=&limit=`` answers like the upstream
API from the same files: readings in ``[start, stop)``, newest first, at most ``limit`` of them.

    python -m tools.mirror ../shared/data/exnaton --port 8000
    TAP_EXNATON_BASE_URL=http://127.0.0.1:8000/challenge make run
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from datetime import UTC, datetime
from functools import cached_property
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

UTC = UTC


class MirrorData:
    """The export files of one directory, indexed by meter for the measurement endpoint."""

    def __init__(self, directory: Path, *, keep: str = "newest") -> None:
        self.directory = directory
        # Which readings a full window returns is undocumented upstream; tests can pick either end.
        self.keep = keep

    def file_bytes(self, name: str) -> bytes | None:
        path = self.directory / name
        return path.read_bytes() if path.is_file() and path.parent == self.directory else None

    @cached_property
    def readings_by_muid(self) -> dict[str, list[tuple[datetime, dict]]]:
        index: dict[str, list[tuple[datetime, dict]]] = {}
        for path in sorted(self.directory.glob("*.json")):
            for reading in json.loads(path.read_bytes())["data"]:
                muid = reading.get("tags", {}).get("muid", path.stem)
                moment = datetime.fromisoformat(reading["timestamp"])
                index.setdefault(muid, []).append((moment, reading))
        for readings in index.values():
            readings.sort(key=lambda item: item[0], reverse=True)
        return index

    def measurement(self, muid: str, measurement: str, start: datetime, stop: datetime, limit: int) -> list:
        matching = [
            reading
            for moment, reading in self.readings_by_muid.get(muid, [])
            if start <= moment < stop and reading.get("measurement") == measurement
        ]
        return matching[:limit] if self.keep == "newest" else matching[-limit:]


def parse_bound(value: str) -> datetime:
    moment = datetime.fromisoformat(value)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


class SourceHTTPServer(ThreadingHTTPServer):
    """A threading server that takes a fleet's worth of concurrent connections.

    socketserver's default listen backlog of 5 drops the connections of a burst beyond it, and the client
    only retries them a second later: a concurrent tap would look slower than a serial one.
    """

    request_queue_size = 128
    daemon_threads = True


class MirrorHandler(BaseHTTPRequestHandler):
    data: MirrorData
    requests_seen: list[str]
    # Keep-alive, as S3 and the API do (every answer has a Content-Length).
    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes: with Nagle on, the body waits for the client's delayed ACK.
    disable_nagle_algorithm = True
    # Seconds to wait before every answer: a distant source, for benchmarks of concurrent fetching.
    delay = 0.0

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: tests and `make mirror` do not need a line per request."""

    def do_GET(self) -> None:
        self.requests_seen.append(self.path)
        if self.delay:
            time.sleep(self.delay)
        url = urlsplit(self.path)
        if url.path.endswith("/meterdata/measurement"):
            self._measurement(parse_qs(url.query))
            return
        body = self.data.file_bytes(url.path.rsplit("/", 1)[-1])
        if body is None:
            self._send(HTTPStatus.NOT_FOUND, b'{"message":"not found"}')
            return
        self._send(HTTPStatus.OK, body)

    def _measurement(self, query: dict[str, list[str]]) -> None:
        try:
            muid = query["muid"][0]
            start = parse_bound(query["start"][0])
            stop = parse_bound(query.get("stop", query.get("end", [""]))[0])
            limit = int(query.get("limit", ["5000"])[0])
        except (KeyError, IndexError, ValueError) as exc:
            self._send(HTTPStatus.BAD_REQUEST, json.dumps({"message": f"bad query: {exc}"}).encode())
            return
        measurement = query.get("measurement", ["energy"])[0]
        readings = self.data.measurement(muid, measurement, start, stop, limit)
        self._send(HTTPStatus.OK, json.dumps({"data": readings}, separators=(",", ":")).encode())

    def _send(self, status: HTTPStatus, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class Mirror:
    """A running mirror server; ``base_url`` is what ``TAP_EXNATON_BASE_URL`` takes."""

    def __init__(self, directory: Path, *, port: int = 0, keep: str = "newest", delay: float = 0.0) -> None:
        handler = type(
            "BoundMirrorHandler",
            (MirrorHandler,),
            {"data": MirrorData(Path(directory).resolve(), keep=keep), "requests_seen": [], "delay": delay},
        )
        self.handler = handler
        self.server = SourceHTTPServer(("127.0.0.1", port), handler)
        self.base_url = f"http://127.0.0.1:{self.server.server_address[1]}/challenge"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def requests_seen(self) -> list[str]:
        return self.handler.requests_seen

    def index_measurements(self) -> Mirror:
        """Index the files for the measurement endpoint now, as a real API has its data indexed before the
        first call; otherwise the first request reads every file (seconds of CPU at 10,000 meters, which a
        benchmark would charge to the client)."""
        _ = self.handler.data.readings_by_muid
        return self

    def __enter__(self) -> Mirror:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m tools.mirror", description=__doc__.splitlines()[0])
    parser.add_argument("directory", type=Path, help="folder with <muid>.json export files")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument(
        "--delay-ms", type=float, default=0.0, help="wait before every answer (a distant source)"
    )
    args = parser.parse_args()
    if not args.directory.is_dir():
        parser.error(f"{args.directory} is not a directory")
    mirror = Mirror(args.directory, port=args.port, delay=args.delay_ms / 1000)
    print(f"serving {args.directory} at {mirror.base_url} (Ctrl-C stops)")  # noqa: T201
    try:
        mirror.server.serve_forever()
    except KeyboardInterrupt:
        mirror.server.server_close()


if __name__ == "__main__":
    main()
