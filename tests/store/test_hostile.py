"""Nothing is ever written outside the maildir root, whatever the folder and file names."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from axsync.errors import UnsafeName
from axsync.store import Store, assign_dirname

HOSTILE: list[tuple[str, ...]] = [
    ("INBOX",),
    ("..",),
    (".",),
    ("a/b",),
    ("../../etc",),
    ("/",),
    ("~x",),
    ("~",),
    ("nul\0byte",),
    ("tab\there",),
    ("new\nline",),
    ("x" * 300,),
    ("y" * 200, "z" * 200),
    ("\u00e9t\u00e9",),  # NFC
    ("e\u0301te\u0301",),  # NFD twin
    ("Case",),
    ("case",),
    ("CASE",),
    ("cur",),
    ("new",),
    ("tmp",),
    ("inbox",),
    ("INBOX", "cur"),
    ("",),
    ("a", "", "b"),
    ("back\\slash",),
    ("\\2e",),
    ("&",),
    ("&-",),
    ("axsync-quarantine",),
    ("dovecot-keywords",),
    ("日本語", "..", "x"),
    ("😀" * 100,),
]


def test_hostile_folder_names_stay_inside_the_root(tmp_path: Path) -> None:
    root = tmp_path / "Mail"
    store = Store(root)
    taken: dict[str, tuple[str, ...]] = {}
    for path in HOSTILE:
        dirname = assign_dirname(path, taken)
        assert dirname not in taken or taken[dirname] == path
        taken[dirname] = path
        store.ensure_folder(dirname, path)
        with store.writer(dirname) as w:
            w.write(repr(path).encode())
            w.commit("S", 1_700_000_000)

    assert os.listdir(tmp_path) == ["Mail"]
    real_root = os.path.realpath(root)
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            assert name not in (".", "..") and "/" not in name and "\0" not in name
            full = os.path.join(dirpath, name)
            assert os.path.realpath(full).startswith(real_root + os.sep)
            assert not os.path.islink(full)
    top = [n for n in os.listdir(root) if n.startswith(".")]
    assert len(top) == len(HOSTILE) - 1  # every folder but INBOX got its own directory
    assert len({n.casefold() for n in top}) == len(top)  # safe on case-insensitive disks
    assert all(len(n.encode()) <= 255 for n in top)
    for dirname, path in taken.items():
        assert store.folder_path_of(dirname) == path
        [found] = list(store.scan_folder(dirname))
        assert store.read_message(dirname, found.subdir, found.filename) == repr(path).encode()


@pytest.mark.parametrize(
    "dirname", ["..", ".", "../x", "/etc", ".a/b", "x", ".\0", "." + "x" * 255, "./..", "\\"]
)
def test_unsafe_dirnames_are_refused(store: Store, dirname: str) -> None:
    for call in (
        lambda: store.ensure_folder(dirname),
        lambda: store.writer(dirname),
        lambda: store.path_of(dirname, "cur", "m"),
        lambda: store.delete(dirname, "m"),
        lambda: store.keywords(dirname),
        lambda: store.rename_folder(".ok", dirname),
    ):
        with pytest.raises(UnsafeName):
            call()


@pytest.mark.parametrize("filename", ["../../x", ".hidden", "a/b", "..", "", "a\0"])
def test_unsafe_filenames_are_refused(store: Store, filename: str) -> None:
    for call in (
        lambda: store.path_of("", "cur", filename),
        lambda: store.set_flags("", filename, "S"),
        lambda: store.delete("", filename),
        lambda: store.move("", filename, ""),
        lambda: store.read_message("", "cur", filename),
    ):
        with pytest.raises(UnsafeName):
            call()
    with pytest.raises(UnsafeName):
        store.path_of("", "../cur", "m")


def test_symlinked_folders_are_refused(tmp_path: Path, store: Store) -> None:
    outside = tmp_path / "outside"
    Store(outside).ensure_folder("")
    (store.root / ".Link").symlink_to(outside)
    with pytest.raises(UnsafeName):
        store.ensure_folder(".Link")
    with pytest.raises(UnsafeName):
        store.writer(".Link")
    assert ".Link" in store.folders()  # listed, so it is not taken for a deleted folder
    with pytest.raises(UnsafeName):
        list(store.scan())
    store.ensure_folder(".Real")
    (store.root / ".Real" / "tmp").rmdir()
    (store.root / ".Real" / "tmp").symlink_to(outside / "tmp")
    with pytest.raises(UnsafeName):
        store.writer(".Real")
    with pytest.raises(UnsafeName):
        store.ensure_folder(".Real")
    (store.root / "axsync-quarantine").symlink_to(outside)
    with store.writer("") as w:
        w.write(b"m")
        f = w.commit("", 1_700_000_000)
    with pytest.raises(UnsafeName):
        store.quarantine("", f.filename, "test")
    assert store.path_of("", "cur", f.filename).exists()
    assert sorted(os.listdir(outside)) == ["cur", "new", "tmp"]
    assert os.listdir(outside / "tmp") == [] and os.listdir(outside / "cur") == []
