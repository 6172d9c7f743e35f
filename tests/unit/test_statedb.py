"""State DB: migrations from the shipped SQL, refusal of newer DBs, typed queries."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

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


def _msg(i: int, labels: list[str], flags: str) -> dict[str, object]:
    return {
        "mail_id": f"m{i}", "folder_id": "f", "dirname": "", "base": f"b{i}",
        "filename": f"b{i}:2,{flags}", "size": 10 + i, "server_size": 10, "vsize": 11,
        "sha256": f"{i:064x}", "compression": "zstd", "flags": flags, "label_ids": labels,
        "internal_date": 5, "message_id": f"<{i}@x>", "first_seen": 1, "last_seen": 1,
    }


_TABLES = {
    "messages": "SELECT * FROM messages ORDER BY uid",
    "search_queue": "SELECT uid FROM search_queue ORDER BY uid",
    "message_history": "SELECT uid, folder_id, dirname, flags, label_ids, state "
                       "FROM message_history ORDER BY rowid",
}


@settings(max_examples=40, deadline=None)
@given(
    earlier=st.integers(0, 5),
    batches=st.lists(st.lists(st.tuples(st.lists(st.sampled_from("abc"), max_size=3),
                                        st.sampled_from(["", "S", "FS"])), max_size=6), max_size=4),
)
def test_insert_messages_is_insert_message_of_each(
        tmp_path_factory: pytest.TempPathFactory, earlier: int,
        batches: list[list[tuple[list[str], str]]]) -> None:
    """The bulk insert of an initial pull leaves the same rows, queue entries and history
    as one insert_message per row, after rows inserted one by one and some deleted."""
    tables = []
    for bulk in (False, True):
        db = StateDB.open(tmp_path_factory.mktemp("db") / "s.sqlite")
        with db.transaction():
            for i in range(earlier):
                db.insert_message(_msg(i, ["a"], "S"))
            # the largest uids gone: new rows may take them again
            db.execute("DELETE FROM message_history WHERE uid > 2")
            db.execute("DELETE FROM search_queue WHERE uid > 2")
            db.execute("DELETE FROM messages WHERE uid > 2")
        n = 100
        for batch in batches:
            rows = []
            for labels, flags in batch:
                rows.append(_msg(n, labels, flags))
                n += 1
            with db.transaction():
                if bulk:
                    db.insert_messages(rows)
                else:
                    for row in rows:
                        db.insert_message(row)
        tables.append({name: db.execute(sql).fetchall() for name, sql in _TABLES.items()})
        db.close()
    assert tables[0] == tables[1]


def test_insert_messages_wants_the_same_columns_in_each_row(tmp_path: Path) -> None:
    db = StateDB.open(tmp_path / "s.sqlite")
    other = _msg(2, [], "")
    other.pop("vsize")
    with pytest.raises(ValueError, match="same columns"), db.transaction():
        db.insert_messages([_msg(1, [], ""), other])
    assert db.execute("SELECT count(*) FROM messages").fetchone()[0] == 0
    db.close()
