"""HTTP layer of tap-exnaton: base stream, payload checks, retries and the window paginator."""

from __future__ import annotations

import email.utils
import itertools
import os
import random
import time
import typing as t
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cached_property
from http import HTTPStatus

import orjson
import requests
from requests.adapters import HTTPAdapter
from singer_sdk import RESTStream
from singer_sdk.exceptions import FatalAPIError, RetriableAPIError
from singer_sdk.io_base import SingerWriter
from singer_sdk.pagination import BaseAPIPaginator
from singer_sdk.singerlib import StateMessage
from singer_sdk.singerlib.json import serialize_json
from singer_sdk.streams._state import StreamStateManager
from singer_sdk.streams.rest import PageContext

from tap_exnaton.transport import StdlibTransport

if t.TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator

UTC = UTC
MAX_BACKOFF_SECONDS = 300.0
# Requests in flight at once: enough to hide a source's latency, few enough to be polite to it.
DEFAULT_CONCURRENCY = 16


class ExnatonSourceError(FatalAPIError):
    """The source answered something the tap must not load; the message names meter, URL and field."""


def parse_source_timestamp(value: object) -> datetime | None:
    """Parse a source timestamp such as ``2023-02-28T23:45:00.000Z`` to an aware UTC datetime."""
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    if parsed.tzinfo is UTC:  # the source's "...Z"
        return parsed
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def format_source_timestamp(moment: datetime) -> str:
    """Format like the source does: millisecond precision and a ``Z`` suffix."""
    utc = moment.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


def format_query_bound(moment: datetime) -> str:
    """A whole UTC day is sent as a date, as the upstream documents; anything finer as a timestamp."""
    utc = moment.astimezone(UTC)
    if utc.time() == datetime.min.time():
        return utc.date().isoformat()
    return format_source_timestamp(utc)


def retry_after_seconds(response: requests.Response | None) -> float | None:
    """Seconds a ``Retry-After`` header asks for (delta-seconds or an HTTP date), else None."""
    if response is None:
        return None
    header = response.headers.get("Retry-After")
    if not header:
        return None
    try:
        return max(0.0, float(header))
    except ValueError:
        pass
    when = email.utils.parsedate_to_datetime(header) if header.strip() else None
    if when is None:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def response_payload(response: requests.Response, *, where: str) -> list[dict]:
    """Return the ``data`` list of a response; parsed once and kept on the response."""
    cached = getattr(response, "_exnaton_records", None)
    if cached is not None:
        return cached
    try:
        body = orjson.loads(response.content)
    except ValueError as exc:
        snippet = response.text[:80].replace("\n", " ")
        msg = f"{where}: response body is not JSON ({exc}); it starts with {snippet!r}"
        raise ExnatonSourceError(msg) from exc
    if not isinstance(body, dict) or "data" not in body:
        msg = f"{where}: response JSON has no top-level 'data' field"
        raise ExnatonSourceError(msg)
    records = body["data"]
    if not isinstance(records, list):
        msg = f"{where}: field 'data' is {type(records).__name__}, expected a list of readings"
        raise ExnatonSourceError(msg)
    response._exnaton_records = records  # type: ignore[attr-defined]
    return records


class StateAsIsWriter(SingerWriter):
    """singer-sdk's message writer, but a STATE message's value is serialized as it is, not copied first.

    The SDK turns a message into a dict with ``dataclasses.asdict``, which deep-copies the value: a fleet's
    state holds a bookmark per meter: at 10,000 meters a STATE message took 236 ms that way and 39 ms without
    the copy (BENCHMARKS.md, 2026-12-03). The line written is the same (pinned by tests/test_sdk_pins.py).
    """

    def serialize_message(self, message: t.Any) -> str:
        if type(message) is StateMessage:
            return serialize_json({"type": message.type, "value": message.value})
        return super().serialize_message(message)


@dataclass(frozen=True)
class Window:
    """A half-open time window ``[start, stop)`` asked of the measurement endpoint."""

    start: datetime
    stop: datetime

    def halves(self) -> tuple[Window, Window]:
        middle = self.start + (self.stop - self.start) / 2
        # Round to whole seconds so that query bounds stay exact and readable.
        middle = middle.replace(microsecond=0)
        return Window(self.start, middle), Window(middle, self.stop)


