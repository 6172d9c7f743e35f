"""TLS: certificates are verified by default; `ca_bundle` trusts a private CA."""

from __future__ import annotations

import http.server
import json
import shutil
import ssl
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from axsync.api import ApiClient
from axsync.errors import ApiError

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is not installed")


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - http.server API
        body = json.dumps({"apiVersion": "1.0", "serverVersion": "10.6.20"}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture()
def tls_server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key),
         "-out", str(cert), "-days", "1", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
        check=True, capture_output=True,
    )
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{server.server_address[1]}", cert
    finally:
        server.shutdown()
        server.server_close()


def test_self_signed_certificate_is_refused_by_default(tls_server: tuple[str, Path]) -> None:
    url, _cert = tls_server
    with ApiClient(url, "u", "p", max_retries=0) as api, pytest.raises(ApiError) as info:
        api.server_info()
    assert "certificate" in str(info.value).lower() or "ssl" in str(info.value).lower()


def test_ca_bundle_makes_it_trusted(tls_server: tuple[str, Path]) -> None:
    url, cert = tls_server
    with ApiClient(url, "u", "p", verify=str(cert)) as api:
        assert api.server_info().server_version == "10.6.20"


def test_https_verifies_certificates_and_host_names() -> None:
    with ApiClient("https://127.0.0.1:1", "u", "p") as api:
        context = api._http.ssl_context
        assert context is not None
        assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname


def test_plain_http_loads_no_certificates() -> None:
    """Loading the CA store costs ~30 ms, a large part of a run with nothing to do: plain
    http (loopback, or ``insecure = true``) never needs it."""
    with ApiClient("http://127.0.0.1:1", "u", "p") as api:
        assert api._http.lean and api._http.ssl_context is None
