"""The latency proxy of the benchmarks (axsync.netproxy), over real sockets: bytes arrive
unchanged and in order, each direction ``rtt / 2`` late, half-closes and closes pass
through, a slow reader holds back the sender (bounded memory), and a refused target
closes the client. Each test runs on uvloop's event loop (the default when installed)
and on asyncio's."""

from __future__ import annotations

import select
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from axsync.netproxy import LatencyProxy


@pytest.fixture(autouse=True, params=["uvloop", "asyncio"])
def event_loop_kind(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """The proxy's event loop (its child process reads AXSYNC_EVENT_LOOP)."""
    monkeypatch.setenv("AXSYNC_EVENT_LOOP", request.param)
    return str(request.param)


@pytest.fixture
def server() -> Iterator[Callable[[Callable[[socket.socket], None]], int]]:
    """``server(handler)`` -> port of a one-connection server running ``handler(conn)``."""
    listeners: list[socket.socket] = []

    def start(handler: Callable[[socket.socket], None]) -> int:
        srv = socket.create_server(("127.0.0.1", 0))
        listeners.append(srv)

        def run() -> None:
            conn, _ = srv.accept()
            with conn:
                handler(conn)

        threading.Thread(target=run, daemon=True).start()
        return int(srv.getsockname()[1])

    yield start
    for srv in listeners:
        srv.close()


def read_all(sock: socket.socket) -> bytes:
    out = bytearray()
    while data := sock.recv(1 << 16):
        out += data
    return bytes(out)


def test_a_server_that_speaks_first_is_heard_half_a_round_trip_later(server) -> None:  # type: ignore[no-untyped-def]
    def greet(conn: socket.socket) -> None:
        conn.sendall(b"* OK hello\r\n")
        line = conn.recv(100)
        conn.sendall(b"you said " + line)

    port = server(greet)
    with LatencyProxy(port, 200) as proxy, \
            socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as c:
        t0 = time.monotonic()
        assert c.recv(100) == b"* OK hello\r\n"
        greeting = time.monotonic() - t0
        t1 = time.monotonic()
        c.sendall(b"ping")
        assert c.recv(100) == b"you said ping"
        exchange = time.monotonic() - t1
    assert 0.09 <= greeting < 0.5  # one way (connecting to the target costs no delay)
    assert 0.19 <= exchange < 0.6  # there and back


def test_many_small_chunks_both_ways_arrive_in_order(server) -> None:  # type: ignore[no-untyped-def]
    pieces = [f"{i:06d}|".encode() for i in range(3000)]

    def chatter(conn: socket.socket) -> None:
        sender = threading.Thread(target=lambda: [conn.sendall(p) for p in pieces])
        sender.start()
        got = read_all(conn)  # the client's pieces, until it shuts down its writing
        sender.join()
        conn.sendall(b"END" + str(len(got)).encode())
        conn.shutdown(socket.SHUT_WR)
        assert got == b"".join(pieces)

    port = server(chatter)
    with LatencyProxy(port, 2) as proxy, \
            socket.create_connection(("127.0.0.1", proxy.port), timeout=30) as c:
        for p in pieces:
            c.sendall(p)
        c.shutdown(socket.SHUT_WR)  # a half-close: the answer still comes back
        got = read_all(c)
    expected = b"".join(pieces)
    assert got == expected + b"END" + str(len(expected)).encode()


def test_a_slow_reader_holds_the_sender_back(server) -> None:  # type: ignore[no-untyped-def]
    size = 40 * 1024 * 1024

    def slow_sink(conn: socket.socket) -> None:
        time.sleep(1.0)  # the proxy must stop reading meanwhile, not buffer 40 MB
        total = len(read_all(conn))
        conn.sendall(str(total).encode())

    port = server(slow_sink)
    with LatencyProxy(port, 2) as proxy, \
            socket.create_connection(("127.0.0.1", proxy.port), timeout=30) as c:
        c.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 16)
        sent = 0
        c.setblocking(False)
        t0 = time.monotonic()
        block = b"x" * (1 << 16)
        while time.monotonic() - t0 < 0.7:  # what fits before the reader starts
            try:
                sent += c.send(block)
            except BlockingIOError:
                select.select([], [c], [], 0.01)
        # Held back: the proxy's 4 MB plus socket buffers (unthrottled, it took it all).
        assert sent < 16 * 1024 * 1024
        assert proxy.proc is not None
        status = Path(f"/proc/{proxy.proc.pid}/status").read_text().splitlines()
        rss_kb = int(next(line for line in status if line.startswith("VmRSS:")).split()[1])
        assert rss_kb < 80 * 1024
        c.setblocking(True)
        while sent < size:
            sent += c.send(block[: min(len(block), size - sent)])
        c.shutdown(socket.SHUT_WR)
        assert read_all(c) == str(size).encode()


def test_a_target_that_refuses_closes_the_client() -> None:
    probe = socket.create_server(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()  # nothing listens there now
    with LatencyProxy(port, 2) as proxy, \
            socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as c:
        assert c.recv(10) == b""


def test_the_target_closing_first_reaches_the_client_after_its_data(server) -> None:  # type: ignore[no-untyped-def]
    def say_and_go(conn: socket.socket) -> None:
        conn.sendall(b"bye")

    port = server(say_and_go)
    with LatencyProxy(port, 20) as proxy, \
            socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as c:
        assert read_all(c) == b"bye"
