"""Message sources downloaded on one asyncio event loop: the pull's hot path.

A pull sends one ``GET /api/v1/mails/{id}/source`` per message. With one thread per
connection, the threads handed Python's GIL back and forth at every socket and file
operation: from 8 to 16 connections the CPU time of a 10k pull grew by half with no gain
(docs/performance.md). Here every download runs on one event loop thread, so more
connections in flight cost almost nothing; only the fsync + rename of each finished file
goes to a few worker threads.

The rules are those of the threaded path (docs/client.md), from the same code: the HTTP
framing of :mod:`axsync.api.lean`, and the session, retry and status decisions of
:class:`axsync.api.transport.Http` (its login runs on the loop thread: rare and short).
A 2xx body streams into ``out`` (bounded memory: the connection stops reading while 256 KiB
wait), is hashed as it goes, must match its ``Content-Length`` (a short body is retried,
after ``out`` is rewound), and is asked for without a ``Content-Encoding``.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING, BinaryIO, cast

import httpx

from axsync.api.lean import (
    INCOMPLETE,
    MAX_LINE,
    NO_REPLY,
    Key,
    add_header,
    chunk_size,
    framing,
    is_interim,
    request_head,
    status_of,
)
from axsync.api.transport import (
    USER_AGENT,
    Http,
    RetryableBody,
    Route,
    _Again,
    _Attempt,
    _Session,
)
from axsync.model import Download

if TYPE_CHECKING:
    from axsync.api.mails import SourceOutput

_READ = 64 * 1024
_HIGH = 256 * 1024  # pause reading above this many buffered bytes
_LOW = 64 * 1024
_ERROR_BODY_LIMIT = 64 * 1024


#: How often the read deadlines of waiting connections are checked (a read timeout
#: fires up to this much late).
WATCH_TICK = 0.25


class _Watch:
    """The read deadlines of one pool's connections, checked every :data:`WATCH_TICK`
    seconds by one timer while a connection waits. ``asyncio.timeout`` around every wait
    for data cost 4-6 µs each (a context, a timer in the loop's heap, a cancel), about as
    much as the wait itself, and a download waits two or three times."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._waiting: set[_Stream] = set()
        self._timer: asyncio.TimerHandle | None = None

    def add(self, stream: _Stream) -> None:
        self._waiting.add(stream)
        if self._timer is None:
            self._timer = self._loop.call_later(WATCH_TICK, self._check)

    def discard(self, stream: _Stream) -> None:
        self._waiting.discard(stream)

    def _check(self) -> None:
        self._timer = None
        now = self._loop.time()
        for stream in [s for s in self._waiting if s.deadline <= now]:
            self._waiting.discard(stream)
            stream.expire()
        if self._waiting:
            self._timer = self._loop.call_later(WATCH_TICK, self._check)

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._waiting.clear()


class _Stream(asyncio.Protocol):
    """One connection: a receive buffer with flow control, EOF and timeouts."""

    def __init__(self, loop: asyncio.AbstractEventLoop, watch: _Watch | None = None) -> None:
        self._loop = loop
        self._watch = watch
        self._buf = bytearray()
        self._eof = False
        self._paused = False
        self._waiter: asyncio.Future[None] | None = None
        self.transport: asyncio.Transport | None = None
        self.timeout: float | None = None
        self.deadline = 0.0  # of the current wait for data (loop time), with a timeout

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # cast, not isinstance: uvloop's transports do not subclass asyncio.Transport
        self.transport = cast("asyncio.Transport", transport)

    def data_received(self, data: bytes) -> None:
        self._buf += data
        if len(self._buf) > _HIGH and not self._paused and self.transport is not None:
            self.transport.pause_reading()
            self._paused = True
        self._wake()

    def eof_received(self) -> bool:
        self._eof = True
        self._wake()
        return False  # close the transport

    def connection_lost(self, exc: Exception | None) -> None:
        self._eof = True
        self._wake()

    # reading
    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def expire(self) -> None:
        """The current wait for data took longer than :attr:`timeout` (from the watch)."""
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(TimeoutError())

    async def _wait(self) -> None:
        self._waiter = self._loop.create_future()
        watch = self._watch if self.timeout is not None else None
        try:
            if watch is not None:
                self.deadline = self._loop.time() + self.timeout  # type: ignore[operator]
                watch.add(self)
                await self._waiter
            else:
                async with asyncio.timeout(self.timeout):
                    await self._waiter
        except TimeoutError as exc:
            raise httpx.ReadTimeout("timed out reading the reply") from exc
        finally:
            self._waiter = None
            if watch is not None:
                watch.discard(self)

    def _taken(self, n: int) -> bytes:
        data = bytes(self._buf[:n])
        del self._buf[:n]
        if self._paused and len(self._buf) < _LOW and self.transport is not None:
            self.transport.resume_reading()
            self._paused = False
        return data

    async def readline(self) -> bytes:
        """One line with its ending; what is left at EOF (possibly b"")."""
        while True:
            end = self._buf.find(b"\n")
            if end >= 0:
                if end >= MAX_LINE:
                    raise httpx.RemoteProtocolError("reply line too long")
                return self._taken(end + 1)
            if len(self._buf) > MAX_LINE:
                raise httpx.RemoteProtocolError("reply line too long")
            if self._eof:
                return self._taken(len(self._buf))
            await self._wait()

    async def read1(self, n: int) -> bytes:
        """Up to ``n`` bytes, at least one unless at EOF (then b"")."""
        while not self._buf:
            if self._eof:
                return b""
            await self._wait()
        return self._taken(min(n, len(self._buf)))

    # state
    def reusable(self) -> bool:
        """Idle and still usable: nothing unasked arrived, the server did not close it."""
        return (not self._buf and not self._eof and self.transport is not None
                and not self.transport.is_closing())

    def write(self, data: bytes) -> None:
        assert self.transport is not None
        self.transport.write(data)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


class AsyncPool:
    """Keep-alive connections by origin, for one event loop."""

    def __init__(self, ssl_context: ssl.SSLContext | None) -> None:
        self._ssl_context = ssl_context
        self._idle: dict[Key, list[_Stream]] = {}
        self._watch: _Watch | None = None

    async def acquire(self, key: Key, timeout: float | None) -> _Stream:
        idle = self._idle.get(key)
        while idle:
            stream = idle.pop()
            if stream.reusable():
                return stream
            stream.close()
        scheme, host, port = key
        loop = asyncio.get_running_loop()
        watch = self._watch
        if watch is None:
            watch = self._watch = _Watch(loop)
        tls = None
        if scheme == "https":
            tls = self._ssl_context or ssl.create_default_context()
        try:
            async with asyncio.timeout(timeout):
                _transport, stream = await loop.create_connection(
                    lambda: _Stream(loop, watch), host, port, ssl=tls,
                    server_hostname=host if tls is not None else None)
        except TimeoutError as exc:
            raise httpx.ConnectTimeout("timed out connecting") from exc
        except (OSError, ssl.SSLError) as exc:  # refused, unreachable, TLS refused
            raise httpx.ConnectError(str(exc) or exc.__class__.__name__) from exc
        return stream

    def release(self, key: Key, stream: _Stream) -> None:
        self._idle.setdefault(key, []).append(stream)

    def close(self) -> None:
        for streams in self._idle.values():
            for stream in streams:
                stream.close()
        self._idle.clear()
        if self._watch is not None:
            self._watch.close()


class Reply:
    """A reply whose body has not been read; :meth:`close` it."""

    def __init__(self, pool: AsyncPool, key: Key, stream: _Stream, status: int,
                 headers: list[tuple[bytes, bytes]], length: int | None, chunked: bool,
                 keep: bool) -> None:
        self.status, self.headers = status, headers
        self._pool, self._key, self._stream = pool, key, stream
        self._length, self._chunked, self._keep = length, chunked, keep
        self._done = length == 0 and not chunked
        self.raw_bytes = 0  # body bytes received (on the wire)

    async def chunks(self) -> AsyncIterator[bytes]:
        stream = self._stream
        if self._done:
            return
        if self._chunked:
            while size := chunk_size(await stream.readline()):
                while size:
                    chunk = await stream.read1(min(size, _READ))
                    if not chunk:
                        raise httpx.RemoteProtocolError(f"{INCOMPLETE} (incomplete chunked read)")
                    size -= len(chunk)
                    self.raw_bytes += len(chunk)
                    yield chunk
                if await stream.readline() not in (b"\r\n", b"\n"):
                    raise httpx.RemoteProtocolError("chunk not followed by CRLF")
            while (trailer := await stream.readline()) not in (b"\r\n", b"\n"):
                if not trailer:
                    raise httpx.RemoteProtocolError(f"{INCOMPLETE} (incomplete chunked read)")
        elif self._length is not None:
            left = self._length
            while left:
                chunk = await stream.read1(min(left, _READ))
                if not chunk:
                    raise httpx.RemoteProtocolError(f"{INCOMPLETE} ({left} bytes missing)")
                left -= len(chunk)
                self.raw_bytes += len(chunk)
                yield chunk
        else:
            while chunk := await stream.read1(_READ):
                self.raw_bytes += len(chunk)
                yield chunk
            self._keep = False
        self._done = True

    async def read_capped(self) -> bytes:
        """Up to 64 KiB of the body (an error body; a body cut off is fine)."""
        out = bytearray()
        try:
            async for chunk in self.chunks():
                out += chunk
                if len(out) >= _ERROR_BODY_LIMIT:
                    break
        except httpx.TransportError:
            pass
        return bytes(out[:_ERROR_BODY_LIMIT])

    def close(self) -> None:
        if self._done and self._keep:
            self._pool.release(self._key, self._stream)
        else:
            self._stream.close()


async def exchange(pool: AsyncPool, method: str, key: Key, target: str,
                   headers: Sequence[tuple[str, str]],
                   timeouts: tuple[float | None, float | None, float | None]) -> Reply:
    """Send one bodiless request and read the reply's head."""
    connect_t, read_t, _write_t = timeouts
    stream = await pool.acquire(key, connect_t)
    try:
        stream.write(request_head(method, key, target, headers, None))
        stream.timeout = read_t
        while True:
            status, _reason, http11 = status_of(await stream.readline())
            raw: list[tuple[bytes, bytes]] = []
            while (line := await stream.readline()) not in (b"\r\n", b"\n"):
                if not line:
                    raise httpx.RemoteProtocolError(NO_REPLY)
                add_header(raw, line)
            if not is_interim(status):
                break
        length, chunked, keep = framing(method, status, raw, http11)
    except BaseException:
        stream.close()
        raise
    return Reply(pool, key, stream, status, raw, length, chunked, keep)


class AsyncSource:
    """``GET /api/v1/mails/{id}/source`` on the calling event loop, with the session and
    retry rules of ``http`` (same counters, same sessions as its other requests)."""

    def __init__(self, http: Http, route: Route) -> None:
        self.http = http
        self.route = route
        self.pool = AsyncPool(http.ssl_context)

    def close(self) -> None:
        self.pool.close()

    def _headers(self, used: _Session) -> list[tuple[str, str]]:
        return [("Accept", self.route.accept), ("Accept-Encoding", "identity"),
                ("Connection", "keep-alive"), ("User-Agent", USER_AGENT),
                ("Authorization", self.http.authorization), ("X-Axigen-Session", used.sid)]

    async def download(self, mail_id: str, out: BinaryIO) -> Download:
        """As :meth:`axsync.api.mails.MailsMixin.download_source` (without
        ``expected_size``): the source streamed into ``out`` (rewound before a retry that
        follows a partial body), its size, sha256 and vsize."""
        from axsync.api.mails import SourceOutput

        http = self.http
        attempt = _Attempt(self.route, self.route.path(mail_id), None, None, True)
        output = SourceOutput(out, mail_id)
        while True:
            used = http.begin(attempt)
            assert used is not None
            outcome = await self._send(attempt, used, output)
            if not isinstance(outcome, _Again):
                output.flush()
                return outcome
            delay = http.wait_after(attempt, outcome, used)
            if delay is not None:
                await asyncio.sleep(delay)

    async def _send(self, attempt: _Attempt, used: _Session,
                    output: SourceOutput) -> Download | _Again:
        """One attempt, as :meth:`Http._send`: the download, or what to do next."""
        http = self.http
        reply: Reply | None = None
        try:
            reply = await exchange(self.pool, "GET", http.origin, http.prefix + attempt.path,
                                   self._headers(used), http.timeouts)
            if not 200 <= reply.status < 300:
                error_body = await reply.read_capped()
                return http._refused(attempt, httpx.Response(  # a stream: decoded lazily
                    reply.status, headers=reply.headers, stream=httpx.ByteStream(error_body)))
            http._mark(used, served=True)
            headers = httpx.Headers(reply.headers)
            body: AsyncIterator[bytes] = reply.chunks()
            if headers.get("Content-Encoding", "identity").strip().lower() not in ("", "identity"):
                raw = b"".join([c async for c in body])  # asked for identity: a rare server
                body = _once(httpx.Response(reply.status, headers=reply.headers, content=raw).content)
            output.start()
            async for chunk in body:
                output.write(chunk)
            return output.check(headers, reply.raw_bytes, None)
        except (RetryableBody, httpx.TransportError, httpx.DecodingError) as exc:
            return http.failed(attempt, exc)
        finally:
            if reply is not None:
                reply.close()


async def _once(data: bytes) -> AsyncIterator[bytes]:
    yield data
