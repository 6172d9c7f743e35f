"""axsync.api.lean: the lean HTTP/1.1 client, over real loopback sockets.

Every test scripts a tiny server (:class:`ScriptedServer`): for each connection it accepts,
in order, a list of steps: raw reply bytes (read one request, send exactly those bytes) or
a callable driving the connection. The server counts the connections it accepted, records
every request it received, and flags anything the script did not expect (an extra
connection, a request on a connection that should have been given up...).
"""

from __future__ import annotations

import gzip
import json
import select
import shutil
import socket
import ssl
import struct
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from axsync.api import ApiClient
from axsync.api.lean import LeanTransport
from axsync.api.retry import Backoff, is_permanent_transport_error, never_reached_server
from axsync.api.transport import Http, Route, read_json

from .conftest import PASSWORD, USER, MakeClient, MakeFake

#: (connect, read, write) timeouts of the requests sent with ``LeanTransport.send``.
TIMEOUTS = (2.0, 2.0, 2.0)
#: A server socket waiting longer than this is a test bug (recorded as an error).
PEER_TIMEOUT = 5.0

CL_OK = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Type: text/plain\r\n\r\nhello"


# ---------------------------------------------------------------------- scripted server


class Peer:
    """The server side of one accepted connection."""

    def __init__(self, server: ScriptedServer, sock: socket.socket, index: int) -> None:
        self.server, self.sock, self.index = server, sock, index
        self.closed = False
        self._buf = b""

    def _fill(self) -> bool:
        """Receive more bytes; False at EOF (a reset counts as EOF)."""
        try:
            data = self.sock.recv(65536)
        except TimeoutError:
            self.server.fail(f"connection {self.index}: no data for {PEER_TIMEOUT}s")
            return False
        except OSError:  # reset by the client, or shut down by stop()
            return False
        self._buf += data
        return bool(data)

    def request(self) -> bytes | None:
        """The next request (head, and a body of its Content-Length), or None at EOF."""
        while (end := self._buf.find(b"\r\n\r\n")) < 0:
            if not self._fill():
                if self._buf:
                    self.server.fail(f"connection {self.index}: cut request {self._buf[:60]!r}")
                return None
        end += 4
        length = 0
        for line in self._buf[:end].split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        while len(self._buf) < end + length:
            if not self._fill():
                self.server.fail(f"connection {self.index}: request body cut")
                return None
        raw, self._buf = self._buf[: end + length], self._buf[end + length :]
        self.server.requests.append(raw)
        return raw

    def expect_request(self) -> bytes:
        raw = self.request()
        if raw is None:
            raise AssertionError(f"connection {self.index}: closed before the scripted request")
        return raw

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def wait_eof(self) -> None:
        """Wait until the client closes the connection (whatever it sends meanwhile)."""
        while self._fill():
            pass

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.sock.close()


Step = bytes | Callable[[Peer], None]


