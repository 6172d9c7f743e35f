"""Disk full and a read-only archive during a pull: a clear error (exit 5), nothing
corrupted (verify clean for everything recorded), and the next run converges.

Uses a real small tmpfs mount (needs root with mount rights; skipped otherwise)."""

from __future__ import annotations

import hashlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from axsync.api import ApiClient
from axsync.config import Account
from axsync.fake.corpus import generate
from axsync.fake.server import FakeAxigen
from axsync.statedb import StateDB
from axsync.store import Store
from axsync.sync.engine import SyncOptions, run_account
from axsync.verify import verify_local


def _mount(path: Path, size: str, *opts: str) -> bool:
    path.mkdir(parents=True, exist_ok=True)
    args = ["mount", "-t", "tmpfs", "-o", ",".join([f"size={size}", "mode=0700", *opts]), "tmpfs", str(path)]
    return subprocess.run(args, capture_output=True).returncode == 0


def _remount(path: Path, opts: str) -> None:
    subprocess.run(["mount", "-o", f"remount,{opts}", str(path)], check=True, capture_output=True)


@pytest.fixture()
def mnt(tmp_path: Path) -> Iterator[Path]:
    if os.geteuid() != 0:
        pytest.skip("needs root to mount a small tmpfs")
    where = tmp_path / "mnt"
    if not _mount(where, "4m"):
        pytest.skip("mount is not permitted here")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], capture_output=True)


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeAxigen]:
    with FakeAxigen(generate(seed=11, messages=200)) as server:
        yield server


def _run(fake: FakeAxigen, maildir: Path) -> tuple[int, str]:
    acc = Account(name="t", server=fake.url, username="alice@example.com", maildir=maildir,
                  mode="mirror", exclude=())
    report = run_account(acc, SyncOptions(), client_factory=lambda a: ApiClient(
        a.server, a.username, "secret", concurrency=4, backoff_base=0.01))
    return report.exit_code, report.fatal or ""


def _archive_matches_server(fake: FakeAxigen, maildir: Path) -> None:
    store = Store(maildir)
    local = sorted(hashlib.sha256(store.read_message(f.dirname, f.subdir, f.filename)).hexdigest()
                   for f in store.scan())
    server = sorted(hashlib.sha256(m.raw).hexdigest() for m in fake.mailbox.mails())
    assert local == server


def _verify_clean(maildir: Path) -> None:
    db = StateDB.open(maildir / "axsync.sqlite", readonly=True)
    try:
        report = verify_local(db, Store(maildir))
    finally:
        db.close()
    assert not report.missing and not report.corrupt


def test_disk_full_stops_cleanly_and_resumes(fake: FakeAxigen, mnt: Path) -> None:
    total = sum(len(m.raw) for m in fake.mailbox.mails())
    assert total > 8 * 1024 * 1024  # the corpus cannot fit in 4 MB even compressed
    maildir = mnt / "Mail"
    code, error = _run(fake, maildir)
    assert code == 5
    assert "space" in error.lower() or "full" in error.lower()
    _verify_clean(maildir)  # what was recorded is intact
    _remount(mnt, "size=256m")
    code, error = _run(fake, maildir)
    assert code == 0, error
    _verify_clean(maildir)
    _archive_matches_server(fake, maildir)


def test_read_only_archive_stops_cleanly_and_resumes(fake: FakeAxigen, mnt: Path) -> None:
    _remount(mnt, "size=256m")
    maildir = mnt / "Mail"
    assert _run(fake, maildir)[0] == 0
    inbox = fake.mailbox.folder_id(("INBOX",))
    new_id = fake.mailbox.add_mail(inbox, b"From: a@example.com\r\nSubject: while read-only\r\n"
                                   b"Message-ID: <ro@example.com>\r\n\r\nbody\r\n")
    _remount(mnt, "ro")
    code, error = _run(fake, maildir)
    assert code == 5
    assert "read-only" in error.lower() or "readonly" in error.lower()
    _remount(mnt, "rw")
    code, error = _run(fake, maildir)
    assert code == 0, error
    _verify_clean(maildir)
    _archive_matches_server(fake, maildir)
    fake.mailbox.delete_mail(new_id)
