from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import stat
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from axsync.errors import StoreError, UnsafeName
from axsync.store import Store, StoredFile, assign_dirname, new_unique, parse_name
from axsync.store.compress import detect
from axsync.store.keywords import read_keywords

MTIME = 1_704_195_296


def crlf_len(data: bytes) -> int:
    return len(re.sub(rb"(?<!\r)\n", b"\r\n", data))


def put(store: Store, dirname: str, data: bytes, flags: str = "", chunk: int = 0) -> StoredFile:
    with store.writer(dirname) as w:
        step = chunk or max(1, len(data))
        for i in range(0, len(data), step):
            w.write(data[i : i + step])
        return w.commit(flags, MTIME)


def files_under(root: Path) -> list[Path]:
    return [Path(d) / f for d, _, fs in os.walk(root) for f in fs]


# ---------------------------------------------------------------------------- folders


def test_ensure_folder_layout(tmp_path: Path) -> None:
    store = Store(tmp_path / "Mail")
    store.ensure_folder("")
    store.ensure_folder(".Archive")
    root = tmp_path / "Mail"
    assert stat.S_IMODE(root.stat().st_mode) == 0o700
    for folder in (root, root / ".Archive"):
        for sub in ("cur", "new", "tmp"):
            assert stat.S_IMODE((folder / sub).stat().st_mode) == 0o700
    assert (root / ".Archive" / "maildirfolder").read_bytes() == b""
    assert not (root / "maildirfolder").exists()
    store.ensure_folder(".Archive")  # idempotent
    assert store.folders() == ["", ".Archive"]


def test_folders_lists_only_maildirs(store: Store) -> None:
    store.ensure_folder(".B")
    store.ensure_folder(".A")
    (store.root / ".notafolder").mkdir()
    (store.root / ".hiddenfile").write_text("x")
    (store.root / "axsync.sqlite").write_text("x")
    assert store.folders() == ["", ".A", ".B"]


def test_disambiguated_folder_records_its_path(store: Store) -> None:
    path = ("x" * 300,)
    dirname = ".xxxx~0123456789ab"
    store.ensure_folder(dirname, path)
    record = json.loads((store.root / dirname / "axsync-folder-name").read_text())
    assert record == {"dirname": dirname, "path": list(path)}
    assert store.folder_path_of(dirname) == path
    store.rename_folder(dirname, ".Short")  # a rename makes the record stale: it goes
    assert store.folder_path_of(".Short") == ("Short",)
    store.ensure_folder(".Plain", ("Plain",))
    assert not (store.root / ".Plain" / "axsync-folder-name").exists()
    # renamed by Dovecot: the record names the old directory and is ignored
    store.ensure_folder(dirname, path)
    os.rename(store.root / dirname, store.root / ".Renamed")
    assert store.folder_path_of(".Renamed") == ("Renamed",)


def test_bad_compression_settings(tmp_path: Path) -> None:
    with pytest.raises(StoreError):
        Store(tmp_path, compression="xz")
    with pytest.raises(StoreError):
        Store(tmp_path, level=99)
    assert not any(tmp_path.iterdir())  # a Store touches nothing until asked


def test_rename_folder(store: Store) -> None:
    store.ensure_folder(".Old")
    f = put(store, ".Old", b"hi\n")
    store.ensure_folder(".Taken")
    with pytest.raises(StoreError):
        store.rename_folder(".Old", ".Taken")
    with pytest.raises(StoreError):
        store.rename_folder(".Old", "")
    store.rename_folder(".Old", ".New")
    assert store.read_message(".New", "cur", f.filename) == b"hi\n"
    assert ".Old" not in store.folders()


def test_remove_folder_only_when_empty(store: Store) -> None:
    store.ensure_folder(".Full")
    f = put(store, ".Full", b"x")
    (store.root / ".Full" / "dovecot-uidlist").write_text("3 V1 N2\n")
    with pytest.raises(StoreError, match="not empty"):
        store.remove_folder(".Full")
    store.delete(".Full", f.filename)
    store.remove_folder(".Full")
    assert not (store.root / ".Full").exists()
    with pytest.raises(StoreError):
        store.remove_folder("")


def test_write_subscriptions(store: Store) -> None:
    items: list[tuple[str, ...] | str] = [
        ("INBOX",),
        ("Archive", "2024"),
        ("Entwürfe",),
        ("Dotted.Name",),
        ".x~abc",
        ("Archive", "2024"),
    ]
    store.write_subscriptions(items)
    data = (store.root / "subscriptions").read_bytes()
    assert data == b"V\t2\n\nINBOX\nArchive\t2024\nEntw&APw-rfe\nDotted\\2eName\nx~abc\n"
    assert [p.name for p in store.root.iterdir() if p.name.startswith("axsync")] == []
    with pytest.raises(UnsafeName):
        store.write_subscriptions(["../evil"])


