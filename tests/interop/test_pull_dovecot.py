"""What ``axsync sync`` pulls, served by a real Dovecot 2.3 over IMAP, against the server.

A generated mailbox of a few hundred messages (every hostile folder name of the generator
plus more, labels that are no IMAP atoms, a multi-megabyte message, NUL bytes, bare CR,
LF-only and no final newline) is pulled from the fake Axigen server, changed on the
server, pulled again, and then served by Dovecot (a copy of the archive; see
docs/interop.md). Every message of every synced server folder must come back from
Dovecot with BODY[] = the server's raw bytes as Dovecot serves them (LF -> CRLF,
NUL -> 0x80), FLAGS = the server's flags plus one keyword per label (the archive atom),
RFC822.SIZE = W= and INTERNALDATE = the server's internal date.

What Dovecot (Maildir++, listescape with ``\\``, separator ``/``) shows as folder names,
as observed with Dovecot 2.3.19.1 and asserted below: the IMAP name of a directory
``.<c1>.<c2>`` is ``<d1>/<d2>`` where each ``d`` is the component with ``\\xx`` escapes
decoded, then modified UTF-7 decoded. So

* ``v1.2 notes`` (``.v1\\2e2 notes``), ``a.b.c``, ``.``, ``..``, ``.hidden``, ``~tilde``,
  ``cur``/``new``/``tmp``, ``R&D``, ``Tab<TAB>here``, ``x\\y``, ``50%``, ``[br]``: shown
  with exactly the server's name;
* a ``/`` inside a name, which no IMAP name can hold (it is the separator), is stored as
  its look-alike ``∕`` (U+2215, modified UTF-7 ``&IhU-``): ``a/b`` (``.a&IhU-b``) is shown
  as ``a∕b``, ``/`` below ``H`` (``.H.&IhU-``) as ``H/∕`` and ``x/../y`` below ``H`` as
  ``H/x∕..∕y``, and all of them open and serve their mail (the archive records the real
  path in ``axsync-folder-name``). No ``\\Noselect`` parent appears. (Stored as
  listescape ``\\2f``, as earlier versions did, Dovecot decoded the escape to its
  separator: ``a/b`` was listed as ``b`` below a ``\\Noselect`` ``a`` and could not be
  opened.);
* names that collide on a case- or normalization-insensitive file system (``work`` next
  to ``Work``) or do not fit in 255 bytes get ``~<12 hex>`` appended (the archive records
  the real path in ``axsync-folder-name``): Dovecot shows ``work~22f199ad3c03``. The
  NFC/NFD twins ``Café`` are distinct in modified UTF-7 (``Caf&AOk-``, ``Cafe&AwE-``) and
  keep their names (Dovecot lists both as ``Café``).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from sync.archive_check import assert_archive_equals_server, server_folders, server_mails
from sync.conftest import Env, corpus

from axsync.config import Account, MaxDelete
from axsync.fake.server import FakeAxigen, Knobs
from axsync.statedb import StateDB
from axsync.store import Store, folder_dirname, label_to_atom
from axsync.store.names import shown_path

from .dovecot import (
    DovecotServer,
    crlf,
    fetch_all,
    imap_body,
    list_mailbox_entries,
    mutf7_decode,
    requires_dovecot,
)

pytestmark = [pytest.mark.interop, requires_dovecot, pytest.mark.timeout(300)]

USER = "dovecot-pull@example.com"
PASSWORD = "pw"
MORE_FOLDERS = ("x\\y", "back\\2eslash", "/", "50%", "a*b", "[br]", "{c}", '"quoted"', " lead",
                "&amp", "x/../y", "ü-raw", "INBOX", "Entwürfe")
ODD = (
    b"Subject: nul\nMessage-ID: <nul@pull.test>\n\nbefore\0after\n",
    b"Subject: cr\r\nMessage-ID: <cr@pull.test>\r\n\r\na\rb\r\n",
    b"Subject: no final newline\n\nno Message-ID, no final newline",
    b"Subject: mixed\r\nX: y\n\r\nmixed\nline\r\nends\n",
)
SYSTEM = (("\\Seen", lambda m: not m.unread), ("\\Flagged", lambda m: m.flagged),
          ("\\Draft", lambda m: m.draft), ("\\Answered", lambda m: "re" in m.refw),
          ("\\Deleted", lambda m: m.deleted))


def imap_name(dirname: str) -> str:
    """The name Dovecot (listescape ``\\``, separator ``/``) gives a Maildir++ directory."""
    if dirname == "":
        return "INBOX"
    parts = []
    for comp in dirname[1:].split("."):
        unescaped = re.sub(r"\\([0-9a-fA-F]{2})", lambda m: chr(int(m.group(1), 16)), comp)
        parts.append(mutf7_decode(unescaped))
    return "/".join(parts)


@pytest.fixture(scope="module")
def pulled(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Env, dict[tuple[str, ...], str]]]:
    """The fake server and the archive pulled from it (twice, with changes in between),
    plus each synced server folder's IMAP name in Dovecot."""
    tmp = tmp_path_factory.mktemp("pull-dovecot")
    with FakeAxigen(corpus(13, 320, 1), user=USER, password=PASSWORD,
                    knobs=Knobs(api_version="10.6")) as fake:
        mb = fake.mailbox
        top = mb.add_folder("H")
        for i, name in enumerate(MORE_FOLDERS):
            mb.add_mail(mb.add_folder(name, top), b"Subject: %d\n\nin H\n" % i, date=1_600_000_000 + i)
        emoji = mb.create_label("📎 Anhänge/2024")
        inbox = mb.folder_id(("INBOX",))
        for i, raw in enumerate(ODD):
            mb.add_mail(inbox, raw, date=1_650_000_000 + i, unread=bool(i % 2), flagged=i == 1,
                        refw="re" if i == 2 else "", labels=[emoji] if i < 2 else [])
        maildir = tmp / "Mail"
        account = Account(name="dv", server=fake.url, username=USER, maildir=maildir, mode="mirror",
                          max_delete=MaxDelete(None, 100.0))
        env = Env(fake, maildir, account)
        env.ok()
        # Server changes, then a second pull: renamed files must be served right too.
        mails = sorted(mb.mails(inbox), key=lambda m: m.id)
        labels = {n: i for i, n in mb.labels()}
        mb.set_flags(mails[0].id, unread=False, flagged=True, draft=True, deleted=True)
        mb.add_label_to_mail(mails[1].id, labels["Ärger"])
        mb.add_label_to_mail(mails[1].id, emoji)
        mb.move_mail(mails[2].id, mb.folder_id(("Archive", "2024")))
        mb.rename_folder(mb.folder_id(("Receipts",)), "Receipts v2.0")
        env.ok()
        assert_archive_equals_server(fake, maildir, env.db_path)
        db = StateDB.open(env.db_path, readonly=True)
        try:
            dirname_of = {f.path: f.dirname for f in db.folders() if f.state == "present"}
        finally:
            db.close()
        names = {path: imap_name(dirname_of[path]) for path in server_mails(fake)}
        # Every name is the server path with "/" in a level shown as "∕", except the
        # disambiguated ones (~<hash>).
        renamed = {p for p in names if names[p] != "/".join(shown_path(p))}
        assert renamed == {p for p in names if folder_dirname(p) != dirname_of[p]}
        assert {p[-1] for p in renamed} == {"work"}  # next to "Work"
        assert all(re.search(r"~[0-9a-f]{12}$", names[p]) for p in renamed)
        yield env, names