class ScriptedServer:
    """Serves ``scripts[i]`` on the i-th accepted connection, one thread per connection."""

    def __init__(
        self,
        scripts: Sequence[Sequence[Step]],
        *,
        host: str = "127.0.0.1",
        tls: ssl.SSLContext | None = None,
        rcvbuf: int | None = None,
    ) -> None:
        self.scripts = [list(steps) for steps in scripts]
        self.host, self.tls = host, tls
        self.accepts = 0
        self.tls_failures = 0
        self.requests: list[bytes] = []
        self.errors: list[str] = []
        self._lock = threading.Lock()
        self._peers: list[Peer] = []
        self._threads: list[threading.Thread] = []
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._listener = socket.socket(family, socket.SOCK_STREAM)
        if rcvbuf is not None:  # inherited by the accepted sockets
            self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self._listener.bind((host, 0))
        self._listener.listen(16)
        self.port: int = self._listener.getsockname()[1]
        self._wake_r, self._wake_w = socket.socketpair()
        self._acceptor = threading.Thread(target=self._accept_loop, daemon=True)
        self._acceptor.start()

    @property
    def scheme(self) -> str:
        return "https" if self.tls is not None else "http"

    @property
    def key(self) -> tuple[str, str, int]:
        """The connection key of ``LeanTransport.send``."""
        return (self.scheme, self.host, self.port)

    @property
    def url(self) -> str:
        name = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{name}:{self.port}"

    def fail(self, message: str) -> None:
        with self._lock:
            self.errors.append(message)

    def _accept_loop(self) -> None:
        while True:
            readable, _, _ = select.select([self._listener, self._wake_r], [], [])
            if self._wake_r in readable:
                return
            sock, _ = self._listener.accept()
            with self._lock:
                index = self.accepts
                self.accepts += 1
            thread = threading.Thread(target=self._serve, args=(sock, index), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _serve(self, sock: socket.socket, index: int) -> None:
        sock.settimeout(PEER_TIMEOUT)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        peer = Peer(self, sock, index)
        with self._lock:
            self._peers.append(peer)
        try:
            if self.tls is not None:
                try:
                    peer.sock = self.tls.wrap_socket(sock, server_side=True)
                except OSError:  # ssl.SSLError included: the client refused us
                    with self._lock:
                        self.tls_failures += 1
                    return
            if index >= len(self.scripts):
                self.fail(f"unexpected connection #{index}")
                return
            for step in self.scripts[index]:
                if isinstance(step, bytes):
                    peer.expect_request()
                    peer.send(step)
                else:
                    step(peer)
                if peer.closed:
                    return
            extra = peer.request()  # the client must close, or let the connection idle
            if extra is not None:
                self.fail(f"connection {index}: unexpected request {extra[:60]!r}")
        except Exception as exc:
            self.fail(f"connection {index}: {exc!r}")
        finally:
            peer.close()

    def stop(self) -> None:
        self._wake_w.send(b"x")
        self._acceptor.join(PEER_TIMEOUT)
        with self._lock:
            peers = list(self._peers)
        for peer in peers:  # wake threads still waiting on an idle connection
            try:
                socket.socket.shutdown(peer.sock, socket.SHUT_RDWR)  # not SSLSocket.shutdown
            except OSError:
                pass
        for thread in self._threads:
            thread.join(PEER_TIMEOUT)
        alive = [t for t in self._threads if t.is_alive()]
        for sock in (self._listener, self._wake_r, self._wake_w):
            sock.close()
        assert not self._acceptor.is_alive() and not alive, "server threads did not end"


Serve = Callable[..., ScriptedServer]


@pytest.fixture
def serve() -> Iterator[Serve]:
    """``serve(script0, script1, ..., host=..., tls=...)``: a started server, stopped (and
    checked for unexpected traffic) after the test."""
    servers: list[ScriptedServer] = []

    def start(*scripts: Sequence[Step], **options: object) -> ScriptedServer:
        server = ScriptedServer(scripts, **options)  # type: ignore[arg-type]
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()
    errors = [error for server in servers for error in server.errors]
    assert not errors, errors


@pytest.fixture
def lean() -> Iterator[LeanTransport]:
    transport = LeanTransport()
    yield transport
    transport.close()


# ---------------------------------------------------------------------- steps and helpers


def then_close(reply: bytes) -> Step:
    """Read a request, send ``reply``, close the connection."""

    def step(peer: Peer) -> None:
        peer.expect_request()
        peer.send(reply)
        peer.close()

    return step


def dribble(*pieces: bytes) -> Step:
    """Read a request, send the reply in separate TCP segments."""

    def step(peer: Peer) -> None:
        peer.expect_request()
        for piece in pieces:
            peer.send(piece)
            time.sleep(0.005)

    return step


def read_then_close(peer: Peer) -> None:
    peer.expect_request()
    peer.close()


def close_at_once(peer: Peer) -> None:
    peer.close()


def reset(peer: Peer) -> None:
    """Abort the connection: an RST instead of a FIN."""
    peer.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    peer.close()


def read_then_reset(peer: Peer) -> None:
    peer.expect_request()
    reset(peer)


def blurt(reply: bytes) -> Step:
    """Read a request, send ``reply`` (the client may give up reading it half-way)."""

    def step(peer: Peer) -> None:
        peer.expect_request()
        try:
            peer.send(reply)
        except OSError:
            return
        peer.wait_eof()

    return step


def hang(peer: Peer) -> None:
    """Read a request and never answer it (until the client gives up)."""
    peer.expect_request()
    peer.wait_eof()
    peer.close()


def fetch(
    lean: LeanTransport,
    server: ScriptedServer,
    method: str = "GET",
    target: str = "/",
    headers: Sequence[tuple[str, str]] = (),
    body: bytes | None = None,
) -> httpx.Response:
    """One request with ``LeanTransport.send``; the reply read and closed."""
    resp = lean.send(method, server.key, target, list(headers), body, TIMEOUTS)
    try:
        resp.read()
    finally:
        resp.close()
    return resp


def parse_request(raw: bytes) -> tuple[str, list[tuple[str, str]], bytes]:
    """Request line, header fields in order, body."""
    head, _, body = raw.partition(b"\r\n\r\n")
    line, *fields = head.decode("latin-1").split("\r\n")
    return line, [(n, v.strip()) for n, _, v in (f.partition(":") for f in fields)], body


def wait_idle_readable(lean: LeanTransport, key: tuple[str, str, int]) -> None:
    """Wait until the server's FIN (or unasked bytes) reached the pooled idle connection."""
    (conn,) = lean._idle[key]
    readable, _, _ = select.select([conn.sock], [], [], PEER_TIMEOUT)
    assert readable, "the server's close never reached the idle connection"


# ---------------------------------------------------------------------- 1. Content-Length


def test_content_length_body_and_keep_alive_through_httpx_client(
    serve: Serve, lean: LeanTransport
) -> None:
    second = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nX-Second: yes\r\n\r\nbye"
    server = serve([CL_OK, second])
    with httpx.Client(transport=lean, base_url=server.url) as client:
        one = client.get("/one")
        two = client.get("/two", params={"q": "a b"})
    assert (one.status_code, one.content, one.headers["content-type"]) == (
        200,
        b"hello",
        "text/plain",
    )
    assert one.reason_phrase == "OK" and one.http_version == "HTTP/1.1"
    assert (two.content, two.headers["x-second"]) == (b"bye", "yes")
    assert [parse_request(r)[0] for r in server.requests] == [
        "GET /one HTTP/1.1",
        "GET /two?q=a+b HTTP/1.1",
    ]
    assert server.accepts == 1


def test_send_reuses_one_connection(serve: Serve, lean: LeanTransport) -> None:
    big = bytes(range(256)) * 400  # 100 KiB: more than one 64 KiB read
    server = serve([CL_OK, b"HTTP/1.1 200 OK\r\nContent-Length: 102400\r\n\r\n" + big, CL_OK])
    assert fetch(lean, server).content == b"hello"
    assert fetch(lean, server).content == big
    assert fetch(lean, server).content == b"hello"
    assert server.accepts == 1


def test_unread_or_partly_read_reply_gives_up_its_connection(
    serve: Serve, lean: LeanTransport
) -> None:
    body = b"x" * 20000
    long_reply = b"HTTP/1.1 200 OK\r\nContent-Length: 20000\r\n\r\n" + body
    server = serve([long_reply], [long_reply, long_reply], [CL_OK])
    with httpx.Client(transport=lean, base_url=server.url) as client:
        with client.stream("GET", "/unread") as resp:
            assert resp.status_code == 200  # closed without reading the body
        assert client.get("/next").content == body
        assert server.accepts == 2
        resp = lean.send("GET", server.key, "/partly", [], None, TIMEOUTS)  # reuses #1
        for chunk in resp.iter_raw():
            assert chunk
            break
        resp.close()
        assert client.get("/last").content == b"hello"
    assert server.accepts == 3


# ---------------------------------------------------------------------- 2. chunked

CHUNKED = (
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-Head: 1\r\n\r\n"
    b"7;x=y\r\nhello, \r\n"
    b"A\r\n0123456789\r\n"
    b'3;a=b;name="q"\r\n!!!\r\n'
    b"0;end=1\r\nX-Trailer: yes\r\nX-Other: 2\r\n\r\n"
)
CHUNKED_BODY = b"hello, 0123456789!!!"


def test_chunked_body_decoded_and_connection_reused(serve: Serve, lean: LeanTransport) -> None:
    server = serve([CHUNKED, CL_OK, CHUNKED, CL_OK])
    with httpx.Client(transport=lean, base_url=server.url) as client:
        resp = client.get("/chunked")
        assert (resp.content, resp.headers["x-head"]) == (CHUNKED_BODY, "1")
        assert client.get("/after").content == b"hello"
        assert fetch(lean, server).content == CHUNKED_BODY
        assert fetch(lean, server).content == b"hello"
    assert server.accepts == 1


def test_chunked_framing_wins_over_content_length(serve: Serve, lean: LeanTransport) -> None:
    reply = (
        b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5\r\nhello\r\n0\r\n\r\n"
    )
    server = serve([reply, CL_OK])
    assert fetch(lean, server).content == b"hello"
    assert fetch(lean, server).content == b"hello"
    assert server.accepts == 1


def test_chunked_body_arriving_in_pieces(serve: Serve, lean: LeanTransport) -> None:
    cuts = [40, 63, 64, 66, 71, 80, 85, len(CHUNKED) - 3, len(CHUNKED) - 1]
    pieces = [CHUNKED[a:b] for a, b in zip([0, *cuts], [*cuts, len(CHUNKED)], strict=True)]
    assert b"".join(pieces) == CHUNKED
    server = serve([dribble(*pieces), CL_OK])
    assert fetch(lean, server).content == CHUNKED_BODY
    assert fetch(lean, server).content == b"hello"
    assert server.accepts == 1


# ---------------------------------------------------------------------- 3. read until close


def test_body_delimited_by_connection_close(serve: Serve, lean: LeanTransport) -> None:
    body = bytes(range(256)) * 300  # 75 KiB
    server = serve(
        [then_close(b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n\r\n" + body)],
        [then_close(b"HTTP/1.1 200 OK\r\n\r\nshort")],
        [CL_OK],
    )
    with httpx.Client(transport=lean, base_url=server.url) as client:
        assert client.get("/a").content == body
        assert fetch(lean, server).content == b"short"
        assert server.accepts == 2
        assert client.get("/c").content == b"hello"
    assert server.accepts == 3


# ---------------------------------------------------------------------- 4. Connection: close


@pytest.mark.parametrize(
    ("reply", "reused"),
    [
        (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok", False),
        (b"HTTP/1.1 200 OK\r\nConnection: Keep-Alive, CLOSE\r\nContent-Length: 2\r\n\r\nok", False),
        (b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok", False),
        (b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\nok", True),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\nok", True),
    ],
    ids=["close", "keep-alive-and-close", "http10", "http10-keep-alive", "http11-keep-alive"],
)
def test_connection_header_and_version_decide_reuse(
    serve: Serve, lean: LeanTransport, reply: bytes, reused: bool
) -> None:
    # the server itself never closes: only the client's decision counts
    server = serve([reply, CL_OK]) if reused else serve([reply], [CL_OK])
    with httpx.Client(transport=lean, base_url=server.url) as client:
        assert client.get("/").content == b"ok"
        assert client.get("/").content == b"hello"
    assert server.accepts == (1 if reused else 2)


# ---------------------------------------------------------------------- 5. truncated bodies


@pytest.mark.parametrize(
    "reply",
    [
        b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc",
        b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nX-T: 1\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello",
    ],
    ids=["cl-short", "cl-empty", "in-chunk", "no-last-chunk", "in-trailers", "no-chunk-crlf"],
)
def test_body_cut_by_the_server_is_a_protocol_error(
    serve: Serve, lean: LeanTransport, reply: bytes
) -> None:
    server = serve([then_close(reply)], [then_close(reply)], [CL_OK])
    with httpx.Client(transport=lean, base_url=server.url) as client:
        with client.stream("GET", "/") as resp, pytest.raises(httpx.RemoteProtocolError):
            resp.read()
        resp = lean.send("GET", server.key, "/", [], None, TIMEOUTS)
        with pytest.raises(httpx.RemoteProtocolError) as info:
            for _ in resp.iter_raw():
                pass
        resp.close()
        assert not never_reached_server(info.value)
        assert client.get("/").content == b"hello"
    assert server.accepts == 3


@pytest.mark.parametrize(
    "body",
    [
        b"zz\r\nhello\r\n0\r\n\r\n",
        b"-5\r\nhello\r\n0\r\n\r\n",
        b"\r\nhello\r\n0\r\n\r\n",
        b"5\r\nhelloXX\r\n0\r\n\r\n",
        b"0x5\r\nhello\r\n0\r\n\r\n",
        b"+5\r\nhello\r\n0\r\n\r\n",
    ],
    ids=["hex", "negative", "empty-size", "no-crlf-after-data", "0x-prefix", "plus"],
)
def test_broken_chunked_body_is_a_protocol_error(
    serve: Serve, lean: LeanTransport, body: bytes
) -> None:
    # the server keeps the connection open: the client must give it up by itself
    reply = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + body
    server = serve([reply], [CL_OK])
    with httpx.Client(transport=lean, base_url=server.url) as client:
        with pytest.raises(httpx.RemoteProtocolError):
            client.get("/")
        assert client.get("/").content == b"hello"
    assert server.accepts == 2


# ---------------------------------------------------------------------- 6. no reply, no server


@pytest.mark.parametrize(
    "step",
    [read_then_close, close_at_once, read_then_reset],
    ids=["after-request", "at-once", "reset"],
)
def test_server_closing_without_reply(serve: Serve, lean: LeanTransport, step: Step) -> None:
    server = serve([step], [step])
    with pytest.raises(httpx.RemoteProtocolError) as info:
        fetch(lean, server)
    assert not never_reached_server(info.value)
    client = httpx.Client(transport=lean, base_url=server.url)
    with client, pytest.raises(httpx.RemoteProtocolError):
        client.get("/")
    assert server.accepts == 2


def test_nothing_listening_is_a_connect_error(lean: LeanTransport) -> None:
    with socket.socket() as holder:  # bound, not listening: the port is ours and refuses
        holder.bind(("127.0.0.1", 0))
        port = holder.getsockname()[1]
        with pytest.raises(httpx.ConnectError) as info:
            lean.send("GET", ("http", "127.0.0.1", port), "/", [], None, TIMEOUTS)
        assert never_reached_server(info.value)
        assert not is_permanent_transport_error(info.value)
        with httpx.Client(transport=lean) as client, pytest.raises(httpx.ConnectError):
            client.get(f"http://127.0.0.1:{port}/")


# ---------------------------------------------------------------------- 7. stale idle connections


def _reply_then_408(go: threading.Event) -> Step:
    def step(peer: Peer) -> None:  # what some servers send when they drop an idle connection
        peer.expect_request()
        peer.send(CL_OK)
        assert go.wait(PEER_TIMEOUT)
        peer.send(b"HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")
        try:  # FIN; whatever the client still sends is swallowed
            peer.sock.shutdown(socket.SHUT_WR)
        except OSError:  # the client saw the 408 as stale, and reset the connection already
            return
        peer.wait_eof()
        peer.close()

    return step


@pytest.mark.parametrize("method", ["POST", "DELETE", "HEAD", "GET"])
def test_idle_connection_closed_by_server_is_replaced(
    serve: Serve, lean: LeanTransport, method: str
) -> None:
    server = serve([then_close(CL_OK)], [then_close(CL_OK)], [CL_OK])
    assert fetch(lean, server, method).status_code == 200
    wait_idle_readable(lean, server.key)
    assert fetch(lean, server, method).status_code == 200  # no error: a new connection
    assert server.accepts == 2
    with httpx.Client(transport=lean, base_url=server.url) as client:
        wait_idle_readable(lean, server.key)
        assert client.request(method, "/").status_code == 200
    assert server.accepts == 3


@pytest.mark.parametrize("method", ["POST", "GET"])
def test_idle_connection_with_unasked_bytes_is_replaced(
    serve: Serve, lean: LeanTransport, method: str
) -> None:
    go = threading.Event()
    server = serve([_reply_then_408(go)], [CL_OK])
    assert fetch(lean, server, method).content == b"hello"
    go.set()
    wait_idle_readable(lean, server.key)
    resp = fetch(lean, server, method)
    assert (resp.status_code, resp.content) == (200, b"hello")
    assert server.accepts == 2


def test_fresh_idle_connection_closed_by_server_is_replaced_for_get(
    serve: Serve, lean: LeanTransport
) -> None:
    server = serve([then_close(CL_OK)], [CL_OK])
    assert fetch(lean, server).content == b"hello"
    wait_idle_readable(lean, server.key)  # the server's FIN is there to be seen
    assert fetch(lean, server).content == b"hello"


def test_fresh_idle_connection_with_unasked_408_is_replaced_for_get(
    serve: Serve, lean: LeanTransport
) -> None:
    go = threading.Event()
    server = serve([_reply_then_408(go)], [CL_OK])
    assert fetch(lean, server).content == b"hello"
    go.set()
    wait_idle_readable(lean, server.key)
    resp = fetch(lean, server)
    assert (resp.status_code, resp.content) == (200, b"hello")


def test_http_get_after_the_server_closed_the_connection_needs_no_retry(
    serve: Serve, no_proxy_env: pytest.MonkeyPatch
) -> None:
    """axsync.api.transport.Http: a GET after the server closed the idle connection goes out
    on a new connection at once (the staleness check), no failed attempt, no retry."""
    info = b'{"apiVersion": "10.6", "serverVersion": "10.6.1"}'
    reply = (
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"
        % len(info)
        + info
    )
    server = serve([then_close(reply)], [reply])
    http = Http(
        server.url, USER, PASSWORD, timeout=2.0, verify=True, max_retries=2,
        backoff=Backoff(base=0.001, maximum=0.001), transport=None,
    )  # fmt: skip
    http.sleep = lambda _seconds: None
    route = Route("GET", "/api/")
    try:
        assert http.lean is True
        assert http.call(route, session=False, handle=read_json(route)) == json.loads(info)
        wait_idle_readable(http._lean_transport(), server.key)
        assert http.call(route, session=False, handle=read_json(route)) == json.loads(info)
    finally:
        http.close()
    assert http.counts() == (2, {"GET /api/": 2})
    assert server.accepts == 2


# ---------------------------------------------------------------------- 8. bodiless replies


def test_interim_replies_are_skipped(serve: Serve, lean: LeanTransport) -> None:
    reply = (
        b"HTTP/1.1 100 Continue\r\n\r\n"
        b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n"
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-Final: 1\r\n\r\nhello"
    )
    server = serve([reply, reply, CL_OK])
    with httpx.Client(transport=lean, base_url=server.url) as client:
        resp = client.post("/p", content=b"data")
        assert (resp.status_code, resp.content, resp.headers["x-final"]) == (200, b"hello", "1")
        assert "link" not in resp.headers
        assert fetch(lean, server, "POST", "/p", body=b"data").status_code == 200
        assert client.get("/").content == b"hello"
    assert server.accepts == 1


def test_204_304_and_head_replies_have_no_body(serve: Serve, lean: LeanTransport) -> None:
    head_reply = b"HTTP/1.1 200 OK\r\nContent-Length: 1234\r\nContent-Type: text/plain\r\n\r\n"
    server = serve(
        [
            b"HTTP/1.1 204 No Content\r\n\r\n",
            head_reply,
            b"HTTP/1.1 304 Not Modified\r\nContent-Length: 99\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",  # to HEAD
            b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n",
            CL_OK,
        ]
    )
    # a client waiting for a body that never comes would time out instead
    with httpx.Client(transport=lean, base_url=server.url, timeout=2.0) as client:
        deleted = client.delete("/x")
        assert (deleted.status_code, deleted.content) == (204, b"")
        head = client.head("/y")
        assert (head.status_code, head.content, head.headers["content-length"]) == (
            200,
            b"",
            "1234",
        )
        cached = client.get("/z")
        assert (cached.status_code, cached.content) == (304, b"")
        resp = lean.send("HEAD", server.key, "/h", [], None, TIMEOUTS)
        assert resp.read() == b""
        resp.close()
        resp = lean.send("DELETE", server.key, "/d", [], None, TIMEOUTS)
        resp.close()  # not iterated at all: an empty body needs no reading
        assert resp.status_code == 204
        assert client.get("/").content == b"hello"
    assert server.accepts == 1


def test_lenient_but_valid_replies(serve: Serve, lean: LeanTransport) -> None:
    server = serve(
        [
            b"HTTP/1.1 200\r\nContent-Length: 2\r\n\r\nok",  # no reason phrase
            b"HTTP/1.1 201 Created\nContent-Length: 2\nX-Folded: a\r\n  b\n\nok",  # bare LF, fold
            CL_OK,
        ]
    )
    first = fetch(lean, server)
    assert (first.status_code, first.reason_phrase, first.content) == (200, "", b"ok")
    second = fetch(lean, server)
    assert (second.status_code, second.content, second.headers["x-folded"]) == (201, b"ok", "a b")
    assert fetch(lean, server).content == b"hello"
    assert server.accepts == 1


# ---------------------------------------------------------------------- 9. malformed heads


@pytest.mark.parametrize(
    "reply",
    [
        b"HTTP/2 200 OK\r\nContent-Length: 2\r\n\r\nok",
        b"HTTP/2.0 200 OK\r\nContent-Length: 2\r\n\r\nok",
        b"garbage\r\n\r\n",
        b"SSH-2.0-OpenSSH_9.6\r\n",
        b"HTTP/1.1 20 OK\r\nContent-Length: 2\r\n\r\nok",
        b"HTTP/1.1 2000 OK\r\nContent-Length: 2\r\n\r\nok",
        b"HTTP/1.1 abc OK\r\nContent-Length: 2\r\n\r\nok",
        b"HTTP/1.1 200 OK\r\nNo colon here\r\nContent-Length: 2\r\n\r\nok",
        b"HTTP/1.1 200 OK\r\n: no-name\r\nContent-Length: 2\r\n\r\nok",
        b"HTTP/1.1 200 OK\r\nContent-Length : 2\r\n\r\nok",
        b"HTTP/1.1 200 OK\r\n Folded-first: x\r\nContent-Length: 2\r\n\r\nok",
        b"HTTP/1.1 200 OK\r\nContent-Length: abc\r\n\r\nok",
        b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\nok",
        b"HTTP/1.1 200 OK\r\nContent-Length: 2, 3\r\n\r\nok",
        b"HTTP/1.1 200 OK\r\nContent-Length: +2\r\n\r\nok",
        b"HTTP/1.1 200 OK\r\nContent-Length: 0_2\r\n\r\nok",
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n",  # head cut: no blank line, then EOF
    ],
    ids=[
        "http2",
        "http2.0",
        "garbage",
        "ssh",
        "short-code",
        "long-code",
        "alpha-code",
        "no-colon",
        "empty-name",
        "space-before-colon",
        "fold-first",
        "cl-alpha",
        "cl-negative",
        "cl-list",
        "cl-plus",
        "cl-underscore",
        "head-cut",
    ],
)
def test_malformed_reply_head_is_a_protocol_error(
    serve: Serve, lean: LeanTransport, reply: bytes
) -> None:
    cut = reply.endswith(b": 2\r\n")
    step: Step = then_close(reply) if cut else reply  # otherwise the server stays open
    server = serve([step], [step], [CL_OK])
    with pytest.raises(httpx.RemoteProtocolError):
        lean.send("GET", server.key, "/", [], None, TIMEOUTS)
    with httpx.Client(transport=lean, base_url=server.url) as client:
        with pytest.raises(httpx.RemoteProtocolError):
            client.get("/")
        assert client.get("/").content == b"hello"  # the broken connections were dropped
    assert server.accepts == 3


@pytest.mark.parametrize(
    ("reply", "message"),
    [
        (b"HTTP/1.1 200 " + b"O" * 70_000 + b"\r\n\r\n", "too long"),
        (b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * 70_000 + b"\r\n\r\n", "too long"),
        (b"HTTP/1.1 200 OK\r\n" + b"X-Many: 1\r\n" * 250 + b"\r\n", "too many"),
    ],
    ids=["status-line", "header-line", "header-count"],
)
def test_oversized_reply_head_is_a_protocol_error(
    serve: Serve, lean: LeanTransport, reply: bytes, message: str
) -> None:
    server = serve([blurt(reply)], [CL_OK])
    with pytest.raises(httpx.RemoteProtocolError, match=message):
        lean.send("GET", server.key, "/", [], None, TIMEOUTS)
    assert fetch(lean, server).content == b"hello"
    assert server.accepts == 2


def test_reset_in_the_middle_of_the_body_is_a_read_error(serve: Serve, lean: LeanTransport) -> None:
    go = threading.Event()

    def step(peer: Peer) -> None:
        peer.expect_request()
        peer.send(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
        assert go.wait(PEER_TIMEOUT)
        reset(peer)

    server = serve([step], [CL_OK])
    resp = lean.send("GET", server.key, "/", [], None, TIMEOUTS)
    assert resp.status_code == 200
    go.set()
    with pytest.raises(httpx.ReadError) as info:
        resp.read()
    resp.close()
    assert not never_reached_server(info.value)
    assert fetch(lean, server).content == b"hello"
    assert server.accepts == 2


def test_close_ends_idle_connections(serve: Serve, lean: LeanTransport) -> None:
    ended = threading.Event()

    def step(peer: Peer) -> None:
        peer.expect_request()
        peer.send(CL_OK)
        peer.wait_eof()
        ended.set()

    server = serve([step])
    assert fetch(lean, server).content == b"hello"
    assert not ended.is_set()  # kept alive, idle
    lean.close()
    assert ended.wait(PEER_TIMEOUT)
    assert server.accepts == 1


# ---------------------------------------------------------------------- 10. timeouts


def test_read_timeout_waiting_for_the_reply(serve: Serve, lean: LeanTransport) -> None:
    server = serve([hang], [hang])
    started = time.monotonic()
    with pytest.raises(httpx.ReadTimeout) as info:
        lean.send("GET", server.key, "/", [], None, (1.0, 0.2, 1.0))
    assert 0.15 <= time.monotonic() - started < 1.0
    assert not never_reached_server(info.value)
    timeout = httpx.Timeout(1.0, read=0.2)
    client = httpx.Client(transport=lean, base_url=server.url, timeout=timeout)
    with client, pytest.raises(httpx.ReadTimeout):
        client.get("/")
    assert server.accepts == 2


def test_read_timeout_in_the_middle_of_the_body(serve: Serve, lean: LeanTransport) -> None:
    def stall(peer: Peer) -> None:
        peer.expect_request()
        peer.send(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
        peer.wait_eof()
        peer.close()

    server = serve([stall], [CL_OK])
    resp = lean.send("GET", server.key, "/", [], None, (1.0, 0.2, 1.0))
    assert resp.status_code == 200
    with pytest.raises(httpx.ReadTimeout):
        resp.read()
    resp.close()
    assert fetch(lean, server).content == b"hello"
    assert server.accepts == 2


def test_write_timeout_when_the_server_reads_nothing(serve: Serve, lean: LeanTransport) -> None:
    done = threading.Event()

    def never_read(peer: Peer) -> None:
        assert done.wait(PEER_TIMEOUT)
        peer.close()

    server = serve([never_read], rcvbuf=4096)  # the client's buffers (<= 4 MiB) fill up
    started = time.monotonic()
    try:
        with pytest.raises(httpx.WriteTimeout) as info:
            lean.send("POST", server.key, "/upload", [], b"x" * (16 << 20), (1.0, 1.0, 0.2))
    finally:
        done.set()
    assert time.monotonic() - started < 2.0
    assert not never_reached_server(info.value)


# ---------------------------------------------------------------------- 11. request bytes


def test_request_bytes_on_the_wire(serve: Serve, lean: LeanTransport) -> None:
    server = serve([CL_OK, CL_OK, CL_OK, CL_OK])
    body = json.dumps({"ids": ["a", "b"], "name": "Ünïcødé"}, ensure_ascii=False).encode()
    fields = [("Content-Type", "application/json"), ("X-Axigen-Session", "s1d"), ("Accept", "*/*")]
    fetch(lean, server, "POST", "/api/v1/mails?folderId=80_1&q=a%20b", fields, body)
    fetch(lean, server, "POST", "/api/v1/login")
    fetch(lean, server, "GET", "/api/", [("Accept", "application/json")])
    fetch(lean, server, "DELETE", "/api/v1/labels/7", [], b"")
    post, empty_post, get, delete = (parse_request(raw) for raw in server.requests)

    line, headers, sent = post
    assert line == "POST /api/v1/mails?folderId=80_1&q=a%20b HTTP/1.1"
    assert headers[0] == ("Host", f"127.0.0.1:{server.port}")
    assert Counter(name.lower() for name, _ in headers) == Counter(
        ["host", "content-type", "x-axigen-session", "accept", "content-length"]
    )
    assert dict(headers) == {
        "Host": f"127.0.0.1:{server.port}",
        **dict(fields),
        "Content-Length": str(len(body)),
    }
    assert sent == body and json.loads(sent)["name"] == "Ünïcødé"

    line, headers, sent = empty_post  # body None: still an explicit empty body
    assert line == "POST /api/v1/login HTTP/1.1"
    assert dict(headers) == {"Host": f"127.0.0.1:{server.port}", "Content-Length": "0"}
    assert sent == b""

    line, headers, sent = get  # no body: no Content-Length
    assert line == "GET /api/ HTTP/1.1"
    assert dict(headers) == {"Host": f"127.0.0.1:{server.port}", "Accept": "application/json"}

    line, headers, sent = delete  # an empty body given: Content-Length: 0
    assert line == "DELETE /api/v1/labels/7 HTTP/1.1"
    assert dict(headers)["Content-Length"] == "0"
    assert server.accepts == 1


def test_httpx_client_headers_are_not_duplicated(serve: Serve, lean: LeanTransport) -> None:
    server = serve([CL_OK, CL_OK])
    with httpx.Client(transport=lean, base_url=server.url, headers={"User-Agent": "t/1"}) as client:
        client.post("/p", params={"x": "1"}, json={"k": "v"})
        client.post("/q", content=b"raw", headers={"Content-Length": "3", "Host": "other"})
    line, headers, body = parse_request(server.requests[0])
    names = Counter(name.lower() for name, _ in headers)
    assert line == "POST /p?x=1 HTTP/1.1"
    assert names["host"] == names["content-length"] == names["user-agent"] == 1
    fields = {name.lower(): value for name, value in headers}
    assert fields["host"] == f"127.0.0.1:{server.port}"
    assert fields["content-length"] == str(len(body))
    assert (fields["user-agent"], json.loads(body)) == ("t/1", {"k": "v"})
    line, headers, body = parse_request(server.requests[1])
    names = Counter(name.lower() for name, _ in headers)
    assert names["host"] == names["content-length"] == 1
    assert (dict(headers)["Content-Length"], body) == ("3", b"raw")


def _ipv6_loopback() -> bool:
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.mark.skipif(not _ipv6_loopback(), reason="no IPv6 loopback")
def test_ipv6_literal_host_is_bracketed(serve: Serve, lean: LeanTransport) -> None:
    server = serve([CL_OK, CL_OK], host="::1")
    assert server.key == ("http", "::1", server.port)
    assert fetch(lean, server, "POST", "/x", body=b"{}").content == b"hello"
    with httpx.Client(transport=lean, base_url=server.url) as client:
        assert client.get("/y").content == b"hello"
    hosts = [dict(parse_request(raw)[1])["Host"] for raw in server.requests]
    assert hosts == [f"[::1]:{server.port}"] * 2
    assert server.accepts == 1


def test_streamed_request_body_has_unambiguous_framing(serve: Serve, lean: LeanTransport) -> None:
    server = serve([CL_OK])
    with httpx.Client(transport=lean, base_url=server.url) as client:
        assert client.post("/upload", content=iter([b"ab", b"cd"])).status_code == 200
    _, headers, body = parse_request(server.requests[0])
    fields = {name.lower(): value for name, value in headers}
    # RFC 9112 6.2: no Content-Length in a message with Transfer-Encoding
    assert "transfer-encoding" not in fields
    assert (fields["content-length"], body) == ("4", b"abcd")


def _answer_if_asked(peer: Peer) -> None:
    if peer.request() is not None:
        peer.send(CL_OK)


@pytest.mark.parametrize("name", ["bücher.example", "例え.jp"], ids=["latin-1", "cjk"])
def test_idn_host_header_is_ascii(
    serve: Serve, lean: LeanTransport, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    server = serve([_answer_if_asked])
    real_connect = socket.create_connection

    def to_server(address: tuple[str, int], *args: object, **kwargs: object) -> socket.socket:
        assert address[1] == server.port  # resolve the IDN name to the scripted server
        return real_connect(("127.0.0.1", server.port), *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(socket, "create_connection", to_server)
    url = httpx.URL(f"http://{name}:{server.port}/")
    with httpx.Client(transport=lean) as client:
        assert client.get(url).content == b"hello"
    host = dict(parse_request(server.requests[0])[1])["Host"]
    assert host == f"{url.raw_host.decode('ascii')}:{server.port}"
    assert host.startswith("xn--")


def test_http_origin_of_an_idn_server_is_idna_encoded(no_proxy_env: pytest.MonkeyPatch) -> None:
    with ApiClient("https://bücher.example:8443/base/", USER, PASSWORD) as client:
        assert client._http.lean is True
        assert client._http.origin == ("https", "xn--bcher-kva.example", 8443)


# ---------------------------------------------------------------------- 12. Content-Encoding


def test_gzip_reply_decoded_by_httpx_raw_bytes_untouched(serve: Serve, lean: LeanTransport) -> None:
    payload = b"From: a@example.com\r\nSubject: hi\r\n\r\n" + b"hello gzip " * 500
    packed = gzip.compress(payload, mtime=0)
    reply = (
        b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: %d\r\n\r\n" % len(packed)
        + packed
    )
    server = serve([reply, reply, reply])
    with httpx.Client(transport=lean, base_url=server.url) as client:
        with client.stream("GET", "/decoded") as resp:
            assert resp.read() == payload
            assert resp.headers["content-encoding"] == "gzip"
        with client.stream("GET", "/raw") as resp:
            assert b"".join(resp.iter_raw()) == packed
        assert fetch(lean, server).content == payload  # the send() path decodes as well
    fields = {name.lower(): value for name, value in parse_request(server.requests[0])[1]}
    assert "gzip" in fields["accept-encoding"]
    assert server.accepts == 1


# ---------------------------------------------------------------------- 13. TLS


@dataclass(frozen=True)
class Tls:
    cert: Path
    server: ssl.SSLContext

    def trusting(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.cert))


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> Tls:
    """A self-signed certificate for 127.0.0.1 (the openssl CLI: ``cryptography`` is not
    installed in this venv), and a server context using it."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("neither the cryptography package nor the openssl CLI is available")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    return Tls(cert, context)


def test_tls_untrusted_certificate_is_a_permanent_connect_error(
    serve: Serve, lean: LeanTransport, tls: Tls
) -> None:
    server = serve(tls=tls.server)  # no script: no handshake may succeed
    with pytest.raises(httpx.ConnectError) as info:
        lean.send("GET", server.key, "/", [], None, TIMEOUTS)
    assert "CERTIFICATE_VERIFY_FAILED" in str(info.value)
    assert is_permanent_transport_error(info.value)
    assert never_reached_server(info.value)
    client = httpx.Client(transport=lean, base_url=server.url)
    with client, pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        client.get("/")
    assert server.accepts == 2 and not server.requests


def test_tls_trusted_certificate_and_connection_reuse(serve: Serve, tls: Tls) -> None:
    server = serve([CL_OK, CHUNKED, CL_OK], tls=tls.server)
    assert server.url.startswith("https://127.0.0.1:")
    with LeanTransport(tls.trusting()) as transport:
        assert fetch(transport, server).content == b"hello"
        assert fetch(transport, server).content == CHUNKED_BODY
        with httpx.Client(transport=transport, base_url=server.url) as client:
            assert client.get("/").content == b"hello"
    assert server.accepts == 1
    assert parse_request(server.requests[0])[1][0] == ("Host", f"127.0.0.1:{server.port}")


def test_tls_idle_connection_closed_by_server_is_replaced(
    serve: Serve, tls: Tls
) -> None:
    server = serve([then_close(CL_OK)], [CL_OK], tls=tls.server)
    with LeanTransport(tls.trusting()) as transport:
        assert fetch(transport, server).content == b"hello"
        wait_idle_readable(transport, server.key)
        assert fetch(transport, server).content == b"hello"
    assert server.accepts == 2


# ---------------------------------------------------------------------- the API client


_PROXY_VARS = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY")


@pytest.fixture
def no_proxy_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in _PROXY_VARS:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    return monkeypatch


def test_api_client_sends_through_lean_transport(
    no_proxy_env: pytest.MonkeyPatch, make_fake: MakeFake, make_client: MakeClient
) -> None:
    fake = make_fake()
    client = make_client(fake)
    assert client._http.lean is True
    assert isinstance(client._http.client._transport, LeanTransport)
    assert client.server_info().api_version
    folders = client.list_folders()  # logs in, then a session request
    assert folders.items
    assert client.request_counts == {
        "GET /api/": 1,
        "POST /api/v1/login": 1,
        "GET /api/v1/folders/": 1,
    }


@pytest.mark.parametrize(
    ("url", "variable"),
    [("https://mail.example.com", "HTTPS_PROXY"), ("http://mail.example.com:8080/x", "HTTP_PROXY")],
)
def test_api_client_falls_back_to_httpx_behind_a_proxy(
    no_proxy_env: pytest.MonkeyPatch, url: str, variable: str
) -> None:
    with ApiClient(url, USER, PASSWORD) as plain:
        assert plain._http.lean is True
    no_proxy_env.setenv(variable, "http://proxy.example.net:3128")
    with ApiClient(url, USER, PASSWORD) as proxied:
        assert proxied._http.lean is False
        assert not isinstance(proxied._http.client._transport, LeanTransport)
    no_proxy_env.setenv("NO_PROXY", "mail.example.com")
    with ApiClient(url, USER, PASSWORD) as bypassed:
        assert bypassed._http.lean is True
