"""Reading many message files of one archive (:class:`FileReader`): the search index's
workers and exports read every message, and finding and opening each file by its path
cost seven system calls and a dozen path objects per message.

A reader opens each folder's ``cur/`` or ``new/`` once, from the archive root down, with
``O_NOFOLLOW`` at every level (so, as :meth:`Store.path_of` checks, no symlink is
followed out of the archive, and nothing can be swapped in between a check and an open),
and then finds a file with one ``fstatat`` and opens it with one ``openat`` relative to
that directory. It keeps at most :data:`MAX_DIRS` directories open.
"""

from __future__ import annotations

import errno
import io
import os
import stat
from types import TracebackType

from axsync.errors import StoreError, UnsafeName
from axsync.store import compress
from axsync.store.maildir import SUBDIRS
from axsync.store.names import ROOT, check_filename, is_safe_dirname

__all__ = ["MAX_DIRS", "FileReader"]

MAX_DIRS = 64
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC


class FileReader:
    """Finds and reads message files under ``root`` (a Maildir++ root) through directory
    descriptors; close it (or use it as a context manager) to release them."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = os.fspath(root)
        self._dirs: dict[tuple[str, str], int] = {}

    def __enter__(self) -> FileReader:
        return self

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        dirs, self._dirs = self._dirs, {}
        for fd in dirs.values():
            os.close(fd)

    def is_file(self, dirname: str, subdir: str, filename: str) -> bool:
        """Whether ``dirname/subdir/filename`` is a regular file (not a symlink).
        UnsafeName for unsafe names or a symlinked directory; StoreError for other errors."""
        check_filename(filename)
        fd = self._dir(dirname, subdir)
        if fd is None:
            return False
        try:
            st = os.stat(filename, dir_fd=fd, follow_symlinks=False)
        except FileNotFoundError:
            return False
        except OSError as exc:
            raise StoreError(f"cannot stat {self._name(dirname, subdir, filename)}: "
                             f"{exc.strerror}") from exc
        return stat.S_ISREG(st.st_mode)

    def read(self, dirname: str, subdir: str, filename: str, limit: int | None = None) -> bytes:
        """The whole uncompressed message (or its first ``limit`` bytes), as
        :meth:`Store.read_message`. A symlink is not followed (StoreError)."""
        check_filename(filename)
        name = self._name(dirname, subdir, filename)
        fd = self._dir(dirname, subdir)
        if fd is None:
            raise StoreError(f"cannot open {name}: no such directory", missing=True)
        try:
            handle = os.open(filename, _FILE_FLAGS, dir_fd=fd)
        except OSError as exc:
            raise StoreError(f"cannot open {name}: {exc.strerror}",
                             missing=exc.errno == errno.ENOENT) from exc
        with io.FileIO(handle, "rb", closefd=True) as raw:
            return compress.read_all(raw, name, limit)

    def _name(self, dirname: str, subdir: str, filename: str) -> str:
        return os.path.join(self.root, dirname, subdir, filename)

    def _dir(self, dirname: str, subdir: str) -> int | None:
        """The open ``dirname/subdir`` (None if it does not exist)."""
        key = (dirname, subdir)
        fd = self._dirs.get(key)
        if fd is not None:
            return fd
        if subdir not in SUBDIRS:
            raise UnsafeName(f"{subdir!r} is not cur, new or tmp")
        if not is_safe_dirname(dirname):
            raise UnsafeName(f"unsafe folder directory name {dirname!r}")
        try:
            top = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as exc:
            raise StoreError(f"cannot open {self.root}: {exc.strerror}") from exc
        try:
            folder = top if dirname == ROOT else self._open_dir(dirname, top, dirname)
            if folder is None:
                return None
            try:
                fd = self._open_dir(subdir, folder, os.path.join(dirname, subdir))
            finally:
                if folder != top:
                    os.close(folder)
        finally:
            os.close(top)
        if fd is None:
            return None
        if len(self._dirs) >= MAX_DIRS:
            os.close(self._dirs.pop(next(iter(self._dirs))))  # the oldest
        self._dirs[key] = fd
        return fd

    def _open_dir(self, entry: str, parent: int, shown: str) -> int | None:
        try:
            return os.open(entry, _DIR_FLAGS, dir_fd=parent)
        except FileNotFoundError:
            return None
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                raise UnsafeName(f"{shown!r} is a symlink or not a directory") from exc
            raise StoreError(f"cannot open {os.path.join(self.root, shown)}: {exc.strerror}") from exc
