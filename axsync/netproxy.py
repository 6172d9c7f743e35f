"""A TCP proxy that adds network latency, for benchmarks on loopback.

Every chunk read from one side is written to the other side ``rtt / 2`` seconds later, in
order, in both directions, so each request/response exchange costs one extra round trip
(``rtt``), as on a real network. Bandwidth is not limited and connection set-up costs no
extra round trip (the proxy accepts at once). The same proxy sits in front of the fake
Axigen server (axsync) and of Dovecot (mbsync, OfflineIMAP) in ``tests/bench/peers.sh``, so
every tool sees the same network.

Run it on its own (stdlib only, one process, one event loop)::

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
from types import TracebackType

CHUNK = 256 * 1024


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay: float) -> None:
    """Copy ``reader`` to ``writer``, each chunk ``delay`` seconds after it arrived."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[float, bytes | None]] = asyncio.Queue()

    async def deliver() -> None:
        while True:
            due, data = await queue.get()
            wait = due - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            if data is None:
                with contextlib.suppress(OSError, RuntimeError):
                    if writer.can_write_eof():
                        writer.write_eof()
                return
            writer.write(data)
            await writer.drain()

    sender = asyncio.create_task(deliver())
    try:
        while True:
            data = await reader.read(CHUNK)
            queue.put_nowait((loop.time() + delay, data or None))
            if not data:
                break
        await sender
    except (OSError, asyncio.IncompleteReadError):
        sender.cancel()
    finally:
        if not sender.done():
            with contextlib.suppress(asyncio.CancelledError, OSError):
                await sender


async def _handle(
    client_r: asyncio.StreamReader,
    client_w: asyncio.StreamWriter,
    target: tuple[str, int],
    delay: float,
) -> None:
    try:
        server_r, server_w = await asyncio.open_connection(*target)
    except OSError:
        client_w.close()
        return
    try:
        await asyncio.gather(
            _pump(client_r, server_w, delay), _pump(server_r, client_w, delay),
            return_exceptions=True,
        )
    finally:
        for w in (client_w, server_w):
            with contextlib.suppress(OSError, RuntimeError):
                w.close()


async def serve(listen: tuple[str, int], target: tuple[str, int], rtt: float,
                ready: asyncio.Future[int] | None = None) -> None:
    """Serve until cancelled; ``ready`` gets the bound port."""
    delay = max(0.0, rtt) / 2

    async def handle(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await _handle(r, w, target, delay)

    server = await asyncio.start_server(handle, *listen, limit=CHUNK * 4)
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

    asyncio.run(run())


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
