"""FileReader: finding and reading message files through directory descriptors, with the
same answers and the same refusals as the path-based Store methods."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from axsync.archive.locate import Locator
from axsync.errors import StoreError, UnsafeName
from axsync.store import Store
from axsync.store.reader import MAX_DIRS, FileReader

from .test_maildir import put

MSG = b"Subject: hi\r\nMessage-ID: <r@example.com>\r\n\r\n" + b"body line\r\n" * 500


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.parametrize("method", ["zstd", "gzip", "none"])
def test_reads_what_the_store_reads(tmp_path: Path, method: str) -> None:
    store = Store(tmp_path / "Mail", compression=method)
    store.ensure_folder("")
    store.ensure_folder(".Work", ("Work",))
    a = put(store, "", MSG)
    b = put(store, ".Work", MSG + b"more\r\n", chunk=100)
    with FileReader(store.root) as reader:
        for f in (a, b):
            whole = store.read_message(f.dirname, "cur", f.filename)
            assert reader.read(f.dirname, "cur", f.filename) == whole
            assert len(whole) == f.size
            for limit in (0, 1, 100, f.size - 1, f.size, f.size + 5):
                assert reader.read(f.dirname, "cur", f.filename, limit) == \
                    store.read_message(f.dirname, "cur", f.filename, limit)
            assert reader.is_file(f.dirname, "cur", f.filename)
            assert not reader.is_file(f.dirname, "new", f.filename)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=20_000), limit=st.none() | st.integers(0, 25_000))
def test_any_content_round_trips(store: Store, data: bytes, limit: int | None) -> None:
    store.ensure_folder("")
    f = put(store, "", data, chunk=997)
    with FileReader(store.root) as reader:
        assert reader.read("", "cur", f.filename, limit) == data[:limit]


def test_missing_files_and_directories(store: Store) -> None:
    store.ensure_folder("")
    f = put(store, "", MSG)
    with FileReader(store.root) as reader:
        assert not reader.is_file("", "cur", "1.M1P1.host,S=5:2,")
        assert not reader.is_file(".Nowhere", "cur", f.filename)
        with pytest.raises(StoreError) as err:
            reader.read("", "new", f.filename)
        assert err.value.details.get("missing") is True
        with pytest.raises(StoreError) as err:
            reader.read(".Nowhere", "cur", f.filename)
        assert err.value.details.get("missing") is True
        (store.root / "cur" / "a-directory").mkdir()
        assert not reader.is_file("", "cur", "a-directory")


def test_symlinks_are_not_followed(tmp_path: Path, store: Store) -> None:
    store.ensure_folder("")
    f = put(store, "", MSG)
    outside = tmp_path / "outside"
    (outside / "cur").mkdir(parents=True)
    secret = outside / "cur" / f.filename
    secret.write_bytes(b"Subject: secret\r\n\r\nnot in the archive\r\n")
    (store.root / ".Link").symlink_to(outside)  # a symlinked folder
    store.ensure_folder(".Real", ("Real",))
    os.rmdir(store.root / ".Real" / "new")
    (store.root / ".Real" / "new").symlink_to(outside / "cur")  # a symlinked cur/new
    (store.root / "cur" / "linked,S=5:2,").symlink_to(secret)  # a symlinked file
    with FileReader(store.root) as reader:
        for dirname, sub in ((".Link", "cur"), (".Real", "new")):
            with pytest.raises(UnsafeName):
                reader.is_file(dirname, sub, f.filename)
            with pytest.raises(UnsafeName):
                reader.read(dirname, sub, f.filename)
        assert not reader.is_file("", "cur", "linked,S=5:2,")
        with pytest.raises(StoreError, match="cannot open"):
            reader.read("", "cur", "linked,S=5:2,")
        # What Store.path_of refuses, the reader refuses too.
        for dirname, sub, name in ((".Link", "cur", f.filename), (".Real", "new", f.filename),
                                   ("..", "cur", f.filename), ("../x", "cur", f.filename),
                                   ("", "etc", f.filename), ("", "cur", "../x"),
                                   ("", "cur", ".hidden"), ("", "cur", "a/b")):
            with pytest.raises(UnsafeName):
                store.path_of(dirname, sub, name)
            with pytest.raises(UnsafeName):
                reader.read(dirname, sub, name)
            with pytest.raises(UnsafeName):
                reader.is_file(dirname, sub, name)
        assert reader.read("", "cur", f.filename) == MSG


def test_keeps_at_most_max_dirs_open_and_closes_them(store: Store) -> None:
    store.ensure_folder("")
    files = []
    for i in range(MAX_DIRS + 6):
        dirname = f".F{i}"
        store.ensure_folder(dirname, (f"F{i}",))
        files.append(put(store, dirname, MSG + str(i).encode()))
    before = open_fds()
    reader = FileReader(store.root)
    for f in files:
        assert reader.read(f.dirname, "cur", f.filename).endswith(f.dirname[2:].encode())
    assert open_fds() - before == MAX_DIRS
    reader.close()
    assert open_fds() == before
    assert reader.read(files[0].dirname, "cur", files[0].filename)  # usable again
    reader.close()
    assert open_fds() == before


def test_locator_finds_and_reads_through_the_reader(store: Store) -> None:
    store.ensure_folder("")
    f = put(store, "", MSG, flags="S")
    before = open_fds()
    with Locator(store) as locator:
        found = locator.find("", f.base, f.filename)
        assert found is not None and found.subdir == "cur"
        assert locator.read(found) == MSG
        assert locator.read(found, 10) == MSG[:10]
        # Renamed since it was recorded (flags changed): found by its base, in a listing.
        new_name = store.set_flags("", f.filename, "SF")
        moved = locator.find("", f.base, f.filename)
        assert moved is not None and moved.filename == new_name
        assert locator.read(moved) == MSG
        assert locator.find(".Link", f.base, f.filename) is None  # no such folder
    assert open_fds() == before
