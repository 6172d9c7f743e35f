"""Push test harness: a small hand-built fake mailbox, mail-client-style local edits, and
the archive-versus-server oracle.

Local edits here are made the way a mail client (or a user with a shell) makes them:
``os.rename`` to change the ``:2,`` flags, ``os.rename`` between folder directories,
``os.unlink``, appending a line to ``dovecot-keywords`` — never through axsync's Store.

The oracle reads the server through ``fake.mailbox`` (not over HTTP) and the archive from
disk, identifies every mail by the sha256 of its content (each test mail is unique), and
compares folder path, system flags and label names.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import random
import re
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from axsync.api import ApiClient
from axsync.config import Account, MaxDelete
from axsync.fake.server import FakeAxigen, Knobs
from axsync.model import Download
from axsync.statedb import StateDB
from axsync.store import atom_to_label, folder_path, parse_name, read_message
from axsync.sync.engine import SyncOptions, run_account
from axsync.sync.report import RunReport

USER = "alice@example.com"
PASSWORD = "pw-push-tests"
KEYWORD_LETTERS = "abcdefghijklmnopqrstuvwxyz"
SYSTEM = "DFRST"
LABELS = ("Important", "Project X", "todo")
FOLDERS = (("Archive",), ("Work",), ("Work", "Sub"))
BASE_DATE = 1_760_000_000
MSGID_RE = re.compile(rb"^Message-ID: <([^>]*)>", re.M | re.I)

# ============================================================================ the server


def raw_mail(i: int, *, thread: int | None = None, tag: str = "m", body: str = "") -> bytes:
    """A tiny unique message ``<{tag}{i}@push.test>``; ``thread`` makes it a reply."""
    lines = [
        f"From: Sender {i} <s{i}@example.org>",
        f"To: {USER}",
        f"Subject: {'Re: ' if thread is not None else ''}message {tag}{i}",
        f"Message-ID: <{tag}{i}@push.test>",
        f"Date: Mon, 02 Mar 2026 10:{i % 60:02d}:00 +0000",
    ]
    if thread is not None:
        lines.append(f"References: <{tag}{thread}@push.test>")
        lines.append(f"In-Reply-To: <{tag}{thread}@push.test>")
    text = "\r\n".join(lines) + "\r\n\r\n" + (body or f"body of {tag}{i}") + "\r\n"
    return text.encode()


def build_mailbox(fake: FakeAxigen, messages: int, seed: int = 1) -> None:
    """Folders INBOX, Archive, Work, Work/Sub (+ the specials), labels LABELS, and
    ``messages`` small mails spread over the four folders, every fourth one starting a
    thread of two (a reply in the same folder)."""
    mb = fake.mailbox
    rng = random.Random(seed)
    ids: dict[tuple[str, ...], str] = {("INBOX",): mb.folder_id(("INBOX",))}
    for path in FOLDERS:
        parent = ids.get(path[:-1]) if len(path) > 1 else None
        ids[path] = mb.add_folder(path[-1], parent)
    label_ids = [mb.create_label(name) for name in LABELS]
    paths: list[tuple[str, ...]] = [("INBOX",), ("INBOX",), ("Archive",), ("Work",), ("Work", "Sub")]
    root: int | None = None
    root_path: tuple[str, ...] = ("INBOX",)
    for i in range(messages):
        reply = i % 4 == 1 and root is not None
        where = paths[rng.randrange(len(paths))] if not reply else root_path
        labels = [lid for lid in label_ids if rng.random() < 0.25]
        mb.add_mail(ids[where], raw_mail(i, thread=root if reply else None), date=BASE_DATE + 60 * i,
                    unread=rng.random() < 0.5, flagged=rng.random() < 0.2, labels=labels)
        if i % 4 == 0:
            root, root_path = i, where


def bulk_mailbox(fake: FakeAxigen, messages: int) -> None:
    """``messages`` tiny unread mails in INBOX (for volume tests)."""
    mb = fake.mailbox
    inbox = mb.folder_id(("INBOX",))
    for i in range(messages):
        mb.add_mail(inbox, b"Message-ID: <b%d@push.test>\r\nSubject: %d\r\n\r\nx\r\n" % (i, i),
                    date=BASE_DATE + i, unread=True)


def sha(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()


def msgid_of(raw: bytes) -> str:
    m = MSGID_RE.search(raw[:4096])
    return m.group(1).decode() if m else ""


@dataclass(frozen=True)
class ServerMail:
    id: str
    msgid: str
    sha: str
    path: tuple[str, ...]
    unread: bool
    flagged: bool
    labels: tuple[str, ...]
    letters: str  # the Maildir system letters the server flags stand for


def server_letters(m: Any) -> str:
    out = set()
    if m.draft:
        out.add("D")
    if m.flagged:
        out.add("F")
    if "re" in m.refw:
        out.add("R")
    if not m.unread:
        out.add("S")
    if m.deleted:
        out.add("T")
    return "".join(sorted(out))


def server_mails(fake: FakeAxigen) -> dict[str, ServerMail]:
    """Every mail on the server by Message-ID (all folders, Trash and Spam included)."""
    mb = fake.mailbox
    names = dict(mb.labels())
    out: dict[str, ServerMail] = {}
    for f in mb.folders():
        if f.folder_type != "mails":
            continue
        path = tuple(mb.folder_path(f.id))
        for m in mb.mails(f.id):
            key = msgid_of(m.raw) or sha(m.raw)
            assert key not in out, f"{key} is on the server twice: {out[key].path} and {path}"
            out[key] = ServerMail(m.id, key, sha(m.raw), path, m.unread, m.flagged,
                                  tuple(sorted(names[x] for x in m.label_ids)), server_letters(m))
    return out


def server_path_roles(fake: FakeAxigen) -> dict[tuple[str, ...], str]:
    mb = fake.mailbox
    return {tuple(mb.folder_path(f.id)): f.role for f in mb.folders() if f.folder_type == "mails"}


# ============================================================================ the archive


@dataclass(frozen=True)
class LocalMsg:
    path: Path
    dirname: str
    subdir: str
    filename: str
    base: str
    msgid: str
    sha: str
    letters: str  # system letters
    atoms: tuple[str, ...]  # keywords (sorted)

    @property
    def labels(self) -> tuple[str, ...]:
        return tuple(sorted(atom_to_label(a) for a in self.atoms))

    @property
    def folder(self) -> tuple[str, ...]:
        return folder_path(self.dirname) if self.dirname else ("INBOX",)

    @property
    def flags(self) -> str:
        return parse_name(self.filename).flags


def folder_dir(maildir: Path, dirname: str) -> Path:
    return maildir / dirname if dirname else maildir


def read_keyword_file(folder: Path) -> dict[int, str]:
    try:
        text = (folder / "dovecot-keywords").read_text("utf-8")
    except FileNotFoundError:
        return {}
    out = {}
    for line in text.splitlines():
        idx, _, name = line.partition(" ")
        if idx.isdigit() and name:
            out[int(idx)] = name
    return out


def local_dirs(maildir: Path) -> list[str]:
    out = [""] if (maildir / "cur").is_dir() else []
    out += sorted(e.name for e in os.scandir(maildir)
                  if e.name.startswith(".") and e.is_dir() and (maildir / e.name / "cur").is_dir())
    return out


def is_message(name: str) -> bool:
    return not name.startswith(".") and not name.startswith("dovecot") and not name.startswith("axsync")


def local_mails(maildir: Path) -> list[LocalMsg]:
    """Every message file of the archive (cur/ and new/ of every folder)."""
    out = []
    for dirname in local_dirs(maildir):
        folder = folder_dir(maildir, dirname)
        mapping = read_keyword_file(folder)
        for sub in ("cur", "new"):
            if not (folder / sub).is_dir():
                continue
            for name in sorted(os.listdir(folder / sub)):
                if not is_message(name):
                    continue
                path = folder / sub / name
                raw = read_message(path)
                p = parse_name(name)
                letters = "".join(sorted(set(p.flags) & set(SYSTEM)))
                atoms = tuple(sorted(mapping[KEYWORD_LETTERS.index(c)] for c in set(p.flags)
                                     if c in KEYWORD_LETTERS and KEYWORD_LETTERS.index(c) in mapping))
                out.append(LocalMsg(path, dirname, sub, name, p.base, msgid_of(raw) or sha(raw),
                                    sha(raw), letters, atoms))
    return out


def local_by_msgid(maildir: Path) -> dict[str, LocalMsg]:
    out: dict[str, LocalMsg] = {}
    for m in local_mails(maildir):
        assert m.msgid not in out, f"{m.msgid} is in the archive twice: {out[m.msgid].path} and {m.path}"
        out[m.msgid] = m
    return out


# ---------------------------------------------------------------- mail-client edits


def client_set_flags(msg: LocalMsg, *, add: str = "", remove: str = "") -> LocalMsg:
    """Rename the file to change its system flag letters (as a mail client does)."""
    flags = set(msg.flags) - set(remove) | set(add)
    return _rename(msg, msg.path.parent.parent, "".join(sorted(flags)))


def _rename(msg: LocalMsg, folder: Path, flags: str, base: str | None = None) -> LocalMsg:
    name = f"{base or msg.base}:2,{''.join(sorted(set(flags)))}"
    dst = folder / "cur" / name
    if dst != msg.path:
        assert not dst.exists(), dst
        os.rename(msg.path, dst)
    dirname = "" if folder == _root_of(msg) else folder.name
    return _described(replace(msg, path=dst, dirname=dirname, subdir="cur", filename=name,
                              base=base or msg.base))


def _described(msg: LocalMsg) -> LocalMsg:
    """``msg`` with letters and keywords read again from its name and folder."""
    mapping = read_keyword_file(msg.path.parent.parent)
    flags = parse_name(msg.filename).flags
    letters = "".join(sorted(set(flags) & set(SYSTEM)))
    atoms = tuple(sorted(mapping[KEYWORD_LETTERS.index(c)] for c in set(flags)
                         if c in KEYWORD_LETTERS and KEYWORD_LETTERS.index(c) in mapping))
    return replace(msg, letters=letters, atoms=atoms)


def _root_of(msg: LocalMsg) -> Path:
    folder = msg.path.parent.parent
    return folder.parent if msg.dirname else folder


def ensure_keyword(folder: Path, atom: str) -> str:
    """The letter of ``atom`` in ``folder``'s dovecot-keywords, appending a line if needed
    (what Dovecot does when a client stores a new keyword)."""
    mapping = read_keyword_file(folder)
    for idx, name in mapping.items():
        if name == atom:
            return KEYWORD_LETTERS[idx]
    idx = max(mapping, default=-1) + 1
    assert idx < 26
    path = folder / "dovecot-keywords"
    text = path.read_text("utf-8") if path.exists() else ""
    if text and not text.endswith("\n"):
        text += "\n"
    path.write_text(text + f"{idx} {atom}\n", "utf-8")
    return KEYWORD_LETTERS[idx]


def client_add_keyword(msg: LocalMsg, atom: str) -> LocalMsg:
    folder = msg.path.parent.parent
    letter = ensure_keyword(folder, atom)
    return _rename(msg, folder, msg.flags + letter)


def client_remove_keyword(msg: LocalMsg, atom: str) -> LocalMsg:
    folder = msg.path.parent.parent
    mapping = read_keyword_file(folder)
    letters = {KEYWORD_LETTERS[i] for i, name in mapping.items() if name == atom}
    assert letters & set(msg.flags), f"{msg.filename} has no keyword {atom}"
    return _rename(msg, folder, "".join(c for c in msg.flags if c not in letters))


def ensure_local_folder(maildir: Path, dirname: str) -> Path:
    folder = folder_dir(maildir, dirname)
    for sub in ("cur", "new", "tmp"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    if dirname:
        (folder / "maildirfolder").touch()
    return folder


def client_move(msg: LocalMsg, maildir: Path, dest_dirname: str, *, new_base: str | None = None) -> LocalMsg:
    """Move the file to another folder directory, translating keyword letters through the
    destination's dovecot-keywords (as Dovecot does). ``new_base``: give it a new name
    (Dovecot's MOVE with hardlinks: link under a new name, unlink the original)."""
    dest = ensure_local_folder(maildir, dest_dirname)
    flags = "".join(c for c in msg.flags if c not in KEYWORD_LETTERS)
    for atom in msg.atoms:
        flags += ensure_keyword(dest, atom)
    if new_base is None:
        moved = _rename(msg, dest, flags)
    else:
        name = f"{new_base}:2,{''.join(sorted(set(flags)))}"
        os.link(msg.path, dest / "cur" / name)
        os.unlink(msg.path)
        moved = replace(msg, path=dest / "cur" / name, filename=name, base=new_base, subdir="cur")
    return _described(replace(moved, dirname=dest_dirname))


_dovecot_seq = itertools.count(1)


def dovecot_base(msg: LocalMsg) -> str:
    """A Dovecot-style unique name keeping the original's S= and W=."""
    p = parse_name(msg.filename)
    return f"{int(time.time())}.M{next(_dovecot_seq)}P{os.getpid()}.dovecothost,S={p.size},W={p.vsize}"


def client_rewrite(msg: LocalMsg, maildir: Path) -> LocalMsg:
    """What ``maildir_copy_with_hardlinks`` does on a COPY+EXPUNGE in the same folder: the
    same content under a new base name, the original gone."""
    return client_move(msg, maildir, msg.dirname, new_base=dovecot_base(msg))


def client_delete(msg: LocalMsg) -> None:
    os.unlink(msg.path)


# ============================================================================ the oracle


def assert_in_step(fake: FakeAxigen, maildir: Path, *, excluded_roles: Iterable[str] = ("junk",),
                   excluded_paths: Iterable[tuple[str, ...]] = (),
                   unknown: Iterable[object] = ()) -> None:
    """Every server mail (outside excluded folders) is exactly one archive file, in the
    directory of its folder, with the server's system flags and label names; no other
    file exists except those in ``unknown`` (a Message-ID, or (Message-ID, folder path))."""
    roles = server_path_roles(fake)
    skip_paths = {p for p, r in roles.items() if r in set(excluded_roles)} | set(excluded_paths)
    expected: Counter[tuple[object, ...]] = Counter()
    for m in server_mails(fake).values():
        if any(m.path[:len(s)] == s for s in skip_paths):
            continue
        expected[(m.msgid, m.path, m.letters, m.labels)] += 1
    unknown = set(unknown)
    actual: Counter[tuple[object, ...]] = Counter()
    for lm in local_mails(maildir):
        if lm.msgid in unknown or (lm.msgid, lm.folder) in unknown:
            continue
        actual[(lm.msgid, lm.folder, lm.letters, lm.labels)] += 1
    missing = expected - actual
    extra = actual - expected
    assert not missing and not extra, (
        "archive differs from the server:\n  on the server, not in the archive: "
        + "\n    ".join(map(repr, sorted(missing)))
        + "\n  in the archive, not on the server: " + "\n    ".join(map(repr, sorted(extra))))


# ============================================================================ the environment


@dataclass
class PushEnv:
    fake: FakeAxigen
    maildir: Path
    account: Account
    api_version: str
    reports: list[RunReport] = field(default_factory=list)
    downloads: list[tuple[str, tuple[str, ...]]] = field(default_factory=list)  # (msgid, folder)

    @property
    def mb(self) -> Any:
        return self.fake.mailbox

    @property
    def knobs(self) -> Knobs:
        return self.fake.knobs

    fast_sources: bool = False  # serve mail sources from memory (bulk set-up only)

    def client(self, acc: Account) -> ApiClient:
        cls = _InProcessSources if self.fast_sources else ApiClient
        api = cls(acc.server, acc.username, PASSWORD, concurrency=acc.concurrency, backoff_base=0.01)
        if isinstance(api, _InProcessSources):
            api.mailbox = self.fake.mailbox
        return api

    def run(self, **options: Any) -> RunReport:
        account = options.pop("account", self.account)
        report = run_account(account, SyncOptions(**options), client_factory=self.client)
        self.reports.append(report)
        return report

    def ok(self, **options: Any) -> RunReport:
        report = self.run(**options)
        assert report.exit_code == 0 and report.ok, report.to_json()
        return report

    def settle(self, tries: int = 6) -> RunReport:
        """Sync until a run is clean (faults or pending 201 jobs may need a few)."""
        report = self.run()
        for _ in range(tries):
            if report.ok and report.exit_code == 0 and not self.pending_jobs() and self.pending_rows() == 0:
                return report
            self.wait_jobs()
            report = self.run()
        assert report.ok, report.to_json()
        return report

    def noop(self) -> RunReport:
        """An immediate further run changes nothing, in few requests."""
        self.wait_jobs()
        self.fake.reset_counters()
        report = self.ok()
        j = report.to_json()
        assert j["pulled"] == {"new": 0, "updated": 0, "moved": 0, "deleted": 0, "bytes": 0}, j
        assert j["pushed"] == {"flags": 0, "labels": 0, "moved": 0, "deleted": 0}, j
        assert j["conflicts"] == 0, j
        limit = 3 if self.api_version == "10.6" else self.synced_folders() + 3
        assert report.requests <= limit, (report.requests, limit, self.fake.counters, j)
        return report

    def synced_folders(self) -> int:
        with self.db() as db:
            return sum(1 for f in db.folders() if f.state == "present" and not f.excluded)

    def pending_jobs(self) -> int:
        return int(self.fake.service.pending_jobs())

    def wait_jobs(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while self.pending_jobs() and time.monotonic() < deadline:
            time.sleep(0.02)

    def pending_rows(self) -> int:
        with self.db() as db:
            return int(db.execute("SELECT count(*) FROM push_pending").fetchone()[0])

    def db(self) -> _DB:
        return _DB(self.account.state_path)

    def local(self) -> dict[str, LocalMsg]:
        return local_by_msgid(self.maildir)

    def server(self) -> dict[str, ServerMail]:
        return server_mails(self.fake)

    def check(self, **kw: Any) -> None:
        assert_in_step(self.fake, self.maildir, **kw)

    def folder(self, *path: str) -> str:
        return str(self.mb.folder_id(tuple(path)))

    def label(self, name: str) -> str:
        return str(self.mb.label_id(name))

    def with_account(self, **changes: Any) -> PushEnv:
        self.account = replace(self.account, **changes)
        return self

    def record_downloads(self) -> None:
        """Remember (Message-ID, folder) of every source the server hands out (the fake's
        ``/mails/{id}/source`` routes call ``mailbox.get_mail``)."""
        mb = self.fake.mailbox
        original = mb.get_mail
        env = self

        def get_mail(mail_id: str) -> Any:
            m = original(mail_id)
            if sys._getframe(1).f_code.co_name in ("source", "source_download"):  # the source routes
                env.downloads.append((msgid_of(m.raw), tuple(mb.folder_path(m.folder_id))))
            return m

        mb.get_mail = get_mail  # type: ignore[method-assign]


class _InProcessSources(ApiClient):
    """An ApiClient that takes mail sources straight from the in-process fake mailbox
    instead of one HTTP request each: only for building a big archive quickly; every other
    call goes over HTTP."""

    mailbox: Any = None

    def download_source(self, mail_id: str, out: Any, *, expected_size: int | None = None) -> Download:
        raw = self.mailbox.get_mail(mail_id).raw
        out.write(raw)
        return Download(len(raw), sha(raw), len(raw) + len(re.findall(rb"(?<!\r)\n", raw)))


class _DB:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.db: StateDB | None = None

    def __enter__(self) -> StateDB:
        self.db = StateDB.open(self.path, readonly=True)
        return self.db

    def __exit__(self, *exc: object) -> None:
        assert self.db is not None
        self.db.close()


def start_env(tmp: Path, api_version: str, *, messages: int = 24, seed: int = 1,
              knobs: dict[str, Any] | None = None, bulk: int = 0, name: str = "acct",
              initial_sync: bool = True, **account: Any) -> PushEnv:
    """A fake server with the hand-built mailbox (or ``bulk`` tiny INBOX mails), an
    Account in sync mode for ``tmp/<name>/Mail``, and (by default) a first full pull."""
    fake = FakeAxigen(None, user=USER, password=PASSWORD,
                      knobs=Knobs(api_version=api_version, **(knobs or {})))
    if bulk:
        bulk_mailbox(fake, bulk)
    else:
        build_mailbox(fake, messages, seed)
    fake.start()
    maildir = tmp / name / "Mail"
    account.setdefault("max_delete", MaxDelete(count=None, percent=100.0))
    account.setdefault("concurrency", 4)
    acc = Account(name=name, server=fake.url, username=USER, maildir=maildir, mode="sync", **account)
    env = PushEnv(fake, maildir, acc, api_version)
    if initial_sync:
        env.ok()
        env.check()
    return env


# ============================================================================ the CLI


def write_config(env: PushEnv) -> Path:
    """A config file for ``env``'s account (password from $AXSYNC_PASSWORD)."""
    from axsync.config import save_account

    acc = env.account
    path = env.maildir.parent / "config.toml"
    save_account(path, acc.name, {
        "server": acc.server, "username": acc.username, "maildir": str(acc.maildir),
        "mode": acc.mode, "conflict": acc.conflict, "max_delete": str(acc.max_delete),
        "exclude": list(acc.exclude), "concurrency": acc.concurrency,
    })
    return path


def cli(env: PushEnv, *args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    """``axsync --config <env's config> ARGS`` in a subprocess."""
    path = write_config(env)
    child_env = {**os.environ, "AXSYNC_PASSWORD": PASSWORD}
    return subprocess.run([sys.executable, "-m", "axsync", "--config", str(path), *args],
                          capture_output=True, text=True, timeout=timeout, env=child_env)
