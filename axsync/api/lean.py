"""A lean HTTP/1.1 client for the hot path: one request per message.

Why: a pull sends one request per message, and on a 10k-message pull httpx's machinery
was the largest CPU cost of the whole run, held under the GIL: the client layer (URL
merging, a cookie jar that builds ``urllib`` request objects for every reply), httpcore's
pool and the pure-Python h11 parser, about 0.3 ms per request (``http.client`` is no
better: it parses headers with the ``email`` package). This module speaks just the
HTTP/1.1 the API needs, over plain sockets with buffered ``readline``: keep-alive,
``Content-Length``, chunked and read-until-close bodies, TLS through ``ssl``. Replies are
returned as ``httpx.Response`` objects (so ``Content-Encoding`` is decoded as before and
the handlers are unchanged).

It keeps httpx's failure contract, which :mod:`axsync.api.retry` relies on:

* ``httpx.ConnectError`` / ``ConnectTimeout`` when no connection could be made (the
  request was never sent), TLS failures included (their text names the reason, e.g.
  ``CERTIFICATE_VERIFY_FAILED``);
* ``httpx.RemoteProtocolError`` when the server closed the connection before a complete
  reply (no status line, a body shorter than its ``Content-Length``, a broken chunk) or
  sent something that is not HTTP/1.x;
* ``httpx.ReadTimeout`` / ``WriteTimeout`` / ``ReadError`` / ``WriteError`` otherwise.

A connection is reused only when its reply was read to the end and neither side asked to
close; an idle one the server closed meanwhile (a keep-alive timeout) is noticed before
reuse and replaced, as httpcore does. One :class:`LeanTransport` serves one thread (see
:class:`axsync.api.transport.Http`); it also implements ``httpx.BaseTransport`` so that it
can sit under an ``httpx.Client``. No proxy support: the API client falls back to httpx
when the environment configures a proxy.
"""

from __future__ import annotations

import select
import socket
import ssl
from collections.abc import Iterator, Sequence
from io import BufferedReader
from typing import cast

import httpx

_READ = 64 * 1024
MAX_LINE = 64 * 1024
MAX_HEADERS = 200
INCOMPLETE = "peer closed connection without sending complete message body"
NO_REPLY = "Server disconnected without sending a response."

Key = tuple[str, str, int]  # scheme, host, port


class _Conn:
    """One TCP (or TLS) connection and its buffered reader."""

    __slots__ = ("rfile", "sock")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.rfile = cast(BufferedReader, sock.makefile("rb", buffering=_READ))

    def stale(self) -> bool:
        """True if this idle connection cannot be used: the server closed it (readable with
        EOF) or sent something unasked."""
        try:
            readable, _, _ = select.select([self.sock], [], [], 0)
        except (OSError, ValueError):
            return True
        if not readable:
            return False
        if isinstance(self.sock, ssl.SSLSocket):
            # TLS 1.3 session tickets arrive after the handshake: readable, yet alive.
            try:
                self.sock.setblocking(False)
                try:
                    self.sock.recv(1)  # EOF or unasked bytes: stale either way
                except ssl.SSLWantReadError:
                    return False
                finally:
                    self.sock.setblocking(True)
            except OSError:
                pass
        return True

    def close(self) -> None:
        for closer in (self.rfile.close, self.sock.close):
            try:
                closer()
            except OSError:
                pass


def _line(rfile: BufferedReader) -> bytes:
    line = rfile.readline(MAX_LINE + 1)
    if len(line) > MAX_LINE:
        raise httpx.RemoteProtocolError("reply line too long")
    return line


# Pure pieces of the protocol, shared with the asyncio client (axsync.api.aio).


def status_of(line: bytes) -> tuple[int, bytes, bool]:
    """Status code, reason and "is HTTP/1.1" of a status line; RemoteProtocolError if it is
    not an HTTP/1.x one (an empty line: the server closed without replying)."""
    if not line:
        raise httpx.RemoteProtocolError(NO_REPLY)
    version, _, rest = line.rstrip(b"\r\n").partition(b" ")
    code, _, reason = rest.partition(b" ")
    if version not in (b"HTTP/1.1", b"HTTP/1.0") or len(code) != 3 or not code.isdigit():
        raise httpx.RemoteProtocolError(f"not an HTTP/1.x status line: {line[:80]!r}")
    return int(code), reason, version == b"HTTP/1.1"


def add_header(headers: list[tuple[bytes, bytes]], line: bytes) -> None:
    """Append one header line (a folded continuation extends the previous header)."""
    if line[:1] in (b" ", b"\t") and headers:  # obsolete line folding
        name, value = headers[-1]
        headers[-1] = (name, value + b" " + line.strip())
        return
    name, sep, value = line.partition(b":")
    if not sep or not name or name != name.strip():
        raise httpx.RemoteProtocolError(f"malformed header line: {line[:80]!r}")
    headers.append((name, value.strip()))
    if len(headers) > MAX_HEADERS:
        raise httpx.RemoteProtocolError("too many header lines")


