"""Read-only access to one archive: the state DB (opened read-only) and the Maildir.

Nothing here writes: not the DB (``mode=ro``, or ``immutable`` on read-only media), not a
message file. Files are found by their permanent base name, because Dovecot, mail clients
or the user may have renamed them (flags) since axsync last saw them.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from axsync.config import Account
from axsync.errors import StateError, StoreError, UsageError
from axsync.statedb import MessageRow, StateDB
from axsync.store import LocalFile, Store
from axsync.store.names import folder_path

SEARCH_MIGRATION = "0002_search"
_ALIVE = "state != 'tombstoned'"


_ROLE_RANK = {"inbox": 0, "drafts": 1, "sent": 2, "archive": 3, "junk": 4, "trash": 5}
_ROLE_NAMES = {
    "inbox": "inbox", "drafts": "drafts", "draft": "drafts", "sent": "sent",
    "sent items": "sent", "sent messages": "sent", "sent mail": "sent", "archive": "archive",
    "spam": "junk", "junk": "junk", "junk e-mail": "junk", "trash": "trash",
    "deleted items": "trash", "deleted messages": "trash", "bin": "trash",
}


@dataclass(frozen=True, slots=True)
class FolderInfo:
    dirname: str
    path: tuple[str, ...]
    total: int = 0
    unread: int = 0
    role: str = ""

    @property
    def name(self) -> str:
        return "/".join(self.path)

    def sort_key(self) -> tuple[int, list[str]]:
        """INBOX, Drafts, Sent, Archive, Junk, Trash (each with its sub-folders), then the
        rest by name."""
        role = self.role if len(self.path) == 1 else ""
        if not role and self.path:
            role = _ROLE_NAMES.get(self.path[0].casefold(), "")
        rank = 0 if self.dirname == "" else _ROLE_RANK.get(role, 6)
        return (rank, [c.casefold() for c in self.path])


def _connect(path: Path, immutable: bool, shared: bool) -> StateDB:
    mode = "mode=ro&immutable=1" if immutable else "mode=ro"
    conn = sqlite3.connect(f"{path.absolute().as_uri()}?{mode}", uri=True,
                           check_same_thread=not shared)
    conn.execute("PRAGMA busy_timeout = 10000")
    return StateDB(conn, path)


def open_db_readonly(path: Path, *, shared: bool = False) -> StateDB:
    """The state DB opened read-only (``StateDB.open`` checks its schema). On media where
    SQLite cannot even create its WAL index (a read-only copy), ``immutable`` mode.
    ``shared``: the connection may be used from another thread than this one (one at a
    time: the browse UI serves requests one after another on its event loop)."""
    try:
        db = StateDB.open(path, readonly=True)
    except StateError as exc:
        if not path.exists() or "migrat" in str(exc) or "newer" in str(exc):
            raise
        try:
            db = _connect(path, True, shared)
            applied = db.applied_migrations()
        except (sqlite3.Error, StateError):
            raise exc from None
        if SEARCH_MIGRATION not in applied:
            raise StateError(f"state DB {path} needs migrating; run `axsync reindex` once") from None
        return db
    if shared:
        db.close()
        db = _connect(path, False, True)
    return db


class Archive:
    """An archive opened for reading: ``db`` (read-only StateDB) and ``store``."""

    def __init__(self, db: StateDB, store: Store) -> None:
        self.db = db
        self.store = store
        self._folders: dict[str, tuple[str, ...]] | None = None
        self._roles: dict[str, str] = {}
        self._labels: dict[str, str] | None = None
        self._counts: tuple[int, list[FolderInfo]] | None = None

    @classmethod
    def open(cls, account: Account, *, shared: bool = False) -> Archive:
        if not account.maildir.is_dir():
            raise UsageError(f"no archive at {account.maildir} (account {account.name})")
        return cls(open_db_readonly(account.state_path, shared=shared), Store(account.maildir))

    def close(self) -> None:
        self.db.close()

    # ------------------------------------------------------------------ folders

    def _data_version(self) -> int:
        return int(self.db.execute("PRAGMA data_version").fetchone()[0])

    def folder_paths(self) -> dict[str, tuple[str, ...]]:
        """dirname → folder path, for every folder the DB or the disk knows."""
        if self._folders is None:
            paths: dict[str, tuple[str, ...]] = {}
            known: dict[str, tuple[str, ...]] = {}  # also folders gone from the server
            for f in self.db.folders():
                known.setdefault(f.dirname, f.path)
                if f.state == "present" and not f.excluded:
                    paths.setdefault(f.dirname, f.path)
                    self._roles[f.dirname] = f.role
            with_mail = self.db.execute(
                f"SELECT DISTINCT dirname FROM messages WHERE {_ALIVE}").fetchall()
            try:
                on_disk = self.store.folders()
            except StoreError:
                on_disk = []
            for dirname in [r[0] for r in with_mail] + on_disk:
                if dirname not in paths:
                    paths[dirname] = known.get(dirname) or self._path_from_disk(dirname)
            self._folders = paths
        return self._folders

    def _path_from_disk(self, dirname: str) -> tuple[str, ...]:
        try:
            return self.store.folder_path_of(dirname, strict=False)
        except StoreError:
            try:
                return folder_path(dirname, strict=False)
            except StoreError:
                return (dirname,)

    def folder_name(self, dirname: str) -> str:
        path = self.folder_paths().get(dirname)
        return "/".join(path) if path else self._fallback_name(dirname)

    def _fallback_name(self, dirname: str) -> str:
        return "/".join(self._path_from_disk(dirname))

    def dirnames_for(self, value: str) -> list[str]:
        """Folder directories a user-given folder path names: exact first, else ignoring
        case; ``INBOX`` is the root whatever its case; ``Path/*`` adds sub-folders."""
        subtree = value.endswith("/*")
        value = value[:-2] if subtree else value
        wanted = value.strip("/")
        paths = self.folder_paths()

        def match(fold: bool) -> list[str]:
            key = wanted.casefold() if fold else wanted
            out = []
            for dirname, path in paths.items():
                name = "/".join(path)
                name = name.casefold() if fold else name
                if name == key or (subtree and name.startswith(key + "/")):
                    out.append(dirname)
            return out

        if wanted.casefold() == "inbox" and not subtree:
            return [""]
        return sorted(match(False) or match(True))

    def folders(self) -> list[FolderInfo]:
        """Every folder with its message and unread counts (cached until the DB changes)."""
        version = self._data_version()
        if self._counts is not None and self._counts[0] == version:
            return self._counts[1]
        counts = {
            d: (t, u) for d, t, u in self.db.execute(
                "SELECT dirname, count(*), sum(instr(flags, 'S') = 0) FROM messages "
                f"WHERE {_ALIVE} GROUP BY dirname"
            ).fetchall()
        }
        self._folders = None
        infos = [
            FolderInfo(d, p, *counts.get(d, (0, 0)), role=self._roles.get(d, ""))
            for d, p in self.folder_paths().items()
        ]
        infos.sort(key=FolderInfo.sort_key)
        self._counts = (version, infos)
        return infos

    # ------------------------------------------------------------------ labels

    def labels(self) -> dict[str, str]:
        """label id → name (deleted labels too: old mail still carries them)."""
        if self._labels is None:
            self._labels = {i: n for i, (n, _atom) in self.db.all_labels().items()}
        return self._labels

    def label_names(self, ids: Iterable[str]) -> list[str]:
        names = self.labels()
        return sorted((names.get(i, i) for i in ids), key=str.casefold)

    def label_ids_for(self, value: str) -> list[str]:
        """Ids of the labels called ``value`` (ignoring case), or whose id or atom it is."""
        key = value.casefold()
        rows = self.db.execute("SELECT id, name, atom FROM labels").fetchall()
        return sorted(i for i, n, a in rows if key in (n.casefold(), a.casefold(), i.casefold()))

    # ------------------------------------------------------------------ messages

    def resolve(self, ref: str) -> MessageRow:
        """The message a MAILREF names: the archive id (digits) or a server mail id."""
        ref = ref.strip()
        row = None
        if ref.isdigit() and len(ref) < 19:
            row = self.db.message_by_uid(int(ref))
        if row is None and ref:
            row = self.db.message_by_mail_id(ref)
        if row is None or row.state == "tombstoned":
            what = "was removed from the archive" if row is not None else "is not in the archive"
            raise UsageError(f"message {ref!r} {what}")
        return row

    def message(self, uid: int) -> MessageRow | None:
        row = self.db.message_by_uid(uid)
        return row if row is not None and row.state != "tombstoned" else None

    def rows(self, where: str = "1", params: Iterable[object] = ()) -> Iterator[MessageRow]:
        return self.db.messages_where(f"({where}) AND {_ALIVE}", list(params))

    def find_file(self, row: MessageRow) -> LocalFile | None:
        """Where the message's file is now (its flags in the name may have changed)."""
        try:
            return self.store.locate(row.dirname, row.base, hint=row.filename)
        except StoreError:
            return None

    def open_raw(self, row: MessageRow) -> BinaryIO:
        """The uncompressed message bytes as a stream. StoreError if the file is gone."""
        found = self.find_file(row)
        if found is None:
            raise StoreError(
                f"the file of message {row.uid} ({row.dirname or 'INBOX'}/{row.base}) is "
                "missing from the maildir", missing=True,
            )
        return self.store.open_message(found.dirname, found.subdir, found.filename)

    def read_raw(self, row: MessageRow, limit: int | None = None) -> bytes:
        with self.open_raw(row) as stream:
            try:
                return stream.read() if limit is None else stream.read(limit)
            except OSError as exc:
                raise StoreError(f"cannot read message {row.uid}: {exc}") from exc


def iso_date(ts: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))