class WindowPaginator(BaseAPIPaginator[Window]):
    """Walks ``[start, stop)`` in windows; a window that comes back full is split and asked again.

    The upstream returns at most ``limit`` readings per request and does not say which ones, so a full
    answer is never trusted: its readings are dropped and both halves of the window are asked instead.
    """

    def __init__(
        self,
        start: datetime,
        stop: datetime,
        *,
        window: timedelta,
        limit: int,
        min_window: timedelta,
        where: str,
    ) -> None:
        super().__init__(Window(start, min(start + window, stop)))
        self._stop = stop
        self._window = window
        self._limit = limit
        self._min_window = min_window
        self._where = where
        self._pending: list[Window] = []

    def is_full(self, response: requests.Response) -> bool:
        return len(response_payload(response, where=self._where)) >= self._limit

    def continue_if_empty(self, response: requests.Response) -> bool:
        # Gaps in metering are normal: an empty window is no reason to stop walking.
        return True

    def get_next(self, response: requests.Response) -> Window | None:
        current = self.current_value
        if self.is_full(response):
            if current.stop - current.start <= self._min_window:
                msg = (
                    f"{self._where}: window {current.start.isoformat()}..{current.stop.isoformat()} "
                    f"still returns the limit of {self._limit} readings; raise page_size"
                )
                raise ExnatonSourceError(msg)
            first, second = current.halves()
            self._pending.append(second)
            return first
        if self._pending:
            return self._pending.pop()
        if current.stop >= self._stop:
            return None
        return Window(current.stop, min(current.stop + self._window, self._stop))


