"""Durable file-system primitives for the store: directory fsync, atomic replace, and
Dovecot-compatible dotlocks. Callers translate nothing: OSError passes through, except
where StoreError is documented.
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, cast

from axsync.errors import StoreError

if TYPE_CHECKING:
    import ctypes

TMP_PREFIX = "axsync-tmp."
LOCK_STALE_S = 120.0
LOCK_TIMEOUT_S = 10.0


def fsync_dir(path: Path | str) -> None:
    """Make a directory's entries (new, renamed, removed files) durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@functools.cache
def _libc() -> tuple[ctypes.CDLL | None, Callable[[int], int] | None]:
    """The C library and its syncfs, on Linux (for syncfs and statfs), else None. Loaded
    at first use: a run that writes nothing does not pay for importing ctypes."""
    if not sys.platform.startswith("linux"):
        return None, None
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None, None
    try:
        fn = libc.syncfs
    except AttributeError:
        return libc, None
    fn.argtypes = [ctypes.c_int]
    fn.restype = ctypes.c_int
    return libc, cast("Callable[[int], int]", fn)

#: File systems whose syncfs(2) writes and waits for every file's data and metadata
#: (statfs f_type): ext2/3/4, XFS, Btrfs, F2FS, ZFS, tmpfs (nothing to write) and overlayfs
#: (syncs its upper layer). Elsewhere (FUSE, network file systems...) syncfs may not reach
#: the storage the way an fsync does, so each file is fsynced instead.
SYNCFS_FILE_SYSTEMS = frozenset({
    0xEF53,  # ext2/3/4
    0x58465342,  # xfs
    0x9123683E,  # btrfs
    0xF2F52010,  # f2fs
    0x2FC12FC1,  # zfs
    0x01021994,  # tmpfs
    0x794C7630,  # overlayfs
})


def fs_type(path: Path | str) -> int | None:
    """statfs(2)'s ``f_type`` of the file system holding ``path`` (Linux), else None."""
    libc, syncfs_fn = _libc()
    if libc is None or syncfs_fn is None:  # only asked to decide on syncfs (can_syncfs)
        return None
    import ctypes

    try:
        buf = ctypes.create_string_buffer(512)  # struct statfs is 120 bytes on 64-bit Linux
        if libc.statfs(os.fsencode(path), buf) != 0:
            return None
    except (OSError, AttributeError):
        return None
    # f_type (__fsword_t: a C long on every Linux ABI) is the first member.
    return ctypes.c_long.from_buffer(buf).value & 0xFFFFFFFF


def can_syncfs(path: Path | str) -> bool:
    """Whether :func:`syncfs` is available (Linux) and trusted on ``path``'s file system
    (:data:`SYNCFS_FILE_SYSTEMS`)."""
    return _libc()[1] is not None and fs_type(path) in SYNCFS_FILE_SYSTEMS


def syncfs(fd: int) -> None:
    """syncfs(2): write every dirty file and inode of the file system holding ``fd``, and
    wait. Since Linux 5.8 it also reports write-back errors that happened after ``fd`` was
    opened. Raises OSError; NotImplementedError where there is no syncfs."""
    syncfs_fn = _libc()[1]
    if syncfs_fn is None:
        raise NotImplementedError("syncfs")
    if syncfs_fn(fd) != 0:  # ctypes releases the GIL for the call
        import ctypes

        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def remove_old_files(directory: Path, pattern: re.Pattern[str] | None, cutoff: float) -> int:
    """Unlink regular files in ``directory`` whose name matches ``pattern`` (default:
    starts with ``axsync-tmp.``) and whose mtime is before ``cutoff``; fsync the directory
    if any went. A missing directory counts as empty. Returns how many were removed."""
    removed = 0
    try:
        it = os.scandir(directory)
    except FileNotFoundError:
        return 0
    with it:
        for entry in it:
            ours = pattern.match(entry.name) if pattern else entry.name.startswith(TMP_PREFIX)
            if (
                ours
                and entry.is_file(follow_symlinks=False)
                and entry.stat(follow_symlinks=False).st_mtime < cutoff
            ):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(entry.path)
                    removed += 1
    if removed:
        fsync_dir(directory)
    return removed


