"""A ``/`` inside a folder name level: stored as its look-alike ``∕`` (U+2215) so that
Dovecot can show and open the folder, with the real path in ``axsync-folder-name``."""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import re
import tempfile
from pathlib import Path
from types import ModuleType

import pytest
from hypothesis import given
from hypothesis import strategies as st

from axsync.errors import UnsafeName
from axsync.fake.corpus import load_corpus
from axsync.mutf7 import mutf7_decode
from axsync.store import Store
from axsync.store.maildir import FOLDER_NAME_FILE
from axsync.store.names import (
    MAX_NAME_BYTES,
    SLASH_LOOKALIKE,
    assign_dirname,
    fold_key,
    folder_dirname,
    folder_path,
    is_canonical_dirname,
    is_safe_dirname,
    needs_name_record,
    shown_path,
)

SLASHY = st.text(alphabet=st.sampled_from(["/", "\u2215", "a", ".", "~", "\\", "&", "ü", "x"]),
                 max_size=8)
components = st.one_of(st.text(max_size=20), SLASHY)
paths = st.lists(components, min_size=1, max_size=4).map(tuple)


def dovecot_levels(dirname: str) -> tuple[str, ...]:
    """The levels Dovecot 2.3 (Maildir++, listescape ``\\``, separator ``/``) shows for a
    directory: split at ``.``, ``\\xx`` unescaped, modified UTF-7 decoded, then split again
    at the separator (a ``/`` that comes out of a level is a hierarchy separator)."""
    if dirname == "":
        return ("INBOX",)
    parts = []
    for comp in dirname[1:].split("."):
        if comp == "\\-":
            parts.append("")
            continue
        unescaped = re.sub(r"\\([0-9a-fA-F]{2})", lambda m: chr(int(m.group(1), 16)), comp)
        parts.append(mutf7_decode(unescaped))
    return tuple("/".join(parts).split("/"))


@pytest.mark.parametrize(
    ("path", "dirname", "shown"),
    [
        (("a/b",), ".a&IhU-b", "a∕b"),
        (("H", "/"), ".H.&IhU-", "H/∕"),
        (("H", "x/../y"), ".H.x&IhU-\\2e\\2e&IhU-y", "H/x∕..∕y"),
        (("../../etc",), ".\\2e\\2e&IhU-\\2e\\2e&IhU-etc", "..∕..∕etc"),
        (("ü/ü",), ".&APwiFQD8-", "ü∕ü"),  # one base64 run, as Dovecot writes it
        (("/x",), ".&IhU-x", "∕x"),
        (("~/",), ".\\7e&IhU-", "~∕"),
        (("a∕b",), ".a&IhU-b", "a∕b"),  # a real look-alike: the same storage name
    ],
)
def test_slash_examples(path: tuple[str, ...], dirname: str, shown: str) -> None:
    assert folder_dirname(path) == dirname
    assert folder_path(dirname) == shown_path(path) == tuple(shown.split("/"))
    assert "/".join(dovecot_levels(dirname)) == shown
    assert needs_name_record(dirname, path) is ("/" in "".join(path))


def test_reference_mutf7_agrees(reference_mutf7: object) -> None:
    """The storage name is the modified UTF-7 of the name Dovecot shows."""
    for name in ["a/b", "/", "ü/ü", "x/../y"]:
        shown = name.replace("/", SLASH_LOOKALIKE)
        want = "." + reference_mutf7.encode(shown).replace(".", "\\2e")  # type: ignore[attr-defined]
        assert folder_dirname((name,)) == want


def test_the_old_escaped_form_is_no_longer_canonical() -> None:
    """What axsync wrote before (``\\2f``) is read leniently as ``/`` but refused strictly,
    so the sync engine can tell such a recorded dirname needs a new name."""
    for old, path in [(".a\\2fb", ("a/b",)), (".H.\\2f", ("H", "/")),
                      (".H.x\\2f\\2e\\2e\\2fy", ("H", "x/../y"))]:
        assert not is_canonical_dirname(old)
        with pytest.raises(UnsafeName):
            folder_path(old)
        assert folder_path(old, strict=False) == path
        assert is_canonical_dirname(folder_dirname(path))
    assert is_canonical_dirname("")
    assert not is_canonical_dirname("x") and not is_canonical_dirname(".a..b")
    # A "/" hidden in a base64 run is not canonical either.
    with pytest.raises(UnsafeName):
        folder_path(".&AC8-")