@pytest.fixture(scope="module")
def dovecot(pulled: tuple[Env, dict[tuple[str, ...], str]],
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[DovecotServer]:
    env, _names = pulled
    with DovecotServer(env.maildir, tmp_path_factory.mktemp("dovecot")) as dv:
        yield dv


def expected_messages(env: Env, path: tuple[str, ...]) -> Counter[tuple[object, ...]]:
    want: Counter[tuple[object, ...]] = Counter()
    for m in server_mails(env.fake)[path]:
        server = env.mb.get_mail(m.id)
        flags = {f for f, on in SYSTEM if on(server)}
        flags |= {label_to_atom(name) for name in m.labels}
        want[(imap_body(m.raw), frozenset(flags), m.date, len(crlf(m.raw)))] += 1
    return want


def served(imap: Any, name: str) -> Counter[tuple[object, ...]]:
    return Counter((f.body, frozenset(f.flags), f.internaldate, f.rfc822_size)
                   for f in fetch_all(imap, name))


def test_dovecot_lists_every_folder_and_serves_every_message(pulled: tuple[Env, dict[tuple[str, ...], str]],
                                    dovecot: DovecotServer) -> None:
    env, names = pulled
    entries = list_mailbox_entries(dovecot.imap())
    listed = {e.name for e in entries if e.selectable}
    assert listed == set(names.values()), set(names.values()) ^ listed
    assert {e.name for e in entries if not e.selectable} == set()
    excluded = {p for p, (_f, ex) in server_folders(env.fake, env.account.exclude).items() if ex}
    assert excluded == {("Spam",)} and "Spam" not in listed

    # ... and serves every message exactly.
    imap = dovecot.imap()
    total = 0
    for path in sorted(names):
        want = expected_messages(env, path)
        assert served(imap, names[path]) == want, f"{path} served as {names[path]!r} differs"
        total += sum(want.values())
    assert total >= 300
    labelled = served(imap, "INBOX")
    assert any(label_to_atom("📎 Anhänge/2024") in flags for _b, flags, _d, _s in labelled)
    assert any("\\Deleted" in flags and "\\Draft" in flags for _b, flags, _d, _s in labelled)
    assert dovecot.log_problems() == []


def test_folders_with_a_slash_can_be_opened(pulled: tuple[Env, dict[tuple[str, ...], str]],
                                            dovecot: DovecotServer) -> None:
    env, names = pulled
    slashed = {p: names[p] for p in names if "/" in "".join(p)}
    assert slashed == {("H", "/"): "H/\u2215", ("H", "x/../y"): "H/x\u2215..\u2215y",
                       ("a/b",): "a\u2215b"}
    listed = {e.name: e for e in list_mailbox_entries(dovecot.imap())}
    imap = dovecot.imap()
    for path, name in slashed.items():
        assert listed[name].selectable, name
        want = expected_messages(env, path)
        assert sum(want.values()) >= 1, path
        assert served(imap, name) == want, path
    # The archive knows the real server path of each (axsync-folder-name).
    db = StateDB.open(env.db_path, readonly=True)
    try:
        dirnames = {f.path: f.dirname for f in db.folders() if f.path in slashed}
    finally:
        db.close()
    store = Store(env.maildir)
    assert {store.folder_path_of(d): d for d in dirnames.values()} == {
        p: folder_dirname(p) for p in slashed}