def is_interim(status: int) -> bool:
    """A 1xx reply other than 101: skipped, the final reply follows."""
    return 100 <= status < 200 and status != 101


def framing(method: str, status: int, headers: Sequence[tuple[bytes, bytes]],
            keep: bool) -> tuple[int | None, bool, bool]:
    """``(length, chunked, keep_alive)`` of a reply's body: a length (0 for none), or
    chunked, or neither (read until the connection closes)."""
    length: int | None = None
    chunked = False
    for name, value in headers:
        lname = name.lower()
        if lname == b"content-length":
            if not value.isdigit():  # digits only: no sign, "_", list or spaces
                raise httpx.RemoteProtocolError(f"bad Content-Length {value[:40]!r}")
            length = int(value)
        elif lname == b"transfer-encoding":
            chunked = value.lower().rsplit(b",", 1)[-1].strip() == b"chunked"
        elif lname == b"connection":
            tokens = {t.strip() for t in value.lower().split(b",")}
            if b"close" in tokens:
                keep = False
            elif b"keep-alive" in tokens:
                keep = True
    if method == "HEAD" or status in (204, 304):
        return 0, False, keep
    if chunked:
        return None, True, keep
    return length, False, keep


def chunk_size(line: bytes) -> int:
    """The size on a chunk-size line (extensions ignored); RemoteProtocolError otherwise."""
    if not line:
        raise httpx.RemoteProtocolError(f"{INCOMPLETE} (incomplete chunked read)")
    digits = line.split(b";", 1)[0].strip()
    if not digits or digits.strip(b"0123456789abcdefABCDEF"):  # hex digits only
        raise httpx.RemoteProtocolError(f"malformed chunk size {line[:40]!r}")
    return int(digits, 16)


