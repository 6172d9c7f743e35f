"""Regression tests for the pull bugs the end-to-end and crash tests found, each reduced
to a deterministic case (the report lists them)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from axsync.store import Store
from axsync.store.fsutil import dotlock
from axsync.store.keywords import UIDLIST_LOCK

from .archive_check import message_bases
from .conftest import API_VERSIONS, PLAIN_FOLDERS, MakeEnv
from .test_crash import server_changes

pytestmark = pytest.mark.timeout(120)


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_dotlock_of_a_dead_local_process_is_broken_at_once(tmp_path: Path) -> None:
    """A SIGKILLed run left ``dovecot-uidlist.lock`` behind: the next run waited 10 s and
    failed (exit 5) for two minutes. Dovecot breaks such a lock at once; so do we."""
    lock = tmp_path / UIDLIST_LOCK
    lock.write_text(f"{dead_pid()}:{socket.gethostname()}")
    start = time.monotonic()
    with dotlock(lock, timeout_s=5):
        assert lock.read_text().startswith(f"{os.getpid()}:")
    assert time.monotonic() - start < 1
    # a live owner is still respected, whatever the age
    lock.write_text(f"{os.getpid()}:{socket.gethostname()}")
    with pytest.raises(Exception, match="held by another process"), dotlock(lock, timeout_s=0.2):
        pass


@pytest.mark.parametrize("api", API_VERSIONS)
def test_temp_files_of_a_killed_run_are_removed(make_env: MakeEnv, api: str) -> None:
    """A killed download left ``tmp/<our name>``; the next run kept it for an hour."""
    env = make_env(api, messages=20, folders=PLAIN_FOLDERS)
    env.ok()
    leftover = env.maildir / ".Archive" / "tmp" / f"{int(time.time())}.M1P1Q1R0123abcd.host"
    leftover.write_bytes(b"(half a zstd frame)")
    env.ok()
    assert not leftover.exists()
    env.check()


@pytest.mark.parametrize("api", API_VERSIONS)
def test_folder_rename_done_on_disk_by_a_killed_run(make_env: MakeEnv, api: str) -> None:
    """Killed between the directory rename and its DB commit, every later run failed
    with "target exists" (exit 5)."""
    env = make_env(api, messages=30, folders=PLAIN_FOLDERS)
    env.ok()
    before = message_bases(env.maildir)
    env.mb.rename_folder(env.folder("Receipts"), "Bills")
    Store(env.maildir).rename_folder(".Receipts", ".Bills")  # what the killed run did
    report = env.ok()
    assert report.pulled.bytes == 0
    env.check()
    assert set(message_bases(env.maildir)) == set(before)


@pytest.mark.parametrize("k", [2, 9, 40])
@pytest.mark.parametrize("api", API_VERSIONS)
def test_server_changes_between_an_interrupted_run_and_its_resume(make_env: MakeEnv, api: str,
                                                                  k: int) -> None:
    """Files written by an interrupted first pull but not yet recorded were adopted with
    the flags they had when written, and files of mails moved or deleted meanwhile stayed
    as duplicates; a folder deleted meanwhile kept its directory."""
    env = make_env(api, messages=64, folders=PLAIN_FOLDERS)
    first = env.run(stop_after=k)
    assert first.exit_code != 0 and "stopped after" in (first.fatal or "")
    server_changes(env)
    report = env.ok()
    env.check()
    env.verify_clean()
    assert env.ok().pulled.new == 0
    if k == 40:
        assert any("quarantined" in n for n in report.notes), report.notes


@pytest.mark.parametrize("mode", ["mirror", "backup"])
@pytest.mark.parametrize("api", API_VERSIONS)
def test_move_done_on_disk_by_a_killed_run(make_env: MakeEnv, api: str, mode: str) -> None:
    """Killed between moving a file (a server move: relocation, or the same-content match
    of a mail without Message-ID) and recording it, the next run did not find the file
    where the row said, downloaded the mail again and left the moved file as a duplicate."""
    env = make_env(api, messages=64, folders=PLAIN_FOLDERS, mode=mode)
    env.ok()
    mb = env.mb
    inbox = env.folder("INBOX")
    with_id = next(m for m in sorted(mb.mails(inbox), key=lambda m: m.id) if m.message_id)
    mb.add_mail(inbox, b"Subject: anonymous\n\nno Message-ID\n", date=1_650_000_000)
    env.ok()
    without_id = next(m for m in mb.mails(inbox) if not m.message_id)
    store = Store(env.maildir)
    with env.db() as db:
        rows = [db.message_by_mail_id(m.id) for m in (with_id, without_id)]
    for mail, row in zip((with_id, without_id), rows, strict=True):
        assert row is not None and row.dirname == ""
        mb.move_mail(mail.id, env.folder("Archive"))
        hit = store.locate("", row.base)
        assert hit is not None
        store.move("", hit.filename, ".Archive")  # what the killed run did
    report = env.ok()
    env.check()
    assert report.pulled.new == 0 and report.pulled.moved == 2
    env.verify_clean()
