"""The offline search index: SQLite FTS5 tables in the state DB (``state/0002_search.sql``).

:meth:`SearchIndex.catch_up` indexes every message (present, or deleted on the server but
kept) that is not indexed yet or whose content changed, and drops the rows of messages
that are gone (tombstoned). It streams: messages are read one at a time (at most
``max_bytes`` of each: text comes first in mail, attachments after) and written in
batches, each its own transaction, so memory stays bounded and an interrupted run keeps
what it did. The sync engine calls it at the end of every pull; ``axsync reindex`` calls
:meth:`SearchIndex.rebuild`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from axsync.archive.access import Locator
from axsync.archive.document import Doc, make_doc
from axsync.errors import StoreError
from axsync.statedb import StateDB
from axsync.store import Store

log = logging.getLogger(__name__)

FTS_COLUMNS = ("subject", "sender", "recipients", "cc", "msgid", "filenames", "body")
DEFAULT_MAX_BYTES = 16 * 1024 * 1024
_BATCH_MESSAGES = 200
_BATCH_CHARS = 20_000_000

_GONE = (
    "SELECT d.uid FROM search_docs d LEFT JOIN messages m ON m.uid = d.uid "
    "WHERE m.uid IS NULL OR m.state = 'tombstoned'"
)
_PENDING = (
    "SELECT m.uid, m.dirname, m.base, m.filename, m.sha256, m.subject, m.from_addr "
    "FROM messages m WHERE m.uid > ? AND m.state IN ('present', 'deleted') AND NOT EXISTS "
    "(SELECT 1 FROM search_docs d WHERE d.uid = m.uid AND d.sha256 = m.sha256) "
    "ORDER BY m.uid LIMIT ?"
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


class SearchIndex:
    """The search index of the archive whose state DB is ``db`` (opened read-write) and
    whose Maildir is ``store``."""

    def __init__(self, db: StateDB, store: Store, *, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.db = db
        self.store = store
        self.max_bytes = max_bytes

    def pending(self) -> int:
        """How many messages :meth:`catch_up` would index now."""
        return int(self.db.execute(
            "SELECT count(*) FROM messages m WHERE m.state IN ('present', 'deleted') AND NOT "
            "EXISTS (SELECT 1 FROM search_docs d WHERE d.uid = m.uid AND d.sha256 = m.sha256)"
        ).fetchone()[0])

    def catch_up(self, limit: int | None = None,
                 progress: Callable[[int], None] | None = None) -> int:
        """Index up to ``limit`` (None: all) pending messages and drop the rows of gone
        ones; returns how many messages were indexed. ``progress(n)`` after each batch."""
        self._drop_gone()
        locator = Locator(self.store)
        done, last = 0, 0
        while limit is None or done < limit:
            want = _BATCH_MESSAGES if limit is None else min(_BATCH_MESSAGES, limit - done)
            rows = [_Pending(*r) for r in self.db.execute(_PENDING, (last, want)).fetchall()]
            if not rows:
                break
            batch: list[tuple[_Pending, Doc, str | None]] = []
            chars = 0
            for row in rows:
                doc, error = self._read(row, locator)
                batch.append((row, doc, error))
                chars += len(doc.body)
                if chars > _BATCH_CHARS:
                    break
            self._write(batch)
            done += len(batch)
            last = batch[-1][0].uid
            if progress is not None:
                progress(len(batch))
        return done

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
        if gone:
            log.info("search index: dropped %d removed messages", len(gone))

    def _delete(self, uids: list[int]) -> None:
        marks = ",".join("?" * len(uids))
        self.db.execute(f"DELETE FROM search_fts WHERE rowid IN ({marks})", uids)
        self.db.execute(f"DELETE FROM search_refs WHERE uid IN ({marks})", uids)
        self.db.execute(f"DELETE FROM search_docs WHERE uid IN ({marks})", uids)

    def _read(self, row: _Pending, locator: Locator) -> tuple[Doc, str | None]:
        """The message's document, or one made from the DB row and the reason why the
        file could not be read (the message stays findable by subject and sender)."""
        found = locator.find(row.dirname, row.base, row.filename)
        if found is None:
            return Doc(subject=row.subject, sender=row.from_addr), "file missing"
        try:
            with self.store.open_message(found.dirname, found.subdir, found.filename) as stream:
                data = stream.read(self.max_bytes)
            return make_doc(data), None
        except (StoreError, OSError) as exc:
            log.warning("search index: cannot read message %d: %s", row.uid, exc)
            return Doc(subject=row.subject, sender=row.from_addr), f"unreadable: {exc}"
        except Exception as exc:  # a parser bug must not stop a pull: index what we know
            log.warning("search index: cannot parse message %d: %r", row.uid, exc)
            return Doc(subject=row.subject, sender=row.from_addr), f"unparsable: {exc!r}"

    def _write(self, batch: list[tuple[_Pending, Doc, str | None]]) -> None:
        now = int(time.time())
        cols = ", ".join(FTS_COLUMNS)
        marks = ", ".join("?" * len(FTS_COLUMNS))
        with self.db.transaction():
            self._delete([row.uid for row, _, _ in batch])
            for row, doc, error in batch:
                self.db.execute(
                    f"INSERT INTO search_fts (rowid, {cols}) VALUES (?, {marks})",
                    (row.uid, *doc.columns()),
                )
                self.db.execute(
                    "INSERT INTO search_docs (uid, sha256, has_attachment, sent_date, error, "
                    "indexed_at) VALUES (?, ?, ?, ?, ?, ?)",
                    (row.uid, row.sha256, int(doc.has_attachment), doc.sent_date, error, now),
                )
                self.db.conn.executemany(
                    "INSERT OR IGNORE INTO search_refs (msgid, uid) VALUES (?, ?)",
                    [(ref, row.uid) for ref in doc.refs],
                )
