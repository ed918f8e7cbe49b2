"""The tap's HTTP transport: requests' API on the standard library's ``http.client``.

A fleet run sends one small GET per meter, so the cost of a request is the cost of a run. Sending the same
prepared requests through a requests Session to the same server took 1,244 µs of CPU per request with
requests' own adapter (urllib3 underneath) and 777 µs with this one (benchmarks/http_clients.py). The SDK
keeps building, retrying and checking requests through requests' objects; only the last step, bytes on a
socket, is this module: a requests transport adapter (``requests.adapters.BaseAdapter``) holding one
kept-alive connection per thread and origin.

It sends direct connections only: behind a proxy the tap mounts requests' HTTPAdapter instead
(``ExnatonStream.requests_session``), which speaks to proxies.
"""

from __future__ import annotations

import http.client
import io
import os
import ssl
import threading
import time
import typing as t
import zlib
from datetime import timedelta
from urllib.parse import urlsplit

import requests
from requests.adapters import BaseAdapter
from requests.certs import where as certifi_bundle
from requests.structures import CaseInsensitiveDict
from requests.utils import get_encoding_from_headers

# A kept-alive connection the server has closed in the meantime fails like this on its next request (a TLS
# connection with an EOF); the request is sent once more on a new connection (a GET, so nothing happens twice).
STALE_CONNECTION_ERRORS = (
    http.client.RemoteDisconnected,
    ConnectionResetError,
    ConnectionAbortedError,
    BrokenPipeError,
    ssl.SSLEOFError,
    ssl.SSLZeroReturnError,
)
RESENDABLE_METHODS = frozenset({"GET", "HEAD"})


class StdlibTransport(BaseAdapter):
    """Sends a PreparedRequest with ``http.client`` and answers with a requests Response.

    Timeouts, refused and reset connections and TLS failures raise requests' own exceptions, so the SDK's
    retries (``RESTStream.request_decorator``) and the tap's messages treat them as before.
    """

    def __init__(self) -> None:
        super().__init__()
        self._local = threading.local()
        self._opened: set[http.client.HTTPConnection] = set()
        self._opened_lock = threading.Lock()
        self._tls: dict[object, ssl.SSLContext] = {}

    def send(
        self,
        request: requests.PreparedRequest,
        stream: bool = False,
        timeout: float | tuple[float, float] | None = None,
        verify: bool | str = True,
        cert: object = None,
        proxies: t.Mapping[str, str] | None = None,
    ) -> requests.Response:
        url = urlsplit(request.url)
        # One connection per scheme, host and TLS setting: an https URL never goes out on a plain connection.
        origin = (url.scheme, url.netloc, verify)
        target = f"{url.path or '/'}?{url.query}" if url.query else url.path or "/"
        connect_timeout, read_timeout = timeout if isinstance(timeout, tuple) else (timeout, timeout)
        started = time.monotonic()
        for attempt in (1, 2):
            connection, reused = self._connection(origin, connect_timeout, request)
            try:
                connection.sock.settimeout(read_timeout)
                connection.request(request.method, target, body=request.body, headers=request.headers)
                answer = connection.getresponse()
                body = answer.read()
            except STALE_CONNECTION_ERRORS as exc:
                self._forget(origin)
                if reused and attempt == 1 and request.method in RESENDABLE_METHODS:
                    continue
                raise requests.exceptions.ConnectionError(exc, request=request) from exc
            except TimeoutError as exc:
                self._forget(origin)
                raise requests.exceptions.ReadTimeout(exc, request=request) from exc
            except (OSError, http.client.HTTPException) as exc:
                self._forget(origin)
                raise requests.exceptions.ConnectionError(exc, request=request) from exc
            except BaseException:
                self._forget(origin)  # half-way through a request: never to be used again
                raise
            if answer.will_close:
                self._forget(origin)
            return _response(self, request, answer, body, time.monotonic() - started)
        msg = "unreachable: the second attempt returns or raises"
        raise AssertionError(msg)

    def close(self) -> None:
        with self._opened_lock:
            opened, self._opened = self._opened, set()
        for connection in opened:
            connection.close()

    def _connection(
        self, origin: tuple[str, str, bool | str], timeout: float | None, request: object
    ) -> tuple[http.client.HTTPConnection, bool]:
        """This thread's open connection to ``origin`` and whether it served a request before."""
        connections = self._local.__dict__.setdefault("connections", {})
        connection = connections.get(origin)
        if connection is not None and connection.sock is not None:
            return connection, True
        scheme, netloc, verify = origin
        try:
            if scheme == "https":
                connection = http.client.HTTPSConnection(
                    netloc, timeout=timeout, context=self._tls_context(verify)
                )
            else:
                connection = http.client.HTTPConnection(netloc, timeout=timeout)
            connection.connect()
        except TimeoutError as exc:
            raise requests.exceptions.ConnectTimeout(exc, request=request) from exc
        except ssl.SSLError as exc:
            raise requests.exceptions.SSLError(exc, request=request) from exc
        except http.client.InvalidURL as exc:
            raise requests.exceptions.InvalidURL(exc, request=request) from exc
        except OSError as exc:
            raise requests.exceptions.ConnectionError(exc, request=request) from exc
        connections[origin] = connection
        with self._opened_lock:
            self._opened.add(connection)
        return connection, False

    def _forget(self, origin: tuple[str, str, bool | str]) -> None:
        connection = self._local.__dict__.get("connections", {}).pop(origin, None)
        if connection is not None:
            connection.close()
            with self._opened_lock:
                self._opened.discard(connection)

    def _tls_context(self, verify: bool | str) -> ssl.SSLContext:
        """Verification as requests does it: True (certifi's CAs), a CA bundle file or folder, False."""
        context = self._tls.get(verify)
        if context is None:
            if isinstance(verify, str):
                folder = os.path.isdir(verify)
                context = ssl.create_default_context(
                    cafile=None if folder else verify, capath=verify if folder else None
                )
            else:
                # requests' default: certifi's bundle, not the system's store.
                context = ssl.create_default_context(cafile=certifi_bundle())
                if verify is False:
                    context.check_hostname = False
                    context.verify_mode = ssl.CERT_NONE
            self._tls[verify] = context
        return context


