"""tap_exnaton.transport against real servers on 127.0.0.1: keep-alive, a connection the server closed,
compressed bodies, TLS with a CA bundle, and requests' exceptions for what fails."""

from __future__ import annotations

import gzip
import json
import socket
import ssl
import subprocess
import threading
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests
from source_server import export_records
from tap_exnaton.transport import StdlibTransport
from test_tap import FEB_1, IMPORT, METERS, MUID_1


class Server:
    """Answers every GET with ``body`` (encoded as asked); counts the connections it accepted."""

    def __init__(
        self,
        body: bytes,
        *,
        encoding: str = "",
        compress: bool = True,
        close_after_reply: bool = False,
        tls=None,
    ):
        self.connections = 0
        self.body = body
        self.paths: list[str] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def setup(self) -> None:
                server.connections += 1
                super().setup()

            def do_GET(self) -> None:
                server.paths.append(self.path)
                codec = {"gzip": gzip.compress, "deflate": zlib.compress}.get(encoding) if compress else None
                payload = codec(server.body) if codec else server.body
                self.send_response(200)
                if encoding:
                    self.send_header("Content-Encoding", encoding)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)
                # Closes without a `Connection: close`: the client finds out on its next request.
                self.close_connection = close_after_reply

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        if tls is not None:
            self.httpd.socket = tls.wrap_socket(self.httpd.socket, server_side=True)
        scheme = "https" if tls else "http"
        self.url = f"{scheme}://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def session() -> requests.Session:
    s = requests.Session()
    s.trust_env = False
    transport = StdlibTransport()
    s.mount("http://", transport)
    s.mount("https://", transport)
    return s


@pytest.fixture
def serve():
    servers = []

    def start(body: bytes = b'{"data": []}', **kwargs) -> Server:
        servers.append(Server(body, **kwargs))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


def test_requests_share_one_kept_alive_connection(serve):
    server = serve(b'{"data": [1]}')
    with session() as s:
        answers = [s.get(f"{server.url}/a?muid=x&n={i}", timeout=5) for i in range(5)]
    assert [a.json() for a in answers] == [{"data": [1]}] * 5
    assert answers[0].status_code == 200
    assert answers[0].headers["content-type"] == "application/json"
    assert answers[0].url == f"{server.url}/a?muid=x&n=0"
    assert server.paths == [f"/a?muid=x&n={i}" for i in range(5)]
    assert server.connections == 1


def test_a_connection_the_server_closed_is_replaced_without_an_error(serve):
    server = serve(close_after_reply=True)
    with session() as s:
        assert [s.get(f"{server.url}/x", timeout=5).status_code for _ in range(3)] == [200] * 3
    assert len(server.paths) == 3  # each request reached the server once
    assert server.connections == 3


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
def test_compressed_bodies_are_decoded(serve, encoding):
    server = serve(json.dumps({"data": list(range(100))}).encode(), encoding=encoding)
    with session() as s:
        assert s.get(server.url, timeout=5).json() == {"data": list(range(100))}


def test_a_gzip_body_of_several_members_is_decoded_whole(serve):
    server = serve(b"", encoding="gzip", compress=False)
    server.body = gzip.compress(b'{"data": ') + gzip.compress(b"[1, 2]}")
    with session() as s:
        assert s.get(server.url, timeout=5).json() == {"data": [1, 2]}


def test_an_empty_body_said_to_be_gzip_is_empty(serve):
    server = serve(b"", encoding="gzip", compress=False)
    with session() as s:
        answer = s.get(server.url, timeout=5)
    assert (answer.status_code, answer.content) == (200, b"")


def test_a_refused_connection_is_requests_connection_error():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with session() as s, pytest.raises(requests.exceptions.ConnectionError):
        s.get(f"http://127.0.0.1:{port}/", timeout=5)


def test_a_silent_server_is_requests_read_timeout():
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    try:
        with session() as s, pytest.raises(requests.exceptions.ReadTimeout):
            s.get(f"http://127.0.0.1:{listener.getsockname()[1]}/", timeout=0.3)
    finally:
        listener.close()


def test_a_body_that_does_not_decode_is_requests_content_decoding_error(serve):
    server = serve(b"not gzip at all", encoding="gzip", compress=False)
    with session() as s, pytest.raises(requests.exceptions.ContentDecodingError):
        s.get(server.url, timeout=5)


@pytest.fixture(scope="module")
def certificate(tmp_path_factory):
    """A self-signed certificate for 127.0.0.1 (its own CA) and its key."""
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    return cert, context


def test_https_is_verified_against_the_ca_bundle(serve, certificate):
    cert, context = certificate
    server = serve(b'{"data": [2]}', tls=context)
    with session() as s:
        assert s.get(server.url, timeout=5, verify=str(cert)).json() == {"data": [2]}
        assert s.get(server.url, timeout=5, verify=False).json() == {"data": [2]}
    with session() as s, pytest.raises(requests.exceptions.SSLError):
        s.get(server.url, timeout=5)  # the system's CAs do not know this certificate


def test_the_tap_reads_an_https_source_with_requests_ca_bundle(serve, certificate, run_tap):
    cert, context = certificate
    records = export_records(MUID_1, IMPORT, FEB_1, 8)
    server = serve(json.dumps({"data": records}).encode(), tls=context)
    config = {"base_url": f"{server.url}/challenge", "meters": METERS[:1], "max_retries": 0}
    run = run_tap(config, env={"REQUESTS_CA_BUNDLE": str(cert)})
    assert run.returncode == 0, run.stderr
    assert len(run.records()) == 8
    refused = run_tap(config, env={"REQUESTS_CA_BUNDLE": ""})
    assert refused.returncode != 0
    assert "CERTIFICATE_VERIFY_FAILED" in refused.stderr
    assert "Traceback" not in refused.stderr


def test_requests_keeps_a_read_body_in_content_attribute():
    """The transport hands requests a body it read already, as requests' own adapter does after a read."""
    response = requests.Response()
    response._content = b'{"data": [3]}'
    response.encoding = "utf-8"
    assert response.content == b'{"data": [3]}'
    assert response.text == '{"data": [3]}'
    assert response.json() == {"data": [3]}


def test_the_tap_closes_its_connections_before_it_exits(serve, run_tap):
    records = export_records(MUID_1, IMPORT, FEB_1, 8)
    server = serve(json.dumps({"data": records}).encode())
    config = {"base_url": f"{server.url}/challenge", "meters": METERS}
    run = run_tap(config, env={"PYTHONWARNINGS": "always::ResourceWarning"})
    assert run.returncode == 0, run.stderr
    assert "ResourceWarning" not in run.stderr
