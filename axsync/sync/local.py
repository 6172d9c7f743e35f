"""What changed in the archive since the last agreed state: a directory scan against the DB.

Only directory listings are read, except for files that have no state row: those are hashed
once, so a file Dovecot re-wrote under its own name (IMAP MOVE/COPY with hardlinks, dsync)
is recognised by content and adopted instead of being uploaded or lost.

Memory stays flat whatever the archive size: the listing is streamed into a TEMP table of
the state DB connection (batches of ``BATCH`` rows) and compared with ``messages`` by SQL
joins read through cursors. Only the results (edits, unknown files, adoptions: what
changed) are held in Python.
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from axsync.errors import AxsyncError, StateError
from axsync.statedb import _MESSAGE_COLUMNS, MessageRow, StateDB, _message
from axsync.store import LocalFile, Store
from axsync.store.keywords import atom_to_label, keywords_of, read_keywords

SYSTEM = frozenset("DFRST")
PUSHABLE = frozenset("SF")  # the flags the REST API can set (isUnread, isFlagged)


@dataclass(frozen=True, slots=True)
class LocalState:
    """What a file name says: server flag letters, and keyword atoms."""

    letters: str
    atoms: tuple[str, ...]


@dataclass
class LocalView:
    """The archive's message files, plus a cache of per-folder keyword maps (small: one
    per folder). Nothing is listed here: :func:`detect` streams :meth:`files` into the
    state DB, so no per-message object outlives its comparison."""

    store: Store
    _keywords: dict[str, dict[int, str]] = field(default_factory=dict)

    @classmethod
    def scan(cls, store: Store) -> LocalView:
        """A view of ``store`` for :func:`detect` (which does the listing, once)."""
        return cls(store)

    def files(self) -> Iterator[LocalFile]:
        """Every message file, from directory listings only, one at a time. Several files
        may carry one base: Dovecot's COPY to another folder links the file there under
        the same name (maildir_copy_with_hardlinks)."""
        return self.store.scan()

    def keywords(self, dirname: str) -> dict[int, str]:
        mapping = self._keywords.get(dirname)
        if mapping is None:
            folder = self.store.root / dirname if dirname else self.store.root
            mapping = read_keywords(Path(folder))
            self._keywords[dirname] = mapping
        return mapping

    def state_of(self, f: LocalFile) -> LocalState:
        info = f.filename.rsplit(":2,", 1)[1] if ":2," in f.filename else ""
        letters = "".join(sorted(set(info) & SYSTEM))
        atoms = tuple(keywords_of(info, self.keywords(f.dirname)))
        return LocalState(letters, atoms)

    def forget_keywords(self, dirname: str) -> None:
        self._keywords.pop(dirname, None)


def fold_labels(by_atom: Mapping[str, str]) -> dict[str, str]:
    """Folded label name -> label id, for :func:`ids_for`."""
    return {atom_to_label(a).casefold(): i for a, i in by_atom.items()}


def ids_for(atoms: Iterable[str], folded: Mapping[str, str]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(known label ids, atoms with no label yet) against :func:`fold_labels`' index."""
    ids, unknown = [], []
    for atom in atoms:
        lid = folded.get(atom_to_label(atom).casefold())
        if lid is None:
            unknown.append(atom)
        else:
            ids.append(lid)
    return tuple(sorted(set(ids))), tuple(sorted(set(unknown)))


def dir_fingerprint(store: Store) -> str:
    """A digest of every folder's ``cur/`` and ``new/`` modification times (nanoseconds)
    and of the set of folders. Renaming, adding or deleting a message file changes it; so
    does Dovecot moving mail. O(folders) ``stat`` calls, no listing of messages."""
    h = hashlib.sha256()
    for dirname in sorted(store.folders()):
        h.update(dirname.encode("utf-8", "surrogateescape") + b"\0")
        for sub in ("cur", "new"):
            try:
                h.update(str(store.path_of(dirname, sub, "x").parent.stat().st_mtime_ns).encode())
            except (OSError, AxsyncError):
                h.update(b"-")
            h.update(b"\0")
    return h.hexdigest()


