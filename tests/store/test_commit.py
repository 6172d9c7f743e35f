"""GroupCommit (axsync/store/commit.py): sealed files from any thread are made durable,
published into ``cur/`` and delivered in groups, each item exactly once, with its file in
``cur/`` or with an error and no file left behind. Also the syncfs wrappers of fsutil.

Real files in ``tmp_path``; only the failures are injected (a system call that raises, a
name already taken in ``cur/``)."""

from __future__ import annotations

import errno
import hashlib
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from axsync.errors import StoreError
from axsync.store import Store, StoredFile, fsutil, writer
from axsync.store import commit as commit_mod
from axsync.store.commit import GroupCommit, Result
from axsync.store.writer import SealedFile

pytestmark = pytest.mark.timeout(60)

MTIME = 1_700_000_000
COMMIT_THREAD = "axsync-commit"


# ---------------------------------------------------------------------------- helpers


class Collector:
    """The ``deliver`` callback: keeps each delivered group, lets the test wait for them."""

    def __init__(self) -> None:
        self.batches: list[list[Result[str]]] = []
        self._cond = threading.Condition()

    def __call__(self, results: list[Result[str]]) -> None:
        with self._cond:
            self.batches.append(list(results))
            self._cond.notify_all()

    def results(self) -> list[Result[str]]:
        with self._cond:
            return [r for batch in self.batches for r in batch]

    def wait(self, count: int, timeout: float = 10.0) -> list[Result[str]]:
        """Wait until ``count`` results were delivered (in any number of groups)."""
        with self._cond:
            ok = self._cond.wait_for(lambda: sum(map(len, self.batches)) >= count, timeout)
        assert ok, f"only {len(self.results())} of {count} items delivered"
        return self.results()

    def by_key(self) -> dict[str, tuple[StoredFile | None, BaseException | None]]:
        """Every delivered result by key; fails if a key was delivered twice."""
        results = self.results()
        keys = [key for key, _stored, _err in results]
        assert len(keys) == len(set(keys)), "an item was delivered more than once"
        return {key: (stored, err) for key, stored, err in results}


MakeCommit = Callable[..., tuple[GroupCommit[str], Collector]]


@pytest.fixture(params=[True, False], ids=["syncfs", "fsync-each"])
def use_syncfs(request: pytest.FixtureRequest, tmp_path: Path) -> bool:
    if request.param and not fsutil.can_syncfs(tmp_path):
        pytest.skip("no syncfs(2) here")
    return bool(request.param)


@pytest.fixture
def make_commit(store: Store) -> Iterator[MakeCommit]:
    """GroupCommit on the store's root, closed at teardown (close is idempotent)."""
    made: list[GroupCommit[str]] = []

    def make(*, use_syncfs: bool, linger: float = 0.02,
             deliver: Callable[[list[Result[str]]], None] | None = None,
             ) -> tuple[GroupCommit[str], Collector]:
        got = Collector()
        gc: GroupCommit[str] = GroupCommit(store.root, deliver or got, linger=linger,
                                           use_syncfs=use_syncfs)
        made.append(gc)
        return gc, got

    yield make
    for gc in made:
        gc.close()


def seal(store: Store, dirname: str, data: bytes, flags: str = "S") -> SealedFile:
    w = store.writer(dirname)
    w.write(data)
    return w.seal(flags, MTIME)


def message(key: str) -> bytes:
    return f"Subject: {key}\r\n\r\nbody of {key}\n".encode() * (1 + len(key) % 7)


def listing(store: Store, dirname: str, subdir: str) -> list[str]:
    return sorted(os.listdir(store.root / dirname / subdir))


def add_as_one_group(gc: GroupCommit[str], items: Sequence[tuple[str, SealedFile]]) -> None:
    """Add ``items`` so that they land in the same group whatever the timing: the commit
    thread takes a group under the commit's lock (a re-entrant one, so add() works while
    this thread holds it)."""
    with gc._cond:
        for key, sealed in items:
            gc.add(key, sealed)


