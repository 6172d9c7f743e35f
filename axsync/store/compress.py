"""Message file compression: detection by magic bytes, streaming readers and writers.

A message file is one of: a standard zstd stream (one or several frames, no dictionary),
a gzip stream (one or several members), or the plain message. Readers never trust the
file name (Dovecot mixes its own uncompressed files into the same folders); they look at
the first bytes, as Dovecot's ``compression_detect_handler`` does.
"""

from __future__ import annotations

import io
import threading
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO, Literal, cast

import zstandard

from axsync.errors import StoreError

Method = Literal["zstd", "gzip", "none"]
METHODS: tuple[Method, ...] = ("zstd", "gzip", "none")

ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
GZIP_MAGIC = b"\x1f\x8b"
DEFAULT_LEVEL = 3
_READ_SIZE = 64 * 1024
# Compressed bytes fed to zstd per step. zstd can expand a few bytes into 128 KiB
# (RLE blocks), so this bounds one step's output at about 64 MiB even for a hostile file.
_ZSTD_FEED = 2048
#: Smallest size a compressor is sized for (a hint is the server's idea of the size).
_MIN_HINT = 16 * 1024
#: Largest size class of a pooled context (larger hints share the default parameters).
_MAX_HINT = 4 * 1024 * 1024
#: Memory (zstd's own figure) that idle pooled contexts may hold in all.
_POOL_BYTES = 32 * 1024 * 1024


def check_method(method: str) -> Method:
    """``method`` as a :data:`Method`; StoreError for anything else."""
    if method not in METHODS:
        raise StoreError(f"unknown compression {method!r} (zstd, gzip or none)")
    return cast(Method, method)


def detect(first_bytes: bytes) -> Method:
    """The compression of a file from its first (at least 4) bytes."""
    if first_bytes.startswith(ZSTD_MAGIC):
        return "zstd"
    if first_bytes.startswith(GZIP_MAGIC):
        return "gzip"
    return "none"


# ---------------------------------------------------------------------------- reading


_LOCAL = threading.local()


def _thread_decompressor() -> zstandard.ZstdDecompressor:
    """This thread's decompressor, for a read that runs to its end before anything else
    uses it (making one costs about as much as decompressing a 4 KB message). Each
    ``decompressobj()`` resets the decompressor's context, so two streams open at once
    (or two threads) must each have their own: see :func:`_zstd_chunks`."""
    dctx: zstandard.ZstdDecompressor | None = getattr(_LOCAL, "dctx", None)
    if dctx is None:
        dctx = _LOCAL.dctx = zstandard.ZstdDecompressor()
    return dctx


def _zstd_chunks(raw: BinaryIO, dctx: zstandard.ZstdDecompressor | None = None) -> Iterator[bytes]:
    """Decompress every frame in ``raw`` (with ``dctx``, default a new decompressor);
    StoreError if the last frame is cut short."""
    dctx = dctx or zstandard.ZstdDecompressor()
    obj = dctx.decompressobj()
    in_frame = False
    while chunk := raw.read(_ZSTD_FEED):
        while chunk:
            out = obj.decompress(chunk)
            in_frame = True
            if out:
                yield out
            if obj.eof:
                chunk = obj.unused_data
                obj = dctx.decompressobj()
                in_frame = False
            else:
                chunk = b""
    if in_frame:
        raise StoreError("truncated zstd stream")


def _gzip_chunks(raw: BinaryIO) -> Iterator[bytes]:
    import gzip  # only archives written with compression = "gzip" need it

    with gzip.GzipFile(fileobj=raw, mode="rb") as gz:
        while chunk := gz.read(_READ_SIZE):
            yield chunk


def _plain_chunks(raw: BinaryIO) -> Iterator[bytes]:
    while chunk := raw.read(_READ_SIZE):
        yield chunk


_READERS: dict[Method, Callable[[BinaryIO], Iterator[bytes]]] = {
    "zstd": _zstd_chunks,
    "gzip": _gzip_chunks,
    "none": _plain_chunks,
}


def _decoded(raw: BinaryIO, method: Method, name: str, *, whole: bool = False) -> Iterator[bytes]:
    """The uncompressed chunks of ``raw``; decoding errors become StoreError. ``whole``:
    the caller reads them all before doing anything else in this thread (then zstd uses
    the thread's decompressor)."""
    chunks = _zstd_chunks(raw, _thread_decompressor()) if whole and method == "zstd" else _READERS[method](raw)
    while True:
        try:
            chunk = next(chunks)
        except StopIteration:
            return
        except StoreError as exc:
            raise StoreError(f"{name}: {exc}") from exc
        except (zstandard.ZstdError, EOFError, zlib.error, OSError) as exc:
            raise StoreError(f"{name}: cannot decompress: {exc}") from exc
        yield chunk


