"""A local source on 127.0.0.1 that misbehaves on purpose, for the pipeline fault tests.

It answers like ``tools.mirror`` (both API modes, from a folder of export files) unless a script says
otherwise. A script is a list of scripted replies for the requests whose path contains a given text (a
muid, or ``meterdata``): the first matching request gets the first reply, and so on; after the script the
``then`` reply (default: the good answer) is used for every further request.

    source = FaultySource(directory)
    source.on(MUID_1, status(503), status(500), then=GOOD)     # two server errors, then the file
    source.on(MUID_2, edit_readings(drop_timestamp))           # a reading without timestamp, once
    with source: ...  # source.base_url is what TAP_EXNATON_BASE_URL takes

Every request is recorded (path, arrival time, what was answered) so tests can check what the tap did.
"""

from __future__ import annotations

import json
import socket
import struct
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

from tests.pipeline import DAY_READING_AT, Pipeline
from tools.mirror import MirrorData, MirrorHandler, SourceHTTPServer

BodyEdit = Callable[[bytes], bytes]


@dataclass(frozen=True)
class Reply:
    """How to answer one request. Defaults: the good answer, at once."""

    name: str = "good"
    status: int | None = None  # None: the status of the good answer
    body: bytes | None = None  # None: the good body (after ``edit``)
    headers: tuple[tuple[str, str], ...] = ()
    content_type: str | None = None
    delay: float = 0.0  # seconds to wait before answering
    edit: BodyEdit | None = None  # rewrites the good body
    reset_after: float | None = None  # send this fraction of the body, then reset the connection
    echo_headers: bool = False  # the body shows the request's headers, as some error pages do


GOOD = Reply()


def status(code: int, *, retry_after: str | None = None, body: bytes | None = None) -> Reply:
    headers = (("Retry-After", retry_after),) if retry_after is not None else ()
    return Reply(
        name=f"status {code}",
        status=code,
        body=body if body is not None else json.dumps({"message": f"scripted {code}"}).encode(),
        headers=headers,
    )


def echoing_error(code: int) -> Reply:
    """An error page that shows the request's headers back (and with them any credentials)."""
    return Reply(name=f"status {code} echoing headers", status=code, body=b"", echo_headers=True)


def slow(seconds: float, then: Reply = GOOD) -> Reply:
    """``then``, after a delay (longer than the tap's request timeout: a read timeout)."""
    return Reply(**{**then.__dict__, "name": f"{then.name} after {seconds}s", "delay": seconds})


def reset_mid_body() -> Reply:
    """Headers with the full Content-Length and half of the good body, then a TCP reset."""
    return Reply(name="reset mid-body", reset_after=0.5)


