"""A real Dovecot serves exactly what the Store writes: every folder (odd names and
disambiguated ones included) can be opened, and bodies, sizes, dates, flags and
keywords come back as written. Uses the interop harness (tests/interop/dovecot.py)."""

from __future__ import annotations

import contextlib
import importlib
from pathlib import Path
from types import ModuleType

import pytest

from axsync.store import Store, assign_dirname, folder_path, label_to_atom


def _harness() -> ModuleType:
    for name in ("interop.dovecot", "tests.interop.dovecot"):  # tests/ may become a package
        with contextlib.suppress(ImportError):
            return importlib.import_module(name)
    pytest.skip("the Dovecot harness tests/interop/dovecot.py is missing", allow_module_level=True)


dovecot = _harness()
DovecotServer = dovecot.DovecotServer
fetch_all = dovecot.fetch_all
imap_body = dovecot.imap_body
list_mailboxes = dovecot.list_mailboxes

pytestmark = [pytest.mark.interop, dovecot.requires_dovecot]

SYSTEM = {"D": "\\Draft", "F": "\\Flagged", "R": "\\Answered", "S": "\\Seen", "T": "\\Deleted"}
FOLDERS: list[tuple[str, ...]] = [
    ("INBOX",),
    ("INBOX", "Sub"),
    ("Archive", "2024"),
    ("Entwürfe",),
    ("Dotted.Name",),
    ("tab\there",),
    ("~tilde",),
    ("A&B",),
    ("back\\slash",),
    ("..",),
    ("Case",),
    ("case",),  # a case twin: disambiguated
    ("Ü" * 120,),  # too long once encoded: disambiguated
    ("日本語", "メール"),
]
MESSAGES = [
    (b"Subject: lf\n\nbody\n", "S", ["work"]),
    (b"Subject: crlf\r\n\r\nbody\r\n", "FR", ["has space", "Ärger"]),
    (b"Subject: mixed\n\r\nline\r\nbare\n" * 50, "DT", []),
]


def test_dovecot_serves_the_store(tmp_path: Path) -> None:
    taken: dict[str, tuple[str, ...]] = {}
    expected: dict[str, list[tuple[bytes, str, list[str], int]]] = {}
    for i, path in enumerate(FOLDERS):
        store = Store(tmp_path / "Maildir", compression=["zstd", "gzip", "none"][i % 3])
        dirname = assign_dirname(path, taken)
        taken[dirname] = path
        store.ensure_folder(dirname, path)
        shown = "/".join(folder_path(dirname)) if dirname else "INBOX"
        for j, (data, flags, labels) in enumerate(MESSAGES):
            letters = store.ensure_keywords(dirname, [label_to_atom(x) for x in labels])
            with store.writer(dirname) as w:
                w.write(data)
                f = w.commit(flags + "".join(letters.values()), 1_704_067_200 + j)
            assert f.vsize == len(imap_body(data))
            expected.setdefault(shown, []).append((data, flags, labels, 1_704_067_200 + j))
    store.write_subscriptions(FOLDERS)

    with DovecotServer(tmp_path / "Maildir", tmp_path / "dovecot") as dv:
        imap = dv.imap()
        listed = set(list_mailboxes(imap, selectable_only=True))
        assert set(expected) <= listed
        for name, messages in expected.items():
            got = fetch_all(imap, name)
            assert len(got) == len(messages), name
            for msg, (data, flags, labels, mtime) in zip(got, messages, strict=True):
                assert msg.body == imap_body(data)
                assert msg.rfc822_size == len(imap_body(data))
                assert msg.internaldate == mtime
                assert msg.system_flags == {SYSTEM[c] for c in flags}
                assert msg.keywords == {label_to_atom(x) for x in labels}
        typ, lsub = imap.lsub('""', "*")
        assert typ == "OK" and len(lsub) >= len(FOLDERS)
        assert dv.log_problems() == []
