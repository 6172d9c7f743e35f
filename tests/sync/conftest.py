"""Shared fixtures for the pull tests: a fake Axigen server (in process, real loopback HTTP)
plus an archive directory and an Account pointing at it."""

from __future__ import annotations

import contextlib
import functools
import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest

from axsync.api import ApiClient
from axsync.config import Account, MaxDelete
from axsync.fake.corpus import Corpus, generate
from axsync.fake.server import FakeAxigen, Knobs
from axsync.statedb import StateDB
from axsync.store import Store
from axsync.sync.engine import SyncOptions, run_account
from axsync.sync.report import RunReport
from axsync.verify import verify_local

from .archive_check import assert_archive_equals_server

API_VERSIONS = ("10.4", "10.6")
USER = "alice@example.com"
PASSWORD = "pw-for-tests"


@functools.lru_cache(maxsize=8)
def corpus(seed: int = 5, messages: int = 80, big: int = 0,
           folders: tuple[tuple[str, ...], ...] | None = None) -> Corpus:
    """A deterministic mailbox (every hostile folder name of the generator, labels that are
    not IMAP atoms, LF and CRLF messages, messages without Message-ID). ``folders``: keep
    only these folders and their mail (fewer requests per run on 10.4)."""
    full = generate(seed, messages, big_messages=big)
    if folders is None:
        return full
    keep = set(folders)
    return Corpus([f for f in full.folders if f.path in keep], list(full.labels),
                  [m for m in full.messages if m.folder in keep])


#: A smaller folder tree (no hostile names) for tests that run the engine many times.
PLAIN_FOLDERS = (("INBOX",), ("Sent",), ("Drafts",), ("Trash",), ("Spam",), ("Archive",),
                 ("Archive", "2023"), ("Archive", "2024"), ("Projects",), ("Projects", "Alpha"),
                 ("Receipts",), ("Work",), ("日本語",), ("Entwürfe",))


@dataclass
class Env:
    """One fake server and one archive of it."""

    fake: FakeAxigen
    maildir: Path
    account: Account
    reports: list[RunReport] = field(default_factory=list)

    @property
    def mb(self) -> Any:
        return self.fake.mailbox

    @property
    def db_path(self) -> Path:
        return self.account.state_path

    def client(self, acc: Account) -> ApiClient:
        return ApiClient(acc.server, acc.username, self.fake.password, concurrency=acc.concurrency)

    def run(self, **options: Any) -> RunReport:
        account = options.pop("account", self.account)
        report = run_account(account, SyncOptions(**options), client_factory=self.client)
        self.reports.append(report)
        return report

    def ok(self, **options: Any) -> RunReport:
        """A run that must succeed (exit 0, no failures)."""
        report = self.run(**options)
        assert report.exit_code == 0 and report.ok, report.to_json()
        return report

    def with_account(self, **changes: Any) -> Env:
        self.account = replace(self.account, **changes)
        return self

    @contextlib.contextmanager
    def db(self) -> Iterator[StateDB]:
        db = StateDB.open(self.db_path, readonly=True)
        try:
            yield db
        finally:
            db.close()

    def verify_clean(self) -> None:
        """``verify_local``: every recorded file is there and intact, no unknown file."""
        with self.db() as db:
            report = verify_local(db, Store(self.maildir))
        assert report.clean and not report.unknown_files, report.to_json()
        assert report.ok == report.checked > 0

    def check(self, **kw: Any) -> None:
        kw.setdefault("excludes", self.account.exclude)
        kw.setdefault("mode", self.account.mode)
        assert_archive_equals_server(self.fake, self.maildir, self.db_path, **kw)

    def folder(self, *path: str) -> str:
        return str(self.mb.folder_id(tuple(path)))

    def label(self, name: str) -> str:
        return str(self.mb.label_id(name))


MakeEnv = Callable[..., Env]


@pytest.fixture
def make_env(tmp_path: Path) -> Iterator[MakeEnv]:
    """``make_env(api_version, messages=80, seed=5, mode="mirror", ...)`` -> a running
    fake server with a generated mailbox and an Account for ``tmp_path/<name>/Mail``."""
    started: list[FakeAxigen] = []

    def make(api_version: str = "10.6", *, messages: int = 80, seed: int = 5, big: int = 0,
             mode: str = "mirror", exclude: tuple[str, ...] = ("Junk",),
             max_delete: MaxDelete | None = None, name: str = "acct",
             knobs: dict[str, Any] | None = None, concurrency: int = 4,
             folders: tuple[tuple[str, ...], ...] | None = None) -> Env:
        fake = FakeAxigen(corpus(seed, messages, big, folders), user=USER, password=PASSWORD,
                          knobs=Knobs(api_version=api_version, **(knobs or {})))
        fake.start()
        started.append(fake)
        maildir = tmp_path / name / "Mail"
        account = Account(name=name, server=fake.url, username=USER, maildir=maildir, mode=mode,
                          exclude=exclude, concurrency=concurrency,
                          max_delete=max_delete or MaxDelete(count=None, percent=100.0))
        return Env(fake, maildir, account)

    yield make
    for fake in started:
        fake.stop()


# Columns that only say "when axsync last looked", not what it knows.
_CLOCK_COLUMNS = {"folders": ("last_seen",), "conversations": ("updated_at",)}


def db_dump(path: Path, *, skip: tuple[str, ...] = ("runs",)) -> dict[str, list[tuple[Any, ...]]]:
    """The state DB's content, table by table (sorted rows), minus the tables in ``skip``
    (the run log) and the "last looked at" clock columns."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        tables = [r[0] for r in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")]
        out: dict[str, list[tuple[Any, ...]]] = {}
        for table in tables:
            if table in skip:
                continue
            cols = [r[1] for r in conn.execute(f'PRAGMA table_info("{table}")')
                    if r[1] not in _CLOCK_COLUMNS.get(table, ())]
            if not cols:
                continue
            select = ", ".join(f'"{c}"' for c in cols)
            out[table] = sorted(conn.execute(f'SELECT {select} FROM "{table}"').fetchall(), key=repr)
        return out
    finally:
        conn.close()
