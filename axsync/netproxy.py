"""A TCP proxy that adds network latency, for benchmarks on loopback.

Every chunk read from one side is written to the other side ``rtt / 2`` seconds later, in
order, in both directions, so each request/response exchange costs one extra round trip
(``rtt``), as on a real network. Bandwidth is not limited and connection set-up costs no
extra round trip (the proxy accepts at once). The same proxy sits in front of the fake
Axigen server (axsync) and of Dovecot (mbsync, OfflineIMAP) in ``tests/bench/peers.sh``, so
every tool sees the same network.

Run it on its own (one process, one event loop: uvloop's where installed, as the proxy's
CPU is taken from the machine it measures; :mod:`axsync.evloop`)::

    python -m axsync.netproxy --target 127.0.0.1:8143 --rtt-ms 20 [--listen 127.0.0.1:0]

It prints the port it listens on (one line), then serves until SIGINT/SIGTERM.
:class:`LatencyProxy` runs the same thing in a child process from Python.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import subprocess
import sys
from collections import deque
from collections.abc import Callable
from types import TracebackType
from typing import cast

from axsync.evloop import loop_factory

_EOF = object()  # the sender shut down its writing: shut down the peer's, after the delay
_CLOSE = object()  # the sender's connection is gone: close the peer's, after the delay
HIGH = 4 * 1024 * 1024  # stop reading a side while this many of its bytes are on their way
LOW = 1024 * 1024


class _Side(asyncio.Protocol):
    """One socket of a proxied connection. Everything it receives reaches its peer
    ``delay`` seconds later, in order: one timer per chunk, each delivering the oldest
    chunk still on its way (so equal due times cannot reorder them). It stops reading
    while more than :data:`HIGH` bytes are on their way or the peer's send buffer is
    full. (Callbacks and timers, not a pair of tasks, a queue and a sleep per chunk: the
    proxy shares the machine with what it measures.)"""

    def __init__(self, loop: asyncio.AbstractEventLoop, delay: float) -> None:
        self.loop = loop
        self.delay = delay
        self.transport: asyncio.Transport | None = None
        self.peer: _Side | None = None
        self.line: deque[bytes | object] = deque()
        self.waiting = 0
        self.full = False  # our send buffer is over its limit (the peer stops reading)
        self.reading = True
        self.held = True  # not reading until both sides are connected and linked
        self.overdue = 0  # items due while held (uvloop reads before pause_reading applies)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast("asyncio.Transport", transport)
        self.throttle()

    def data_received(self, data: bytes) -> None:
        self.waiting += len(data)
        self._send_later(data)
        self.throttle()

    def eof_received(self) -> bool:
        self._send_later(_EOF)
        return True  # keep our sending side open: the peer may still answer

    def connection_lost(self, exc: Exception | None) -> None:
        self._send_later(_CLOSE)

    def pause_writing(self) -> None:
        self.full = True
        if self.peer is not None:
            self.peer.throttle()

    def resume_writing(self) -> None:
        self.full = False
        if self.peer is not None:
            self.peer.throttle()

    def _send_later(self, item: bytes | object) -> None:
        self.line.append(item)
        self.loop.call_at(self.loop.time() + self.delay, self._deliver)

    def _deliver(self) -> None:
        if self.held:  # not linked to the peer yet: delivered once linked (see link)
            self.overdue += 1
            return
        item = self.line.popleft()
        peer = self.peer.transport if self.peer is not None else None
        if isinstance(item, bytes):
            self.waiting -= len(item)
            if peer is not None and not peer.is_closing():
                peer.write(item)
            self.throttle()
            return
        if peer is None:
            return
        if item is _EOF:
            with contextlib.suppress(OSError, RuntimeError):
                if not peer.is_closing() and peer.can_write_eof():
                    peer.write_eof()
        else:
            peer.close()

    def link(self, peer: _Side) -> None:
        """Start passing what this side receives to ``peer``: first what is already due."""
        self.peer, self.held = peer, False
        overdue, self.overdue = self.overdue, 0
        for _ in range(overdue):
            self._deliver()
        self.throttle()

    def throttle(self) -> None:
        """Read or not, as the bytes on their way and the peer's send buffer say."""
        if self.transport is None or self.transport.is_closing():
            return
        blocked = self.held or (self.peer is not None and self.peer.full)
        stop = blocked or self.waiting > HIGH
        go = not blocked and self.waiting < LOW
        if stop and self.reading:
            self.transport.pause_reading()
            self.reading = False
        elif go and not self.reading:
            self.transport.resume_reading()
            self.reading = True


