"""The state DB room: what axsync knows about one account, in SQLite (sqlite-utils, WAL).

The schema lives in numbered SQL files (``state/NNNN_name.sql`` in the source tree, shipped in
the wheel as ``axsync/_state``). ``StateDB.open`` applies the pending ones (sqlite-utils
``Migrations``), each in one transaction together with its record; a database that has a
migration this axsync does not know was written by a newer axsync and is refused
(``SchemaTooNew``). sqlite-utils is imported only when a migration is pending: finding out
that none is reads its table of applied migrations, and every run is spared the ~40 ms
that importing sqlite-utils takes (most of a run with nothing to do is start-up).

One connection, used by one thread (the sync engine's main thread): downloads run in worker
threads, but every write goes through here.
"""

from __future__ import annotations

import functools
import json
import os
import sqlite3
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from axsync.errors import SchemaTooNew, StateError

if TYPE_CHECKING:
    from sqlite_utils import Database
    from sqlite_utils.migrations import Migrations

MIGRATION_SET = "axsync"
#: Page cache of a read-write connection, in KiB (SQLite's default is 2 MB), and WAL pages
#: between automatic checkpoints (default 1000): see StateDB.open.
CACHE_KIB = 16 * 1024
WAL_CHECKPOINT_PAGES = 8000


@functools.cache
def _migration_sources() -> list[tuple[str, str]]:
    """(name, sql) of every shipped migration, in order."""
    here = Path(__file__).resolve().parent
    if (here / "_state").is_dir():  # installed from the wheel
        entries = [(p.name, p.read_text("utf-8")) for p in (here / "_state").iterdir()]
    elif (here.parent / "state").is_dir():  # running from a source checkout (editable install)
        entries = [(p.name, p.read_text("utf-8")) for p in (here.parent / "state").iterdir()]
    else:  # packaged in a zip: only importlib.resources can read it (imported only then)
        from importlib import resources

        packaged = resources.files("axsync").joinpath("_state")
        entries = [(p.name, p.read_text("utf-8")) for p in packaged.iterdir()]
    sql = sorted((n, t) for n, t in entries if n.endswith(".sql") and n[:4].isdigit())
    if not sql:
        raise StateError("no state migrations found in the installation")
    return [(n.removesuffix(".sql"), t) for n, t in sql]


def _build_migrations() -> Migrations:
    from sqlite_utils.migrations import Migrations

    migrations = Migrations(MIGRATION_SET)
    for name, sql in _migration_sources():

        def apply(db: Database, _sql: str = sql) -> None:
            db.executescript(_sql)

        apply.__name__ = name
        migrations(name=name)(apply)
    return migrations


@dataclass(frozen=True, slots=True)
class FolderRow:
    id: str
    parent_id: str | None
    name: str
    path: tuple[str, ...]
    dirname: str
    role: str
    id_validity: int | None
    content_token: str | None
    delta_token: str | None
    conv_token: str | None
    excluded: bool
    state: str


@dataclass(frozen=True, slots=True)
class MessageRow:
    uid: int
    mail_id: str | None
    folder_id: str
    dirname: str
    base: str
    filename: str
    size: int
    server_size: int | None
    vsize: int
    sha256: str
    compression: str
    flags: str
    refw: str
    label_ids: tuple[str, ...]
    internal_date: int
    message_id: str
    conversation_id: str | None
    subject: str
    from_addr: str
    state: str
    first_seen: int
    last_seen: int
    deleted_at: int | None


_MESSAGE_COLUMNS = (
    "uid, mail_id, folder_id, dirname, base, filename, size, server_size, vsize, sha256, compression, flags, "
    "refw, label_ids, internal_date, message_id, conversation_id, subject, from_addr, state, "
    "first_seen, last_seen, deleted_at"
)


def _message(row: Sequence[Any]) -> MessageRow:
    values = list(row)
    values[13] = tuple(json.loads(values[13]))
    return MessageRow(*values)


def _folder(row: Sequence[Any]) -> FolderRow:
    (fid, parent, name, path, dirname, role, validity, ctok, dtok, cvtok, excluded, state) = row
    return FolderRow(
        fid, parent, name, tuple(json.loads(path)), dirname, role, validity, ctok, dtok, cvtok,
        bool(excluded), state,
    )


_FOLDER_COLUMNS = (
    "id, parent_id, name, path, dirname, role, id_validity, content_token, delta_token, "
    "conv_token, excluded, state"
)


def labels_json(label_ids: Iterable[str]) -> str:
    return json.dumps(sorted(set(label_ids)))