def _response(
    adapter: BaseAdapter,
    request: requests.PreparedRequest,
    answer: http.client.HTTPResponse,
    body: bytes,
    seconds: float,
) -> requests.Response:
    """A requests Response of a finished exchange, its body read and decoded (gzip, deflate)."""
    headers: CaseInsensitiveDict[str] = CaseInsensitiveDict()
    for name, value in answer.getheaders():
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    response = requests.Response()
    response.status_code = answer.status
    response.reason = answer.reason
    response.headers = headers
    response.url = request.url
    response.request = request
    response.encoding = get_encoding_from_headers(headers)
    response.elapsed = timedelta(seconds=seconds)
    response.raw = io.BytesIO(body)
    response.connection = adapter
    # requests keeps a read body in `_content` (what `.content`, `.text` and `.json()` return); pinned by
    # tests/test_transport.py.
    try:
        response._content = _decoded(body, headers.get("Content-Encoding", ""))
    except zlib.error as exc:
        raise requests.exceptions.ContentDecodingError(exc, request=request) from exc
    response._content_consumed = True
    return response


def _decoded(body: bytes, encoding: str) -> bytes:
    encoding = encoding.strip().lower()
    if not body or encoding not in ("gzip", "deflate"):
        return body
    if encoding == "gzip":
        return _gunzipped(body)
    try:
        return zlib.decompress(body)
    except zlib.error:  # raw deflate, without the zlib header, as some servers send it
        return zlib.decompress(body, -zlib.MAX_WBITS)


def _gunzipped(body: bytes) -> bytes:
    """Every member of a gzip body, as urllib3 decodes it."""
    parts = []
    while body:
        decompressor = zlib.decompressobj(16 + zlib.MAX_WBITS)
        parts.append(decompressor.decompress(body) + decompressor.flush())
        body = decompressor.unused_data
    return b"".join(parts)