def label_ids_for(atoms: Iterable[str], by_atom: Mapping[str, str]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(known label ids, atoms with no label yet). A keyword stands for the label whose
    name it decodes to (``atom_to_label``), compared case-insensitively like IMAP keywords
    and Axigen labels; so a keyword a client spelled differently (``~41bc`` for ``Abc``)
    still finds its label."""
    return ids_for(atoms, fold_labels(by_atom))


@dataclass(frozen=True, slots=True)
class Edit:
    """One archived message whose file no longer matches its state row."""

    row: MessageRow
    file: LocalFile | None  # None: deleted locally
    letters: str = ""
    label_ids: tuple[str, ...] = ()
    new_atoms: tuple[str, ...] = ()  # keywords that are not labels yet

    @property
    def differs(self) -> bool:
        """Something the server must still be told (not a mere rename of the file)."""
        if self.file is None:
            return True
        return (self.file.dirname != self.row.dirname
                or set(self.letters) & PUSHABLE != set(self.row.flags) & PUSHABLE
                or self.label_ids != tuple(sorted(self.row.label_ids)) or bool(self.new_atoms))


@dataclass
class LocalChanges:
    edits: list[Edit] = field(default_factory=list)
    unknown: list[LocalFile] = field(default_factory=list)  # no state row, no content match
    adopted: list[tuple[MessageRow, LocalFile]] = field(default_factory=list)


BATCH = 2000  # listing rows per executemany (and per TEMP-table transaction)
FETCH = 1000  # rows per cursor fetch

# The listing of one detect() call, in scan order (``seq``). Dropped when detect() ends.
_FILES_TABLE = """
CREATE TEMP TABLE lv_files (
    seq INTEGER PRIMARY KEY, base TEXT NOT NULL, dirname TEXT NOT NULL, subdir TEXT NOT NULL,
    filename TEXT NOT NULL, flags TEXT NOT NULL, size INTEGER, vsize INTEGER
)"""
_FILE_COLUMNS = "f.dirname, f.subdir, f.filename, f.base, f.flags, f.size, f.vsize"
_ROW_COLUMNS = ", ".join(f"m.{c.strip()}" for c in _MESSAGE_COLUMNS.split(","))
_NCOLS = len(_MESSAGE_COLUMNS.split(","))

# Every present row with the files carrying its base (none: f.* NULL), rows by uid, files
# in scan order. The LEFT JOIN keeps ``messages`` as the outer loop: read in uid (rowid)
# order, each base looked up in the index, no sort.
_ROWS_WITH_FILES = f"""
SELECT {_ROW_COLUMNS}, {_FILE_COLUMNS}
FROM messages m LEFT JOIN lv_files f ON f.base = m.base
WHERE m.state = 'present'
ORDER BY m.uid, f.seq"""

# Files whose base has no row, or only a tombstoned one (no server copy either), in the order
# the in-memory version reported them: first files of each base in scan order, then the
# further files (copies) grouped by base in the order their first copy was listed.
_STRAYS = f"""
WITH s AS (
    SELECT f.*, row_number() OVER win AS rn, nth_value(f.seq, 2) OVER win AS second
    FROM lv_files f
    WHERE NOT EXISTS (SELECT 1 FROM messages m WHERE m.base = f.base AND m.state != 'tombstoned')
    WINDOW win AS (PARTITION BY f.base ORDER BY f.seq
                   ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING)
)
SELECT {_FILE_COLUMNS} FROM s AS f
ORDER BY f.rn > 1, CASE WHEN f.rn = 1 THEN f.seq ELSE f.second END, f.seq"""


def _local_file(values: Sequence[Any]) -> LocalFile:
    dirname, subdir, filename, base, flags, size, vsize = values
    return LocalFile(dirname, subdir, filename, base, flags, size, vsize)


def _fetch(cur: sqlite3.Cursor) -> Iterator[Sequence[Any]]:
    try:
        while rows := cur.fetchmany(FETCH):
            yield from rows
    except sqlite3.Error as exc:
        raise StateError(f"state DB query failed: {exc}") from exc


def _load(db: StateDB, files: Iterable[LocalFile]) -> None:
    """Stream the listing into ``lv_files``, ``BATCH`` rows per transaction."""
    db.execute("DROP TABLE IF EXISTS temp.lv_files")
    db.execute(_FILES_TABLE)
    insert = "INSERT INTO lv_files (base, dirname, subdir, filename, flags, size, vsize) VALUES (?,?,?,?,?,?,?)"
    batch: list[tuple[object, ...]] = []

    def flush() -> None:
        try:
            db.conn.execute("SAVEPOINT lv_load")
            try:
                db.conn.executemany(insert, batch)
            except BaseException:
                db.conn.execute("ROLLBACK TO lv_load")
                db.conn.execute("RELEASE lv_load")
                raise
            db.conn.execute("RELEASE lv_load")
        except sqlite3.Error as exc:
            raise StateError(f"state DB write failed: {exc}") from exc
        batch.clear()

    for f in files:
        batch.append((f.base, f.dirname, f.subdir, f.filename, f.flags, f.size, f.vsize))
        if len(batch) >= BATCH:
            flush()
    if batch:
        flush()
    # Indexed after loading (cheaper than maintaining it row by row).
    db.execute("CREATE INDEX temp.lv_files_base ON lv_files(base, seq)")


def detect(db: StateDB, view: LocalView, by_atom: Mapping[str, str]) -> LocalChanges:
    """Compare every present row with the file that carries its base name.

    Several files with one base (a copy made by Dovecot into another folder): the one in
    the row's folder is the message, the others are copies with no server mail of their
    own (kept and reported like any unknown file). A row without a file may be a file
    another program re-wrote under a new name: adopted when its content matches.

    The listing goes to a TEMP table and the comparison is done by SQL joins over cursors,
    so memory does not grow with the archive (only with what changed)."""
    try:
        _load(db, view.files())
        return _detect(db, view, fold_labels(by_atom))
    finally:
        db.execute("DROP TABLE IF EXISTS temp.lv_files")


def _detect(db: StateDB, view: LocalView, folded: Mapping[str, str]) -> LocalChanges:
    out = LocalChanges()
    missing: dict[int, MessageRow] = {}  # uid -> row whose file is gone, in uid order
    row: MessageRow | None = None
    candidates: list[LocalFile] = []

    def settle() -> None:
        if row is None:
            return
        if not candidates:
            missing[row.uid] = row
            return
        f = next((c for c in candidates if c.dirname == row.dirname), candidates[0])
        out.unknown.extend(c for c in candidates if c is not f)
        _compare(row, f, view, folded, out)

    for values in _fetch(db.execute(_ROWS_WITH_FILES)):
        uid = values[0]
        if row is None or row.uid != uid:
            settle()
            row, candidates = _message(values[:_NCOLS]), []
        if values[_NCOLS] is not None:  # f.dirname: a file carries the row's base
            candidates.append(_local_file(values[_NCOLS:]))
    settle()
    # A file whose row is tombstoned (its mail is gone from the server) has no server copy
    # either: it is reported with the unknown files, never silently ignored.
    strays = [_local_file(v) for v in _fetch(db.execute(_STRAYS))]
    if strays and missing:
        by_content: dict[tuple[str, int], list[MessageRow]] = {}
        for r in missing.values():
            by_content.setdefault((r.sha256, r.size), []).append(r)
        for f in strays:
            try:
                digest, size, _vsize = view.store.digest(f.dirname, f.subdir, f.filename)
            except (AxsyncError, OSError, ValueError, EOFError):
                out.unknown.append(f)
                continue
            rows = by_content.get((digest, size))
            if not rows:
                out.unknown.append(f)
                continue
            match = next((r for r in rows if r.dirname == f.dirname), rows[0])
            rows.remove(match)
            out.adopted.append((match, f))
            del missing[match.uid]
            _compare(match, f, view, folded, out, force=True)
    else:
        out.unknown.extend(strays)
    for r in missing.values():
        out.edits.append(Edit(r, None))
    return out


def _compare(row: MessageRow, f: LocalFile, view: LocalView, folded: Mapping[str, str],
             out: LocalChanges, force: bool = False) -> None:
    """An Edit when the file differs from the row in anything that can be pushed (S, F,
    labels, folder), or was merely renamed (its new name is then recorded).

    The file name alone cannot tell: a pull that merged a server change with a local one
    records the merged name while the row keeps the server's flags until the push."""
    state = view.state_of(f)
    ids, new_atoms = ids_for(state.atoms, folded)
    differs = (f.dirname != row.dirname or set(state.letters) & PUSHABLE != set(row.flags) & PUSHABLE
               or ids != tuple(sorted(row.label_ids)) or bool(new_atoms))
    if force or differs or f.filename != row.filename:
        out.edits.append(Edit(row, f, state.letters, ids, new_atoms))
