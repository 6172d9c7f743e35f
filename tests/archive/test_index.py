"""SearchIndex: incremental catch-up, tombstones, content changes, missing files, rebuild."""

from __future__ import annotations

import contextlib
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pytest

from archive.conftest import (
    Built,
    Mail,
    build_archive,
    clear_index,
    corpus_mails,
    index_dump,
    make_mail,
    sample_mails,
)
from axsync.archive import index as index_module
from axsync.archive.index import SearchIndex
from axsync.archive.locate import Locator
from axsync.errors import StoreError
from axsync.statedb import StateDB
from axsync.store import Store


def _open(built: Built) -> tuple[StateDB, SearchIndex]:
    db = StateDB.open(built.db_path)
    return db, SearchIndex(db, Store(built.maildir))


def _fts_uids(db: StateDB, query: str) -> set[int]:
    rows = db.execute("SELECT rowid FROM search_fts WHERE search_fts MATCH ?", (query,)).fetchall()
    return {r[0] for r in rows}


def test_migration_adds_the_search_tables(tmp_path: Path) -> None:
    db = StateDB.open(tmp_path / "s.sqlite")
    assert "0002_search" in db.applied_migrations()
    names = {r[0] for r in db.execute("SELECT name FROM sqlite_master").fetchall()}
    assert {"search_fts", "search_docs", "search_refs", "messages_browse"} <= names
    db.close()


def test_catch_up_indexes_what_is_new_and_only_that(tmp_path: Path) -> None:
    mails = sample_mails()
    built = build_archive(tmp_path, list(mails.values()), index=False)
    db, index = _open(built)
    alive = sum(m.state != "tombstoned" for m in mails.values())
    assert index.pending() == alive
    assert index.catch_up(limit=3) == 3
    assert index.catch_up() == alive - 3
    assert index.pending() == 0 and index.catch_up() == 0
    assert _fts_uids(db, '"zurich"') == {built.uids[0]}
    gone = built.uids[list(mails).index("gone")]
    assert db.execute("SELECT count(*) FROM search_docs WHERE uid = ?", (gone,)).fetchone()[0] == 0

    store = Store(built.maildir)
    with store.writer("") as writer:
        writer.write(make_mail("Late arrival", "pomegranate\n"))
        stored = writer.commit("S", 1_700_000_000)
    with db.transaction():
        uid = db.insert_message({
            "mail_id": "late", "folder_id": "f0", "dirname": "", "base": stored.base,
            "filename": stored.filename, "size": stored.size, "vsize": stored.vsize,
            "sha256": stored.sha256, "compression": "zstd", "internal_date": 1_700_000_000,
            "first_seen": 1, "last_seen": 1,
        })
    assert index.catch_up() == 1
    assert _fts_uids(db, '"pomegranate"') == {uid}
    db.close()


def test_tombstoned_rows_are_dropped_and_changed_content_reindexed(tmp_path: Path) -> None:
    built = build_archive(tmp_path, [Mail(make_mail("Apple", "apple pie\n")),
                                     Mail(make_mail("Banana", "banana split\n"))])
    db, index = _open(built)
    apple, banana = built.uids
    with db.transaction():
        db.update_message(apple, state="tombstoned")
        db.update_message(banana, sha256="0" * 64)  # as if the file had been replaced
    assert index.catch_up() == 1
    assert _fts_uids(db, '"apple"') == set()
    assert db.execute("SELECT uid FROM search_docs").fetchall() == [(banana,)]
    assert db.execute("SELECT count(*) FROM search_refs WHERE uid = ?", (apple,)).fetchone()[0] == 0
    assert _fts_uids(db, '"banana"') == {banana}
    db.close()


def test_renamed_and_missing_files(tmp_path: Path) -> None:
    built = build_archive(tmp_path, [Mail(make_mail("Renamed one", "cherry\n")),
                                     Mail(make_mail("Missing one", "damson\n"))], index=False)
    store = Store(built.maildir)
    files = {f.base: f for f in store.scan()}
    db, index = _open(built)
    renamed, missing = (db.message_by_uid(u) for u in built.uids)
    assert renamed is not None and missing is not None
    store.set_flags("", renamed.filename, "FS")  # a mail client changed the flags
    os.unlink(store.path_of("", "cur", files[missing.base].filename))
    assert index.catch_up() == 2
    assert _fts_uids(db, '"cherry"') == {renamed.uid}
    error = db.execute("SELECT error FROM search_docs WHERE uid = ?", (missing.uid,)).fetchone()[0]
    assert error == "file missing"
    assert _fts_uids(db, 'subject : "missing"') == {missing.uid}  # still found by subject
    db.close()


