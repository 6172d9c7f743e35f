"""The offline search index: SQLite FTS5 tables in the state DB (``state/0002_search.sql``).

:meth:`SearchIndex.catch_up` indexes every message (present, or deleted on the server but
kept) that is not indexed yet or whose content changed, and drops the rows of messages
that are gone (tombstoned). It streams: messages are read one at a time (at most
``max_bytes`` of each: text comes first in mail, attachments after) and written in
batches, each its own transaction, so memory stays bounded and an interrupted run keeps
what it did. The sync engine calls it at the end of every pull; ``axsync reindex`` calls
:meth:`SearchIndex.rebuild`.

Reading and parsing a message (decompress, MIME walk, charset decoding, HTML to text) is
pure CPU in Python and costs about as much as downloading it. With many messages pending
(an initial pull, a rebuild) and more than one CPU, pages of messages are parsed in worker
processes while this process writes the finished pages, in order, into SQLite; a worker
that dies or cannot start makes the page be parsed here instead. The result is the same
either way (tests/archive/test_index.py compares them). While a pull goes on, the
messages it downloads are handed to the workers as the bytes received
(:meth:`IndexAlongside.keep`), not read back from their files.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING

from axsync.archive.document import Doc, make_doc
from axsync.archive.locate import Locator
from axsync.errors import StoreError
from axsync.store import Store

if TYPE_CHECKING:
    from axsync.statedb import StateDB

log = logging.getLogger(__name__)

FTS_COLUMNS = ("subject", "sender", "recipients", "cc", "msgid", "filenames", "body")
DEFAULT_MAX_BYTES = 16 * 1024 * 1024
_BATCH_MESSAGES = 500  # messages per page (read and parsed as one piece of work)
_BATCH_CHARS = 20_000_000
#: Documents written per transaction when the workers have several pages ready: FTS5
#: writes a segment per transaction and merges segments as they pile up, so fewer, bigger
#: ones cost less (100k messages: main-process CPU of the pull's index writes, see
#: docs/performance.md).
_WRITE_MAX = 2000
#: Message bytes per page handed to a worker (a page holds fewer than _BATCH_MESSAGES
#: when its messages are big): what a worker returns, and the main process holds until it
#: writes it, stays bounded whatever the messages.
_PAGE_BYTES = 16 * 1024 * 1024
#: Pending messages from which parsing is spread over worker processes (below it, the
#: start-up of the workers costs more than it saves).
PARALLEL_MIN = 400
_MAX_WORKERS = 4
#: Pages in flight per worker while a pull goes on (parsing, or parsed and waiting to be
#: written in transactions of ``_WRITE_MAX`` documents); each holds the documents of up to
#: ``_BATCH_MESSAGES`` messages or ``_PAGE_BYTES`` of them.
ALONGSIDE_AHEAD = 3
#: Worker processes run at this niceness: parsing for the index gives way to the downloads
#: (and to the rest of the machine); the run's end waits for it either way.
NICE = 10
#: Downloaded messages kept in memory for the workers (:meth:`IndexAlongside.keep`): at
#: most this many bytes in all (more wait in their files), none bigger than
#: :data:`KEEP_ONE`. Reading a message back from its file (find, open, read, decompress)
#: cost 40 µs of a worker's CPU per message of the generated corpus.
KEEP_BYTES = 32 * 1024 * 1024
KEEP_ONE = 1024 * 1024

# Work comes from search_queue (state/0006 and 0007: StateDB.insert_message and triggers
# add every message whose document may not match it), so finding none costs nothing
# whatever the archive's size. CROSS JOIN keeps the queue as the outer loop.
_GONE = (
    "SELECT q.uid FROM search_queue q CROSS JOIN search_docs d ON d.uid = q.uid "
    "LEFT JOIN messages m ON m.uid = q.uid WHERE m.uid IS NULL OR m.state = 'tombstoned'"
)
_PENDING_FROM = (
    "FROM search_queue q CROSS JOIN messages m ON m.uid = q.uid "
    "WHERE m.state IN ('present', 'deleted') AND NOT EXISTS "
    "(SELECT 1 FROM search_docs d WHERE d.uid = m.uid AND d.sha256 = m.sha256)"
)
_PENDING = (
    "SELECT m.uid, m.dirname, m.base, m.filename, m.sha256, m.subject, m.from_addr, m.size "
    f"{_PENDING_FROM} AND q.uid > ? ORDER BY q.uid LIMIT ?"
)
# Queue entries whose document now matches the message: done.
_SETTLED = (
    "DELETE FROM search_queue WHERE uid IN (SELECT q.uid FROM search_queue q "
    "LEFT JOIN messages m ON m.uid = q.uid LEFT JOIN search_docs d ON d.uid = q.uid "
    "WHERE {where} CASE WHEN m.uid IS NULL OR m.state = 'tombstoned' THEN d.uid IS NULL "
    "ELSE d.sha256 IS NOT NULL AND d.sha256 = m.sha256 END)"
)


@dataclass(frozen=True, slots=True)
class _Pending:
    uid: int
    dirname: str
    base: str
    filename: str
    sha256: str
    subject: str
    from_addr: str
    size: int  # bytes of the message (uncompressed)


#: One message ready to be written: FTS column values, has_attachment, sent_date, refs,
#: and why the file could not be read (None: it was).
Entry = tuple[tuple[str, ...], bool, "int | None", list[str], "str | None"]


class _Kept:
    """Messages' bytes by (folder dirname, file name), with the sha256 they must have;
    at most ``limit`` bytes in all. Any thread may put and take."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.size = 0
        self.taken = 0  # how many were taken (with the right sha256)
        self._items: dict[tuple[str, str], tuple[str, bytes]] = {}
        self._lock = threading.Lock()

    def put(self, key: tuple[str, str], sha256: str, data: bytes) -> None:
        with self._lock:
            if key not in self._items and self.size + len(data) <= self.limit:
                self._items[key] = (sha256, data)
                self.size += len(data)

    def take(self, key: tuple[str, str], sha256: str) -> bytes | None:
        """The bytes kept under ``key`` (forgotten here), None if none or not these."""
        with self._lock:
            found = self._items.pop(key, None)
            if found is None:
                return None
            self.size -= len(found[1])
            if found[0] != sha256:
                return None
            self.taken += 1
        return found[1]

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self.size = 0


