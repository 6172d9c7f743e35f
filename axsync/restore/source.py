"""What to restore, from the state DB and the archive: :func:`load_source`.

Without ``as_of``: every message whose state is ``present``, in its current folder with
its current flags and labels. With ``as_of`` (Unix seconds): each message as the newest
``message_history`` row at or before that instant describes it — messages first seen
later are left out, messages gone from the server by then are left out, and messages
deleted or tombstoned since are included if their file is still in the archive (backup
mode keeps it); a tombstoned message whose file is gone is *unrestorable* and reported.

History has no refwFlags column: ``$Forwarded`` comes from the message's current refw.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field

from axsync.errors import StoreError
from axsync.restore import wire
from axsync.restore.plan import MatchKey, SourceItem, imap_flags
from axsync.statedb import MessageRow, StateDB
from axsync.store import LocalFile, Store

HEAD_BYTES = 64 * 1024
"""How much of a message without a recorded Message-ID is read to find one."""


@dataclass(frozen=True, slots=True)
class _View:
    """A message's folder, flags, labels and state at the chosen instant."""

    folder_id: str
    dirname: str
    flags: str
    label_ids: tuple[str, ...]
    state: str


@dataclass(slots=True)
class Source:
    items: list[SourceItem] = field(default_factory=list)
    problems: list[dict[str, str]] = field(default_factory=list)
    unrestorable: int = 0


class FileIndex:
    """Finds a message file by folder and base, listing each folder at most once; a file
    moved to another folder locally (not yet synced) is found by a full scan."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._folders: dict[str, dict[str, LocalFile]] = {}
        self._everywhere: dict[str, LocalFile] | None = None

    def _folder(self, dirname: str) -> dict[str, LocalFile]:
        if dirname not in self._folders:
            try:
                self._folders[dirname] = {f.base: f for f in self.store.scan_folder(dirname)}
            except StoreError:
                self._folders[dirname] = {}
        return self._folders[dirname]

    def find(self, dirname: str, base: str) -> LocalFile | None:
        found = self._folder(dirname).get(base)
        if found is not None:
            return found
        if self._everywhere is None:
            self._everywhere = {}
            for name in self.store.folders():
                self._everywhere.update(self._folder(name))
        return self._everywhere.get(base)


def history_at(db: StateDB, as_of: int) -> dict[int, _View]:
    """uid → the newest history row at or before ``as_of`` (ties: the later row)."""
    cur = db.execute(
        "SELECT h.uid, h.folder_id, h.dirname, h.flags, h.label_ids, h.state "
        "FROM message_history h JOIN (SELECT uid, max(rowid) AS r FROM message_history "
        "WHERE at <= ? GROUP BY uid) last ON h.rowid = last.r",
        (as_of,),
    )
    return {int(uid): _View(fid, dirname, flags, tuple(json.loads(labels)), state)
            for uid, fid, dirname, flags, labels, state in cur.fetchall()}


def _views(db: StateDB, as_of: int | None) -> Iterator[tuple[MessageRow, _View]]:
    if as_of is None:
        for row in db.messages_where("state = 'present'"):
            yield row, _View(row.folder_id, row.dirname, row.flags, row.label_ids, row.state)
        return
    then = history_at(db, as_of)
    for row in db.messages_where("uid IN (SELECT DISTINCT uid FROM message_history WHERE at <= ?)",
                                 (as_of,)):
        view = then.get(row.uid)
        if view is not None and view.state == "present":
            yield row, view


def folder_matches(path: tuple[str, ...], wanted: str) -> bool:
    """``--folder``: the server path with ``/`` between levels; INBOX in any case."""
    joined = "/".join(path)
    want = wanted.strip("/")
    return joined == want or (joined.upper() == "INBOX" and want.upper() == "INBOX")


def load_source(db: StateDB, store: Store, *, as_of: int | None = None,
                folder: str | None = None, keep_deleted: bool = False) -> Source:
    """The messages to restore with their target folder path, flags and match key."""
    paths = {f.id: f.path for f in db.folders()}
    names = {lid: name for lid, (name, _atom) in db.all_labels().items()}
    files = FileIndex(store)
    out = Source()
    for row, view in _views(db, as_of):
        what = f"uid {row.uid} ({row.subject[:60]!r})"
        path = paths.get(view.folder_id) or _path_of(store, view.dirname)
        if path is None:
            out.problems.append({"item": what, "error": f"unknown folder {view.dirname!r}"})
            continue
        if folder is not None and not folder_matches(path, folder):
            continue
        found = files.find(row.dirname, row.base)
        if found is None:
            if row.state == "tombstoned":
                out.unrestorable += 1
                error = "unrestorable: deleted on the server and its file removed (mirror mode)"
            else:
                error = f"archived file missing from {row.dirname or 'INBOX'}"
            out.problems.append({"item": what, "error": error})
            continue
        flags = imap_flags(view.flags, row.refw,
                           [names[i] for i in view.label_ids if i in names],
                           keep_deleted=keep_deleted)
        try:
            key = _key(store, found, row)
        except StoreError as exc:
            out.problems.append({"item": what, "error": f"cannot read archived file: {exc}"})
            continue
        out.items.append(SourceItem(
            uid=row.uid, folder=path, flags=flags, internal_date=row.internal_date, key=key,
            size=row.vsize, raw_size=row.size, sha256=row.sha256, dirname=found.dirname,
            base=found.base, filename=found.filename))
    return out


def _path_of(store: Store, dirname: str) -> tuple[str, ...] | None:
    try:
        return store.folder_path_of(dirname, strict=False)
    except StoreError:
        return None


def _key(store: Store, found: LocalFile, row: MessageRow) -> MatchKey:
    msgid = wire.normalize_message_id(row.message_id)
    if msgid:
        return ("msgid", msgid, row.vsize)
    with store.open_message(found.dirname, found.subdir, found.filename) as fh:
        head = fh.read(HEAD_BYTES)
    msgid = wire.message_id_of(head)
    if msgid:
        return ("msgid", msgid, row.vsize)
    return ("fp", wire.fingerprint(row.vsize, row.internal_date, wire.crlf(head)), row.vsize)