def test_subscriptions_find_disambiguated_folders(store: Store) -> None:
    taken = {".Case": ("Case",)}
    twin = assign_dirname(("case",), taken)
    store.ensure_folder(twin, ("case",))
    long_path = ("l" * 300,)
    long_dirname = assign_dirname(long_path, taken)
    store.ensure_folder(long_dirname, long_path)
    store.write_subscriptions([("case",), long_path, ("m" * 300,)])  # the last has no folder
    lines = (store.root / "subscriptions").read_text().split("\n")[2:-1]
    assert lines == [twin[1:], long_dirname[1:]]


# ---------------------------------------------------------------------------- writer


@pytest.mark.parametrize("method", ["zstd", "gzip", "none"])
def test_writer_round_trip(tmp_path: Path, method: str) -> None:
    store = Store(tmp_path, compression=method)
    store.ensure_folder("")
    data = b"From: a@example.org\nSubject: hi\n\nline\n" * 100
    f = put(store, "", data, "SF", chunk=77)
    path = store.path_of("", "cur", f.filename)
    assert detect(path.read_bytes()[:4]) == method
    assert store.read_message("", "cur", f.filename) == data
    assert f.size == len(data) and f.vsize == crlf_len(data)
    assert f.sha256 == hashlib.sha256(data).hexdigest()
    flags = "FSZ" if method != "none" else "FS"
    assert f.filename == f"{f.base}:2,{flags}"
    assert re.fullmatch(rf"\d+\.M\d+P\d+Q\d+R[0-9a-f]{{8}}\.\S+,S={f.size},W={f.vsize}", f.base)
    st_ = path.stat()
    assert st_.st_mtime == MTIME and stat.S_IMODE(st_.st_mode) == 0o600
    assert os.listdir(tmp_path / "tmp") == []


@pytest.mark.parametrize(
    ("data", "size", "vsize"),
    [
        (b"", 0, 0),
        (b"a\nb\n", 4, 6),
        (b"a\r\nb\r\n", 6, 6),
        (b"a\r\nb\nc\r\r\n\n", 10, 12),
        (b"\n\n\r", 3, 5),
    ],
)
def test_sizes(store: Store, data: bytes, size: int, vsize: int) -> None:
    for chunk in (0, 1, 2):
        f = put(store, "", data, chunk=chunk)
        assert (f.size, f.vsize) == (size, vsize)
        assert parse_name(f.filename)[1:3] == (size, vsize)
        assert store.read_message("", "cur", f.filename) == data


@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=300).map(lambda b: bytes(b"ab\r\n"[x % 4] for x in b)), st.data())
def test_vsize_across_chunk_boundaries(store: Store, data: bytes, draw: st.DataObject) -> None:
    cuts = sorted(draw.draw(st.lists(st.integers(0, len(data)), max_size=6)))
    with store.writer("") as w:
        prev = 0
        for cut in [*cuts, len(data)]:
            w.write(data[prev:cut])
            prev = cut
        f = w.commit("", MTIME)
    assert f.vsize == crlf_len(data) and f.size == len(data)
    store.delete("", f.filename)


def test_multi_megabyte_message(store: Store) -> None:
    block = os.urandom(1 << 16) + b"\n" + b"text line\r\n" * 2000 + b"bare\n" * 1000
    data = block * 40  # ~3.8 MB
    f = put(store, "", data, chunk=65536)
    assert (f.size, f.vsize) == (len(data), crlf_len(data))
    with store.open_message("", "cur", f.filename) as stream:
        assert hashlib.sha256(stream.read()).hexdigest() == f.sha256