def test_batches_progress_and_rebuild(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(index_module, "_BATCH_MESSAGES", 200)
    mails = [Mail(make_mail(f"Note {n}", f"word{n} common\n"), date=1_700_000_000 + n) for n in range(230)]
    built = build_archive(tmp_path, mails, index=False)
    db, index = _open(built)
    calls: list[int] = []
    assert index.catch_up(progress=calls.append) == 230
    assert calls == [200, 30]
    assert index.rebuild() == 230
    assert len(_fts_uids(db, '"common"')) == 230 and _fts_uids(db, '"word229"') == {built.uids[-1]}
    db.close()


def test_big_messages_are_read_up_to_the_limit(tmp_path: Path) -> None:
    big = "x" * 400_000
    raw = make_mail("Big one", (
        "--B\nContent-Type: text/plain\n\nthe words come first\n"
        "--B\nContent-Type: application/octet-stream\nContent-Disposition: attachment; "
        "filename=\"blob.bin\"\n\n" + big + "\n--B--\n"), content_type="multipart/mixed; boundary=B")
    built = build_archive(tmp_path, [Mail(raw)], index=False)
    db = StateDB.open(built.db_path)
    index = SearchIndex(db, Store(built.maildir), max_bytes=2000)
    assert index.catch_up() == 1
    assert _fts_uids(db, '"words" "first"') == set(built.uids)
    assert db.execute("SELECT has_attachment FROM search_docs").fetchone()[0] == 1
    db.close()


# ------------------------------------------------------------ parsing in worker processes

def _mixed_archive(tmp_path: Path) -> Built:
    """Generated mail plus the hostile samples, one file deleted and one corrupted."""
    built = build_archive(tmp_path, [*corpus_mails(90, seed=4)[0], *sample_mails().values()],
                          index=False)
    files = sorted((built.maildir / "cur").iterdir())
    files[0].unlink()
    files[1].write_bytes(b"\x28\xb5\x2f\xfd garbage")  # zstd magic, broken frame
    return built


def test_worker_processes_index_exactly_what_this_process_would(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    built = _mixed_archive(tmp_path / "a")
    db = StateDB.open(built.db_path)
    pending = SearchIndex(db, Store(built.maildir)).pending()
    assert SearchIndex(db, Store(built.maildir), workers=1).catch_up() == pending
    serial = index_dump(db)
    clear_index(db)
    monkeypatch.setattr(index_module, "PARALLEL_MIN", 10)
    calls: list[int] = []
    assert SearchIndex(db, Store(built.maildir), workers=2).catch_up(progress=calls.append) == pending
    assert sum(calls) == pending and len(calls) >= 1
    assert index_dump(db) == serial
    errors = [r[4] for r in serial[1] if r[4]]
    assert "file missing" in errors and any(e.startswith("unreadable") for e in errors)
    db.close()


def _paged(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
           **constants: int) -> tuple[StateDB, Path, SearchIndex]:
    """The mixed archive, its DB and a two-worker index with pages of 20 (and the other
    ``index`` module ``constants`` given): (db, maildir, index)."""
    built = _mixed_archive(tmp_path / "a")
    db = StateDB.open(built.db_path)
    for name, value in {"PARALLEL_MIN": 10, "_BATCH_MESSAGES": 20, **constants}.items():
        monkeypatch.setattr(index_module, name, value)
    return db, built.maildir, SearchIndex(db, Store(built.maildir), workers=2)


def _count_writes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The number of documents of each index write (transaction) from now on."""
    commits: list[int] = []
    real_write = SearchIndex._write

    def counting_write(self: SearchIndex, batch: list[tuple[object, object]]) -> None:
        commits.append(len(batch))
        real_write(self, batch)  # type: ignore[arg-type]

    monkeypatch.setattr(SearchIndex, "_write", counting_write)
    return commits


def _assert_same_as_serial(db: StateDB, maildir: Path) -> None:
    """The index in ``db`` is what indexing everything again in this process makes."""
    indexed = index_dump(db)
    clear_index(db)
    SearchIndex(db, Store(maildir), workers=1).catch_up()
    assert index_dump(db) == indexed


def test_index_alongside_a_pull_then_the_rest_at_the_end(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """What a pull records is handed to the workers page by page while it goes on; the
    short last page is left to catch_up. (Pages of 20 here instead of 500.)"""
    db, maildir, index = _paged(tmp_path, monkeypatch)
    pending = index.pending()
    assert pending % 20 and pending > 4 * 20
    running = index.alongside()
    running.downloads_started(pending)
    assert running.running
    running.recorded()  # hands out full pages, two per worker
    running.recorded()  # writes those that are done, hands out more
    running.close()  # waits for the rest of what was handed out and writes it
    assert not running.running
    assert running.indexed % 20 == 0 and 4 * 20 <= running.indexed <= 20 * (pending // 20)
    assert index.catch_up() == pending - running.indexed
    _assert_same_as_serial(db, maildir)
    few = SearchIndex(db, Store(maildir), workers=2).alongside()
    few.downloads_started(5)  # too few to be worth worker processes
    assert not few.running
    db.close()


def test_index_alongside_finish_indexes_the_rest_with_the_same_workers(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """After the pull, finish() indexes every pending message (the short last page too)
    with the pool already running: no second pool, nothing left for catch_up."""
    db, maildir, index = _paged(tmp_path, monkeypatch)
    pools: list[object] = []
    real_pool = SearchIndex._pool

    def counting_pool(self: SearchIndex) -> object:
        pool = real_pool(self)
        pools.append(pool)
        return pool

    monkeypatch.setattr(SearchIndex, "_pool", counting_pool)
    pending = index.pending()
    assert pending % 20 and pending > 4 * 20
    running = index.alongside()
    running.downloads_started(pending)
    running.recorded()
    running.finish()
    assert not running.running
    assert running.indexed == pending
    assert index.pending() == 0 and index.catch_up() == 0
    assert len(pools) == 1
    _assert_same_as_serial(db, maildir)
    db.close()


def test_parsed_pages_are_written_together_in_order(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Pages the workers have finished are written in one transaction, oldest first, up to
    _WRITE_MAX documents (FTS5 writes a segment per transaction: fewer is cheaper)."""
    from concurrent.futures import wait

    db, maildir, index = _paged(tmp_path, monkeypatch, _WRITE_MAX=40)
    pending = index.pending()
    assert pending > 4 * 20
    pool = index._pool()
    assert pool is not None
    with pool:
        feeder = index_module._Feeder(index, pool, None)
        feeder.fill()  # two pages per worker
        assert len(feeder.inflight) == 4
        wait([fut for _rows, fut in feeder.inflight if fut is not None])
        first_uids = [row.uid for rows, _fut in list(feeder.inflight)[:2] for row in rows]
        commits = _count_writes(monkeypatch)
        assert feeder.write_next(block=False) == 40  # two ready pages, one transaction
        assert commits == [40]
        assert {r[0] for r in db.execute("SELECT uid FROM search_docs")} == set(first_uids)
        assert feeder.run_out() == pending - 40
        assert all(n <= 40 for n in commits) and sum(commits) == pending
    _assert_same_as_serial(db, maildir)
    db.close()


def test_ticks_keep_the_workers_fed_and_write_in_big_transactions(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Between the pull's recordings, tick() hands the workers more pages (up to
    ALONGSIDE_AHEAD per worker in flight) and writes parsed ones only once they make a
    transaction of _WRITE_MAX documents or the queue is full: the index keeps up with the
    downloads without a transaction per tick."""
    import time

    db, maildir, index = _paged(tmp_path, monkeypatch, _BATCH_MESSAGES=10, _WRITE_MAX=30,
                                 ALONGSIDE_AHEAD=3)
    pending = index.pending()
    full_pages = pending // 10
    assert full_pages >= 7
    commits = _count_writes(monkeypatch)
    running = index.alongside()
    running.downloads_started(pending)
    feeder = running._feeder
    assert feeder is not None and feeder.ahead == 6
    running.tick()
    assert len(feeder.inflight) == 6 and not commits  # handed out, nothing to write yet
    deadline = time.monotonic() + 60
    while feeder.queued < full_pages * 10 and time.monotonic() < deadline:
        running.tick()  # no recorded() at all
        time.sleep(0.02)
    assert feeder.queued == full_pages * 10  # every full page was handed out by ticks
    assert commits and all(n >= 30 for n in commits)  # never a transaction per page
    running.close()
    assert running.indexed == full_pages * 10
    assert index.catch_up() == pending - running.indexed
    _assert_same_as_serial(db, maildir)
    db.close()


def test_ticks_look_for_pages_again_only_after_a_recording(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Once every full page recorded so far is handed out, ticks do not query the state
    DB for more (the pull ticks five times a second); a recording makes the next one
    look again."""
    db, _maildir, index = _paged(tmp_path, monkeypatch, _BATCH_MESSAGES=10, ALONGSIDE_AHEAD=50)
    lookups: list[int] = []
    real_page = SearchIndex._page

    def counting_page(self: SearchIndex, after: int, want: int) -> list[object]:
        lookups.append(after)
        return real_page(self, after, want)  # type: ignore[return-value]

    monkeypatch.setattr(SearchIndex, "_page", counting_page)
    running = index.alongside()
    running.downloads_started(index.pending())
    running.tick()  # hands out every full page (room for 100), then finds no more
    handed, looked = running._feeder.queued, len(lookups)  # type: ignore[union-attr]
    assert handed == index.pending() // 10 * 10 and looked == handed // 10 + 1
    for _ in range(5):
        running.tick()
    assert len(lookups) == looked  # nothing recorded since: no lookup
    running.recorded()
    assert len(lookups) == looked + 1  # looked again
    running.close()
    db.close()


def test_pages_are_cut_by_size_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A page handed to a worker holds at most _PAGE_BYTES of messages (one message at
    least, however big), so what the main process holds stays bounded; a page cut by size
    counts as full while the pull goes on."""
    db, maildir, index = _paged(tmp_path, monkeypatch)
    sizes = sorted(r[0] for r in db.execute("SELECT size FROM messages"))
    budget = sizes[len(sizes) // 2] * 3
    monkeypatch.setattr(index_module, "_PAGE_BYTES", budget)
    pending = index.pending()
    pool = index._pool()
    assert pool is not None
    pages: list[list[int]] = []
    with pool:
        feeder = index_module._Feeder(index, pool, None)
        while True:
            feeder.fill(full_pages_only=True)
            if not feeder.inflight:
                break
            pages.extend([row.size for row in rows] for rows, _fut in feeder.inflight)
            while feeder.write_next(block=True) is not None:
                pass
        assert feeder.run_out() == pending - sum(len(p) for p in pages)
    assert len(pages) > pending // 20  # more pages than by count alone
    assert all(sum(p) <= budget or len(p) == 1 for p in pages)
    assert any(len(p) < 20 for p in pages)
    assert index.pending() == 0
    _assert_same_as_serial(db, maildir)
    db.close()


def test_a_broken_worker_pool_falls_back_to_parsing_here(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    built = _mixed_archive(tmp_path / "a")
    db = StateDB.open(built.db_path)
    monkeypatch.setattr(index_module, "PARALLEL_MIN", 10)
    index = SearchIndex(db, Store(built.maildir), workers=2)
    dead = ProcessPoolExecutor(1)
    dead.shutdown()
    monkeypatch.setattr(index, "_pool", lambda: dead)
    pending = index.pending()
    assert index.catch_up() == pending and index.pending() == 0
    fallen_back = index_dump(db)  # the pages were parsed here, in full
    clear_index(db)
    SearchIndex(db, Store(built.maildir), workers=1).catch_up()
    assert index_dump(db) == fallen_back
    db.close()


def test_index_alongside_parses_the_bytes_the_pull_kept_instead_of_its_files(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The bytes a pull keeps for a message (IndexAlongside.keep) are what the workers
    parse: the files of kept messages are overwritten here, and the index is still the
    one made from them. Bytes kept under the wrong sha256 are not used (the file is read),
    nor kept beyond KEEP_ONE per message or KEEP_BYTES in all."""
    db, maildir, index = _paged(tmp_path, monkeypatch)
    index.catch_up()
    serial = index_dump(db)
    clear_index(db)
    rows = index._page(0, 10_000)
    with Locator(Store(maildir)) as locator:
        found = [(row, locator.find(row.dirname, row.base, row.filename)) for row in rows]
        datas = {}
        for row, file in found:
            if file is not None:
                with contextlib.suppress(StoreError):
                    datas[row.uid] = (file, locator.read(file))
    sizes = sorted(len(data) for _file, data in datas.values())
    monkeypatch.setattr(index_module, "KEEP_ONE", sizes[len(sizes) // 2])
    monkeypatch.setattr(index_module, "KEEP_BYTES", sum(sizes[: len(sizes) // 3]))
    running = index.alongside()
    assert running.keep_limit() == 0  # no workers yet: nothing is kept
    running.keep(rows[0].dirname, rows[0].filename, rows[0].sha256, b"ignored")
    running.downloads_started(len(rows))
    assert running.keep_limit() == index_module.KEEP_ONE
    kept: list[int] = []
    wrong = next(iter(datas))  # kept under another sha256: its file is read
    for row in rows:
        if row.uid not in datas:
            continue
        file, data = datas[row.uid]
        before = running._kept.size
        sha = "0" * 64 if row.uid == wrong else row.sha256
        running.keep(row.dirname, row.filename, sha, data)
        if running._kept.size > before and row.uid != wrong:
            kept.append(row.uid)
            path = maildir / file.dirname / file.subdir / file.filename
            path.write_bytes(b"not what the index must read")
        assert running._kept.size <= index_module.KEEP_BYTES
    assert 0 < len(kept) < len(datas) - 1  # some were not kept: too big, or no room
    running.finish()
    assert running.from_memory == len(kept) and running._kept.size == 0
    assert index_dump(db) == serial
    db.close()


def test_kept_bytes_are_taken_once_with_their_sha256() -> None:
    kept = index_module._Kept(10)
    kept.put(("f", "a"), "sha-a", b"12345")
    kept.put(("f", "a"), "sha-a", b"67")  # already kept: the first stays
    kept.put(("f", "b"), "sha-b", b"123456")  # no room left
    kept.put(("f", "c"), "sha-c", b"123")
    assert kept.size == 8
    assert kept.take(("f", "b"), "sha-b") is None
    assert kept.take(("f", "a"), "sha-x") is None  # not these bytes: forgotten anyway
    assert kept.take(("f", "a"), "sha-a") is None
    assert kept.take(("f", "c"), "sha-c") == b"123" and kept.taken == 1
    assert kept.size == 0
    kept.put(("f", "d"), "sha-d", b"1")
    kept.clear()
    assert kept.size == 0 and kept.take(("f", "d"), "sha-d") is None


_OWNER = """
import os, sys, time
from axsync.archive.index import SearchIndex
from axsync.archive.locate import Locator
from axsync.errors import StoreError
index = SearchIndex.__new__(SearchIndex)
index.workers = 2
pool = index._pool()
pids = {pool.submit(os.getpid).result() for _ in range(8)}
print(" ".join(map(str, sorted(pids))), flush=True)
time.sleep(60)
"""


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][0] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="needs Linux /proc")
def test_workers_die_with_a_killed_run(tmp_path: Path) -> None:
    """A run killed with SIGKILL (a timeout, the OOM killer) leaves no parser behind."""
    import signal
    import subprocess
    import sys
    import time

    owner = subprocess.Popen([sys.executable, "-c", _OWNER], stdout=subprocess.PIPE, text=True,
                             cwd=tmp_path)
    try:
        assert owner.stdout is not None
        pids = [int(p) for p in owner.stdout.readline().split()]
        assert pids and all(_alive(p) for p in pids)
        owner.send_signal(signal.SIGKILL)
        owner.wait(10)
        deadline = time.monotonic() + 10
        while any(_alive(p) for p in pids) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not any(_alive(p) for p in pids), "worker processes outlived the killed run"
    finally:
        if owner.poll() is None:
            owner.kill()
            owner.wait(10)


def _queue(db: StateDB) -> set[int]:
    return {r[0] for r in db.execute("SELECT uid FROM search_queue").fetchall()}


def _insert_rows(db: StateDB, count: int, start: int = 0) -> None:
    """Message rows without files (indexed as "file missing": enough for the queue)."""
    with db.transaction():
        for n in range(start, start + count):
            db.insert_message({
                "mail_id": f"m{n}", "folder_id": "f0", "dirname": "", "base": f"b{n}",
                "filename": f"b{n}:2,S", "size": 10, "vsize": 10, "sha256": f"{n:064x}",
                "compression": "zstd", "internal_date": 1_700_000_000, "first_seen": 1,
                "last_seen": 1,
            })


def _write_calls() -> int:
    with open("/proc/self/io") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("syscw"))


@pytest.mark.skipif(not Path("/proc/self/io").exists(), reason="needs Linux /proc/self/io")
def test_a_new_message_is_queued_by_its_insert_without_a_statement_journal(tmp_path: Path) -> None:
    """insert_message queues the uid itself (state/0007). A trigger made every insert a
    multi-row write guarded by a statement journal, which spilled to a temporary file:
    about 26 write calls per recorded message in a pull's transaction."""
    db = StateDB.open(tmp_path / "s.sqlite")
    assert not db.execute("SELECT name FROM sqlite_master WHERE type = 'trigger' "
                          "AND tbl_name = 'messages' AND sql LIKE '%AFTER INSERT%'").fetchall()
    count = 600
    before = _write_calls()
    with db.transaction():
        for n in range(count):
            db.insert_message({
                "mail_id": f"mail-{n:08d}-{'x' * 24}", "folder_id": "folder-0001",
                "dirname": ".Archive.2024", "base": f"{1_700_000_000 + n}.M{n}P1Q{n}R{n:016x}.host,S=4000,W=4100",
                "filename": f"{1_700_000_000 + n}.M{n}P1Q{n}R{n:016x}.host,S=4000,W=4100:2,SZ",
                "size": 4000, "server_size": 4000, "vsize": 4100, "sha256": f"{n * 7919:064x}",
                "compression": "zstd", "flags": "S", "internal_date": 1_700_000_000 + n,
                "message_id": f"<{n}.{'y' * 20}@mail.example.com>", "conversation_id": f"conv-{n:08d}",
                "subject": f"Quarterly report {n} " * 3, "from_addr": "someone@example.com",
                "first_seen": 1, "last_seen": 1,
            })
    writes = _write_calls() - before
    assert _queue(db) == set(range(1, count + 1))
    assert writes < count, f"{writes} write calls for {count} inserts"
    db.close()


def test_the_work_queue_follows_every_change_and_empties(tmp_path: Path) -> None:
    built = build_archive(tmp_path, [Mail(make_mail(f"Fruit {n}", f"{word}\n"))
                                     for n, word in enumerate(("apple", "banana", "cherry", "damson"))])
    db, index = _open(built)
    apple, banana, cherry, damson = built.uids
    assert index.catch_up() == 0 and _queue(db) == set()
    with db.transaction():
        db.update_message(apple, state="tombstoned")
        db.update_message(banana, sha256="0" * 64)
        db.update_message(cherry, state="deleted")  # gone from the server, file kept
        db.update_message(damson, flags="FS")  # not a change the index cares about
    assert _queue(db) == {apple, banana, cherry}
    assert index.pending() == 1
    assert index.catch_up() == 1  # banana again; apple dropped; cherry's document is fine
    assert _queue(db) == set()
    assert db.execute("SELECT uid FROM search_docs ORDER BY uid").fetchall() == [(banana,), (cherry,), (damson,)]
    assert _fts_uids(db, '"cherry"') == {cherry} and _fts_uids(db, '"apple"') == set()

    with db.transaction():  # a document lost some other way is queued and made again
        db.execute("DELETE FROM search_docs WHERE uid = ?", (damson,))
    assert _queue(db) == {damson}
    assert index.catch_up() == 1 and _queue(db) == set()
    with db.transaction():
        db.execute("DELETE FROM message_history WHERE uid = ?", (cherry,))
        db.execute("DELETE FROM messages WHERE uid = ?", (cherry,))
    assert index.catch_up() == 0 and _queue(db) == set()
    assert db.execute("SELECT count(*) FROM search_docs WHERE uid = ?", (cherry,)).fetchone()[0] == 0
    db.close()


def test_a_message_changed_while_it_was_parsed_stays_queued(tmp_path: Path) -> None:
    built = build_archive(tmp_path, [Mail(make_mail("Elder", "elderberry\n"))], index=False)
    db, index = _open(built)
    (uid,) = built.uids
    row = index._page(0, 10)[0]
    entry = index_module._entry(*index._read(row, index_module.Locator(index.store)))
    with db.transaction():
        db.update_message(uid, sha256="1" * 64)  # replaced after it was read
    index._write([(row, entry)])
    assert _queue(db) == {uid} and index.pending() == 1
    assert index.catch_up() == 1 and _queue(db) == set()
    db.close()


def test_a_run_with_nothing_to_index_does_not_grow_with_the_archive(tmp_path: Path) -> None:
    """Finding no work reads the queue, not the messages: about the same number of SQLite
    VM instructions for 20 and for 2,000 indexed messages (reading every row: ~100x)."""
    steps = []
    for count in (20, 2000):
        db = StateDB.open(tmp_path / f"{count}.sqlite")
        index = SearchIndex(db, Store(tmp_path / f"m{count}"), workers=1)
        _insert_rows(db, count)
        assert index.catch_up() == count and _queue(db) == set()
        counter = [0]

        def tick(counter: list[int] = counter) -> int:
            counter[0] += 1
            return 0

        db.conn.set_progress_handler(tick, 1)
        assert index.catch_up() == 0 and index.pending() == 0
        db.conn.set_progress_handler(None, 0)
        steps.append(counter[0])
        db.close()
    assert steps[1] <= steps[0] + 20, steps


def test_the_migration_queues_what_an_older_archive_had_pending(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import axsync.statedb as statedb

    sources = statedb._migration_sources()
    assert sources[5][0] == "0006_work_queues"
    path = tmp_path / "old.sqlite"
    with monkeypatch.context() as m:  # the DB as axsync left it before 0006
        m.setattr(statedb, "_migration_sources", lambda: sources[:5])
        db = StateDB.open(path)
        with db.transaction():  # rows as the axsync of then wrote them (no search_queue yet)
            for n in range(3):
                db.execute(
                    "INSERT INTO messages (mail_id, folder_id, dirname, base, filename, size, "
                    "vsize, sha256, compression, internal_date, first_seen, last_seen) "
                    "VALUES (?, 'f0', '', ?, ?, 10, 10, ?, 'zstd', 1700000000, 1, 1)",
                    (f"m{n}", f"b{n}", f"b{n}:2,S", f"{n:064x}"))
        with db.transaction():  # indexed: uid 1 as it is, uid 2 from other bytes; 3 never
            for uid, sha in ((1, f"{0:064x}"), (2, "f" * 64), (99, "e" * 64)):  # 99: gone
                db.execute("INSERT INTO search_docs (uid, sha256, indexed_at) VALUES (?, ?, 1)",
                           (uid, sha))
        db.close()
    # up to 0007 (0008 indexes everything again: its own test below)
    monkeypatch.setattr(statedb, "_migration_sources", lambda: sources[:7])
    db = StateDB.open(path)
    assert db.applied_migrations()[-2:] == ["0006_work_queues", "0007_queue_insert_explicit"]
    assert _queue(db) == {2, 3, 99}
    index = SearchIndex(db, Store(tmp_path / "m"), workers=1)
    assert index.catch_up() == 2 and _queue(db) == set()
    assert {r[0] for r in db.execute("SELECT uid FROM search_docs")} == {1, 2, 3}
    db.close()


def _fts_sql(db: StateDB) -> str:
    return str(db.execute("SELECT sql FROM sqlite_master WHERE name = 'search_fts'").fetchone()[0])


def test_0008_drops_the_prefix_indexes_and_the_next_catch_up_indexes_everything_again(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An archive indexed with 0002's prefix indexes: after 0008, its FTS table has none,
    every message waits for the index again, and the catch-up makes the same index (a
    prefix of two characters still finds its words, without a prefix index)."""
    import axsync.statedb as statedb

    sources = statedb._migration_sources()
    assert sources[7][0] == "0008_search_without_prefix_indexes"
    mails = sample_mails()
    with monkeypatch.context() as m:  # the archive as axsync left it before 0008
        m.setattr(statedb, "_migration_sources", lambda: sources[:7])
        built = build_archive(tmp_path, list(mails.values()))
        db = StateDB.open(built.db_path)
        assert "prefix = '2 3'" in _fts_sql(db)
        before = index_dump(db)
        assert before[0] and before[1] and before[2] and not _queue(db)
        assert _fts_uids(db, "zu*") == {built.uids[0]}  # Zürich
        db.close()
    db, index = _open(built)
    assert "prefix" not in _fts_sql(db)
    assert index_dump(db) == ([], [], [])
    alive = {uid for uid, mail in zip(built.uids, mails.values(), strict=True)
             if mail.state != "tombstoned"}
    assert _queue(db) >= alive and index.pending() == len(alive)
    assert index.catch_up() == len(alive) and _queue(db) == set()
    assert index_dump(db) == before
    assert _fts_uids(db, "zu*") == {built.uids[0]}
    db.close()
