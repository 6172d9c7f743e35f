"""Crash safety of pull: a run stopped at any point, then resumed, ends exactly where an
uninterrupted run ends, without duplicates and without losing mail.

Two ways of stopping a run:

* in process, after exactly k executed actions (``SyncOptions(stop_after=k)``), for every k
  from 0 to the number of actions of the run, on both API generations;
* for real: ``axsync sync`` in a subprocess killed with SIGKILL at seeded random moments,
  against a fake server with per-request latency so kills land mid-download.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from axsync.config import save_account
from axsync.statedb import StateDB

from .archive_check import assert_archive_equals_server, local_dirs
from .conftest import API_VERSIONS, PLAIN_FOLDERS, Env, MakeEnv

pytestmark = pytest.mark.timeout(240)

EXTRA = [
    b"From: x@example.com\r\nSubject: extra %d\r\nMessage-ID: <extra-%d@example.com>\r\n\r\nbody %d\r\n",
    b"From: y@example.com\nSubject: no id %d\n\nno Message-ID here, LF only %d %d\n",
]


def server_changes(env: Env) -> None:
    """A mix of everything a server can do between two runs (deterministic)."""
    mb = env.mb
    inbox = env.folder("INBOX")
    mails = sorted(mb.mails(inbox), key=lambda m: m.id)
    labels = {name: lid for lid, name in mb.labels()}
    for m in mails[:4]:
        mb.set_flags(m.id, unread=not m.unread, flagged=not m.flagged)
    mb.add_label_to_mail(mails[4].id, labels["To Do"])
    mb.add_label_to_mail(mails[5].id, labels["Ärger"])
    labelled = [m for m in mails if m.label_ids]
    mb.remove_label_from_mail(labelled[0].id, labelled[0].label_ids[0])
    for m in mails[6:9]:
        mb.move_mail(m.id, env.folder("Archive", "2024"))
    no_msgid = [m for m in mb.mails() if not m.message_id and m.folder_id != env.folder("Spam")]
    if no_msgid:
        mb.move_mail(no_msgid[0].id, env.folder("Archive"))
    for m in mails[9:11]:
        mb.delete_mail(m.id)  # to Trash
    trash = sorted(mb.mails(env.folder("Trash")), key=lambda m: m.id)
    for m in trash[:2]:
        mb.delete_mail(m.id)  # for good
    mb.replace_mail(mails[11].id, b"Subject: replaced\nMessage-ID: <repl@example.com>\n\nnew\n")
    for i in range(8):
        raw = EXTRA[i % 2] % (i, i, i)
        mb.add_mail(inbox if i % 3 else env.folder("Receipts"), raw, date=1_700_000_000 + i,
                    unread=bool(i % 2), labels=[labels["work"]] if i % 4 == 0 else [])
    mb.rename_folder(env.folder("Receipts"), "Receipts.old")
    mb.move_folder(env.folder("Archive", "2023"), env.folder("Projects"))
    mb.reset_id_validity(env.folder("Work"))
    for name in ("Entwürfe", "日本語"):  # an empty folder and one with mail
        mb.delete_folder(env.folder(name))  # into Trash
        mb.delete_folder(env.folder("Trash", name))  # and for good


def more_changes(env: Env) -> None:
    """A second, smaller round: flags, a label, moves, a deletion, new mail, a rename."""
    mb = env.mb
    inbox = env.folder("INBOX")
    mails = sorted(mb.mails(inbox), key=lambda m: m.id)
    labels = {name: lid for lid, name in mb.labels()}
    for m in mails[:6]:
        mb.set_flags(m.id, unread=not m.unread)
    mb.add_label_to_mail(mails[6].id, labels["family"])
    for m in mails[7:10]:
        mb.move_mail(m.id, env.folder("Archive"))
    mb.delete_mail(mails[10].id)
    for i in range(4):
        mb.add_mail(inbox, EXTRA[0] % (100 + i, 100 + i, i), date=1_710_000_000 + i)
    mb.rename_folder(env.folder("Archive", "2024"), "2024 (old)")


def rows(db_path: Path) -> set[tuple[Any, ...]]:
    db = StateDB.open(db_path, readonly=True)
    try:
        return {(r.mail_id, r.base, r.sha256, r.dirname, r.flags, r.refw, r.label_ids, r.state)
                for r in db.messages_where("state != 'tombstoned'")}
    finally:
        db.close()


@pytest.mark.parametrize("api", API_VERSIONS)
def test_interrupted_after_every_action_resumes_identically(make_env: MakeEnv, api: str, tmp_path: Path) -> None:
    env = make_env(api, messages=64, folders=PLAIN_FOLDERS, name="template")
    template = env.maildir
    env.ok()
    server_changes(env)

    def copy(name: str) -> Env:
        target = tmp_path / name / "Mail"
        shutil.copytree(template, target, symlinks=True)
        return Env(env.fake, target, replace(env.account, maildir=target, name=name))

    ref = copy("reference")
    ref_report = ref.ok()
    ref.check()
    reference = rows(ref.db_path)
    assert ref_report.pulled.new >= 8 and ref_report.pulled.moved >= 4 and ref_report.pulled.deleted >= 2

    k = 0
    while True:
        work = copy(f"k{k}")
        first = work.run(stop_after=k)
        if first.exit_code == 0:
            break  # k is past the last action: the run completed
        assert "stopped after" in (first.fatal or ""), first.to_json()
        work.ok()
        work.check()
        assert rows(work.db_path) == reference, f"resumed after {k} actions: state differs"
        work.verify_clean()
        if k % 4 == 0:  # and it stays converged
            again = work.ok()
            assert (again.pulled.new, again.pulled.moved, again.pulled.deleted) == (0, 0, 0), k
        shutil.rmtree(work.maildir.parent)
        k += 1
    assert k >= 20, f"only {k} actions: the scenario is too small to mean much"


# ---------------------------------------------------------------------------- SIGKILL


def write_config(path: Path, env: Env) -> None:
    save_account(path, env.account.name, {
        "server": env.fake.url, "username": env.account.username, "maildir": str(env.maildir),
        "mode": env.account.mode, "max_delete": "100%", "concurrency": 4,
    })


def run_cli(config: Path, env: Env, *, kill_at: int | None = None,
            rng: random.Random | None = None) -> subprocess.CompletedProcess[str] | None:
    """``axsync sync --json`` in its own process. With ``kill_at``: SIGKILLed (a few ms
    after) the moment the fake server has answered that many of its requests, so the kill
    lands mid-run whatever the machine's speed; None when it was killed."""
    environ = {**os.environ, "AXSYNC_PASSWORD": env.fake.password}
    base = env.fake.total_requests()
    proc = subprocess.Popen(
        [sys.executable, "-m", "axsync", "--config", str(config), "sync", "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=environ,
    )
    if kill_at is not None:
        assert rng is not None
        deadline = time.monotonic() + 120
        while proc.poll() is None and time.monotonic() < deadline:
            if env.fake.total_requests() - base >= kill_at:
                time.sleep(rng.uniform(0, 0.012))
                proc.send_signal(signal.SIGKILL)
                proc.communicate()
                return None
            time.sleep(0.001)
    out, err = proc.communicate(timeout=120)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


@pytest.mark.parametrize("api", API_VERSIONS)
def test_sigkill_at_random_moments_converges(make_env: MakeEnv, api: str, tmp_path: Path) -> None:
    env = make_env(api, messages=100, seed=9, knobs={"latency": 0.004}, name="killed")
    config = tmp_path / "config.toml"
    write_config(config, env)
    rng = random.Random(f"sigkill-{api}{os.environ.get('AXSYNC_CRASH_SEED', '')}")  # vary to stress
    kills = 0

    def archived() -> int:
        if not env.maildir.is_dir():
            return 0
        return sum(1 for d in local_dirs(env.maildir) for _ in os.scandir(env.maildir / d / "cur"))

    def storm(n: int, requests: int) -> None:
        """``n`` runs, each killed after a random number of server requests: at most
        ``requests`` plus one per mail not archived yet (about what the run needs)."""
        nonlocal kills
        for _ in range(n):
            left = max(0, len(env.mb.mails()) - archived())
            done = run_cli(config, env, kill_at=rng.randint(1, requests + left), rng=rng)
            if done is None:
                kills += 1
            else:
                assert done.returncode == 0, done.stderr

    storm(5, 10)  # the first pull (~100 downloads), killed again and again
    server_changes(env)  # changes meeting files that killed runs wrote but did not record
    storm(2, 10)
    clean = run_cli(config, env)
    assert clean is not None and clean.returncode == 0, clean.stderr if clean else None
    assert_archive_equals_server(env.fake, env.maildir, env.db_path, excludes=env.account.exclude)
    more_changes(env)  # an incremental run over a recorded archive, killed
    storm(5, 30 if api == "10.4" else 12)
    final = run_cli(config, env)
    assert final is not None and final.returncode == 0, final.stderr if final else None
    summary = json.loads(final.stdout)
    assert summary["ok"] is True
    assert kills >= 8, f"only {kills} of 12 runs were killed mid-way"
    assert_archive_equals_server(env.fake, env.maildir, env.db_path, excludes=env.account.exclude)
    env.verify_clean()