def in_commit_thread() -> bool:
    return threading.current_thread().name == COMMIT_THREAD


def fail_call(real: Callable[..., Any], calls: set[int], err: int,
              log: list[int] | None = None) -> Callable[..., Any]:
    """A wrapper of ``real`` whose n-th call on the commit thread (n in ``calls``,
    counted from 1) raises OSError(err) instead; other calls go through."""
    count = 0

    def wrapper(*args: Any, **kw: Any) -> Any:
        nonlocal count
        if in_commit_thread():
            count += 1
            if log is not None:
                log.append(count)
            if count in calls:
                raise OSError(err, os.strerror(err))
        return real(*args, **kw)

    return wrapper


def counting(real: Callable[..., Any], log: list[int]) -> Callable[..., Any]:
    """A wrapper of ``real`` that notes each of its calls on the commit thread in ``log``."""
    return fail_call(real, set(), 0, log)


def fail_content_sync(monkeypatch: pytest.MonkeyPatch, use_syncfs: bool, err: int) -> None:
    """The next group's content sync (its syncfs, or the fsync of its first file) fails."""
    if use_syncfs:
        monkeypatch.setattr(commit_mod, "syncfs", fail_call(commit_mod.syncfs, {1}, err))
    else:
        monkeypatch.setattr(commit_mod.os, "fsync", fail_call(os.fsync, {1}, err))


def fail_names_sync(monkeypatch: pytest.MonkeyPatch, use_syncfs: bool, err: int) -> None:
    """The next group's names sync (its second syncfs, or an fsync of a cur/) fails."""
    if use_syncfs:
        monkeypatch.setattr(commit_mod, "syncfs", fail_call(commit_mod.syncfs, {2}, err))
    else:
        monkeypatch.setattr(commit_mod, "fsync_dir", fail_call(commit_mod.fsync_dir, {1}, err))


def assert_failed_with(results: Sequence[Result[str]],
                       err: int) -> None:
    """Every item failed with a StoreError caused by an OSError of errno ``err``."""
    for key, stored, exc in results:
        assert stored is None, key
        assert isinstance(exc, StoreError)
        assert isinstance(exc.__cause__, OSError)
        assert exc.__cause__.errno == err


def commit_one_more(gc: GroupCommit[str], got: Collector, store: Store, seen: int) -> StoredFile:
    """After a failed group the commit goes on: one more item (the ``seen + 1``-th
    delivered) is stored."""
    later = seal(store, "", b"later\n")
    add_as_one_group(gc, [("later", later)])
    key, stored, exc = got.wait(seen + 1)[-1]
    assert (key, exc) == ("later", None)
    assert stored is not None
    assert_stored(store, stored, later, b"later\n")
    return stored


def assert_stored(store: Store, stored: StoredFile, expected: SealedFile, data: bytes) -> None:
    assert stored == expected.stored
    assert stored.size == len(data)
    assert stored.sha256 == hashlib.sha256(data).hexdigest()
    path = store.root / stored.dirname / "cur" / stored.filename
    assert os.stat(path).st_mtime == MTIME
    assert store.read_message(stored.dirname, "cur", stored.filename) == data


# ---------------------------------------------------------------------------- happy path


def test_concurrent_adds_are_each_delivered_once(store: Store, use_syncfs: bool,
                                                  make_commit: MakeCommit) -> None:
    store.ensure_folder(".Other")
    gc, got = make_commit(use_syncfs=use_syncfs)
    threads_n, per_thread = 8, 50
    expected: dict[str, tuple[SealedFile, bytes]] = {}
    lock = threading.Lock()
    start = threading.Barrier(threads_n)
    failures: list[BaseException] = []

    def adder(t: int) -> None:
        try:
            start.wait()
            for i in range(per_thread):
                key = f"t{t}-m{i}"
                data = message(key)
                sealed = seal(store, ".Other" if i % 3 == 0 else "", data)
                with lock:
                    expected[key] = (sealed, data)
                gc.add(key, sealed)
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=adder, args=(t,)) for t in range(threads_n)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not failures
    got.wait(threads_n * per_thread)
    gc.close()

    delivered = got.by_key()
    assert sorted(delivered) == sorted(expected)
    for key, (stored, err) in delivered.items():
        assert err is None, f"{key}: {err!r}"
        assert stored is not None
        sealed, data = expected[key]
        assert_stored(store, stored, sealed, data)
    for dirname in ("", ".Other"):
        assert listing(store, dirname, "tmp") == []
        assert listing(store, dirname, "cur") == sorted(
            s.stored.filename for s, _d in expected.values() if s.stored.dirname == dirname)
    assert gc.groups == len(got.batches)
    assert all(got.batches)
    assert gc.groups < threads_n * per_thread, "items arriving during a commit form a group"


