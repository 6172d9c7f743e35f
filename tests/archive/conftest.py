"""Archives for the archive/browse tests, built directly (no server, no sync engine).

``build_archive(tmp_path, messages=…)`` writes what a pull would: folders (with
``assign_dirname``), ``dovecot-keywords``, compressed message files through the store's
writer, and the state DB rows (folders, labels, messages, conversations). ``messages`` is
a count (the fake server's corpus generator makes them) or a list of :class:`Mail`.
Other test packages import it: ``from archive.conftest import build_archive, Mail``.
"""

from __future__ import annotations

import hashlib
import os
import re
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from unittest import mock

import pytest

from axsync.archive import message as mm
from axsync.archive.index import SearchIndex
from axsync.config import Account
from axsync.fake.corpus import generate
from axsync.statedb import FolderRow, StateDB
from axsync.store import Store, assign_dirname, label_to_atom

ACCOUNT = "test"
_MSGID = re.compile(rb"<[^<>\s]+>")


@dataclass(frozen=True)
class Mail:
    """One message to put into a test archive."""

    raw: bytes
    folder: tuple[str, ...] = ("INBOX",)
    date: int = 1_700_000_000
    unread: bool = False
    flagged: bool = False
    draft: bool = False
    answered: bool = False
    labels: tuple[str, ...] = ()
    state: str = "present"
    conversation: bool = True  # False: leave conversation_id NULL (References fallback)


@dataclass
class Built:
    maildir: Path
    db_path: Path
    config_path: Path
    account: Account
    uids: list[int] = field(default_factory=list)  # uid of mails[i]
    mails: list[Mail] = field(default_factory=list)
    dirnames: dict[tuple[str, ...], str] = field(default_factory=dict)
    names: dict[str, int] = field(default_factory=dict)  # sample name -> uid

    def open_db(self, readonly: bool = True) -> StateDB:
        return StateDB.open(self.db_path, readonly=readonly)


def make_mail(subject: str, body: str = "Hello.\n", *, sender: str = "Alice Example <alice@example.com>",
          to: str = "Bob Example <bob@example.org>", msgid: str | None = None,
          headers: str = "", content_type: str = "text/plain; charset=utf-8") -> bytes:
    """A small RFC 5322 message (CRLF line ends, like the server's raw source)."""
    mid = msgid or f"<{hashlib.sha1(subject.encode() + body.encode()).hexdigest()[:16]}@example.com>"
    head = (
        f"From: {sender}\nTo: {to}\nSubject: {subject}\nDate: Tue, 14 Nov 2023 22:13:20 +0000\n"
        f"Message-ID: {mid}\nMIME-Version: 1.0\nContent-Type: {content_type}\n"
        f"Content-Transfer-Encoding: 8bit\n{textwrap.dedent(headers)}"
    )
    return (head.rstrip("\n") + "\n\n" + body).replace("\n", "\r\n").encode("utf-8")


def corpus_mails(count: int, seed: int = 0) -> tuple[list[Mail], dict[tuple[str, ...], str]]:
    corpus = generate(seed, count, big_messages=0)
    mails = [
        Mail(m.raw, m.folder, m.date, m.unread, m.flagged, m.draft, "re" in m.refw, m.labels)
        for m in corpus.messages
    ]
    return mails, {f.path: f.role for f in corpus.folders}


def _conversations(mails: Sequence[Mail]) -> list[str | None]:
    """Union-find over Message-ID / In-Reply-To / References, as the server threads."""
    parent: dict[bytes, bytes] = {}

    def find(x: bytes) -> bytes:
        parent.setdefault(x, x)
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    keys: list[bytes] = []
    for i, mail in enumerate(mails):
        head = mail.raw.split(b"\r\n\r\n", 1)[0].split(b"\n\n", 1)[0]
        ids = [m for line in re.split(rb"\r?\n(?![ \t])", head)
               if line.lower().startswith((b"message-id:", b"in-reply-to:", b"references:"))
               for m in _MSGID.findall(line)] or [f"<solo-{i}>".encode()]
        keys.append(ids[0])
        for other in ids[1:]:
            parent[find(other)] = find(ids[0])
    roots = [find(k) for k in keys]
    return [f"conv-{hashlib.sha1(r).hexdigest()[:10]}" if m.conversation else None
            for r, m in zip(roots, mails, strict=True)]