def default_workers() -> int:
    """Worker processes for parsing: the CPUs this process may use, at most 4."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    return max(1, min(_MAX_WORKERS, cpus))


class SearchIndex:
    """The search index of the archive whose state DB is ``db`` (opened read-write) and
    whose Maildir is ``store``. ``workers``: processes that parse messages when many are
    pending (default :func:`default_workers`; 1 parses in this process only)."""

    def __init__(self, db: StateDB, store: Store, *, max_bytes: int = DEFAULT_MAX_BYTES,
                 workers: int | None = None) -> None:
        self.db = db
        self.store = store
        self.max_bytes = max_bytes
        self.workers = default_workers() if workers is None else max(1, workers)

    def pending(self) -> int:
        """How many messages :meth:`catch_up` would index now."""
        return int(self.db.execute(f"SELECT count(*) {_PENDING_FROM}").fetchone()[0])

    def catch_up(self, limit: int | None = None,
                 progress: Callable[[int], None] | None = None) -> int:
        """Index up to ``limit`` (None: all) pending messages and drop the rows of gone
        ones; returns how many messages were indexed. ``progress(n)`` after each batch."""
        self._drop_gone()
        if self.workers > 1 and (limit is None or limit >= PARALLEL_MIN) \
                and self.pending() >= PARALLEL_MIN:
            pool = self._pool()
            if pool is not None:
                with pool:
                    done = self._catch_up_parallel(pool, limit, progress)
                self.settle()
                return done
        done, last = 0, 0
        with Locator(self.store) as locator:
            while limit is None or done < limit:
                want = _BATCH_MESSAGES if limit is None else min(_BATCH_MESSAGES, limit - done)
                rows = self._page(last, want)
                if not rows:
                    break
                batch: list[tuple[_Pending, Entry]] = []
                chars = 0
                for row in rows:
                    entry = _entry(*self._read(row, locator))
                    batch.append((row, entry))
                    chars += len(entry[0][-1])
                    if chars > _BATCH_CHARS:
                        break
                self._write(batch)
                done += len(batch)
                last = batch[-1][0].uid
                if progress is not None:
                    progress(len(batch))
        self.settle()
        return done

    def settle(self) -> None:
        """Clear the queue entries that need nothing (e.g. a state change that leaves the
        document as it is); the written pages cleared their own already."""
        with self.db.transaction():
            self.db.execute(_SETTLED.format(where=""))

    def _page(self, after: int, want: int) -> list[_Pending]:
        return [_Pending(*r) for r in self.db.execute(_PENDING, (after, want)).fetchall()]

    def _pool(self) -> ProcessPoolExecutor | None:
        try:
            # spawn, not fork: this process has threads (downloads, other accounts).
            return ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("spawn"),
                                       initializer=_worker_init, initargs=(os.getpid(),))
        except (OSError, ValueError) as exc:
            log.info("search index: no worker processes (%s); parsing here", exc)
            return None

    def _catch_up_parallel(self, pool: ProcessPoolExecutor, limit: int | None,
                           progress: Callable[[int], None] | None) -> int:
        """Pages parsed by the workers, up to two per worker ahead, written in order."""
        return _Feeder(self, pool, limit).run_out(progress)

    def alongside(self) -> IndexAlongside:
        """An indexer for a running pull (see :class:`IndexAlongside`)."""
        return IndexAlongside(self)

    def rebuild(self, progress: Callable[[int], None] | None = None) -> int:
        """Forget the whole index and index every message again."""
        with self.db.transaction():
            self.db.execute("DELETE FROM search_fts")
            self.db.execute("DELETE FROM search_docs")
            self.db.execute("DELETE FROM search_refs")
        count = self.catch_up(progress=progress)
        with self.db.transaction():
            self.db.execute("INSERT INTO search_fts(search_fts) VALUES ('optimize')")
        return count

    # ------------------------------------------------------------------ internals

    def _drop_gone(self) -> None:
        gone = [r[0] for r in self.db.execute(_GONE).fetchall()]
        for start in range(0, len(gone), 500):
            chunk = gone[start:start + 500]
            with self.db.transaction():
                self._delete(chunk)
                self._settle(chunk)
        if gone:
            log.info("search index: dropped %d removed messages", len(gone))

    def _delete(self, uids: list[int]) -> None:
        marks = ",".join("?" * len(uids))
        self.db.execute(f"DELETE FROM search_fts WHERE rowid IN ({marks})", uids)
        self.db.execute(f"DELETE FROM search_refs WHERE uid IN ({marks})", uids)
        self.db.execute(f"DELETE FROM search_docs WHERE uid IN ({marks})", uids)

    def _settle(self, uids: list[int]) -> None:
        marks = ",".join("?" * len(uids))
        self.db.execute(_SETTLED.format(where=f"q.uid IN ({marks}) AND"), uids)

    def _read(self, row: _Pending, locator: Locator) -> tuple[Doc, str | None]:
        return _read(locator, self.max_bytes, row)

    def _write(self, batch: list[tuple[_Pending, Entry]]) -> None:
        now = int(time.time())
        cols = ", ".join(FTS_COLUMNS)
        marks = ", ".join("?" * len(FTS_COLUMNS))
        with self.db.transaction():
            self._delete([row.uid for row, _ in batch])
            conn = self.db.conn
            conn.executemany(f"INSERT INTO search_fts (rowid, {cols}) VALUES (?, {marks})",
                             [(row.uid, *entry[0]) for row, entry in batch])
            conn.executemany(
                "INSERT INTO search_docs (uid, sha256, has_attachment, sent_date, error, "
                "indexed_at) VALUES (?, ?, ?, ?, ?, ?)",
                [(row.uid, row.sha256, int(has_attachment), sent_date, error, now)
                 for row, (_cols, has_attachment, sent_date, _refs, error) in batch])
            conn.executemany("INSERT OR IGNORE INTO search_refs (msgid, uid) VALUES (?, ?)",
                             [(ref, row.uid) for row, entry in batch for ref in entry[3]])
            # not those whose message changed since it was read: they stay queued
            self._settle([row.uid for row, _ in batch])


class _Feeder:
    """Keeps the worker pool busy with pending pages and writes finished ones in order."""

    def __init__(self, index: SearchIndex, pool: ProcessPoolExecutor, limit: int | None,
                 ahead: int = 2, kept: _Kept | None = None) -> None:
        self.index, self.pool, self.limit = index, pool, limit
        self.kept = kept  # messages' bytes handed over by the pull (not read back)
        self.ahead = ahead * index.workers  # pages in flight (parsing, or parsed and unwritten)
        self.inflight: deque[tuple[list[_Pending], Future[list[Entry]] | None]] = deque()
        self.queued = self.last = 0
        self.broken = False
        self.root, self.method = str(index.store.root), index.store.compression

    def fill(self, full_pages_only: bool = False) -> bool:
        """Submit pending pages until :attr:`ahead` are in flight (``full_pages_only``:
        leave a short last page for later, more rows are coming). True when it stopped
        for want of pending messages (not for room)."""
        while len(self.inflight) < self.ahead:
            want = _BATCH_MESSAGES if self.limit is None else min(_BATCH_MESSAGES, self.limit - self.queued)
            pending = self.index._page(self.last, want) if want > 0 else []
            rows = _by_size(pending, _PAGE_BYTES)
            # a page is full when it holds ``want`` messages or _PAGE_BYTES of them
            if not rows or (full_pages_only and len(rows) == len(pending) < want):
                return True
            self.last, self.queued = rows[-1].uid, self.queued + len(rows)
            fut = None
            if not self.broken:
                datas = None
                if self.kept is not None:
                    datas = [self.kept.take((r.dirname, r.filename), r.sha256) for r in rows]
                try:
                    fut = self.pool.submit(_parse_page, self.root, self.method, self.index.max_bytes,
                                           rows, datas)
                except Exception as exc:  # the pool is broken: parse here from now on
                    log.warning("search index: worker processes failed (%s); parsing here", exc)
                    self.broken = True
            self.inflight.append((rows, fut))
        return False

    def ready(self) -> int:
        """Messages of the parsed pages at the head of the queue (writable now)."""
        count = 0
        for rows, fut in self.inflight:
            if fut is not None and not fut.done():
                break
            count += len(rows)
        return count

    def starving(self) -> bool:
        """The queue is full and has fewer pages left to parse than there are workers."""
        if len(self.inflight) < self.ahead:
            return False
        unparsed = sum(1 for _rows, fut in self.inflight if fut is not None and not fut.done())
        return unparsed < self.index.workers

    def run_out(self, progress: Callable[[int], None] | None = None) -> int:
        """Hand out and write pages until none is pending; how many messages were written
        (``progress(n)`` after each page)."""
        done = 0
        while True:
            self.fill()
            n = self.write_next(block=True)
            if n is None:
                return done
            done += n
            if progress is not None:
                progress(n)

    def write_next(self, block: bool) -> int | None:
        """Write the oldest page if it is parsed (or wait for it when ``block``), with the
        pages after it that are parsed too, in order and in one transaction (up to
        ``_WRITE_MAX`` documents, or past ``_BATCH_CHARS`` of body text by at most one
        page); how many were written, or None when nothing is in flight (or, not
        blocking, the oldest page is not ready)."""
        if not self.inflight:
            return None
        _rows, fut = self.inflight[0]
        if fut is not None and not block and not fut.done():
            return None
        batch: list[tuple[_Pending, Entry]] = []
        chars = 0
        while self.inflight and len(batch) < _WRITE_MAX and chars <= _BATCH_CHARS:
            rows, fut = self.inflight[0]
            if batch and fut is not None and not fut.done():
                break
            self.inflight.popleft()
            entries = self._entries(rows, fut)
            batch.extend(zip(rows, entries, strict=True))
            chars += sum(len(entry[0][-1]) for entry in entries)
        self.index._write(batch)
        return len(batch)

    def _entries(self, rows: list[_Pending], fut: Future[list[Entry]] | None) -> list[Entry]:
        """The parsed page (waiting for its worker), or parsed here if a worker failed."""
        if fut is not None:
            try:
                return fut.result()
            except Exception as exc:  # a worker died (e.g. out of memory)
                log.warning("search index: a worker process failed (%s); parsing here", exc)
                self.broken = True
        with Locator(self.index.store) as locator:
            return [_entry(*self.index._read(row, locator)) for row in rows]


class IndexAlongside:
    """Parses what a running pull records, in worker processes, while the pull goes on
    (the pull's ``DownloadObserver``). Starts only for ``PARALLEL_MIN`` downloads or more
    and more than one CPU; writes finished pages when the pull says it recorded a batch
    (outside its transactions); :meth:`close` writes what is in flight and stops the
    workers. A failure only stops it: a later :meth:`SearchIndex.catch_up` does the rest."""

    def __init__(self, index: SearchIndex) -> None:
        self.index = index
        self.indexed = 0
        self._feeder: _Feeder | None = None
        self._kept = _Kept(KEEP_BYTES)
        self._failed = False
        # Every full page recorded so far is handed out: until the pull records more, a
        # tick has nothing to look up (it ticks five times a second).
        self._drained = False

    @property
    def running(self) -> bool:
        return self._feeder is not None

    def downloads_started(self, count: int) -> None:
        if self._feeder is not None or self._failed or self.index.workers < 2 or count < PARALLEL_MIN:
            return
        pool = self.index._pool()
        if pool is not None:
            self._feeder = _Feeder(self.index, pool, None, ahead=ALONGSIDE_AHEAD,
                                   kept=self._kept)

    def keep_limit(self) -> int:
        """The biggest message :meth:`keep` takes now (0: none, the workers are not
        running)."""
        return KEEP_ONE if self._feeder is not None else 0

    def keep(self, dirname: str, filename: str, sha256: str, data: bytes) -> None:
        """The bytes of a message the pull stored as ``filename`` in folder ``dirname``,
        for its document (any thread). Once its row is recorded, the workers get them
        instead of reading the file, unless more than :data:`KEEP_BYTES` are waiting."""
        if self._feeder is not None and len(data) <= KEEP_ONE:
            self._kept.put((dirname, filename), sha256, data)

    @property
    def from_memory(self) -> int:
        """Messages handed to the workers as the pull received them (not read back)."""
        return self._kept.taken

    def recorded(self) -> None:
        """Rows were recorded: :meth:`tick`, looking for new pages."""
        self._drained = False
        self.tick()

    def tick(self) -> None:
        """Write the parsed pages once they make a transaction of ``_WRITE_MAX`` documents
        (or a worker would be left without a page), hand out new full pages; never waits
        for a worker. The pull calls it after every batch of rows it records and every
        ``TICK_S`` seconds in between (outside its transactions): handed out only when
        rows were recorded (every 5000 rows or 5 s), the workers parsed 2000 messages per
        batch at most, and a 100k pull left four fifths of its index to do after the last
        download."""
        feeder = self._feeder
        if feeder is None:
            return
        try:
            while feeder.ready() >= _WRITE_MAX or feeder.starving():
                n = feeder.write_next(block=False)
                if n is None:
                    break
                self.indexed += n
            if not self._drained:
                self._drained = feeder.fill(full_pages_only=True)
        except Exception as exc:
            self._give_up(exc)

    def finish(self) -> None:
        """After the pull: index everything still pending with the workers already running
        (a catch-up would start new ones), then stop them."""
        feeder = self._feeder
        if feeder is None:
            return
        try:
            feeder.run_out(self._written)  # counted page by page: exact if it stops midway
        except Exception as exc:
            self._give_up(exc)
            return
        self.close()

    def _written(self, count: int) -> None:
        self.indexed += count

    def close(self) -> None:
        """Write what is in flight (waiting for it) and stop the workers."""
        feeder, self._feeder = self._feeder, None
        if feeder is None:
            return
        try:
            while (n := feeder.write_next(block=True)) is not None:
                self.indexed += n
        except Exception as exc:
            self._feeder = feeder
            self._give_up(exc)
        finally:
            self._kept.clear()
            feeder.pool.shutdown(wait=True, cancel_futures=True)

    def _give_up(self, exc: Exception) -> None:
        log.warning("search index alongside the pull stopped (%s); it catches up at the end", exc)
        self._failed = True
        self._kept.clear()
        feeder, self._feeder = self._feeder, None
        if feeder is not None:
            with contextlib.suppress(Exception):
                feeder.pool.shutdown(wait=True, cancel_futures=True)


def _read(locator: Locator, max_bytes: int, row: _Pending,
          data: bytes | None = None) -> tuple[Doc, str | None]:
    """The message's document, or one made from the DB row and the reason why the file
    could not be read (the message stays findable by subject and sender). ``data``: the
    message's bytes, already at hand (its file is not read)."""
    if data is not None:
        held = data
        return _document(row, lambda: held[:max_bytes])
    found = locator.find(row.dirname, row.base, row.filename)
    if found is None:
        return Doc(subject=row.subject, sender=row.from_addr), "file missing"
    return _document(row, lambda: locator.read(found, max_bytes))


def _document(row: _Pending, read: Callable[[], bytes]) -> tuple[Doc, str | None]:
    """:func:`_read`'s document of the bytes ``read()`` gives."""
    try:
        return make_doc(read()), None
    except (StoreError, OSError) as exc:
        log.warning("search index: cannot read message %d: %s", row.uid, exc)
        return Doc(subject=row.subject, sender=row.from_addr), f"unreadable: {exc}"
    except Exception as exc:  # a parser bug must not stop a pull: index what we know
        log.warning("search index: cannot parse message %d: %r", row.uid, exc)
        return Doc(subject=row.subject, sender=row.from_addr), f"unparsable: {exc!r}"


def _entry(doc: Doc, error: str | None) -> Entry:
    return doc.columns(), doc.has_attachment, doc.sent_date, doc.refs, error


def _worker_init(parent: int) -> None:
    """In a worker process: die with the parent. A run killed with SIGKILL (a timeout, the
    OOM killer) must not leave parsers behind: Linux delivers SIGKILL to this process when
    the thread that started it ends (PR_SET_PDEATHSIG); the engine always stops the
    workers before that thread goes on to anything else."""
    try:
        import ctypes
        import signal

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, int(signal.SIGKILL), 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux: the pipe to the parent still ends it
        pass
    if os.getppid() != parent:  # the parent died before the line above
        os._exit(0)
    with contextlib.suppress(OSError, AttributeError):
        os.nice(NICE)  # parsing yields the CPU to the downloads (and the rest of the machine)


def _by_size(rows: list[_Pending], budget: int) -> list[_Pending]:
    """The first of ``rows`` whose sizes add up to at most ``budget`` (at least one)."""
    total = 0
    for k, row in enumerate(rows):
        total += row.size
        if total > budget and k > 0:
            return rows[:k]
    return rows


def _parse_page(root: str, compression: str, max_bytes: int, rows: list[_Pending],
                datas: list[bytes | None] | None = None) -> list[Entry]:
    """In a worker process: read and parse one page of messages (no DB access); a
    message's bytes in ``datas`` (same order as ``rows``), when not None, are parsed
    instead of its file."""
    if datas is None:
        datas = [None] * len(rows)
    with Locator(Store(root, compression=compression)) as locator:
        return [_entry(*_read(locator, max_bytes, row, data))
                for row, data in zip(rows, datas, strict=True)]