def test_linger_gathers_items_added_one_after_another(store: Store, use_syncfs: bool,
                                                      make_commit: MakeCommit) -> None:
    gc, got = make_commit(use_syncfs=use_syncfs, linger=0.2)
    sealed = [(f"k{i}", seal(store, "", message(f"k{i}"))) for i in range(5)]
    for key, s in sealed:  # no lock held: only the linger keeps them together
        gc.add(key, s)
    got.wait(5)
    assert gc.groups == 1
    assert [sorted(key for key, _s, _e in batch) for batch in got.batches] == [
        [key for key, _s in sealed]]
    assert all(err is None for _k, _s, err in got.batches[0])


def test_close_delivers_what_was_just_added(store: Store, use_syncfs: bool,
                                            make_commit: MakeCommit) -> None:
    gc, got = make_commit(use_syncfs=use_syncfs, linger=0.05)
    items = [(f"k{i}", seal(store, "", message(f"k{i}"))) for i in range(6)]
    for key, s in items:
        gc.add(key, s)
    gc.close()  # no waiting: close itself commits and delivers the rest
    delivered = got.by_key()
    assert sorted(delivered) == [key for key, _s in items]
    assert all(err is None and stored is not None for stored, err in delivered.values())
    assert listing(store, "", "tmp") == []
    assert len(listing(store, "", "cur")) == 6


def test_close_is_idempotent_and_refuses_later_adds(store: Store, use_syncfs: bool,
                                                    make_commit: MakeCommit) -> None:
    gc, got = make_commit(use_syncfs=use_syncfs)
    gc.add("first", seal(store, "", b"first\n"))
    gc.close()
    gc.close()
    assert [key for key, _s, _e in got.results()] == ["first"]
    late = seal(store, "", b"late\n")
    with pytest.raises(StoreError, match="closed"):
        gc.add("late", late)
    gc.close()
    assert [key for key, _s, _e in got.results()] == ["first"], "a refused item is not delivered"
    assert os.path.exists(late.tmp), "a refused item stays the caller's"
    late.discard()


def test_close_without_items_delivers_nothing(store: Store, use_syncfs: bool) -> None:
    got = Collector()
    with GroupCommit(store.root, got, use_syncfs=use_syncfs) as gc:
        pass
    assert got.batches == []
    assert gc.groups == 0
    assert not gc._thread.is_alive()


def test_adds_racing_close_are_delivered_or_refused(store: Store, use_syncfs: bool,
                                                    make_commit: MakeCommit) -> None:
    gc, got = make_commit(use_syncfs=use_syncfs)
    accepted: list[str] = []
    refused: list[SealedFile] = []
    lock = threading.Lock()
    start = threading.Barrier(5)

    def adder(t: int) -> None:
        start.wait()
        for i in range(10_000):  # until close refuses (bounded in case it never does)
            key = f"t{t}-m{i}"
            sealed = seal(store, "", message(key))
            try:
                gc.add(key, sealed)
            except StoreError:
                with lock:
                    refused.append(sealed)
                return
            with lock:
                accepted.append(key)

    threads = [threading.Thread(target=adder, args=(t,)) for t in range(4)]
    for th in threads:
        th.start()
    start.wait()
    gc.close()
    for th in threads:
        th.join()
    assert len(refused) == 4, "every adder was refused once close had begun"
    delivered = got.by_key()  # close() returned: everything accepted is delivered
    assert sorted(delivered) == sorted(accepted)
    assert all(err is None for _stored, err in delivered.values())
    assert listing(store, "", "tmp") == sorted(os.path.basename(s.tmp) for s in refused)
    assert len(listing(store, "", "cur")) == len(accepted)
    for s in refused:
        s.discard()