class _Client(_Side):
    """The side a client connected to: connects to the target, then links the two."""

    def __init__(self, loop: asyncio.AbstractEventLoop, delay: float,
                 target: tuple[str, int]) -> None:
        super().__init__(loop, delay)
        self.target = target
        self.connecting: asyncio.Task[None] | None = None  # held: the loop keeps weak refs

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.connecting = self.loop.create_task(self._connect())

    async def _connect(self) -> None:
        assert self.transport is not None
        try:
            _, upstream = await self.loop.create_connection(
                lambda: _Side(self.loop, self.delay), *self.target)
        except OSError:
            self.transport.close()
            return
        if self.transport.is_closing():  # the client left meanwhile (its CLOSE found no peer)
            assert upstream.transport is not None
            upstream.transport.close()
            return
        self.link(upstream)
        upstream.link(self)


async def serve(listen: tuple[str, int], target: tuple[str, int], rtt: float,
                ready: asyncio.Future[int] | None = None) -> None:
    """Serve until cancelled; ``ready`` gets the bound port."""
    delay = max(0.0, rtt) / 2
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: _Client(loop, delay, target), *listen)
    port = int(server.sockets[0].getsockname()[1])
    if ready is not None:
        ready.set_result(port)
    async with server:
        await server.serve_forever()


def _hostport(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host.strip("[]") or "127.0.0.1", int(port)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m axsync.netproxy", description=__doc__.split("\n")[0])
    parser.add_argument("--target", required=True, help="host:port to forward to")
    parser.add_argument("--listen", default="127.0.0.1:0", help="host:port (default 127.0.0.1:0)")
    parser.add_argument("--rtt-ms", type=float, default=0.0, help="round-trip time to add")
    args = parser.parse_args(argv)

    async def run() -> None:
        loop = asyncio.get_running_loop()
        ready: asyncio.Future[int] = loop.create_future()
        task = asyncio.create_task(
            serve(_hostport(args.listen), _hostport(args.target), args.rtt_ms / 1000, ready))
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, task.cancel)
        port = await ready
        print(port, flush=True)
        with contextlib.suppress(asyncio.CancelledError):
            await task

    with asyncio.Runner(loop_factory=_loop_factory()) as runner:
        runner.run(run())


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's event loop where installed, else asyncio's (None), as ``AXSYNC_EVENT_LOOP``
    says (:mod:`axsync.evloop`; a bad value makes the proxy exit with its message)."""
    try:
        return loop_factory()
    except ValueError as exc:
        raise SystemExit(f"netproxy: {exc}") from None


class LatencyProxy:
    """``python -m axsync.netproxy`` in a child process; ``port`` once started.

    Use as a context manager; the child is stopped (SIGTERM, then SIGKILL) at exit."""

    def __init__(self, target_port: int, rtt_ms: float, target_host: str = "127.0.0.1") -> None:
        self.target = f"{target_host}:{target_port}"
        self.rtt_ms = rtt_ms
        self.port = 0
        self.proc: subprocess.Popen[str] | None = None

    def start(self) -> int:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "axsync.netproxy", "--target", self.target,
             "--rtt-ms", str(self.rtt_ms)],
            stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line.strip().isdigit():
            self.stop()
            raise RuntimeError("the latency proxy did not start")
        self.port = int(line)
        return self.port

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        if proc.stdout is not None:
            proc.stdout.close()

    def __enter__(self) -> LatencyProxy:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


if __name__ == "__main__":
    main()