def build_archive(tmp_path: Path, messages: int | Sequence[Mail] = 60, *, seed: int = 0,
                  compression: str = "zstd", index: bool = True,
                  extra_folders: Sequence[tuple[str, ...]] = (),
                  roles: dict[tuple[str, ...], str] | None = None) -> Built:
    """A complete archive under ``tmp_path/Mail`` and a config naming it account ``test``.
    ``roles``: folder path -> server role (inbox, sent, ...), for a list of mails."""
    with mock.patch.object(os, "fsync", lambda fd: None):  # durability is not under test here
        return _build(tmp_path, messages, seed, compression, index, extra_folders, roles)


def _build(tmp_path: Path, messages: int | Sequence[Mail], seed: int, compression: str,
           index: bool, extra_folders: Sequence[tuple[str, ...]],
           given_roles: dict[tuple[str, ...], str] | None) -> Built:
    if isinstance(messages, int):
        mails, folder_paths = corpus_mails(messages, seed)
    else:
        mails, folder_paths = list(messages), given_roles or {("INBOX",): "inbox"}
    maildir = tmp_path / "Mail"
    store = Store(maildir, compression=compression)
    db = StateDB.open(maildir / "axsync.sqlite")
    db.ensure_account(ACCOUNT, "https://mail.example.com", "alex@example.com")
    roles = {p: folder_paths.get(p, "") for p in [*folder_paths, *extra_folders, *(m.folder for m in mails)]}
    built = Built(maildir, maildir / "axsync.sqlite", tmp_path / "config.toml", _account(maildir))
    with db.transaction():
        _folders(db, store, roles, built.dirnames)
        label_ids = _labels(db, mails)
        for mail, conv in zip(mails, _conversations(mails), strict=True):
            built.uids.append(_store_mail(db, store, built, mail, conv, label_ids))
    if index:
        SearchIndex(db, store).catch_up()
    db.close()
    built.mails = mails
    built.config_path.write_text(
        f'[accounts.{ACCOUNT}]\nserver = "https://mail.example.com"\n'
        f'username = "alex@example.com"\nmaildir = "{maildir}"\n', "utf-8")
    return built


def _account(maildir: Path) -> Account:
    return Account(name=ACCOUNT, server="https://mail.example.com", username="alex@example.com",
                   maildir=maildir)


def _folders(db: StateDB, store: Store, roles: dict[tuple[str, ...], str],
             out: dict[tuple[str, ...], str]) -> None:
    taken: dict[str, tuple[str, ...]] = {}
    for n, (path, role) in enumerate(roles.items()):
        dirname = assign_dirname(path, taken)
        taken[dirname] = path
        out[path] = dirname
        store.ensure_folder(dirname, path)
        db.upsert_folder(FolderRow(f"f{n}", None, path[-1], path, dirname, role, None, None, None,
                                   None, False, "present"), 1_700_000_000)


def _labels(db: StateDB, mails: Sequence[Mail]) -> dict[str, str]:
    names = sorted({name for m in mails for name in m.labels})
    ids = {name: f"L{n}" for n, name in enumerate(names)}
    db.replace_labels((ids[name], name, label_to_atom(name)) for name in names)
    return ids


