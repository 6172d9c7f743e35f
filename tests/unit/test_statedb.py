"""State DB: migrations from the shipped SQL, refusal of newer DBs, typed queries."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest

from axsync.errors import SchemaTooNew, StateError
from axsync.statedb import CACHE_KIB, WAL_CHECKPOINT_PAGES, StateDB, _migration_sources


def test_creates_with_owner_only_mode_and_wal(tmp_path: Path) -> None:
    path = tmp_path / "a" / "axsync.sqlite"
    db = StateDB.open(path)
    assert db.applied_migrations() == [name for name, _ in _migration_sources()]
    assert os.stat(path).st_mode & 0o777 == 0o600
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    # a page cache and a checkpoint interval sized for archives of 100k messages and more
    assert db.execute("PRAGMA cache_size").fetchone()[0] == -CACHE_KIB
    assert db.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == WAL_CHECKPOINT_PAGES
    assert CACHE_KIB > 2000 and WAL_CHECKPOINT_PAGES > 1000  # more than SQLite's defaults
    db.close()


def test_reopen_is_idempotent(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    StateDB.open(path).close()
    db = StateDB.open(path)
    assert len(db.applied_migrations()) == len(_migration_sources())
    db.close()


def test_newer_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    StateDB.open(path).close()
    conn = sqlite3.connect(path)
    conn.execute("INSERT INTO _sqlite_migrations (migration_set, name, applied_at) VALUES ('axsync', '9999_future', 'x')")
    conn.commit()
    conn.close()
    with pytest.raises(SchemaTooNew, match="newer axsync"):
        StateDB.open(path)


def test_older_database_is_migrated(tmp_path: Path) -> None:
    """A DB holding only the first migration gets the rest applied on open."""
    path = tmp_path / "s.sqlite"
    first_name, first_sql = _migration_sources()[0]
    conn = sqlite3.connect(path)
    conn.executescript(first_sql)
    conn.execute("CREATE TABLE _sqlite_migrations (id INTEGER PRIMARY KEY, migration_set TEXT, name TEXT, applied_at TEXT)")
    conn.execute("CREATE UNIQUE INDEX idx_m ON _sqlite_migrations (migration_set, name)")
    conn.execute("INSERT INTO _sqlite_migrations (migration_set, name, applied_at) VALUES ('axsync', ?, 'x')", (first_name,))
    conn.commit()
    conn.close()
    db = StateDB.open(path)
    assert db.applied_migrations() == [n for n, _ in _migration_sources()]
    db.close()


def test_readonly_open_of_a_db_with_a_pending_migration_asks_for_a_sync(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    StateDB.open(path).close()
    conn = sqlite3.connect(path)
    last = _migration_sources()[-1][0]
    conn.execute("DELETE FROM _sqlite_migrations WHERE name = ?", (last,))
    conn.commit()
    conn.close()
    with pytest.raises(StateError, match="needs migrating; run `axsync sync` once"):
        StateDB.open(path, readonly=True)


def _letters(db: StateDB) -> list[str]:
    return [r[0] for r in db.execute("SELECT name FROM labels ORDER BY name")]


def test_transactions_commit_roll_back_and_nest_as_savepoints(tmp_path: Path) -> None:
    """transaction(): all or nothing; inside another one, a savepoint (its failure undoes
    only its own writes); SQLite errors come out as StateError."""
    db = StateDB.open(tmp_path / "s.sqlite")

    def add(name: str) -> None:
        db.execute("INSERT INTO labels (id, name, atom) VALUES (?, ?, ?)", (name, name, name))

    with db.transaction():
        add("a")
    with pytest.raises(RuntimeError), db.transaction():
        add("b")
        raise RuntimeError("stop")
    assert _letters(db) == ["a"] and not db.conn.in_transaction
    with db.transaction():
        add("c")
        with pytest.raises(RuntimeError), db.transaction():
            add("d")
            raise RuntimeError("inner")
        with db.transaction():
            add("e")
        assert db.conn.in_transaction
    assert _letters(db) == ["a", "c", "e"]
    with pytest.raises(StateError, match="UNIQUE"), db.transaction():
        add("f")
        add("a")
    assert _letters(db) == ["a", "c", "e"] and not db.conn.in_transaction
    db.close()


def test_readonly_open_of_missing_db_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(StateError, match="does not exist"):
        StateDB.open(tmp_path / "nope.sqlite", readonly=True)


def test_message_roundtrip_and_history(tmp_path: Path) -> None:
    db = StateDB.open(tmp_path / "s.sqlite")
    with db.transaction():
        uid = db.insert_message({
            "mail_id": "m1", "folder_id": "f", "dirname": "", "base": "b1", "filename": "b1:2,S",
            "size": 10, "server_size": 10, "vsize": 11, "sha256": "0" * 64, "compression": "zstd",
            "flags": "S", "label_ids": ["z", "a"], "internal_date": 5, "message_id": "<x>",
            "first_seen": 1, "last_seen": 1,
        })
        db.update_message(uid, flags="FS")
    row = db.message_by_mail_id("m1")
    assert row is not None and row.label_ids == ("a", "z") and row.flags == "FS"
    hist = db.execute("SELECT flags FROM message_history WHERE uid=? ORDER BY rowid", (uid,)).fetchall()
    assert [h[0] for h in hist] == ["S", "FS"]
    db.close()