@given(paths)
def test_a_slash_and_its_look_alike_share_the_storage_name(path: tuple[str, ...]) -> None:
    assert folder_dirname(path) == folder_dirname(shown_path(path))
    if path != ("INBOX",):
        assert folder_path(folder_dirname(path)) == shown_path(path)


@given(paths)
def test_dovecot_sees_every_level_and_no_separator_inside_one(path: tuple[str, ...]) -> None:
    dirname = folder_dirname(path)
    if dirname == "":
        return
    levels = dovecot_levels(dirname)
    assert levels == shown_path(path)
    assert len(levels) == len(path)
    assert is_canonical_dirname(dirname)
    assert all("/" not in level for level in folder_path(dirname))  # strict never gives "/"


@given(st.lists(components, min_size=1, max_size=4).map(tuple), st.lists(paths, max_size=4))
def test_name_record_is_needed_exactly_when_the_name_does_not_decode_back(
        path: tuple[str, ...], others: list[tuple[str, ...]]) -> None:
    taken: dict[str, tuple[str, ...]] = {}
    for other in others:
        if other != path:
            taken.setdefault(assign_dirname(other, taken), other)
    d = assign_dirname(path, taken)
    expected = d != "" and folder_path(d) != path
    assert needs_name_record(d, path) is expected


@given(paths)
def test_a_slash_folder_never_shares_a_directory_with_its_look_alike_twin(path: tuple[str, ...]) -> None:
    twin = shown_path(path)
    if twin == path or path == ("INBOX",):
        return
    for first, second in ((path, twin), (twin, path)):
        taken: dict[str, tuple[str, ...]] = {}
        a = assign_dirname(first, taken)
        taken[a] = first
        b = assign_dirname(second, taken)
        plain = folder_dirname(first)
        if len(plain.encode("utf-8")) <= MAX_NAME_BYTES:  # else shortened, whatever the order
            assert a == plain  # the first one assigned keeps the plain name
        assert fold_key(a) != fold_key(b) and re.search(r"~[0-9a-f]{12}(-\d+)?$", b)
        assert is_safe_dirname(b) and is_canonical_dirname(b)


@given(st.lists(paths, min_size=1, max_size=6))
def test_store_recovers_the_exact_server_path(folders: list[tuple[str, ...]]) -> None:
    """Whatever mix of ``/`` and ``∕`` names, each folder gets its own directory inside the
    root, and ``folder_path_of`` (the ``axsync-folder-name`` record) gives the real path."""
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(Path(tmp) / "Mail")
        taken: dict[str, tuple[str, ...]] = {}
        for path in folders:
            d = assign_dirname(path, taken)
            taken[d] = path
            store.ensure_folder(d, path)
        assert os.listdir(tmp) == ["Mail"]
        for d, path in taken.items():
            assert store.folder_path_of(d) == (path if d else ("INBOX",))
            record = Path(tmp) / "Mail" / d / FOLDER_NAME_FILE
            assert record.is_file() is needs_name_record(d, path)
        on_disk = [n for n in os.listdir(Path(tmp) / "Mail") if n.startswith(".")]
        assert sorted(on_disk) == sorted(d for d in taken if d)
        assert len({fold_key(n) for n in on_disk}) == len(on_disk)


def test_without_its_record_a_slash_folder_reads_as_the_look_alike(store: Store) -> None:
    """The record is what makes ``∕`` a ``/``: a folder Dovecot (or a user) created as
    ``a∕b`` has none, nor has one whose record is stale after a rename."""
    d = folder_dirname(("a/b",))
    store.ensure_folder(d, ("a/b",))
    assert store.folder_path_of(d) == ("a/b",)
    assert json.loads((store.root / d / FOLDER_NAME_FILE).read_text("utf-8")) == {
        "dirname": ".a&IhU-b", "path": ["a/b"]}
    store.ensure_folder(".c&IhU-d")
    assert store.folder_path_of(".c&IhU-d") == ("c∕d",)
    assert not (store.root / ".c&IhU-d" / FOLDER_NAME_FILE).exists()
    os.rename(store.root / d, store.root / ".moved&IhU-by-dovecot")
    assert store.folder_path_of(".moved&IhU-by-dovecot") == ("moved∕by-dovecot",)
    # A rename by axsync writes the record again for the new name.
    store.rename_folder(".moved&IhU-by-dovecot", ".x&IhU-y", ("x/y",))
    assert store.folder_path_of(".x&IhU-y") == ("x/y",)