def _store_mail(db: StateDB, store: Store, built: Built, mail: Mail, conv: str | None,
                label_ids: dict[str, str]) -> int:
    dirname = built.dirnames[mail.folder]
    letters = store.ensure_keywords(dirname, [label_to_atom(x) for x in mail.labels])
    db.set_folder_keywords(dirname, letters)
    flags = "".join(f for f, on in (("D", mail.draft), ("F", mail.flagged),
                                    ("R", mail.answered), ("S", not mail.unread)) if on)
    with store.writer(dirname) as writer:
        writer.write(mail.raw)
        stored = writer.commit(flags + "".join(letters.values()), mail.date)
    parsed = mm.parse(mail.raw)
    folder_id = f"f{list(built.dirnames).index(mail.folder)}"
    n = len(built.uids)
    return db.insert_message({
        "mail_id": f"MAIL{n:05d}x", "folder_id": folder_id, "dirname": dirname,
        "base": stored.base, "filename": stored.filename, "size": stored.size,
        "server_size": stored.size, "vsize": stored.vsize, "sha256": stored.sha256,
        "compression": compression_of(store), "flags": flags,
        "label_ids": [label_ids[x] for x in mail.labels], "internal_date": mail.date,
        "message_id": mm.header(parsed, "message-id"), "conversation_id": conv,
        "subject": mm.header(parsed, "subject"), "from_addr": mm.header(parsed, "from"),
        "state": mail.state, "first_seen": mail.date, "last_seen": mail.date,
    })


def index_dump(db: StateDB) -> tuple[list[tuple[object, ...]], ...]:
    """The search index's content (FTS rows, documents, references), to compare two builds."""
    return (
        db.execute("SELECT rowid, * FROM search_fts ORDER BY rowid").fetchall(),
        db.execute("SELECT uid, sha256, has_attachment, sent_date, error FROM search_docs "
                   "ORDER BY uid").fetchall(),
        db.execute("SELECT msgid, uid FROM search_refs ORDER BY msgid, uid").fetchall(),
    )


def clear_index(db: StateDB) -> None:
    with db.transaction():
        for table in ("search_fts", "search_docs", "search_refs"):
            db.execute(f"DELETE FROM {table}")


def compression_of(store: Store) -> str:
    return str(store.compression)



# ---------------------------------------------------------------------------- samples

PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360f8cfc0f01f0005000201a5b5"
    "e2a70000000049454e44ae426082"
)
PDF = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n" + bytes(range(256))


def _b64(data: bytes) -> str:
    import base64

    return base64.encodebytes(data).decode("ascii")


def _hostile() -> bytes:
    html = (
        "<html><head><title>t</title><style>p{color:#333}</style></head><body>"
        "<p>Please review the <a href=\"javascript:alert(1)\">report</a>.</p>"
        "<script>window.__pwned = 1; document.title = 'pwned';</script>"
        "<img src=\"https://tracker.example.net/open.gif?u=1\" alt=\"tracker\">"
        "<img src=\"cid:logo@example.com\" alt=\"logo\">"
        "<img src=\"x\" onerror=\"window.__pwned = 2\">"
        "<svg onload=\"window.__pwned = 3\"></svg>"
        "<div style=\"background:url('https://tracker.example.net/bg.png')\">styled</div>"
        "<form action=\"https://phish.example/\"><input name=pw></form>"
        "<p>Hostile body marker</p></body></html>"
    )
    body = (
        "--OUT\nContent-Type: multipart/related; boundary=REL\n\n"
        "--REL\nContent-Type: text/html; charset=utf-8\n\n" + html + "\n"
        "--REL\nContent-Type: image/png\nContent-ID: <logo@example.com>\n"
        "Content-Transfer-Encoding: base64\n\n" + _b64(PNG) + "--REL--\n"
        "--OUT\nContent-Type: application/pdf; name=\"report.pdf\"\n"
        "Content-Disposition: attachment; filename=\"report.pdf\"\n"
        "Content-Transfer-Encoding: base64\n\n" + _b64(PDF) +
        "--OUT\nContent-Type: text/plain\nContent-Disposition: attachment; "
        "filename=\"../../../etc/passwd\"\n\nroot:x:0:0\n"
        "--OUT\nContent-Type: text/html\nContent-Disposition: attachment; filename=\"page.html\"\n\n"
        "<script>window.__pwned = 4</script>\n--OUT--\n"
    )
    return make_mail("Hostile <script>alert(1)</script> & friends", body,
                 sender="Mallory <mallory@evil.example>",
                 content_type="multipart/mixed; boundary=OUT")