class _DecodingReader(io.RawIOBase):
    """A read-only raw stream over a chunk iterator; decoding errors become StoreError."""

    def __init__(self, raw: BinaryIO, method: Method, name: str) -> None:
        self._raw = raw
        self._chunks = _decoded(raw, method, name)
        self._pending = memoryview(b"")
        self.method = method

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        while not self._pending:
            try:
                self._pending = memoryview(next(self._chunks))
            except StopIteration:
                return 0
        n = min(len(buffer), len(self._pending))
        buffer[:n] = self._pending[:n]
        self._pending = self._pending[n:]
        return n

    def close(self) -> None:
        if not self.closed:
            self._raw.close()
        super().close()


def open_stream(raw: BinaryIO, name: str = "<stream>") -> BinaryIO:
    """Wrap an open binary stream positioned at a message file's start; reads give the
    uncompressed message. Closing the result closes ``raw``."""
    head = raw.read(4)
    raw.seek(-len(head), io.SEEK_CUR)
    reader = _DecodingReader(raw, detect(head), name)
    return cast(BinaryIO, io.BufferedReader(reader, _READ_SIZE))


def open_message(path: Path | str) -> BinaryIO:
    """Open a message file for streaming, uncompressed reading (any of the three forms,
    several zstd frames or gzip members included). StoreError if it cannot be opened;
    reads raise StoreError for corrupt or truncated data."""
    try:
        raw = open(path, "rb")  # noqa: SIM115 - the returned stream owns it
    except OSError as exc:
        raise StoreError(f"cannot open {path}: {exc.strerror}") from exc
    try:
        return open_stream(raw, str(path))
    except OSError as exc:
        raw.close()
        raise StoreError(f"cannot read {path}: {exc.strerror}") from exc


def read_message(path: Path | str, limit: int | None = None) -> bytes:
    """The whole uncompressed message, or its first ``limit`` bytes. StoreError as for
    :func:`open_message`. (Without the stream layers of :func:`open_message`: the search
    index reads every message this way, and a read of the first 16 MB of a 4 KB message
    through a buffered stream cost twice the decompression.)"""
    try:
        raw = open(path, "rb")  # noqa: SIM115 - closed below
    except OSError as exc:
        raise StoreError(f"cannot open {path}: {exc.strerror}") from exc
    with raw:
        return read_all(raw, str(path), limit)


def read_all(raw: BinaryIO, name: str, limit: int | None = None) -> bytes:
    """:func:`read_message` of an open file (at its start), named ``name`` in errors."""
    try:
        method = detect(raw.read(4))
        raw.seek(0)
    except OSError as exc:
        raise StoreError(f"cannot read {name}: {exc.strerror}") from exc
    out = bytearray()
    for chunk in _decoded(raw, method, name, whole=True):
        out += chunk
        if limit is not None and len(out) >= limit:
            del out[limit:]
            break
    return bytes(out)


# ---------------------------------------------------------------------------- writing