def test_subscriptions_name_the_slash_folders(store: Store) -> None:
    taken: dict[str, tuple[str, ...]] = {}
    for path in [("a∕b",), ("a/b",), ("H", "/")]:
        d = assign_dirname(path, taken)
        taken[d] = path
        store.ensure_folder(d, path)
    store.write_subscriptions([("a/b",), ("a∕b",), ("H", "/")])
    lines = (store.root / "subscriptions").read_text("utf-8").split("\n")[2:]
    twin = next(d for d, p in taken.items() if p == ("a/b",))
    assert twin.startswith(".a&IhU-b~")
    assert sorted(line for line in lines if line) == sorted(
        ["a&IhU-b", twin[1:], "H\t&IhU-"])


def test_the_corpus_loader_reads_slash_folders_back(tmp_path: Path) -> None:
    """axsync.fake.corpus.load_corpus (an archive loads back as the mailbox it mirrors):
    the record gives ``/``; without one the name is ``∕``; an old ``\\2f`` name is ``/``."""
    store = Store(tmp_path / "Mail")
    store.ensure_folder("")
    taken: dict[str, tuple[str, ...]] = {}
    for path in [("a∕b",), ("a/b",), ("H", "/"), ("H", "x/../y")]:
        d = assign_dirname(path, taken)
        taken[d] = path
        store.ensure_folder(d, path)
    store.ensure_folder(".no&IhU-record")
    os.makedirs(tmp_path / "Mail" / ".old\\2fform" / "cur")
    for d in [*taken, ".no&IhU-record", ".old\\2fform"]:
        (tmp_path / "Mail" / d / "cur" / f"{len(d)}.M1P1.host:2,S").write_bytes(
            b"Subject: x\n\nin " + d.encode() + b"\n")
    loaded = {m.folder for m in load_corpus(tmp_path / "Mail").messages}
    assert loaded == {("a∕b",), ("a/b",), ("H", "/"), ("H", "x/../y"),
                      ("no∕record",), ("old/form",)}


def _harness() -> ModuleType | None:
    for name in ("interop.dovecot", "tests.interop.dovecot"):
        with contextlib.suppress(ImportError):
            return importlib.import_module(name)
    return None


@pytest.mark.interop
def test_dovecot_lists_and_opens_slash_folders(tmp_path: Path) -> None:
    dovecot = _harness()
    if dovecot is None:
        pytest.skip("the Dovecot harness tests/interop/dovecot.py is missing")
    skip = dovecot.requires_dovecot  # a skipif mark: (condition,), reason=...
    if skip.args and skip.args[0]:
        pytest.skip(skip.kwargs.get("reason", "no Dovecot"))
    store = Store(tmp_path / "Maildir")
    store.ensure_folder("")
    folders = [("a/b",), ("a∕b",), ("H",), ("H", "/"), ("H", "x/../y"), ("ü/ü", "s/t")]
    taken: dict[str, tuple[str, ...]] = {}
    want: dict[str, bytes] = {}
    for i, path in enumerate(folders):
        d = assign_dirname(path, taken)
        taken[d] = path
        store.ensure_folder(d, path)
        data = b"Subject: %d\n\nin %s\n" % (i, json.dumps(path).encode())
        with store.writer(d) as w:
            w.write(data)
            w.commit("S", 1_704_067_200 + i)
        want["/".join(folder_path(d))] = data
    store.write_subscriptions(folders)
    twin = next(d for d, p in taken.items() if p == ("a∕b",))
    assert set(want) == {"a∕b", "/".join(folder_path(twin)), "H", "H/∕", "H/x∕..∕y", "ü∕ü/s∕t"}
    with dovecot.DovecotServer(tmp_path / "Maildir", tmp_path / "dovecot") as dv:
        imap = dv.imap()
        listed = set(dovecot.list_mailboxes(imap, selectable_only=True))
        assert set(want) <= listed, set(want) - listed
        for name, data in want.items():
            [msg] = dovecot.fetch_all(imap, name)
            assert msg.body == dovecot.imap_body(data), name
        assert dv.log_problems() == []