def sample_mails() -> dict[str, Mail]:
    """Hand-made messages with known properties, by name (see the tests for each)."""
    day = 86400
    base = 1_677_628_800  # 2023-03-01T00:00:00Z
    return {
        "budget": Mail(make_mail("Quarterly budget review", "The budget meeting is in Zürich.\n",
                             to="Bob Example <bob@example.org>",
                             headers="Cc: Carol <carol@example.net>\n"),
                       date=base, flagged=True, labels=("work",)),
        "hostile": Mail(_hostile(), date=base + day, unread=True),
        "t1": Mail(make_mail("Thread topic", "first\n", msgid="<t1@example.com>"),
                   date=base + 2 * day, conversation=False),
        "t2": Mail(make_mail("Re: Thread topic", "second\n", msgid="<t2@example.com>",
                         sender="Bob Example <bob@example.org>",
                         headers="In-Reply-To: <t1@example.com>\n"),
                   folder=("Sent",), date=base + 3 * day, conversation=False),
        "t3": Mail(make_mail("Re: Thread topic", "third\n", msgid="<t3@example.com>",
                         headers="In-Reply-To: <t2@example.com>\n"
                                 "References: <t1@example.com> <t2@example.com>\n"),
                   date=base + 4 * day, conversation=False, answered=True),
        "japanese": Mail(
            make_mail("=?UTF-8?B?5pel5pys6Kqe44Gu44OG44K544OI?=",
                  "", content_type="text/plain; charset=shift_jis").replace(
                b"\r\n\r\n", b"\r\n\r\n" + "東京で会議があります。\r\n".encode("shift_jis"), 1),
            date=base + 5 * day, labels=("To Do",)),
        "fromlines": Mail(make_mail("From lines", "Hi,\nFrom here on\n>From quoted\n>>From twice\n"
                                " From indented\nFromage\n"), date=base + 6 * day),
        "badcharset": Mail(
            b"From: =?x-nonsense?Q?Ren=E9?= <rene@example.fr>\r\nTo: x@example.com\r\n"
            b"Subject: caf\xe9 cr\xe8me\r\nMessage-ID: <bad@example.fr>\r\n"
            b"Content-Type: text/plain; charset=\"x-nonsense\"\r\n\r\nd\xe9j\xe0 vu\r\n",
            date=base + 7 * day),
        "archived": Mail(make_mail("Old archived note", "nothing to see\n"),
                         folder=("Archive", "2024"), date=1_714_867_200, unread=True,
                         labels=("To Do", "work")),
        "deleted": Mail(make_mail("Kept after server deletion", "still here\n"), date=base + 8 * day,
                        state="deleted"),
        "gone": Mail(make_mail("Gone for good", "tombstone\n"), date=base + 9 * day, state="tombstoned"),
        "slashfolder": Mail(make_mail("In a/b", "slash folder\n"), folder=("a/b",), date=base + 10 * day),
        "dotdot": Mail(make_mail("In dotdot", "dot dot folder\n"), folder=("..",), date=base + 11 * day),
        "kiwi_body": Mail(make_mail("Fruit order", "We also need one kiwi for the salad.\n"),
                          date=base + 12 * day),
        "kiwi_subject": Mail(make_mail("Kiwi harvest report", "The harvest went well.\n"),
                             date=base + 13 * day),
    }


@pytest.fixture(scope="session")
def sample(tmp_path_factory: pytest.TempPathFactory) -> Built:
    """A small archive of :func:`sample_mails` (read-only for the tests: do not change it)."""
    mails = sample_mails()
    built = build_archive(tmp_path_factory.mktemp("sample"), list(mails.values()))
    built.names = dict(zip(mails, built.uids, strict=True))
    return built


@pytest.fixture(scope="session")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Built:
    """The fake server's generated corpus (200 messages, every content kind); read-only."""
    return build_archive(tmp_path_factory.mktemp("corpus"), 200)