class ExnatonStream(RESTStream[t.Any]):
    """Shared HTTP behaviour: URL base, headers, timeouts, retries and error messages."""

    extra_retry_statuses: t.ClassVar[list[int]] = [HTTPStatus.TOO_MANY_REQUESTS]

    @property
    def url_base(self) -> str:
        return self.prepared_url_base

    @property
    def http_headers(self) -> dict:
        headers = dict(super().http_headers)
        api_key = self.config.get("api_key")
        if api_key:
            header = self.config.get("auth_header") or "Authorization"
            headers[header] = api_key
        return headers

    @cached_property
    def requests_session(self) -> requests.Session:
        """One session for the stream's requests, sent by tap_exnaton.transport (a kept-alive connection
        per thread), or by requests' own adapter when a proxy is configured for the source.

        Cached on its own: the SDK's ``_requests_session`` is set to a default session (urllib3 pool of 10)
        when the stream is made.
        """
        session = requests.Session()
        # requests reads the proxy and CA variables of the environment again on every request (three scans
        # of os.environ: about a third of a request's CPU here). They are read once, for the source's host.
        proxies = requests.utils.get_environ_proxies(self.url_base)
        session.proxies.update(proxies)
        session.verify = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or True
        session.trust_env = False
        # What tap_exnaton.transport decodes (requests would offer brotli or zstd too, when installed).
        session.headers["Accept-Encoding"] = "gzip, deflate"
        if proxies:
            pool = max(10, int(self.config.get("max_concurrent_requests", DEFAULT_CONCURRENCY)))
            transport = HTTPAdapter(pool_maxsize=pool)
        else:
            transport = StdlibTransport()
        session.mount("http://", transport)
        session.mount("https://", transport)
        return session

    def build_prepared_request(
        self, *, method: str, url: str, params: str, headers: t.Mapping[str, str]
    ) -> requests.PreparedRequest:
        """A GET of ``url`` with its query ``params`` (encoded by the SDK's ``HTTPRequest.encode_params``).

        Not through ``Session.prepare_request`` nor ``Request.prepare``: they merge cookies, auth and hooks
        and parse, IDNA-encode and requote the URL of every request, which took more CPU than sending it
        (benchmarks/http_clients.py). The URL is the tap's own: its base is prepared by requests once
        (``prepared_url_base``), the path requoted as requests does.
        """
        prepared = requests.PreparedRequest()
        prepared.prepare_method(method)
        url = requests.utils.requote_uri(url)  # a meter id in the path may hold characters to escape
        prepared.url = f"{url}?{params}" if params else url
        prepared.prepare_headers(
            {**self.requests_session.headers, "User-Agent": self.user_agent, **(headers or {})}
        )
        prepared.prepare_body(data=None, files=None)
        return self.authenticator(prepared)

    @cached_property
    def prepared_url_base(self) -> str:
        """``base_url`` as requests prepares a URL (IDNA host, quoted path), once for every request."""
        return requests.Request("GET", str(self.config["base_url"]).rstrip("/")).prepare().url.rstrip("/")

    @property
    def authenticator(self) -> Callable[[requests.PreparedRequest], requests.PreparedRequest]:
        # The API key travels in http_headers. The SDK's default authenticator adds no parameter, but parses
        # and encodes every URL again to do so.
        return _unchanged

    @property
    def timeout(self) -> int:
        return int(self.config.get("request_timeout", 60))

    def backoff_max_tries(self) -> int:
        return int(self.config.get("max_retries", 5)) + 1

    def backoff_wait_generator(self) -> Iterator[float]:
        """Exponential backoff that gives way to the server's ``Retry-After`` when it sends one."""
        factor = float(self.config.get("retry_backoff_factor", 2.0))
        exception = yield  # type: ignore[misc]
        for attempt in itertools.count():
            response = getattr(exception, "response", None)
            asked = retry_after_seconds(response)
            wait = asked if asked is not None else factor * 2**attempt
            exception = yield min(wait, MAX_BACKOFF_SECONDS)

    def backoff_jitter(self, value: float) -> float:
        # Only ever wait longer than asked: a Retry-After must be honoured, never undercut.
        return value * (1 + random.random() / 10)

    def response_error_message(self, response: requests.Response) -> str:
        kind = "client" if response.status_code < HTTPStatus.INTERNAL_SERVER_ERROR else "server"
        snippet = response.text[:120].replace("\n", " ")
        return self._redacted(
            f"{self.name}: GET {response.url} failed with HTTP {response.status_code} "
            f"{response.reason} ({kind} error): {snippet!r}"
        )

    def backoff_handler(self, details: t.Mapping[str, t.Any]) -> None:
        """One line per retry: stream, URL, what went wrong, which retry and how long the wait is."""
        prepared_request = (details.get("args") or (None,))[0]
        self.logger.warning(
            "%s: GET %s failed (%s); retry %d of %d in %.2f s",
            self.name,
            self._redacted(getattr(prepared_request, "url", None)),
            self._redacted(_describe(details.get("exception"))),
            details.get("tries", 0),
            self.backoff_max_tries() - 1,
            details.get("wait") or 0.0,
        )

    def fetch_pages(self, paginator: BaseAPIPaginator, context: dict) -> Fetched:
        """Every page ``paginator`` walks, each request retried as configured; runs in a worker thread.

        Requests are built by the SDK's public hooks (``get_http_request``, ``build_prepared_request``) and
        checked by ``validate_response``. Failures come back as one ExnatonSourceError naming stream, URL,
        cause and attempts made.
        """
        fetched = Fetched()
        send = self.request_decorator(fetched.counting(self._send))
        try:
            while not paginator.finished:
                response = send(self._prepared_request(context, paginator.current_value), context)
                # A full window is asked again in halves (only the window paginator knows full pages).
                if not getattr(paginator, "is_full", _never_full)(response):
                    fetched.responses.append(response)
                paginator.advance(response)
        except ExnatonSourceError as exc:
            raise ExnatonSourceError(self._redacted(str(exc))) from exc
        except (FatalAPIError, RetriableAPIError, requests.RequestException) as exc:
            raise ExnatonSourceError(self._give_up_message(exc, fetched)) from exc
        return fetched

    def _prepared_request(self, context: dict, token: t.Any) -> requests.PreparedRequest:
        request = self.get_http_request(page=PageContext(stream_context=context, next_page_token=token))
        return self.build_prepared_request(
            method=request.method, url=request.url, params=request.encode_params(), headers=request.headers
        )

    def _send(self, prepared_request: requests.PreparedRequest, context: dict) -> requests.Response:
        # No request-duration metric per request: at fleet size the log lines cost more than the requests.
        response = self.requests_session.send(
            prepared_request, timeout=self.timeout, allow_redirects=self.allow_redirects
        )
        self.validate_response(response)
        return response

    def _give_up_message(self, exc: Exception, fetched: Fetched) -> str:
        """``<stream>: GET <url> <what failed>``, and how many attempts were made when there were several."""
        text = str(exc) if isinstance(exc, FatalAPIError | RetriableAPIError) else _describe(exc)
        if not text.startswith(f"{self.name}: GET "):
            text = f"{self.name}: GET {fetched.url_in_flight} failed: {text}"
        if fetched.tries_of_request > 1:
            text = f"{text} (gave up after {fetched.tries_of_request} attempts)"
        return self._redacted(text)

    def _redacted(self, text: str | None) -> str:
        """``text`` without the API key, which must never reach a log (a server may echo it back)."""
        api_key = self.config.get("api_key")
        text = text or ""
        return text.replace(api_key, "***") if api_key else text


def _unchanged(request: requests.PreparedRequest) -> requests.PreparedRequest:
    return request


def _never_full(response: requests.Response) -> bool:
    return False


