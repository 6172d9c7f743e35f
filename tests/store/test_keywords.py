from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from axsync.errors import StoreError, UnsafeName
from axsync.store import fsutil
from axsync.store.keywords import (
    KEYWORDS_FILE,
    UIDLIST_LOCK,
    atom_to_label,
    ensure_keywords,
    is_atom,
    keywords_of,
    label_to_atom,
    read_keywords,
)


@pytest.mark.parametrize(
    ("label", "atom"),
    [
        ("Work", "Work"),
        ("$Label1", "$Label1"),
        ("has space", "has~20space"),
        ("Ärger", "~C3~84rger"),
        ("50%~off", "50~25~7Eoff"),
        ("(paren)", "~28paren~29"),
        ('q"{x}*]\\', "q~22~7Bx}~2A~5D~5C"),
        ("a/b", "a/b"),
        ("", "~"),
        ("tab\there", "tab~09here"),
    ],
)
def test_label_atom_examples(label: str, atom: str) -> None:
    assert label_to_atom(label) == atom
    assert atom_to_label(atom) == label
    assert is_atom(atom)


@given(st.text())
def test_label_atom_round_trip(label: str) -> None:
    atom = label_to_atom(label)
    assert is_atom(atom) and not atom.startswith("\\")
    assert atom_to_label(atom) == label


@given(st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1))
def test_valid_atoms_without_escape_char_are_unchanged(text: str) -> None:
    if is_atom(text) and "~" not in text:
        assert label_to_atom(text) == text


def test_foreign_atoms_decode_leniently() -> None:
    assert atom_to_label("~zz") == "~zz"
    assert atom_to_label("~FF") == "~FF"  # not UTF-8: returned as is
    assert atom_to_label("NewLabel") == "NewLabel"


def test_read_keywords_follows_dovecot_rules(tmp_path: Path) -> None:
    (tmp_path / KEYWORDS_FILE).write_bytes(
        b"0 $Label1\n1 work\nnospace\n26 toolarge\nx notnum\n2 \n3 work\n4 last\r\n5 a b\n"
    )
    assert read_keywords(tmp_path) == {0: "$Label1", 1: "work", 4: "last", 5: "a b"}
    assert read_keywords(tmp_path / "missing") == {}


def test_keywords_of() -> None:
    assert keywords_of("FSZbaq", {0: "x", 1: "y"}) == ["x", "y"]


def test_ensure_keywords_appends_only(tmp_path: Path) -> None:
    original = b"0 $Label1\n1 work\n3 $Forwarded"  # a hole at 2, no final newline
    (tmp_path / KEYWORDS_FILE).write_bytes(original)
    got = ensure_keywords(tmp_path, ["work", "new~20one", "$Label1", "other"])
    assert got == {"work": "b", "new~20one": "e", "$Label1": "a", "other": "f"}
    data = (tmp_path / KEYWORDS_FILE).read_bytes()
    assert data == original + b"\n4 new~20one\n5 other\n"
    assert ensure_keywords(tmp_path, ["other"]) == {"other": "f"}
    assert (tmp_path / KEYWORDS_FILE).read_bytes() == data  # nothing new: not rewritten
    assert sorted(os.listdir(tmp_path)) == [KEYWORDS_FILE]  # no temp file, lock released


def test_ensure_keywords_at_most_26(tmp_path: Path) -> None:
    atoms = [f"k{i}" for i in range(30)]
    got = ensure_keywords(tmp_path, atoms)
    assert list(got) == atoms[:26] and got["k25"] == "z"
    assert ensure_keywords(tmp_path, ["k29", "k0"]) == {"k0": "a"}
    assert len(read_keywords(tmp_path)) == 26


def test_ensure_keywords_refuses_non_atoms(tmp_path: Path) -> None:
    with pytest.raises(UnsafeName):
        ensure_keywords(tmp_path, ["has space"])
    with pytest.raises(UnsafeName):
        ensure_keywords(tmp_path, ["evil\n0 x"])


def test_fresh_lock_makes_ensure_wait(tmp_path: Path) -> None:
    lock = tmp_path / UIDLIST_LOCK
    lock.write_text("other")
    threading.Timer(0.4, lock.unlink).start()
    start = time.monotonic()
    assert ensure_keywords(tmp_path, ["w"]) == {"w": "a"}
    assert time.monotonic() - start >= 0.35
    assert not lock.exists()


def test_busy_lock_times_out(tmp_path: Path) -> None:
    lock = tmp_path / UIDLIST_LOCK
    lock.write_text("other")
    with pytest.raises(StoreError, match="held"):
        ensure_keywords(tmp_path, ["w"], lock_timeout_s=0.2)
    assert lock.read_text() == "other"  # someone else's lock is left alone
    assert not (tmp_path / KEYWORDS_FILE).exists()


def test_stale_lock_is_broken(tmp_path: Path) -> None:
    lock = tmp_path / UIDLIST_LOCK
    lock.write_text("999999999:some-other-host")
    old = time.time() - 180
    os.utime(lock, (old, old))
    start = time.monotonic()
    assert ensure_keywords(tmp_path, ["w"]) == {"w": "a"}
    assert time.monotonic() - start < 1
    assert not lock.exists()


def test_old_lock_of_a_live_local_process_is_respected(tmp_path: Path) -> None:
    import socket

    lock = tmp_path / UIDLIST_LOCK
    lock.write_text(f"{os.getpid()}:{socket.gethostname()}")
    old = time.time() - 180
    os.utime(lock, (old, old))
    with pytest.raises(StoreError):
        ensure_keywords(tmp_path, ["w"], lock_timeout_s=0.2)


def test_lock_is_reentrant_and_released_on_error(tmp_path: Path) -> None:
    lock = tmp_path / UIDLIST_LOCK
    with fsutil.dotlock(lock):
        assert lock.read_text().startswith(f"{os.getpid()}:")
        assert ensure_keywords(tmp_path, ["w"]) == {"w": "a"}  # nested use does not deadlock
        assert lock.exists()
    assert not lock.exists()
    with pytest.raises(RuntimeError), fsutil.dotlock(lock):
        raise RuntimeError
    assert not lock.exists()


def test_a_lock_that_cannot_be_written_is_not_left_behind(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """Disk full while writing the owner into a new lock: the empty lock file would block
    every later run (it looks held, and is not stale for minutes). It is removed."""
    lock = tmp_path / UIDLIST_LOCK

    def full(fd: int, data: bytes) -> int:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(fsutil.os, "write", full)
    with pytest.raises(OSError), fsutil.dotlock(lock):
        pass
    monkeypatch.undo()
    assert not lock.exists()
    with fsutil.dotlock(lock, timeout_s=0.1):  # the next run gets it at once
        assert lock.exists()


def test_lock_serialises_threads(tmp_path: Path) -> None:
    results: list[dict[str, str]] = []

    def add(i: int) -> None:
        results.append(ensure_keywords(tmp_path, [f"t{i}"]))

    threads = [threading.Thread(target=add, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(letter for r in results for letter in r.values()) == list("abcdefgh")
    assert len(read_keywords(tmp_path)) == 8
