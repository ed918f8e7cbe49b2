"""A real HTTP server on 127.0.0.1 that plays the Exnaton source for the tap's tests.

It serves export files (``/<muid>.json``) and the measurement endpoint from in-memory readings, and can be
told to answer a path with a scripted sequence of responses first (errors, bad bodies, Retry-After...).
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

UTC = UTC


@dataclass
class Scripted:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)


def export_records(muid: str, obis: str, start: datetime, count: int, value=lambda i: round(0.01 * i, 4)):
    """``count`` 15-minute readings from ``start``, newest first, in the source's record shape."""
    records = [
        {
            "measurement": "energy",
            "timestamp": (start + timedelta(minutes=15 * i)).strftime("%Y-%m-%dT%H:%M:%S.000Z"),
            "tags": {"muid": muid, "quality": "measured"},
            obis: value(i),
        }
        for i in range(count)
    ]
    return records[::-1]


class BurstServer(ThreadingHTTPServer):
    # Room for a burst of concurrent connections: beyond the default backlog of 5 they are dropped, and
    # the client retries them only a second later.
    request_queue_size = 128
    daemon_threads = True


class SourceServer:
    """``files``: muid -> list of source records; ``script``: path -> responses to give first, in order."""

    def __init__(self, *, keep: str = "newest", delay: float = 0.0) -> None:
        self.files: dict[str, list[dict]] = {}
        self.script: dict[str, list[Scripted]] = {}
        self.requests: list[tuple[float, str, dict[str, str]]] = []
        self.keep = keep
        # Seconds every answer waits (a distant source); in_flight and most_in_flight count requests at once.
        self.delay = delay
        self.in_flight = self.most_in_flight = 0
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Headers and body go out in two writes: with Nagle on, the body waits for the client's delayed ACK.
            disable_nagle_algorithm = True

            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                server.requests.append((time.monotonic(), self.path, dict(self.headers)))
                with server.counting_in_flight():
                    time.sleep(server.delay)
                    scripted = server.next_scripted(urlsplit(self.path).path)
                    if scripted is not None:
                        self.reply(scripted.status, scripted.body, scripted.headers)
                        return
                    self.reply(*server.answer(self.path))

            def reply(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
                self.send_response(status)
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.httpd = BurstServer(("127.0.0.1", 0), Handler)
        self.base_url = f"http://127.0.0.1:{self.httpd.server_address[1]}/challenge"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    @contextlib.contextmanager
    def counting_in_flight(self):
        with self._lock:
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            yield
        finally:
            with self._lock:
                self.in_flight -= 1

    def next_scripted(self, path: str) -> Scripted | None:
        queue = self.script.get(path)
        return queue.pop(0) if queue else None

    def answer(self, raw_path: str) -> tuple[int, bytes]:
        url = urlsplit(raw_path)
        if url.path.endswith("/meterdata/measurement"):
            return 200, self.measurement(parse_qs(url.query))
        muid = url.path.rsplit("/", 1)[-1].removesuffix(".json")
        if muid not in self.files:
            return 404, b'{"message": "no such file"}'
        return 200, json.dumps({"data": self.files[muid]}, separators=(",", ":")).encode()

    def measurement(self, query: dict[str, list[str]]) -> bytes:
        start = parse_bound(query["start"][0])
        stop = parse_bound(query["stop"][0])
        limit = int(query["limit"][0])
        matching = [
            r for r in self.files.get(query["muid"][0], []) if start <= parse_bound(r["timestamp"]) < stop
        ]
        matching.sort(key=lambda r: r["timestamp"], reverse=True)
        chosen = matching[:limit] if self.keep == "newest" else matching[-limit:]
        return json.dumps({"data": chosen}).encode()

    def measurement_queries(self) -> list[dict[str, str]]:
        return [
            {k: v[0] for k, v in parse_qs(urlsplit(path).query).items()}
            for _, path, _ in self.requests
            if "/meterdata/measurement" in path
        ]

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def parse_bound(value: str) -> datetime:
    moment = datetime.fromisoformat(value)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