def request_head(method: str, key: Key, target: str, headers: Sequence[tuple[str, str]],
                 body: bytes | None) -> bytes:
    """The request line and headers (Host and Content-Length added)."""
    scheme, host, port = key
    default_port = 443 if scheme == "https" else 80
    shown = f"[{host}]" if ":" in host else host  # an IPv6 literal
    lines = [f"{method} {target} HTTP/1.1",
             f"Host: {shown}" if port == default_port else f"Host: {shown}:{port}"]
    lines.extend(f"{name}: {value}" for name, value in headers)
    if body is not None or method in ("POST", "PUT", "PATCH"):
        lines.append(f"Content-Length: {len(body or b'')}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def _read_head(rfile: BufferedReader) -> tuple[int, bytes, list[tuple[bytes, bytes]], bool]:
    """Status, reason, headers and "HTTP/1.1" of the next final reply (interim ones skipped)."""
    while True:
        status, reason, http11 = status_of(_line(rfile))
        headers: list[tuple[bytes, bytes]] = []
        while (line := _line(rfile)) not in (b"\r\n", b"\n"):
            if not line:
                raise httpx.RemoteProtocolError(NO_REPLY)
            add_header(headers, line)
        if not is_interim(status):
            return status, reason, headers, http11


def _read_failure(exc: BaseException, doing: str) -> httpx.TransportError:
    """The httpx error for a socket failure while receiving: a timeout as ReadTimeout,
    anything else as ReadError."""
    if isinstance(exc, TimeoutError):
        return httpx.ReadTimeout(str(exc) or f"timed out {doing}")
    return httpx.ReadError(str(exc) or exc.__class__.__name__)


class _Body(httpx.SyncByteStream):
    """The streamed body of one reply; hands the connection back when read to the end."""

    def __init__(self, owner: LeanTransport, key: Key, conn: _Conn,
                 length: int | None, chunked: bool, keep: bool) -> None:
        self._owner, self._key = owner, key
        self._conn: _Conn | None = conn
        self._length, self._chunked, self._keep = length, chunked, keep
        self._done = length == 0 and not chunked

    def __iter__(self) -> Iterator[bytes]:
        conn = self._conn
        if conn is None or self._done:
            return
        try:
            if self._chunked:
                yield from self._chunks(conn.rfile)
            elif self._length is not None:
                left = self._length
                while left:
                    chunk = conn.rfile.read1(min(left, _READ))
                    if not chunk:
                        raise httpx.RemoteProtocolError(f"{INCOMPLETE} ({left} bytes missing)")
                    left -= len(chunk)
                    yield chunk
            else:  # delimited by the end of the connection
                while chunk := conn.rfile.read1(_READ):
                    yield chunk
                self._keep = False
        except (httpx.TransportError, OSError, ValueError) as exc:
            self._drop()
            if isinstance(exc, httpx.TransportError):
                raise
            raise _read_failure(exc, "reading the reply") from exc
        self._done = True

    @staticmethod
    def _chunks(rfile: BufferedReader) -> Iterator[bytes]:
        while True:
            size = chunk_size(_line(rfile))
            if size == 0:
                while (trailer := _line(rfile)) not in (b"\r\n", b"\n"):
                    if not trailer:
                        raise httpx.RemoteProtocolError(f"{INCOMPLETE} (incomplete chunked read)")
                return
            while size:
                chunk = rfile.read1(min(size, _READ))
                if not chunk:
                    raise httpx.RemoteProtocolError(f"{INCOMPLETE} (incomplete chunked read)")
                size -= len(chunk)
                yield chunk
            if _line(rfile) not in (b"\r\n", b"\n"):
                raise httpx.RemoteProtocolError("chunk not followed by CRLF")

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        if self._done and self._keep:
            self._owner._release(self._key, conn)
        else:
            conn.close()

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()


class LeanTransport(httpx.BaseTransport):
    """HTTP/1.1 requests over plain sockets, connections kept alive; for one thread at a time."""

    def __init__(self, ssl_context: ssl.SSLContext | None = None) -> None:
        self._ssl_context = ssl_context
        self._idle: dict[Key, list[_Conn]] = {}

    # ------------------------------------------------------------------ connections

    def _connect(self, key: Key, timeout: float | None) -> _Conn:
        scheme, host, port = key
        try:
            sock = socket.create_connection((host, port), timeout=timeout)
        except TimeoutError as exc:
            raise httpx.ConnectTimeout(str(exc) or "timed out connecting") from exc
        except OSError as exc:  # refused, unreachable, unknown host
            raise httpx.ConnectError(str(exc) or exc.__class__.__name__) from exc
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if scheme == "https":
                context = self._ssl_context or ssl.create_default_context()
                sock = context.wrap_socket(sock, server_hostname=host)
        except TimeoutError as exc:
            sock.close()
            raise httpx.ConnectTimeout(str(exc) or "timed out in the TLS handshake") from exc
        except (OSError, ssl.SSLError) as exc:  # certificate refused, wrong protocol…
            sock.close()
            raise httpx.ConnectError(str(exc) or exc.__class__.__name__) from exc
        return _Conn(sock)

    def _acquire(self, key: Key, timeout: float | None) -> _Conn:
        idle = self._idle.get(key)
        while idle:
            conn = idle.pop()
            if not conn.stale():
                return conn
            conn.close()
        return self._connect(key, timeout)

    def _release(self, key: Key, conn: _Conn) -> None:
        self._idle.setdefault(key, []).append(conn)

    # ------------------------------------------------------------------ requests

    def send(self, method: str, key: Key, target: str, headers: Sequence[tuple[str, str]],
             body: bytes | None, timeouts: tuple[float | None, float | None, float | None]) -> httpx.Response:
        """Send one request (``target``: path and query, already encoded; ``headers``
        without Host and Content-Length, which are added) and return the reply with its
        body not read yet. The caller must close the response."""
        connect_t, read_t, write_t = timeouts
        conn = self._acquire(key, connect_t)
        head = request_head(method, key, target, headers, body)
        try:
            conn.sock.settimeout(write_t)
            conn.sock.sendall(head + body if body else head)
        except TimeoutError as exc:
            conn.close()
            raise httpx.WriteTimeout(str(exc) or "timed out sending the request") from exc
        except OSError as exc:
            conn.close()
            raise httpx.WriteError(str(exc) or exc.__class__.__name__) from exc
        try:
            conn.sock.settimeout(read_t)
            status, reason, raw, keep = _read_head(conn.rfile)
        except (httpx.TransportError, OSError, ValueError) as exc:
            conn.close()
            if isinstance(exc, httpx.TransportError):
                raise
            if isinstance(exc, ConnectionResetError | BrokenPipeError):
                raise httpx.RemoteProtocolError(NO_REPLY) from exc  # reset before any reply
            raise _read_failure(exc, "waiting for the reply") from exc
        try:
            length, chunked, keep = framing(method, status, raw, keep)
        except httpx.RemoteProtocolError:
            conn.close()
            raise
        stream = _Body(self, key, conn, length, chunked, keep)
        return httpx.Response(status, headers=raw, stream=stream,
                              extensions={"http_version": b"HTTP/1.1", "reason_phrase": reason})

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        """The ``httpx.BaseTransport`` interface (used under an ``httpx.Client``)."""
        url = request.url
        if url.scheme not in ("http", "https"):
            raise httpx.UnsupportedProtocol(f"unsupported URL scheme {url.scheme!r}")
        key = (url.scheme, url.raw_host.decode("ascii"),  # IDNA-encoded, as on the wire
               url.port or (443 if url.scheme == "https" else 80))
        t = request.extensions.get("timeout") or {}
        # The body is sent whole with its Content-Length (a streamed one is read first), so
        # httpx's framing headers for it are dropped, never sent next to ours.
        headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in request.headers.raw
                   if k.lower() not in (b"host", b"content-length", b"transfer-encoding")]
        body = request.read()
        response = self.send(request.method, key, url.raw_path.decode("ascii"), headers,
                             body if body or request.method in ("POST", "PUT", "PATCH") else None,
                             (t.get("connect"), t.get("read"), t.get("write")))
        response.request = request
        return response

    def close(self) -> None:
        for conns in self._idle.values():
            for conn in conns:
                conn.close()
        self._idle.clear()
