"""MessageWriter: stream one message into ``<folder>/tmp/``, then commit it into ``cur/``
(or seal it there, for :class:`axsync.store.commit.GroupCommit`)."""

from __future__ import annotations

import contextlib
import errno
import functools
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from axsync.errors import StoreError
from axsync.store.compress import Compressor
from axsync.store.fsutil import fsync_dir
from axsync.store.names import (
    FLAG_COMPRESSED,
    check_unique,
    format_name,
    new_unique,
    normalize_flags,
)


@functools.lru_cache(maxsize=1024)
def _cur_of(folder_dir: Path) -> Path:
    return folder_dir / "cur"


@dataclass(frozen=True, slots=True)
class StoredFile:
    """A committed message: where it is and what it holds (uncompressed size, vsize with
    bare LF counted as CRLF, sha256 hex of the uncompressed bytes)."""

    dirname: str
    filename: str
    base: str
    size: int
    vsize: int
    sha256: str


@dataclass(frozen=True, slots=True)
class SealedFile:
    """A message complete in ``tmp/`` (:meth:`MessageWriter.seal`), not yet in ``cur/``."""

    tmp: str  # path of the file in tmp/
    cur: Path
    stored: StoredFile

    def publish(self) -> StoredFile:
        """Rename it into ``cur/`` (never over an existing name). The caller has made its
        content durable first, and makes the name durable (fsync of ``cur/``) before it
        records it anywhere. StoreError (the temporary file removed) if it cannot be."""
        final = os.path.join(self.cur, self.stored.filename)  # (no Path: per message)
        try:
            if os.path.lexists(final):
                raise FileExistsError(errno.EEXIST, "a message with this name exists", str(final))
            os.rename(self.tmp, final)
        except OSError as exc:
            self.discard()
            raise StoreError(f"cannot store message in {self.cur.parent}: {exc}") from exc
        return self.stored

    def discard(self) -> None:
        """Remove the temporary file (idempotent)."""
        with contextlib.suppress(OSError):
            os.unlink(self.tmp)

    def withdraw(self) -> None:
        """Remove the published file from ``cur/`` (its name could not be made durable:
        better no file than one the state DB may never learn of). Idempotent."""
        with contextlib.suppress(OSError):
            os.unlink(os.path.join(self.cur, self.stored.filename))


class MessageWriter:
    """Writes one message: raw bytes in via :meth:`write`, compressed into a fresh
    ``<folder>/tmp/<new_unique()>`` (mode 0600), moved into ``cur/`` by :meth:`commit`
    under the base ``<unique>,S=…,W=…`` (``unique`` defaults to a fresh one; a caller's
    own must pass :func:`names.check_unique` and not be in use in the folder).

    Use as a context manager: leaving it without a commit, or by an exception, removes the
    temporary file. Memory use is bounded whatever the message size. Every method raises
    StoreError on file-system errors, after removing the temporary file."""

    def __init__(
        self, dirname: str, folder_dir: Path, method: str, level: int, unique: str | None = None,
        size_hint: int | None = None,
    ) -> None:
        if unique is not None:
            check_unique(unique)
        self.dirname = dirname
        self._folder_dir = folder_dir
        self._compressor = Compressor(method, level, size_hint)
        self._unique = unique or new_unique()
        self._tmp = os.path.join(folder_dir, "tmp", new_unique())  # (no Path: per message)
        self._hash = hashlib.sha256()
        self._size = 0
        self._bare_lf = 0
        self._last_cr = False
        self._done = False
        try:
            fd = os.open(self._tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        except OSError as exc:
            raise StoreError(f"cannot create {self._tmp}: {exc.strerror}") from exc
        # Written straight to the descriptor: the compressor already gathers its output
        # into blocks (a buffered file object per message cost more than its writes).
        self._fd = fd

    @property
    def size(self) -> int:
        """Uncompressed bytes written so far."""
        return self._size

    def write(self, data: bytes) -> None:
        """Append raw (uncompressed) message bytes. StoreError after commit/abort."""
        if self._done:
            raise StoreError("write to a finished MessageWriter")
        if not data:
            return
        self._hash.update(data)
        self._size += len(data)
        lf = data.count(b"\n") - data.count(b"\r\n")
        if self._last_cr and data[:1] == b"\n":
            lf -= 1  # a CRLF split across two chunks
        self._bare_lf += lf
        self._last_cr = data[-1:] == b"\r"
        try:
            self._put(self._compressor.compress(data))
        except OSError as exc:
            self.abort()
            raise StoreError(f"cannot write {self._tmp}: {exc.strerror}") from exc

    def commit(self, flags: str, mtime: int) -> StoredFile:
        """Finish the file and move it to ``cur/<unique>,S=<size>,W=<vsize>:2,<flags>``
        (many files at once: :meth:`seal` and :class:`GroupCommit`). The file's content is
        fsynced before the rename, so a name in ``cur/`` never stands for an incomplete
        file.

        Flags are normalized; ``Z`` is added when the file is compressed and removed when
        it is not (a "none" store compresses the rare message whose first bytes look like
        a compression magic, so that readers cannot mistake it). The frame is ended, the file fsynced, its atime/mtime set to ``mtime``
        (the server's internal date), renamed into ``cur/`` and ``cur/`` fsynced."""
        sealed = self._seal(flags, mtime, fsync=True)
        stored = sealed.publish()
        try:
            fsync_dir(sealed.cur)
        except OSError as exc:
            sealed.withdraw()
            raise StoreError(f"cannot sync {sealed.cur}: {exc.strerror}") from exc
        return stored

    def seal(self, flags: str, mtime: int) -> SealedFile:
        """Finish the file in ``tmp/`` as :meth:`commit` does (frame ended, mtime set,
        closed) but neither fsync nor rename it: :class:`GroupCommit` makes many sealed
        files durable at once, then publishes them. The writer is done either way."""
        return self._seal(flags, mtime, fsync=False)

    def _seal(self, flags: str, mtime: int, *, fsync: bool) -> SealedFile:
        if self._done:
            raise StoreError("commit of a finished MessageWriter")
        self._done = True
        letters = set(normalize_flags(flags)) - {FLAG_COMPRESSED}
        if self._compressor.method != "none":
            letters.add(FLAG_COMPRESSED)
        vsize = self._size + self._bare_lf
        name = format_name(self._unique, self._size, vsize, letters)
        try:
            self._put(self._compressor.flush())
            os.utime(self._fd, (mtime, mtime))
            if fsync:
                os.fsync(self._fd)
            self._close()
        except OSError as exc:
            self._discard()
            raise StoreError(f"cannot store message in {self._folder_dir}: {exc}") from exc
        base = name.rpartition(":2,")[0]
        return SealedFile(self._tmp, _cur_of(self._folder_dir),
                          StoredFile(self.dirname, name, base, self._size, vsize, self._hash.hexdigest()))

    def abort(self) -> None:
        """Drop the message: close and remove the temporary file (idempotent)."""
        self._done = True
        self._discard()

    def _put(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(self._fd, view):]

    def _close(self) -> None:
        fd, self._fd = self._fd, -1
        if fd >= 0:
            os.close(fd)

    def _discard(self) -> None:
        with contextlib.suppress(OSError):
            self._close()
        with contextlib.suppress(OSError):
            os.unlink(self._tmp)

    def __enter__(self) -> MessageWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if not self._done or exc_type is not None:
            self.abort()
