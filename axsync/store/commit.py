"""GroupCommit: make many sealed messages durable and visible with a few system calls.

A pull writes thousands of small files. Committing each one on its own (fsync, rename,
fsync of ``cur/``) costs a journal commit per file and, in a threaded Python program, a
hand-over of the interpreter lock around every system call. :class:`GroupCommit` keeps
the order that makes a crash safe (content durable, then the name, then the state row)
for a whole group of files at once, on one thread of its own:

1. the contents: one ``syncfs(2)`` of the archive's file system (Linux, on the file
   systems in :data:`~axsync.store.fsutil.SYNCFS_FILE_SYSTEMS`), elsewhere an fsync of
   each file;
2. each file renamed from ``tmp/`` into ``cur/`` (:meth:`SealedFile.publish`);
3. the names: one more ``syncfs``, elsewhere an fsync of each ``cur/`` touched;

then the group's results go to ``deliver`` in one call. A kill at any point leaves
either a file in ``tmp/`` (removed by :meth:`Store.cleanup_tmp` later, downloaded again)
or a complete file in ``cur/`` without a state row (adopted by the next pull).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Generic, TypeVar

from axsync.errors import StoreError
from axsync.store.fsutil import can_syncfs, fsync_dir, syncfs
from axsync.store.writer import SealedFile, StoredFile

K = TypeVar("K")

log = logging.getLogger("axsync.store")

#: One committed item: its key, the stored file or None, and the error or None.
Result = tuple[K, StoredFile | None, BaseException | None]


class GroupCommit(Generic[K]):
    """Commit sealed files (:meth:`MessageWriter.seal`) in groups; see the module.

    :meth:`add` may be called from any thread. A group is what arrived while the previous
    group was being committed, plus what arrives within ``linger`` seconds of the first
    item. ``deliver`` runs on the commit thread and must not block for long. Every added
    item is delivered exactly once, with its file in ``cur/`` or with an error (its
    temporary file removed). :meth:`close` commits what is left and stops the thread."""

    def __init__(self, root: Path, deliver: Callable[[list[Result[K]]], None], *,
                 linger: float = 0.02, use_syncfs: bool | None = None) -> None:
        self.root = root
        self._deliver = deliver
        self._linger = linger
        self._syncfs = can_syncfs(root) if use_syncfs is None else use_syncfs
        # Opened before any file of the run is written: syncfs reports the write-back
        # errors that happen on the file system after the descriptor was opened.
        self._fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY) if self._syncfs else -1
        self._cond = threading.Condition()
        self._items: list[tuple[K, SealedFile]] = []
        self._idle = False
        self._closing = False
        self.groups = 0  # committed so far (for tests and the bench)
        self._thread = threading.Thread(target=self._run, name="axsync-commit", daemon=True)
        self._thread.start()

    def add(self, key: K, sealed: SealedFile) -> None:
        """Queue ``sealed`` for the next group (any thread)."""
        with self._cond:
            if self._closing:
                raise StoreError("group commit already closed")
            self._items.append((key, sealed))
            if self._idle:  # waking the thread only when it waits saves a system call per file
                self._cond.notify()

    def close(self) -> None:
        """Commit and deliver every item added, then stop the thread (idempotent)."""
        with self._cond:
            self._closing = True
            self._cond.notify()
        self._thread.join()
        with self._cond:
            fd, self._fd = self._fd, -1
        if fd >= 0:
            os.close(fd)

    def __enter__(self) -> GroupCommit[K]:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    # ------------------------------------------------------------------ commit thread

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._items and not self._closing:
                    self._idle = True
                    self._cond.wait()
                    self._idle = False
                if not self._items:
                    return
                if self._linger > 0:  # let a group form (close() cuts it short)
                    self._cond.wait_for(lambda: self._closing, timeout=self._linger)
                group, self._items = self._items, []
            published: list[tuple[K, SealedFile]] = []
            try:
                results = self._commit(group, published)
            except BaseException as exc:  # a bug: fail the group rather than lose track of it
                for _key, sealed in group:
                    sealed.discard()
                for _key, sealed in published:  # names never made durable: take them back
                    sealed.withdraw()
                results = [(key, None, exc) for key, _sealed in group]
            self.groups += 1
            try:
                self._deliver(results)
            except Exception:  # the caller's bug: keep committing what comes next
                log.exception("group commit: delivering %d results failed", len(results))

    def _commit(self, group: list[tuple[K, SealedFile]],
                published: list[tuple[K, SealedFile]]) -> list[Result[K]]:
        """Commit ``group``; ``published`` collects the files renamed into ``cur/``."""
        try:
            self._sync_contents(group)
        except OSError as exc:
            for _key, sealed in group:
                sealed.discard()
            return [(key, None, _failed(f"cannot make messages durable in {self.root}", exc))
                    for key, _sealed in group]
        results: list[Result[K]] = []
        for key, sealed in group:
            try:
                sealed.publish()
            except StoreError as err:
                results.append((key, None, err))
            else:
                published.append((key, sealed))
        try:
            self._sync_names(published)
        except OSError as exc:
            for key, sealed in published:  # not durable: take them back
                sealed.withdraw()
                results.append((key, None, _failed(f"cannot sync {sealed.cur}", exc)))
        else:
            results.extend((key, sealed.stored, None) for key, sealed in published)
        return results

    def _sync_contents(self, group: list[tuple[K, SealedFile]]) -> None:
        if self._syncfs:
            syncfs(self._fd)
            return
        for _key, sealed in group:
            fd = os.open(sealed.tmp, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)

    def _sync_names(self, published: list[tuple[K, SealedFile]]) -> None:
        if not published:
            return
        if self._syncfs:
            syncfs(self._fd)
            return
        for cur in dict.fromkeys(sealed.cur for _key, sealed in published):
            fsync_dir(cur)


def _failed(what: str, exc: OSError) -> StoreError:
    err = StoreError(f"{what}: {exc.strerror or exc}")
    err.__cause__ = exc  # keeps the errno (disk full, read-only) for the caller
    return err