def _message_values(values: dict[str, Any]) -> dict[str, Any]:
    """A ``messages`` row as inserted: its labels as a sorted JSON list."""
    values = dict(values)
    values["label_ids"] = labels_json(values.get("label_ids", ()))
    return values


class StateDB:
    """Typed access to one account's state. Every method may raise ``StateError``."""

    def __init__(self, conn: sqlite3.Connection, path: Path | None) -> None:
        self.path = path
        self.conn = conn
        # Autocommit: every transaction is explicit (``transaction()``), none is implicit.
        conn.isolation_level = None
        # As sqlite-utils' Database sets it (the schema's triggers were written for it).
        conn.execute("PRAGMA recursive_triggers = on")
        self._savepoints = 0

    # ------------------------------------------------------------------ open / close

    @classmethod
    def open(cls, path: Path | None, *, readonly: bool = False) -> StateDB:
        """Open (creating with mode 0600 and migrating) the DB at ``path``; None = memory."""
        try:
            if path is None:
                conn = sqlite3.connect(":memory:")
            else:
                path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
                if readonly:
                    if not path.exists():
                        raise StateError(f"state DB {path} does not exist; run `axsync sync` first")
                    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
                else:
                    if not path.exists():
                        fd = os.open(path, os.O_CREAT | os.O_WRONLY, 0o600)
                        os.close(fd)
                    conn = sqlite3.connect(path)
                    if conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                        conn.execute("PRAGMA journal_mode = wal")
                    # An archive of 100k messages has a state DB of ~70 MB whose indexes on
                    # random keys (mail id, sha256, Message-ID, conversation) each take a
                    # page per recorded message: with SQLite's default 2 MB page cache those
                    # pages were read back and spilled again and again, and checkpoints every
                    # 4 MB of WAL wrote them out again. 16 MB of cache and a checkpoint every
                    # 32 MB cut the CPU of recording 100k messages by a third (6.3 -> 4.2 s,
                    # docs/performance.md); the cache only grows as far as pages are read.
                    conn.execute(f"PRAGMA cache_size = -{CACHE_KIB}")
                    conn.execute(f"PRAGMA wal_autocheckpoint = {WAL_CHECKPOINT_PAGES}")
                conn.execute("PRAGMA busy_timeout = 10000")
                conn.execute("PRAGMA foreign_keys = ON")
                conn.execute("PRAGMA synchronous = NORMAL")
            state = cls(conn, path)
            state._migrate(readonly)
            return state
        except sqlite3.Error as exc:
            raise StateError(f"cannot open state DB {path}: {exc}") from exc

    def _migrate(self, readonly: bool) -> None:
        known = [name for name, _sql in _migration_sources()]
        applied = self.applied_migrations()
        unknown = sorted(set(applied) - set(known))
        if unknown:
            raise SchemaTooNew(
                f"state DB {self.path} was written by a newer axsync (migrations {', '.join(unknown)}); "
                "upgrade axsync to use it"
            )
        if set(applied) == set(known):
            return
        if readonly:
            raise StateError(f"state DB {self.path} needs migrating; run `axsync sync` once")
        from sqlite_utils import Database

        _build_migrations().apply(Database(self.conn))

    def close(self) -> None:
        self.conn.close()

    def applied_migrations(self) -> list[str]:
        """Names of the applied migrations, in the order they were applied (read from
        sqlite-utils' ``_sqlite_migrations`` table)."""
        if not self.conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' "
                                 "AND name = '_sqlite_migrations'").fetchone():
            return []
        return [r[0] for r in self.conn.execute(
            "SELECT name FROM _sqlite_migrations WHERE migration_set = ? ORDER BY rowid",
            (MIGRATION_SET,))]

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """One transaction; nested, a savepoint inside the enclosing one (as sqlite-utils'
        ``Database.atomic``)."""
        conn = self.conn
        if conn.in_transaction:
            self._savepoints += 1
            name = f"axsync_{self._savepoints}"
            start, finish = f"SAVEPOINT {name}", f"RELEASE SAVEPOINT {name}"
            undo: tuple[str, ...] = (f"ROLLBACK TO SAVEPOINT {name}", finish)
        else:
            start, finish, undo = "BEGIN", "COMMIT", ("ROLLBACK",)
        try:
            conn.execute(start)
            try:
                yield
                conn.execute(finish)
            except BaseException:
                if conn.in_transaction:  # a failure may already have ended the transaction
                    for sql in undo:
                        conn.execute(sql)
                raise
        except sqlite3.Error as exc:
            raise StateError(f"state DB write failed: {exc}") from exc

    def execute(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> sqlite3.Cursor:
        try:
            return self.conn.execute(sql, params)
        except sqlite3.Error as exc:
            raise StateError(f"state DB query failed: {exc}") from exc

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        try:
            self.conn.executemany(sql, rows)
        except sqlite3.Error as exc:
            raise StateError(f"state DB query failed: {exc}") from exc

    # ------------------------------------------------------------------ account

    def account(self) -> dict[str, Any] | None:
        cur = self.execute("SELECT * FROM accounts WHERE id = 1")
        row = cur.fetchone()
        if row is None:
            return None
        return dict(zip([c[0] for c in cur.description], row, strict=True))

    def ensure_account(self, name: str, server: str, username: str) -> None:
        existing = self.account()
        if existing is None:
            with self.transaction():
                self.execute(
                    "INSERT INTO accounts (id, name, server, username, created_at) VALUES (1, ?, ?, ?, ?)",
                    (name, server, username, int(time.time())),
                )
        elif (existing["server"], existing["username"]) != (server, username):
            # A different mailbox behind the same archive: ids and tokens mean nothing.
            with self.transaction():
                self.execute(
                    "UPDATE accounts SET name=?, server=?, username=?, folders_token=NULL, "
                    "folders_delta_token=NULL, labels_token=NULL, capabilities_at=NULL WHERE id=1",
                    (name, server, username),
                )
                self.execute(
                    "UPDATE folders SET content_token=NULL, delta_token=NULL, conv_token=NULL"
                )

    def update_account(self, **fields: Any) -> None:
        if not fields:
            return
        cols = ", ".join(f"{k} = ?" for k in fields)
        self.execute(f"UPDATE accounts SET {cols} WHERE id = 1", list(fields.values()))

    # ------------------------------------------------------------------ folders

    def folders(self) -> list[FolderRow]:
        cur = self.execute(f"SELECT {_FOLDER_COLUMNS} FROM folders ORDER BY dirname")
        return [_folder(r) for r in cur.fetchall()]

    def upsert_folder(self, row: FolderRow, now: int) -> None:
        self.execute(
            "INSERT INTO folders (id, parent_id, name, path, dirname, role, id_validity, "
            "content_token, delta_token, conv_token, excluded, state, first_seen, last_seen) "
            "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?) ON CONFLICT(id) DO UPDATE SET "
            "parent_id=excluded.parent_id, name=excluded.name, path=excluded.path, "
            "dirname=excluded.dirname, role=excluded.role, id_validity=excluded.id_validity, "
            "content_token=excluded.content_token, delta_token=excluded.delta_token, "
            "conv_token=excluded.conv_token, excluded=excluded.excluded, state=excluded.state, "
            "last_seen=excluded.last_seen",
            (
                row.id, row.parent_id, row.name, json.dumps(list(row.path)), row.dirname,
                row.role, row.id_validity, row.content_token, row.delta_token, row.conv_token,
                int(row.excluded), row.state, now, now,
            ),
        )

    def set_folder_tokens(self, folder_id: str, **tokens: str | int | None) -> None:
        cols = ", ".join(f"{k} = ?" for k in tokens)
        self.execute(f"UPDATE folders SET {cols} WHERE id = ?", [*tokens.values(), folder_id])

    def delete_folder_row(self, folder_id: str) -> None:
        self.execute("DELETE FROM folders WHERE id = ?", (folder_id,))

    # ------------------------------------------------------------------ messages

    def message_by_mail_id(self, mail_id: str) -> MessageRow | None:
        row = self.execute(
            f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE mail_id = ?", (mail_id,)
        ).fetchone()
        return _message(row) if row else None

    def message_by_uid(self, uid: int) -> MessageRow | None:
        row = self.execute(
            f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE uid = ?", (uid,)
        ).fetchone()
        return _message(row) if row else None

    def message_by_base(self, base: str) -> MessageRow | None:
        row = self.execute(
            f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE base = ?", (base,)
        ).fetchone()
        return _message(row) if row else None

    def messages_where(self, where: str = "1", params: Sequence[Any] = ()) -> Iterator[MessageRow]:
        cur = self.execute(f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE {where} ORDER BY uid", params)
        while True:
            rows = cur.fetchmany(1000)
            if not rows:
                return
            for r in rows:
                yield _message(r)

    def messages_in_folder(self, folder_id: str) -> Iterator[MessageRow]:
        return self.messages_where("folder_id = ? AND state = 'present'", (folder_id,))

    def count_messages(self, where: str = "1", params: Sequence[Any] = ()) -> int:
        return int(self.execute(f"SELECT count(*) FROM messages WHERE {where}", params).fetchone()[0])

    def any_message(self, where: str = "1", params: Sequence[Any] = ()) -> bool:
        """Whether a message row matches (stops at the first: no count of the archive)."""
        return self.execute(f"SELECT 1 FROM messages WHERE {where} LIMIT 1", params).fetchone() is not None

    def search_pending(self) -> bool:
        """Whether the search index has work queued (``search_queue``: messages whose
        document may not match them)."""
        return self.execute("SELECT 1 FROM search_queue LIMIT 1").fetchone() is not None

    def insert_message(self, values: dict[str, Any]) -> int:
        values = _message_values(values)
        cols = ", ".join(values)
        marks = ", ".join("?" for _ in values)
        cur = self.execute(f"INSERT INTO messages ({cols}) VALUES ({marks})", list(values.values()))
        uid = int(cur.lastrowid or 0)
        # The search index's work list (state/0007: not a trigger, which would make SQLite
        # guard every insert with a statement journal); every insert comes through here.
        self.execute("INSERT OR IGNORE INTO search_queue (uid) VALUES (?)", (uid,))
        self._history(uid)
        return uid

    def insert_messages(self, rows: Sequence[dict[str, Any]]) -> None:
        """:meth:`insert_message` of each of ``rows`` (same columns in each), in order, as
        four statements whatever their number: an initial pull records every message of the
        mailbox, and one by one (with the lookups _record_download makes) a row took 33-36
        µs of CPU, 19-23 µs this way (transactions of 5000 rows)."""
        if not rows:
            return
        values = [_message_values(row) for row in rows]
        names = list(values[0])
        if any(list(v) != names for v in values):
            raise ValueError("insert_messages: every row must have the same columns, in order")
        # Without AUTOINCREMENT a new row's uid is the largest one plus one: the rows
        # inserted here are exactly those above the largest uid before.
        before = int(self.execute("SELECT coalesce(max(uid), 0) FROM messages").fetchone()[0])
        self.executemany(f"INSERT INTO messages ({', '.join(names)}) "
                         f"VALUES ({', '.join('?' for _ in names)})", [list(v.values()) for v in values])
        self.execute("INSERT OR IGNORE INTO search_queue (uid) SELECT uid FROM messages "
                     "WHERE uid > ? ORDER BY uid", (before,))
        self.execute(
            "INSERT INTO message_history (uid, at, folder_id, dirname, flags, label_ids, state) "
            "SELECT uid, ?, folder_id, dirname, flags, label_ids, state FROM messages "
            "WHERE uid > ? ORDER BY uid", (int(time.time()), before))

    def update_message(self, uid: int, *, history: bool = True, **fields: Any) -> None:
        if "label_ids" in fields:
            fields["label_ids"] = labels_json(fields["label_ids"])
        cols = ", ".join(f"{k} = ?" for k in fields)
        self.execute(f"UPDATE messages SET {cols} WHERE uid = ?", [*fields.values(), uid])
        if history:
            self._history(uid)

    def _history(self, uid: int) -> None:
        self.execute(
            "INSERT INTO message_history (uid, at, folder_id, dirname, flags, label_ids, state) "
            "SELECT uid, ?, folder_id, dirname, flags, label_ids, state FROM messages WHERE uid = ?",
            (int(time.time()), uid),
        )

    # ------------------------------------------------------------------ labels / keywords

    def labels(self) -> dict[str, tuple[str, str]]:
        """label id -> (name, atom), present labels only."""
        cur = self.execute("SELECT id, name, atom FROM labels WHERE state = 'present'")
        return {i: (n, a) for i, n, a in cur.fetchall()}

    def all_labels(self) -> dict[str, tuple[str, str]]:
        cur = self.execute("SELECT id, name, atom FROM labels")
        return {i: (n, a) for i, n, a in cur.fetchall()}

    def replace_labels(self, labels: Iterable[tuple[str, str, str]]) -> None:
        """Record the server's label list; labels gone from it are kept as 'deleted'."""
        seen = []
        for lid, name, atom in labels:
            seen.append(lid)
            self.execute(
                "INSERT INTO labels (id, name, atom, state) VALUES (?,?,?,'present') "
                "ON CONFLICT(id) DO UPDATE SET name=excluded.name, atom=excluded.atom, state='present'",
                (lid, name, atom),
            )
        marks = ",".join("?" for _ in seen) or "''"
        self.execute(f"UPDATE labels SET state='deleted' WHERE id NOT IN ({marks})", seen)

    def folder_keywords(self, dirname: str) -> dict[str, str]:
        """atom -> letter for one folder directory."""
        cur = self.execute("SELECT atom, letter FROM folder_keywords WHERE dirname = ?", (dirname,))
        return dict(cur.fetchall())

    def set_folder_keywords(self, dirname: str, mapping: dict[str, str]) -> None:
        for atom, letter in mapping.items():
            self.execute(
                "INSERT INTO folder_keywords (dirname, letter, atom) VALUES (?,?,?) "
                "ON CONFLICT(dirname, letter) DO UPDATE SET atom = excluded.atom",
                (dirname, letter, atom),
            )

    def move_folder_dirname(self, old: str, new: str) -> None:
        self.execute("UPDATE messages SET dirname = ? WHERE dirname = ?", (new, old))
        self.execute("UPDATE folder_keywords SET dirname = ? WHERE dirname = ?", (new, old))

    # ------------------------------------------------------------------ conversations

    def upsert_conversation(self, cid: str, token: str | None, subject: str, count: int) -> None:
        self.execute(
            "INSERT INTO conversations (id, sync_token, subject, mail_count, updated_at) "
            "VALUES (?,?,?,?,?) ON CONFLICT(id) DO UPDATE SET "
            "sync_token=coalesce(excluded.sync_token, conversations.sync_token), "
            "subject=excluded.subject, mail_count=excluded.mail_count, updated_at=excluded.updated_at",
            (cid, token, subject, count, int(time.time())),
        )

    def conversation_token(self, cid: str) -> str | None:
        """The conversation's stored ``syncToken``: set only when the server's member list
        was seen equal to the present messages carrying ``cid`` (see docs/design.md)."""
        row = self.execute("SELECT sync_token FROM conversations WHERE id = ?", (cid,)).fetchone()
        return str(row[0]) if row and row[0] is not None else None

    def set_conversation_token(self, cid: str, token: str | None) -> None:
        """Store (or with None forget) the conversation's ``syncToken``."""
        self.execute(
            "INSERT INTO conversations (id, sync_token, mail_count, updated_at) "
            "VALUES (?, ?, (SELECT count(*) FROM messages WHERE conversation_id = ? AND state = 'present'), ?) "
            "ON CONFLICT(id) DO UPDATE SET sync_token = excluded.sync_token",
            (cid, token, cid, int(time.time())),
        )

    # ------------------------------------------------------------------ runs / conflicts

    def start_run(self, mode: str, dry_run: bool) -> int:
        with self.transaction():
            cur = self.execute(
                "INSERT INTO runs (started_at, mode, dry_run) VALUES (?,?,?)",
                (int(time.time()), mode, int(dry_run)),
            )
        return int(cur.lastrowid or 0)

    def finish_run(self, run_id: int, *, ok: bool, exit_code: int, summary: dict[str, Any],
                   errors: list[dict[str, str]]) -> None:
        with self.transaction():
            self.execute(
                "UPDATE runs SET finished_at=?, ok=?, exit_code=?, summary=?, errors=? WHERE id=?",
                (int(time.time()), int(ok), exit_code, json.dumps(summary), json.dumps(errors), run_id),
            )

    def last_runs(self, n: int = 1) -> list[dict[str, Any]]:
        cur = self.execute(
            "SELECT id, started_at, finished_at, mode, dry_run, ok, exit_code, summary, errors "
            "FROM runs WHERE dry_run = 0 ORDER BY id DESC LIMIT ?", (n,)
        )
        cols = [c[0] for c in cur.description]
        out = []
        for row in cur.fetchall():
            d = dict(zip(cols, row, strict=True))
            d["summary"] = json.loads(d["summary"]) if d["summary"] else None
            d["errors"] = json.loads(d["errors"] or "[]")
            out.append(d)
        return out

    def record_conflict(self, run_id: int, uid: int | None, mail_id: str | None, field: str,
                        base: str, local: str, server: str, resolution: str) -> None:
        self.execute(
            "INSERT INTO conflicts (run_id, uid, mail_id, field, base, local, server, resolution, "
            "created_at) VALUES (?,?,?,?,?,?,?,?,?)",
            (run_id, uid, mail_id, field, base, local, server, resolution, int(time.time())),
        )

    def conflicts(self, limit: int = 50) -> list[dict[str, Any]]:
        cur = self.execute("SELECT * FROM conflicts ORDER BY id DESC LIMIT ?", (limit,))
        cols = [c[0] for c in cur.description]
        return [dict(zip(cols, r, strict=True)) for r in cur.fetchall()]