def atomic_write(directory: Path, name: str, data: bytes, mode: int = 0o600) -> Path:
    """Replace ``directory/name`` with ``data``: write ``axsync-tmp.*`` in the same
    directory, fsync, rename over, fsync the directory. The temp file never survives an
    error. Raises OSError."""
    target = directory / name
    tmp = directory / f"{TMP_PREFIX}{name}.{os.getpid()}.{os.urandom(4).hex()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    fsync_dir(directory)
    return target


# ---------------------------------------------------------------------------- dotlock

_held: dict[str, tuple[int, int]] = {}  # lock path -> (thread id, depth)
_held_guard = threading.Lock()


def _stale_stat(path: str, stale_s: float) -> os.stat_result | None:
    """The lock's stat if it is stale, else None. A lock naming a process of this host
    (Dovecot writes ``<pid>:<host>`` into its dotlocks, and so do we) is stale as soon as
    that process is gone (as Dovecot decides: a killed run must not block the next one for
    minutes) and never while it lives; any other lock once it is older than ``stale_s``."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        with os.fdopen(fd, "rb") as f:
            owner = f.read(256).decode("ascii", "replace").strip()
    except OSError:
        owner = ""
    pid_text, _, host = owner.partition(":")
    if host == socket.gethostname() and pid_text.isdigit():
        try:
            os.kill(int(pid_text), 0)
            return None  # the owner is alive: wait, don't steal
        except PermissionError:
            return None  # alive, another user's process
        except (OSError, OverflowError):
            return st  # the owner is dead
    if time.time() - st.st_mtime <= stale_s:
        return None
    return st


def _break_stale(path: str, stale: os.stat_result) -> None:
    """Remove the stale lock, unless someone replaced it meanwhile."""
    with contextlib.suppress(FileNotFoundError):
        st = os.lstat(path)
        if (st.st_ino, st.st_mtime_ns) == (stale.st_ino, stale.st_mtime_ns):
            os.unlink(path)


def _acquire(path: str, timeout_s: float, stale_s: float) -> os.stat_result:
    deadline = time.monotonic() + timeout_s
    delay = 0.01
    content = f"{os.getpid()}:{socket.gethostname()}".encode()
    while True:
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        except FileExistsError:
            stale = _stale_stat(path, stale_s)
            if stale is not None:
                _break_stale(path, stale)
                continue
            if time.monotonic() >= deadline:
                raise StoreError(
                    f"lock {path} is held by another process (remove it if no Dovecot "
                    "or axsync is using this folder)"
                ) from None
            time.sleep(delay)
            delay = min(delay * 2, 0.2)
            continue
        try:
            os.write(fd, content)
            return os.fstat(fd)
        except OSError:
            # e.g. ENOSPC: an empty lock nobody owns would block every run for stale_s
            with contextlib.suppress(OSError):
                os.unlink(path)
            raise
        finally:
            os.close(fd)


@contextlib.contextmanager
def dotlock(
    path: Path | str, timeout_s: float = LOCK_TIMEOUT_S, stale_s: float = LOCK_STALE_S
) -> Iterator[None]:
    """Hold the dotlock ``path`` (created with O_EXCL) for the ``with`` body.

    Waits with short sleeps up to ``timeout_s`` (StoreError after that); a lock older than
    ``stale_s`` whose owner is not a live local process is broken. Re-entrant within a
    thread (nested use refreshes the lock's mtime). Always released, but only if the
    file is still ours. OSError other than "exists" passes through."""
    key = os.fspath(path)
    me = threading.get_ident()
    with _held_guard:
        owner = _held.get(key)
        if owner is not None and owner[0] == me:
            _held[key] = (me, owner[1] + 1)
            nested = True
        else:
            nested = False
    if nested:
        with contextlib.suppress(OSError):
            os.utime(key)
        try:
            yield
        finally:
            with _held_guard:
                _held[key] = (me, _held[key][1] - 1)
        return
    ours = _acquire(key, timeout_s, stale_s)
    with _held_guard:
        _held[key] = (me, 1)
    try:
        yield
    finally:
        with _held_guard:
            del _held[key]
        try:
            st = os.lstat(key)
            if (st.st_dev, st.st_ino) == (ours.st_dev, ours.st_ino):
                os.unlink(key)
        except FileNotFoundError:
            pass