def test_short_writes_are_continued(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """The writer writes to its descriptor directly: a write that takes only part of the
    bytes (a signal, a pipe, a full quota's last block) is continued, not lost."""
    from axsync.store import writer

    real_write = os.write
    calls: list[int] = []

    def short_write(fd: int, data: bytes | memoryview) -> int:
        calls.append(len(data))
        return real_write(fd, bytes(data)[:7])

    monkeypatch.setattr(writer.os, "write", short_write)
    data = os.urandom(5000) + b"a line\r\n" * 3000
    f = put(store, "", data, chunk=4096)
    monkeypatch.undo()
    assert max(calls) > 7 and len(calls) > 10
    assert store.read_message("", "cur", f.filename) == data


def test_exception_mid_write_leaves_nothing(store: Store) -> None:
    with pytest.raises(RuntimeError), store.writer("") as w:
        w.write(b"partial message\n" * 1000)
        raise RuntimeError("connection dropped")
    assert os.listdir(store.root / "cur") == [] and os.listdir(store.root / "tmp") == []


def test_leaving_without_commit_leaves_nothing(store: Store) -> None:
    with store.writer("") as w:
        w.write(b"x")
    assert os.listdir(store.root / "cur") == [] and os.listdir(store.root / "tmp") == []
    with pytest.raises(StoreError):
        w.write(b"more")


@pytest.mark.parametrize("head", [b"\x28\xb5\x2f\xfd", b"\x1f\x8b", b"\x28", b"\x1f"])
def test_plain_store_never_writes_a_file_that_looks_compressed(tmp_path: Path, head: bytes) -> None:
    store = Store(tmp_path, compression="none")
    store.ensure_folder("")
    for chunk in (0, 1):
        data = head + (b" and more" if len(head) > 1 else b"")
        f = put(store, "", data, chunk=chunk)
        raw = store.path_of("", "cur", f.filename).read_bytes()
        looks = detect(raw[:4])
        assert ("Z" in parse_name(f.filename).flags) == (looks != "none")
        assert store.read_message("", "cur", f.filename) == data
        assert (f.size, f.sha256) == (len(data), hashlib.sha256(data).hexdigest())


def test_writer_with_callers_unique(store: Store) -> None:
    unique = "1704067200.Rabcdef0123456789abcd.host"
    with store.writer("", unique=unique) as w:
        assert os.listdir(store.root / "tmp") != [unique]
        w.write(b"x\n")
        f = w.commit("S", MTIME)
    assert f.filename == f"{unique},S=2,W=3:2,SZ"
    with pytest.raises(StoreError), store.writer("", unique=unique) as w:
        w.write(b"x\n")
        w.commit("S", MTIME)
    assert os.listdir(store.root / "tmp") == [] and os.listdir(store.root / "cur") == [f.filename]
    for bad in ("a:b", "a,b", ".x", "a/b"):
        with pytest.raises(UnsafeName):
            store.writer("", unique=bad)


def test_writer_needs_the_folder(store: Store) -> None:
    with pytest.raises(StoreError):
        store.writer(".Missing")


# ---------------------------------------------------------------------------- scan & renames


def test_scan_ignores_non_messages(store: Store) -> None:
    store.ensure_folder(".A")
    f = put(store, ".A", b"m", "S")
    folder = store.root / ".A"
    for name in ["dovecot-uidlist", "dovecot-keywords", "dovecot.index", "axsync-folder-name"]:
        (folder / name).write_text("x")
    (folder / "cur" / ".hidden").write_text("x")
    (folder / "cur" / "dovecot-junk").write_text("x")
    (folder / "cur" / "adir").mkdir()
    (folder / "cur" / "alink").symlink_to("/etc/passwd")
    (folder / "new" / "1.M1P1.host").write_text("delivered")
    (folder / "tmp" / "2.M1P1.host").write_text("being written")
    (store.root / "subscriptions").write_text("V\t2\n\n")
    found = sorted(store.scan(), key=lambda x: x.subdir)
    assert [(x.dirname, x.subdir, x.filename) for x in found] == [
        (".A", "cur", f.filename),
        (".A", "new", "1.M1P1.host"),
    ]
    assert found[0].base == f.base and found[0].flags == "SZ" and found[0].size == 1
    assert found[1].flags == "" and found[1].size is None


def test_set_flags(store: Store) -> None:
    f = put(store, "", b"m", "S")
    assert store.set_flags("", f.filename, "SZ") == f.filename  # unchanged: no-op
    new = store.set_flags("", f.filename, "TSFa")
    assert new == f"{f.base}:2,FSTZa"  # Z describes the file: it stays
    assert not store.path_of("", "cur", f.filename).exists()
    with pytest.raises(StoreError) as err:
        store.set_flags("", f.filename, "S")
    assert err.value.details["missing"] is True
    # a file Dovecot left in new/ is moved to cur/ with an info part
    (store.root / "new" / "9.M1P1.host,S=1,W=1").write_bytes(b"x")
    assert store.set_flags("", "9.M1P1.host,S=1,W=1", "S") == "9.M1P1.host,S=1,W=1:2,S"
    assert (store.root / "cur" / "9.M1P1.host,S=1,W=1:2,S").exists()


def test_locate_after_foreign_rename(store: Store) -> None:
    f = put(store, "", b"m", "S")
    os.rename(store.path_of("", "cur", f.filename), store.root / "cur" / f"{f.base}:2,FSZb")
    found = store.locate("", f.base)
    assert found is not None and found.filename == f"{f.base}:2,FSZb" and found.flags == "FSZb"
    assert store.locate("", f.base, hint=f"{f.base}:2,FSZb") == found
    assert store.locate("", "no-such-base") is None
    os.rename(store.root / "cur" / found.filename, store.root / "new" / f.base)
    moved = store.locate("", f.base)
    assert moved is not None and moved.subdir == "new"


def test_scan_finds_renamed_and_moved_files_by_base(store: Store) -> None:
    store.ensure_folder(".Other")
    a, b = put(store, "", b"a", "S"), put(store, "", b"b")
    os.rename(store.path_of("", "cur", a.filename), store.root / "cur" / f"{a.base}:2,RSZ")
    os.rename(store.path_of("", "cur", b.filename), store.root / ".Other" / "cur" / b.filename)
    by_base = {x.base: x for x in store.scan()}
    assert by_base[a.base].flags == "RSZ" and by_base[a.base].dirname == ""
    assert by_base[b.base].dirname == ".Other"


def test_move_remaps_keywords(store: Store) -> None:
    store.ensure_folder(".Dst")
    store.ensure_keywords("", ["$Label1", "work"])
    store.ensure_keywords(".Dst", ["work"])
    f = put(store, "", b"m", "Sab")
    (store.root / "cur" / f"{f.base}x").write_bytes(b"")  # unrelated file
    new = store.move("", f.filename, ".Dst")
    assert new == f"{f.base}:2,SZab"  # work is a there, $Label1 appended as b
    assert read_keywords(store.root / ".Dst") == {0: "work", 1: "$Label1"}
    assert store.read_message(".Dst", "cur", new) == b"m"
    assert not store.path_of("", "cur", f.filename).exists()
    assert store.move(".Dst", new, ".Dst") == new


def test_delete_and_quarantine(store: Store) -> None:
    a, b = put(store, "", b"a"), put(store, "", b"b")
    assert store.delete("", a.filename) is True
    assert store.delete("", a.filename) is False
    q = store.quarantine("", b.filename, "sha256 mismatch")
    assert q.read_bytes()[:4] == b"\x28\xb5\x2f\xfd" and q.name == b.filename
    assert q.parent.parent == store.root / "axsync-quarantine"
    reason = json.loads((q.parent / "reason.json").read_text())
    assert reason["reason"] == "sha256 mismatch" and reason["dirname"] == ""
    assert list(store.scan()) == []
    assert store.folders() == [""]  # the quarantine is not a folder


def test_cleanup_tmp_removes_only_our_old_files(store: Store) -> None:
    ours = store.root / "tmp" / new_unique()  # what a killed writer leaves behind
    fresh = store.root / "tmp" / new_unique()
    dovecot = store.root / "tmp" / "1.M2P3.host"
    helper = store.root / "axsync-tmp.dovecot-keywords.1.abcd"
    for p in (ours, fresh, dovecot, helper):
        p.write_text("x")
    old = time.time() - 7200
    for p in (ours, dovecot, helper):
        os.utime(p, (old, old))
    assert store.cleanup_tmp(3600) == 2
    assert sorted(os.listdir(store.root / "tmp")) == sorted([dovecot.name, fresh.name])
    assert not helper.exists()


@pytest.fixture
def fast_dir(tmp_path: Path) -> Iterator[Path]:
    """A directory on tmpfs when there is one: creating 100k files on a busy disk takes
    far longer than the scan being measured."""
    shm = Path("/dev/shm")
    if not (shm.is_dir() and os.access(shm, os.W_OK)):
        yield tmp_path
        return
    path = Path(tempfile.mkdtemp(prefix="axsync-test-", dir=shm))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def test_scan_100k_files_is_fast(fast_dir: Path) -> None:
    store = Store(fast_dir)
    store.ensure_folder("")
    store.ensure_folder(".B")
    flags = os.O_CREAT | os.O_WRONLY
    for dirname, n in (("", 60_000), (".B", 40_000)):
        cur = store.path_of(dirname, "cur", "x").parent
        for i in range(n):
            os.close(
                os.open(cur / f"17{i:08d}.M1P2Q{i}R0011aabb.host,S={i},W={i}:2,S", flags, 0o600)
            )
    start = time.perf_counter()
    count = sum(1 for _ in store.scan())
    elapsed = time.perf_counter() - start
    assert count == 100_000
    assert elapsed < 2.0, f"scan of 100k files took {elapsed:.2f}s"


def test_digest_matches_what_the_writer_recorded(tmp_path: Path) -> None:
    from axsync.store import Store

    store = Store(tmp_path / "m")
    store.ensure_folder("")
    raw = b"Subject: x\r\n\r\n" + b"line\n" * 70000 + b"\r" + b"\nend\r\n"  # CR/LF split across reads
    with store.writer("") as w:
        w.write(raw)
        stored = w.commit("S", 1_700_000_000)
    assert store.digest("", "cur", stored.filename) == (stored.sha256, stored.size, stored.vsize)