class Compressor:
    """Streaming compressor producing exactly one zstd frame (no dictionary, content size
    not recorded, with the frame's content checksum so readers detect corruption), one
    gzip member (which always carries a CRC-32), or the input unchanged. Feed with :meth:`compress`,
    end with :meth:`flush` (once). Output per call is bounded by the input size."""

    def __init__(self, method: str = "zstd", level: int = DEFAULT_LEVEL,
                 size_hint: int | None = None) -> None:
        self.method: Method = check_method(method)
        if not -(1 << 17) <= level <= zstandard.MAX_COMPRESSION_LEVEL:
            raise StoreError(f"compression level {level} is out of range (at most 22)")
        self._level = level
        self._size_hint = size_hint
        self._zstd: zstandard.ZstdCompressionObj | None = None
        self._cctx: zstandard.ZstdCompressor | None = None
        self._key: tuple[int, int | None] = (level, None)
        self._zlib: zlib._Compress | None = None
        # "none" holds back the first bytes until they cannot be a magic number
        self._head: bytes | None = b"" if self.method == "none" else None
        self._finished = False
        if self.method == "zstd":
            self._start_zstd()
        elif self.method == "gzip":
            self._zlib = zlib.compressobj(max(1, min(level, 9)), zlib.DEFLATED, 31)

    def _start_zstd(self) -> None:
        self.method = "zstd"
        self._key = _size_class(self._level, self._size_hint)

    def _frame(self) -> zstandard.ZstdCompressionObj:
        """The zstd frame, begun with a pooled context at the first bytes: a download
        waiting for its reply holds no context (a used one keeps its working memory)."""
        if self._zstd is None:
            self._cctx = _CONTEXTS.take(self._key)
            self._zstd = self._cctx.compressobj()  # resets the context: a fresh frame
        return self._zstd

    def compress(self, data: bytes) -> bytes:
        if self._finished:
            raise StoreError("compress() after flush()")
        if self.method == "zstd":
            return self._frame().compress(data)
        if self._zlib is not None:
            return self._zlib.compress(data)
        if self._head is None:
            return bytes(data)
        head = self._head + data
        if any(len(head) < len(m) and m.startswith(head) for m in (ZSTD_MAGIC, GZIP_MAGIC)):
            self._head = head  # could still become a magic: wait for more
            return b""
        return self._release(head)

    def _release(self, head: bytes) -> bytes:
        self._head = None
        if detect(head) == "none":
            return head
        self._start_zstd()  # stored plain, it would be read back as compressed
        return self.compress(head)

    def flush(self) -> bytes:
        """End the frame/member; returns its last bytes. For "none", :attr:`method` may
        have become "zstd": a message starting with a magic number is compressed. The
        compressor is finished: a zstd context goes back to the pool for another frame."""
        if self._finished:
            raise StoreError("flush() of a finished compressor")
        out = self._release(self._head) if self._head is not None else b""
        self._finished = True
        if self.method == "zstd":
            out += self._frame().flush()
            cctx, self._cctx, self._zstd = self._cctx, None, None
            if cctx is not None:
                _CONTEXTS.give(self._key, cctx)
            return out
        if self._zlib is not None:
            return out + self._zlib.flush()
        return out


def _size_class(level: int, size_hint: int | None) -> tuple[int, int | None]:
    """The pool key of a compressor for a message of about ``size_hint`` bytes: its level
    and the power of two the hint rounds up to (None: the level's default parameters)."""
    if size_hint is None:
        return level, None
    size = 1 << (max(size_hint, _MIN_HINT) - 1).bit_length()
    return level, (size if size <= _MAX_HINT else None)


class _ContextPool:
    """Idle zstd compression contexts, by size class, for any thread.

    Making a context costs about as much as compressing a 4 KB message with it (39 against
    18 µs per message of the generated corpus), and a pull makes one per download. A
    context serves one stream at a time: :class:`Compressor` takes one when its frame
    starts and gives it back when its frame is complete (a compressor that is dropped
    before that never gives it back). ``compressobj()`` resets the context, so a reused
    context writes the same frame as a new one with the same parameters (tested).

    Sizing a context for the expected message (a window no larger than needed) keeps it
    small: a level-3 context for a 5 KB message takes 0.33 MB instead of 3.7 MB, which is
    what many downloads in flight at once cost. A message larger than the hint is still
    compressed whole, with a smaller window. Still one standard frame."""

    def __init__(self, budget: int) -> None:
        self._lock = threading.Lock()
        self._idle: dict[tuple[int, int | None], list[zstandard.ZstdCompressor]] = {}
        self._sizes: dict[tuple[int, int | None], int] = {}
        self._held = 0
        self._budget = budget

    def take(self, key: tuple[int, int | None]) -> zstandard.ZstdCompressor:
        with self._lock:
            idle = self._idle.get(key)
            if idle:
                self._held -= self._sizes[key]
                return idle.pop()
        level, size = key
        if size is None:
            return zstandard.ZstdCompressor(level=level, write_checksum=True)
        params = zstandard.ZstdCompressionParameters.from_level(
            level, source_size=size, write_checksum=1)
        return zstandard.ZstdCompressor(compression_params=params)

    def give(self, key: tuple[int, int | None], cctx: zstandard.ZstdCompressor) -> None:
        with self._lock:
            size = self._sizes.get(key)
            if size is None:
                size = self._sizes[key] = cctx.memory_size()
            if self._held + size <= self._budget:
                self._idle.setdefault(key, []).append(cctx)
                self._held += size


_CONTEXTS = _ContextPool(_POOL_BYTES)


def compress_bytes(data: bytes, method: str = "zstd", level: int = DEFAULT_LEVEL) -> bytes:
    """``data`` as one complete zstd frame, gzip member, or unchanged."""
    c = Compressor(method, level)
    return c.compress(data) + c.flush()