@dataclass
class Fetched:
    """The pages of one meter and what fetching them took; filled by one worker thread."""

    responses: list[requests.Response] = field(default_factory=list)
    pages: int = 0
    retries: int = 0
    tries_of_request: int = 0
    url_in_flight: str | None = None
    _request: object = None

    def counting(self, send: Callable) -> Callable:
        def send_counted(prepared_request: requests.PreparedRequest, context: t.Any) -> requests.Response:
            # The retrying decorator calls again with the very same prepared request.
            if prepared_request is self._request:
                self.tries_of_request += 1
                self.retries += 1
            else:
                self._request, self.tries_of_request = prepared_request, 1
                self.pages += 1
            self.url_in_flight = prepared_request.url
            return send(prepared_request, context)

        return send_counted


@dataclass
class Progress:
    """What one stream's requests did, for the log line at its end."""

    started: float
    pages: int = 0
    retries: int = 0
    readings: int = 0

    def add(self, fetched: Fetched) -> None:
        self.pages += fetched.pages
        self.retries += fetched.retries

    def summary(self) -> str:
        return (
            f"{self.readings} readings from {self.pages} page(s) in {time.monotonic() - self.started:.1f} s"
            f" ({self.retries} retries)"
        )


class Prefetch:
    """Runs ``fetch(job)`` for ``jobs`` in a pool of threads and hands the outcomes back in job order.

    At most ``workers`` jobs are in flight or finished but not yet taken, so memory holds a bounded number
    of meters' pages however long the list of jobs is, while the caller parses one meter the pool fetches
    the next ones.
    """

    def __init__(self, jobs: Iterable, fetch: Callable, *, workers: int) -> None:
        self._jobs = iter(jobs)
        self._fetch = fetch
        self._workers = workers
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="fetch")
        self._ahead: deque[tuple[t.Any, Future]] = deque()

    def take(self) -> tuple[t.Any, Future]:
        """The next job and its future; called once per job, in job order."""
        self._fill()
        job_and_future = self._ahead.popleft()
        self._fill()
        return job_and_future

    def _fill(self) -> None:
        while len(self._ahead) < self._workers:
            job = next(self._jobs, None)
            if job is None:
                return
            self._ahead.append((job, self._pool.submit(self._fetch, job)))

    @property
    def done(self) -> bool:
        """Whether every job has been taken."""
        self._fill()
        return not self._ahead

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


class MeterStateManager(StreamStateManager):
    """The SDK's state manager, finding a meter's partition state by muid in a dict.

    The SDK looks a partition up by scanning the list of partitions on every record (112 µs at 1,000
    meters, 341 µs at 5,000); a fleet stream would spend most of its time there. The SDK has no public hook
    for this (every look-up of its own goes through ``StreamStateManager.get_context_state``, pinned by
    tests/test_sdk_pins.py).

    A stream of one meter reads a bookmark at the stream level (the state of tap-exnaton before every stream
    was partitioned by meter) as that meter's partition bookmark, and moves it there.
    """

    def __init__(self, *, sole_muid: str | None = None, **kwargs: t.Any) -> None:
        super().__init__(**kwargs)
        self._by_muid: dict[str, dict] | None = None
        self._sole_muid = sole_muid

    def get_context_state(self, context: t.Any) -> dict:
        if not context:
            return super().get_context_state(context)
        by_muid = self._by_muid if self._by_muid is not None else self._index()
        muid = context["muid"]
        state = by_muid.get(muid)
        if state is None:
            state = {"context": {"muid": muid}}
            self.stream_state["partitions"].append(state)
            by_muid[muid] = state
        return state

    def _index(self) -> dict[str, dict]:
        stream_state = self.stream_state
        partitions = stream_state.setdefault("partitions", [])
        self._by_muid = {p["context"].get("muid"): p for p in partitions if "context" in p}
        if self._sole_muid is not None and "replication_key_value" in stream_state:
            partition = self.get_context_state({"muid": self._sole_muid})
            for key in STREAM_LEVEL_BOOKMARK_KEYS:
                value = stream_state.pop(key, None)
                if value is not None and "replication_key_value" not in partition:
                    partition[key] = value
        return self._by_muid


# What the SDK keeps of a stream's bookmark outside partitions: moved into the one meter's partition.
STREAM_LEVEL_BOOKMARK_KEYS = ("replication_key", "replication_key_value")


def _describe(exc: BaseException | None) -> str:
    """``ExceptionType: message`` on one line."""
    if exc is None:
        return "unknown error"
    return f"{type(exc).__name__}: {exc}".replace("\n", " ")