def truncated_body() -> Reply:
    """A body cut in the middle, with a Content-Length that matches the cut (an incomplete export file)."""
    return Reply(name="truncated body", edit=lambda body: body[: len(body) // 2])


def malformed_json() -> Reply:
    return Reply(name="malformed JSON", edit=lambda body: body.replace(b'"measurement"', b"'measurement'", 1))


def html_error_page() -> Reply:
    page = b"<html><head><title>Service Unavailable</title></head><body><h1>Maintenance</h1></body></html>"
    return Reply(name="HTML page with 200", status=200, body=page, content_type="text/html")


def data_null() -> Reply:
    return Reply(name="data null", status=200, body=b'{"data": null}')


def edit_readings(change: Callable[[list[dict]], None], name: str = "edited readings") -> Reply:
    """The good answer with its readings changed in place by ``change``."""

    def edit(body: bytes) -> bytes:
        document = json.loads(body)
        change(document["data"])
        return json.dumps(document, separators=(",", ":")).encode()

    return Reply(name=name, edit=edit)


def middle(readings: list[dict]) -> dict:
    return readings[len(readings) // 2]


def drop_timestamp(readings: list[dict]) -> None:
    del middle(readings)["timestamp"]


def non_numeric_value(readings: list[dict]) -> None:
    reading = middle(readings)
    obis = next(key for key in reading if key not in {"measurement", "timestamp", "tags"})
    reading[obis] = "n/a"


def unparsable_timestamp(readings: list[dict]) -> None:
    middle(readings)["timestamp"] = "2023-02-30T25:61:00.000Z"


@dataclass
class Seen:
    """One request as the server saw it."""

    path: str
    at: float  # time.monotonic() on arrival
    reply: str
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Script:
    match: str
    replies: list[Reply]
    then: Reply
    used: int = 0

    def next_reply(self) -> Reply:
        if self.used < len(self.replies):
            self.used += 1
            return self.replies[self.used - 1]
        return self.then


@dataclass
class SourceState:
    data: MirrorData
    delay: float = 0.0
    scripts: list[Script] = field(default_factory=list)
    seen: list[Seen] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def reply_for(self, path: str, headers: dict[str, str]) -> Reply:
        with self.lock:
            script = next((s for s in self.scripts if s.match in path), None)
            reply = script.next_reply() if script else GOOD
            self.seen.append(Seen(path, time.monotonic(), reply.name, headers))
            return reply


class FaultyHandler(MirrorHandler):
    state: SourceState
    reply: Reply = GOOD
    # A connection per request: a reset or a cut-off body then never spills into the next request.
    protocol_version = "HTTP/1.0"
    requests_seen: list[str]  # the mirror's own log; ``state.seen`` is the one to read

    @property
    def data(self) -> MirrorData:  # type: ignore[override]
        return self.state.data

    def do_GET(self) -> None:
        self.reply = self.state.reply_for(self.path, dict(self.headers.items()))
        time.sleep(self.state.delay + self.reply.delay)
        if self.reply.echo_headers:
            # Newest headers first: the credentials a client adds come after its defaults.
            echoed = {"request_headers": dict(reversed(self.headers.items()))}
            self._write(self.reply.status or 200, json.dumps(echoed).encode(), None)
            return
        if self.reply.body is not None:
            self._write(self.reply.status or 200, self.reply.body, self.reply.content_type)
            return
        super().do_GET()  # the good answer, through _send below

    def _send(self, status, body: bytes) -> None:
        if self.reply.edit is not None and status == 200:
            body = self.reply.edit(body)
        self._write(self.reply.status or status, body, None)

    def _write(self, code: int, body: bytes, content_type: str | None) -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type or "application/json")
        self.send_header("Content-Length", str(len(body)))
        for name, value in self.reply.headers:
            self.send_header(name, value)
        self.end_headers()
        if self.reply.reset_after is None:
            self.wfile.write(body)
            return
        self.wfile.write(body[: int(len(body) * self.reply.reset_after)])
        # Let the client read the headers and the first bytes: a reset discards what it has not read yet.
        time.sleep(0.2)
        self._reset_connection()

    def _reset_connection(self) -> None:
        # SO_LINGER 0 turns close() into a TCP RST: the client sees "connection reset" mid-body.
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.connection.close()
        self.close_connection = True


class QuietServer(SourceHTTPServer):
    def handle_error(self, request, client_address) -> None:
        """Broken pipes after timeouts and resets are the point of this server, not news."""
        if not isinstance(sys.exc_info()[1], OSError):
            super().handle_error(request, client_address)


class FaultySource:
    """A running misbehaving source; ``base_url`` is what ``TAP_EXNATON_BASE_URL`` takes."""

    def __init__(self, directory: Path, *, delay: float = 0.0) -> None:
        self.state = SourceState(MirrorData(Path(directory).resolve()), delay=delay)
        handler = type("BoundFaultyHandler", (FaultyHandler,), {"state": self.state, "requests_seen": []})
        self.server = QuietServer(("127.0.0.1", 0), handler)
        self.base_url = f"http://127.0.0.1:{self.server.server_address[1]}/challenge"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def on(self, match: str, *replies: Reply, then: Reply = GOOD) -> FaultySource:
        """Script the requests whose path contains ``match``; a new script for ``match`` replaces the old."""
        with self.state.lock:
            self.state.scripts = [s for s in self.state.scripts if s.match != match]
            self.state.scripts.append(Script(match, list(replies), then))
        return self

    def heal(self) -> None:
        """From now on, every request gets the good answer at once."""
        with self.state.lock:
            self.state.scripts.clear()
            self.state.delay = 0.0

    def reload(self) -> None:
        """Read the export files again (after a test rewrote them)."""
        with self.state.lock:
            self.state.data = MirrorData(self.state.data.directory)

    def set_delay(self, seconds: float) -> None:
        self.state.delay = seconds

    def seen(self, match: str = "") -> list[Seen]:
        with self.state.lock:
            return [s for s in self.state.seen if match in s.path]

    def __enter__(self) -> FaultySource:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


# --- What the fault tests check ------------------------------------------------------------------------

STATE_ID = "dev:tap-exnaton-to-target-postgres"
ERROR_PREFIX = "tap-exnaton: error: "


def source_readings(directory: Path, muid: str) -> list[tuple[str, str, Decimal]]:
    """(obis_code, UTC timestamp as 'YYYY-MM-DD HH:MM:SS', exact value) of every OBIS value of an export."""
    rows = []
    for reading in json.loads((directory / f"{muid}.json").read_bytes())["data"]:
        stamp = reading["timestamp"].replace("T", " ")[:19]
        rows.extend(
            (key, stamp, Decimal(repr(value)))
            for key, value in reading.items()
            if key not in {"measurement", "timestamp", "tags"}
        )
    return sorted(rows)


def raw_readings(pipeline: Pipeline, table: str) -> list[tuple[str, str, Decimal]]:
    """Every reading in a raw table, in either record layout (meter_day rows are unnested)."""
    day_layout = pipeline.scalar(
        "select count(*) from information_schema.columns "
        "where table_schema = 'raw' and table_name = %s and column_name = 'timestamps'",
        [table],
    )
    if day_layout:
        return pipeline.query(
            f"select obis_code, to_char({DAY_READING_AT} at time zone 'UTC', 'YYYY-MM-DD HH24:MI:SS'), v "
            f"from raw.{table} d, unnest(timestamps, values) with ordinality as u(t, v, n) order by 1, 2, 3"
        )
    return pipeline.query(
        f"select obis_code, to_char(timestamp, 'YYYY-MM-DD HH24:MI:SS'), value from raw.{table} "
        "order by 1, 2, 3"
    )


def mart_readings(pipeline: Pipeline, muid: str) -> list[tuple[str, str, Decimal]]:
    return pipeline.query(
        "select obis_code, to_char(reading_at at time zone 'UTC', 'YYYY-MM-DD HH24:MI:SS'), energy_kwh "
        "from marts.fct_readings where muid = %s order by 1, 2, 3",
        [muid],
    )


def relations(pipeline: Pipeline, schema: str) -> list[str]:
    return [
        name
        for (name,) in pipeline.query(
            "select table_name from information_schema.tables where table_schema = %s order by 1", [schema]
        )
    ]


def schema_checksums(pipeline: Pipeline, schema: str) -> dict[str, tuple[int, str]]:
    """Row count and md5 of the sorted rows of every table and view of ``schema``."""
    checksums = {}
    for name in relations(pipeline, schema):
        checksums[name] = pipeline.query(
            f"select count(*), md5(coalesce(string_agg(t::text, e'\\n' order by t::text), '')) "
            f'from {schema}."{name}" t'
        )[0]
    return checksums


def bookmarks(pipeline: Pipeline) -> dict[str, str]:
    """The replication key value per stream in Meltano's state, as ``meltano state get`` merges it.

    Read from Meltano's state table in the pipeline's database: a ``meltano state get`` costs seconds of
    start-up, the table does not. A failed run's state is its ``partial_state``.
    """
    # A stream that failed before its first record has a state entry (its starting value), but no bookmark.
    # A stream of one meter keeps it in its one partition (or, in state written before partitions, at the
    # stream level): both shapes are read.
    found = {}
    for stream, value in stream_states(pipeline).items():
        partitions = value.get("partitions") or []
        bookmark = value.get("replication_key_value")
        if not bookmark and len(partitions) == 1:
            bookmark = partitions[0].get("replication_key_value")
        if bookmark:
            found[stream] = bookmark
    return found


def meter_bookmarks(pipeline: Pipeline, stream: str = "readings") -> dict[str, str | None]:
    """muid -> bookmark of a partitioned stream (the fleet stream), as the next run gets it."""
    partitions = stream_states(pipeline)[stream]["partitions"]
    return {p["context"]["muid"]: p.get("replication_key_value") for p in partitions}


def stream_states(pipeline: Pipeline) -> dict[str, dict]:
    """Each stream's state in Meltano's state table of the pipeline's database, partial state merged in."""
    rows = pipeline.query(
        "select completed_state, partial_state from meltano.state where state_id = %s", [STATE_ID]
    )
    merged: dict[str, dict] = {}
    for document in rows[0] if rows else ():
        merged.update(json.loads(document or "{}").get("singer_state", {}).get("bookmarks", {}))
    return merged


def error_lines(output: str) -> list[str]:
    """The tap's one-line error messages in a Meltano log (Meltano prefixes each line)."""
    return [line.split(ERROR_PREFIX, 1)[1] for line in output.splitlines() if ERROR_PREFIX in line]