# ---------------------------------------------------------------------------- failures


@pytest.mark.parametrize("err", [errno.ENOSPC, errno.EIO], ids=["ENOSPC", "EIO"])
def test_content_sync_failure_fails_the_whole_group(store: Store, use_syncfs: bool, err: int,
                                                    make_commit: MakeCommit,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    gc, got = make_commit(use_syncfs=use_syncfs)
    fail_content_sync(monkeypatch, use_syncfs, err)
    group = [(f"k{i}", seal(store, "", message(f"k{i}"))) for i in range(4)]
    add_as_one_group(gc, group)
    results = got.wait(4)
    assert len(got.batches) == 1
    assert_failed_with(results, err)
    assert all(os.strerror(err) in str(exc) for _key, _stored, exc in results)
    assert all(not os.path.exists(s.tmp) for _k, s in group)
    assert listing(store, "", "tmp") == []
    assert listing(store, "", "cur") == []

    commit_one_more(gc, got, store, 4)
    assert listing(store, "", "tmp") == []


def test_names_sync_failure_takes_the_files_back(store: Store, use_syncfs: bool,
                                                 make_commit: MakeCommit,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    gc, got = make_commit(use_syncfs=use_syncfs)
    fail_names_sync(monkeypatch, use_syncfs, errno.EIO)
    group = [(f"k{i}", seal(store, "", message(f"k{i}"))) for i in range(3)]
    add_as_one_group(gc, group)
    results = got.wait(3)
    assert sorted(key for key, _s, _e in results) == ["k0", "k1", "k2"]
    assert_failed_with(results, errno.EIO)
    assert listing(store, "", "cur") == [], "names that may not survive a crash are taken back"
    assert listing(store, "", "tmp") == []

    stored = commit_one_more(gc, got, store, 3)
    assert listing(store, "", "cur") == [stored.filename]


def test_publish_failure_fails_only_that_item(store: Store, use_syncfs: bool,
                                              make_commit: MakeCommit) -> None:
    gc, got = make_commit(use_syncfs=use_syncfs)
    group = [(f"k{i}", seal(store, "", message(f"k{i}"))) for i in range(3)]
    clash = group[1][1]
    taken = clash.cur / clash.stored.filename
    taken.write_bytes(b"already here")
    add_as_one_group(gc, group)
    delivered = {key: (stored, err) for key, stored, err in got.wait(3)}
    assert len(got.batches) == 1
    stored, err = delivered["k1"]
    assert stored is None
    assert isinstance(err, StoreError)
    assert isinstance(err.__cause__, FileExistsError)
    assert not os.path.exists(clash.tmp)
    assert taken.read_bytes() == b"already here"
    for key in ("k0", "k2"):
        stored, err = delivered[key]
        assert err is None
        assert stored is not None
        sealed = dict(group)[key]
        assert_stored(store, stored, sealed, message(key))
    assert listing(store, "", "tmp") == []
    assert listing(store, "", "cur") == sorted(
        [taken.name, group[0][1].stored.filename, group[2][1].stored.filename])


def test_publish_failure_of_every_item_skips_the_names_sync(store: Store, use_syncfs: bool,
                                                            make_commit: MakeCommit,
                                                            monkeypatch: pytest.MonkeyPatch,
                                                            ) -> None:
    gc, got = make_commit(use_syncfs=use_syncfs)
    syncs: list[int] = []
    monkeypatch.setattr(commit_mod, "syncfs", counting(commit_mod.syncfs, syncs))
    monkeypatch.setattr(commit_mod, "fsync_dir", counting(commit_mod.fsync_dir, syncs))
    group = [(f"k{i}", seal(store, "", message(f"k{i}"))) for i in range(2)]
    for _key, s in group:
        (s.cur / s.stored.filename).write_bytes(b"taken")
    add_as_one_group(gc, group)
    results = got.wait(2)
    assert all(stored is None and isinstance(err, StoreError) for _k, stored, err in results)
    assert len(syncs) == (1 if use_syncfs else 0), "nothing was published: no names to sync"
    assert listing(store, "", "tmp") == []


def test_unexpected_exception_fails_the_group_not_the_thread(store: Store, use_syncfs: bool,
                                                             make_commit: MakeCommit,
                                                             monkeypatch: pytest.MonkeyPatch,
                                                             ) -> None:
    gc, got = make_commit(use_syncfs=use_syncfs)
    bug = RuntimeError("a bug in the commit")
    real = GroupCommit._sync_contents
    calls = 0

    def sync_contents(self: GroupCommit[str], group: list[tuple[str, SealedFile]]) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise bug
        real(self, group)

    monkeypatch.setattr(GroupCommit, "_sync_contents", sync_contents)
    group = [(f"k{i}", seal(store, "", message(f"k{i}"))) for i in range(3)]
    add_as_one_group(gc, group)
    results = got.wait(3)
    assert sorted(key for key, _s, _e in results) == ["k0", "k1", "k2"]
    assert all(stored is None and err is bug for _k, stored, err in results)
    assert listing(store, "", "tmp") == []
    assert listing(store, "", "cur") == []
    assert gc._thread.is_alive()

    gc.add("later", seal(store, "", b"later\n"))
    gc.close()
    key, stored, err = got.results()[-1]
    assert (key, err) == ("later", None)
    assert stored is not None
    assert listing(store, "", "cur") == [stored.filename]


def test_unexpected_exception_after_publish_leaves_nothing_in_cur(
        store: Store, use_syncfs: bool, make_commit: MakeCommit,
        monkeypatch: pytest.MonkeyPatch) -> None:
    gc, got = make_commit(use_syncfs=use_syncfs)

    def sync_names(self: GroupCommit[str], published: list[tuple[str, SealedFile]]) -> None:
        raise RuntimeError("a bug after the renames")

    monkeypatch.setattr(GroupCommit, "_sync_names", sync_names)
    add_as_one_group(gc, [(f"k{i}", seal(store, "", message(f"k{i}"))) for i in range(2)])
    results = got.wait(2)
    assert all(stored is None and isinstance(err, RuntimeError) for _k, stored, err in results)
    assert listing(store, "", "tmp") == []
    assert listing(store, "", "cur") == [], "failed items left files in cur/"


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_deliver_raising_does_not_lose_later_items(store: Store, use_syncfs: bool,
                                                   make_commit: MakeCommit) -> None:
    got = Collector()
    first = True

    def deliver(results: list[Result[str]]) -> None:
        nonlocal first
        got(results)
        if first:
            first = False
            raise RuntimeError("a bug in the caller's callback")

    gc, _unused = make_commit(use_syncfs=use_syncfs, deliver=deliver)
    gc.add("first", seal(store, "", b"first\n"))
    got.wait(1)
    gc._thread.join(1.0)  # let the thread finish dying (if it does) before the next add
    try:
        gc.add("second", seal(store, "", b"second\n"))
    except StoreError:
        pass  # refusing the item would keep the promise too
    else:
        gc.close()
        assert [key for key, _s, _e in got.results()] == ["first", "second"]
    finally:
        for name in listing(store, "", "tmp"):
            os.unlink(store.root / "tmp" / name)


@pytest.mark.parametrize("trusted", [True, False], ids=["syncfs-fs", "other-fs"])
def test_default_mode_follows_can_syncfs_of_the_root(store: Store, trusted: bool,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    if trusted and not fsutil.can_syncfs(store.root):
        pytest.skip("no syncfs(2) here")
    asked: list[Path | str] = []
    syncs: list[int] = []
    fsyncs: list[int] = []

    def can_syncfs(path: Path | str) -> bool:
        asked.append(path)
        return trusted

    monkeypatch.setattr(commit_mod, "can_syncfs", can_syncfs)
    monkeypatch.setattr(commit_mod, "syncfs", counting(commit_mod.syncfs, syncs))
    monkeypatch.setattr(commit_mod.os, "fsync", counting(os.fsync, fsyncs))
    got = Collector()
    with GroupCommit(store.root, got) as gc:
        add_as_one_group(gc, [(f"k{i}", seal(store, "", message(f"k{i}"))) for i in range(3)])
    assert asked == [store.root]
    assert [err for _k, _s, err in got.results()] == [None] * 3
    if trusted:
        assert (len(syncs), len(fsyncs)) == (2, 0)
    else:
        assert (len(syncs), len(fsyncs)) == (0, 3 + 1)  # each file, then cur/


# ---------------------------------------------------------------------------- ordering


def test_order_of_system_calls_with_syncfs(store: Store, make_commit: MakeCommit,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    if not fsutil.can_syncfs(store.root):
        pytest.skip("no syncfs(2) here")
    events: list[tuple[str, str]] = []
    real_syncfs = commit_mod.syncfs
    real_rename = writer.os.rename

    def syncfs(fd: int) -> None:
        events.append(("syncfs", ""))
        real_syncfs(fd)

    def rename(src: Any, dst: Any, *args: Any, **kw: Any) -> None:
        if in_commit_thread():
            events.append(("rename", Path(src).name))
        real_rename(src, dst, *args, **kw)

    monkeypatch.setattr(commit_mod, "syncfs", syncfs)
    monkeypatch.setattr(writer.os, "rename", rename)
    group = [(f"k{i}", seal(store, "", message(f"k{i}"))) for i in range(3)]

    got = Collector()

    def deliver(results: list[Result[str]]) -> None:
        for _key, stored, _err in results:
            assert stored is not None
            assert (store.root / "cur" / stored.filename).exists()
        events.append(("deliver", ",".join(key for key, _s, _e in results)))
        got(results)

    gc, _unused = make_commit(use_syncfs=True, deliver=deliver)
    add_as_one_group(gc, group)
    got.wait(3)
    assert events == [
        ("syncfs", ""),
        *(("rename", os.path.basename(s.tmp)) for _k, s in group),
        ("syncfs", ""),
        ("deliver", "k0,k1,k2"),
    ]


def test_order_of_system_calls_without_syncfs(store: Store, make_commit: MakeCommit,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    if not os.path.isdir("/proc/self/fd"):
        pytest.skip("needs /proc to name an fsynced descriptor")
    store.ensure_folder(".A")
    events: list[tuple[str, str]] = []
    real_fsync = os.fsync
    real_rename = os.rename

    def fsync(fd: int) -> None:
        if in_commit_thread():
            events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        real_fsync(fd)

    def rename(src: Any, dst: Any, *args: Any, **kw: Any) -> None:
        if in_commit_thread():
            events.append(("rename", os.fspath(src)))
        real_rename(src, dst, *args, **kw)

    def syncfs(fd: int) -> None:
        events.append(("syncfs", ""))

    monkeypatch.setattr(commit_mod.os, "fsync", fsync)
    monkeypatch.setattr(writer.os, "rename", rename)
    monkeypatch.setattr(commit_mod, "syncfs", syncfs)
    group = [("a", seal(store, "", b"a\n")), ("b", seal(store, ".A", b"b\n")),
             ("c", seal(store, "", b"c\n"))]
    gc, got = make_commit(use_syncfs=False)
    add_as_one_group(gc, group)
    got.wait(3)
    events.append(("deliver", ""))
    root = os.path.realpath(store.root)
    assert events == [
        *(("fsync", os.path.join(os.path.realpath(os.path.dirname(s.tmp)), os.path.basename(s.tmp))) for _k, s in group),
        *(("rename", os.fspath(s.tmp)) for _k, s in group),
        ("fsync", os.path.join(root, "cur")),  # each cur/ once, in order of first use
        ("fsync", os.path.join(root, ".A", "cur")),
        ("deliver", ""),
    ]
