"""The real command line, in a subprocess, against a fake Axigen server in this process.

What is checked is the outside contract (docs: /work/shared/contract.md): the config file
``init`` writes, ``sync --json`` (one object per account, nothing else on stdout), the exit
codes, ``--shard``, ``status --json``, ``verify [--remote]`` and ``--dry-run``.
"""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sync.archive_check import assert_archive_equals_server, server_mails

from axsync.config import save_account
from axsync.fake.corpus import generate
from axsync.fake.server import FakeAxigen, Knobs
from axsync.fake.state import NotFoundError
from axsync.store import compress_bytes

pytestmark = pytest.mark.timeout(180)

USER = "cli@example.com"
PASSWORD = "cli-secret"
CONTRACT_KEYS = {"account", "ok", "pulled", "pushed", "conflicts", "failed", "requests", "seconds"}
PULLED_KEYS = {"new", "updated", "moved", "deleted", "bytes"}
PUSHED_KEYS = {"flags", "labels", "moved", "deleted"}


def axsync(*args: str, config: Path | None = None, env: dict[str, str] | None = None,
           wait: bool = True) -> Any:
    """Run ``python -m axsync [--config C] ARGS``; the environment has no AXSYNC_* unless given."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("AXSYNC_")}
    environ.update(env or {})
    argv = [sys.executable, "-m", "axsync", *(["--config", str(config)] if config else []), *args]
    if not wait:
        return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env=environ)
    return subprocess.run(argv, capture_output=True, text=True, env=environ, timeout=150, check=False)


def json_lines(stdout: str) -> list[dict[str, Any]]:
    """stdout must be JSON objects, one per line, and nothing else."""
    lines = stdout.splitlines()
    assert lines and all(line.strip() for line in lines), stdout
    objects = [json.loads(line) for line in lines]
    assert all(isinstance(o, dict) for o in objects)
    return objects


def assert_contract(summary: dict[str, Any]) -> None:
    assert set(summary) >= CONTRACT_KEYS, summary
    assert set(summary["pulled"]) >= PULLED_KEYS and set(summary["pushed"]) >= PUSHED_KEYS
    assert isinstance(summary["ok"], bool) and isinstance(summary["seconds"], float | int)
    assert all(isinstance(summary["pulled"][k], int) for k in PULLED_KEYS)


@pytest.fixture
def fake() -> Iterator[FakeAxigen]:
    with FakeAxigen(generate(21, 40, big_messages=0), user=USER, password=PASSWORD,
                    knobs=Knobs(api_version="10.6")) as server:
        yield server


def secret_file(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text + "\n")
    return f"cat {path}"


def add_account(config: Path, name: str, server: str, maildir: Path, **extra: Any) -> None:
    save_account(config, name, {"server": server, "username": USER, "maildir": str(maildir),
                                "mode": "mirror", **extra})


# ---------------------------------------------------------------------------- init


def test_init_writes_a_private_config_and_checks_login(fake: FakeAxigen, tmp_path: Path) -> None:
    config = tmp_path / "conf" / "config.toml"
    good = secret_file(tmp_path, "good", PASSWORD)
    done = axsync("init", "work", "--server", fake.url, "--user", USER, "--maildir",
                  str(tmp_path / "Mail"), "--password-command", good, "--mode", "mirror",
                  "--compression", "gzip", config=config)
    assert done.returncode == 0, done.stderr
    assert "login ok" in done.stdout
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    data = tomllib.loads(config.read_text())
    assert data["accounts"]["work"] == {
        "server": fake.url, "username": USER, "maildir": str(tmp_path / "Mail"),
        "password_command": good, "mode": "mirror", "compression": "gzip",
    }
    bad = secret_file(tmp_path, "bad", "wrong password")
    done = axsync("init", "other", "--server", fake.url, "--user", USER, "--maildir",
                  str(tmp_path / "Other"), "--password-command", bad, config=config)
    assert done.returncode == 3, (done.returncode, done.stderr)
    assert done.stdout.count("login ok") == 0
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    assert "work" in tomllib.loads(config.read_text())["accounts"], "the other account is kept"
    # Without --config, $AXSYNC_CONFIG names the file.
    done = axsync("sync", "--dry-run", "--json", "work", env={"AXSYNC_CONFIG": str(config)})
    assert done.returncode == 0, done.stderr
    assert json_lines(done.stdout)[0]["account"] == "work"


# ---------------------------------------------------------------------------- one account


def test_sync_json_status_verify_and_dry_run(fake: FakeAxigen, tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    maildir = tmp_path / "Mail"
    add_account(config, "work", fake.url, maildir)
    env = {"AXSYNC_PASSWORD": PASSWORD}
    expected = server_mails(fake)
    count = sum(len(v) for v in expected.values())
    size = sum(m.size for v in expected.values() for m in v)

    dry = axsync("sync", "--dry-run", config=config, env=env)
    assert dry.returncode == 0, dry.stderr
    assert dry.stdout.startswith("work: plan (dry run, nothing changed)")
    assert "INBOX: downloads" in dry.stdout and "folder create: Archive/2024" in dry.stdout
    assert not any(p.is_file() for p in maildir.rglob("*") if "cur" in p.parts)

    done = axsync("sync", "--json", config=config, env=env)
    assert done.returncode == 0, done.stderr
    [summary] = json_lines(done.stdout)
    assert_contract(summary)
    assert summary["account"] == "work" and summary["ok"] is True and summary["failed"] == 0
    assert (summary["pulled"]["new"], summary["pulled"]["bytes"]) == (count, size)
    assert summary["requests"] > count
    assert_archive_equals_server(fake, maildir, maildir / "axsync.sqlite")

    status = axsync("status", "--json", config=config)
    assert status.returncode == 0, status.stderr
    [data] = json_lines(status.stdout)
    assert data["messages"] == count and data["last_run"]["ok"]
    inbox = next(f for f in data["folders"] if f["folder"] == "INBOX")
    assert inbox["messages"] == len(expected[("INBOX",)])
    assert sum(v for v in data["pending_local_changes"].values()) == 0

    for args in (("verify",), ("verify", "--remote")):
        checked = axsync(*args, config=config, env=env)
        assert checked.returncode == 0, checked.stdout + checked.stderr
        assert f"{count}/{count} files verified" in checked.stdout

    # A change on the server: the dry run names it, exactly.
    mb = fake.mailbox
    receipt = b"Subject: r\n\nreceipt\n"
    mb.add_mail(mb.folder_id(("Receipts",)), receipt, date=1_700_000_000)
    dry = axsync("sync", "--dry-run", config=config, env=env)
    assert dry.returncode == 0, dry.stderr
    assert f"  Receipts: downloads 1, bytes {len(receipt)}" in dry.stdout, dry.stdout
    dry_json = axsync("sync", "--dry-run", "--json", config=config, env=env)
    [plan] = json_lines(dry_json.stdout)
    assert plan["dry_run"] is True and plan["pulled"]["new"] == 1
    assert [e for e in plan["plan"] if e.get("downloads")] == [
        {"folder": "Receipts", "dirname": ".Receipts", "downloads": 1, "bytes": len(receipt), "renames": 0,
         "flag_updates": 0, "deletes": 0}]

    # A corrupted file: verify says so, with exit 1.
    victim = next((maildir / "cur").iterdir())
    victim.write_bytes(compress_bytes(b"Subject: not what was archived\n\n"))
    checked = axsync("verify", "--json", config=config)
    assert checked.returncode == 1
    [report] = json_lines(checked.stdout)
    assert report["ok"] is False and len(report["corrupt"]) == 1 and not report["missing"]


# ---------------------------------------------------------------------------- exit codes


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_exit_codes(fake: FakeAxigen, tmp_path: Path) -> None:
    env = {"AXSYNC_PASSWORD": PASSWORD}
    # 5: the server is unreachable (the client retries ~15 s first: started now, read last).
    down = tmp_path / "down.toml"
    add_account(down, "down", f"http://127.0.0.1:{closed_port()}", tmp_path / "Down")
    unreachable = axsync("sync", "--json", config=down, env=env, wait=False)

    # 2: a config error, naming the bad key.
    bad = tmp_path / "bad.toml"
    for line, key in (('mode = "bogus"', "accounts.bad.mode"), ('colour = "blue"', "accounts.bad.colour"),
                      ("concurrency = 0", "accounts.bad.concurrency")):
        bad.write_text(f'[accounts.bad]\nserver = "{fake.url}"\nusername = "u"\nmaildir = "m"\n{line}\n')
        done = axsync("sync", "--json", config=bad, env=env)
        assert done.returncode == 2 and done.stdout == "", done
        assert key in done.stderr, done.stderr

    config = tmp_path / "config.toml"
    maildir = tmp_path / "Mail"
    add_account(config, "work", fake.url, maildir, max_delete="10%")
    done = axsync("sync", "--json", "--shard", "3/2", config=config, env=env)
    assert done.returncode == 2 and done.stdout == "" and "--shard" in done.stderr

    # 3: authentication failed.
    done = axsync("sync", "--json", config=config, env={"AXSYNC_PASSWORD": "nope"})
    assert done.returncode == 3, done.stderr
    [summary] = json_lines(done.stdout)
    assert summary["ok"] is False and summary["exit_code"] == 3

    # 1: finished, but one mail failed (the server has lost its source): it is listed.
    mb = fake.mailbox
    broken = sorted(mb.mails(mb.folder_id(("INBOX",))), key=lambda m: m.id)[0]
    real_get = mb.get_mail

    def get_mail(mail_id: str) -> Any:
        if mail_id == broken.id:
            raise NotFoundError(f"no mail {mail_id!r}")
        return real_get(mail_id)

    mb.get_mail = get_mail
    done = axsync("sync", "--json", config=config, env=env)
    assert done.returncode == 1, done.stderr
    [summary] = json_lines(done.stdout)
    assert summary["ok"] is False and summary["failed"] == 1
    assert broken.id in summary["failures"][0]["item"]
    text = axsync("sync", config=config, env=env)  # the human form lists it too
    assert text.returncode == 1 and f"failed: mail {broken.id}" in text.stderr
    del mb.get_mail
    done = axsync("sync", "--json", config=config, env=env)
    assert done.returncode == 0 and json_lines(done.stdout)[0]["pulled"]["new"] == 1
    assert_archive_equals_server(fake, maildir, maildir / "axsync.sqlite")

    # 4: the deletion guard; --force passes it.
    inbox = sorted(mb.mails(mb.folder_id(("INBOX",))), key=lambda m: m.id)
    for m in inbox[: len(inbox) // 2]:
        mb.delete_mail(mb.delete_mail(m.id) or "")
    done = axsync("sync", "--json", config=config, env=env)
    assert done.returncode == 4, done.stderr
    [summary] = json_lines(done.stdout)
    assert summary["pulled"]["deleted"] == 0 and "--force" in summary["error"]
    done = axsync("sync", "--json", "--force", config=config, env=env)
    assert done.returncode == 0, done.stderr
    assert json_lines(done.stdout)[0]["pulled"]["deleted"] == len(inbox) // 2
    assert_archive_equals_server(fake, maildir, maildir / "axsync.sqlite")

    out, err = unreachable.communicate(timeout=120)
    assert unreachable.returncode == 5, err
    [summary] = json_lines(out)
    assert summary["ok"] is False and summary["exit_code"] == 5 and "error" in summary


# ---------------------------------------------------------------------------- several accounts


def test_two_accounts_one_summary_each_and_one_exit_code(fake: FakeAxigen, tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    add_account(config, "good", fake.url, tmp_path / "Good",
                password_command=secret_file(tmp_path, "good", PASSWORD))
    add_account(config, "locked-out", fake.url, tmp_path / "Bad",
                password_command=secret_file(tmp_path, "bad", "stale password"))
    done = axsync("sync", "--json", config=config)
    assert done.returncode == 3
    summaries = {s["account"]: s for s in json_lines(done.stdout)}
    assert set(summaries) == {"good", "locked-out"}
    for s in summaries.values():
        assert_contract(s)
    assert summaries["good"]["ok"] and summaries["good"]["pulled"]["new"] > 0
    assert not summaries["locked-out"]["ok"]
    assert_archive_equals_server(fake, tmp_path / "Good", tmp_path / "Good" / "axsync.sqlite")

    text = axsync("sync", config=config)
    assert text.returncode == 3
    assert text.stdout.count("good: pulled 0 new") == 1
    assert "locked-out: FAILED (exit 3)" in text.stderr

    only = axsync("sync", "--json", "good", config=config)
    assert only.returncode == 0 and [s["account"] for s in json_lines(only.stdout)] == ["good"]


def test_shards_split_the_accounts(tmp_path: Path) -> None:
    names = [f"acct-{i}" for i in range(7)]
    config = tmp_path / "config.toml"
    with FakeAxigen(None, user=USER, password=PASSWORD) as empty:
        for name in names:
            add_account(config, name, empty.url, tmp_path / name)
        env = {"AXSYNC_PASSWORD": PASSWORD}
        for n in (2, 3):
            seen: list[set[str]] = []
            for k in range(n):
                done = axsync("sync", "--json", "--dry-run", "--shard", f"{k}/{n}", config=config, env=env)
                assert done.returncode == 0, done.stderr
                seen.append({s["account"] for s in json_lines(done.stdout)} if done.stdout else set())
            assert set().union(*seen) == set(names), seen
            assert sum(len(s) for s in seen) == len(names), f"shards overlap: {seen}"
            assert sum(1 for s in seen if s) >= 2, f"one shard took everything: {seen}"


# ---------------------------------------------------------------------------- index = false


def test_index_false_skips_the_search_index_until_reindex(fake: FakeAxigen, tmp_path: Path) -> None:
    """A backup host that never searches: ``index = false`` syncs without the search index;
    ``search`` says how many messages are not indexed, and ``reindex --catch-up`` fixes it."""
    config = tmp_path / "config.toml"
    add_account(config, "work", fake.url, tmp_path / "Mail", index=False)
    env = {"AXSYNC_PASSWORD": PASSWORD}
    done = axsync("sync", "--json", "work", config=config, env=env)
    assert done.returncode == 0, done.stderr
    archived = json_lines(done.stdout)[0]["pulled"]["new"]
    assert archived > 0
    word = _a_subject_word(fake)
    found = axsync("search", "work", f"subject:{word}", "--json", config=config)
    assert found.returncode == 0, found.stderr
    assert found.stdout == ""
    assert f"{archived} messages are not indexed yet" in found.stderr
    done = axsync("reindex", "work", "--catch-up", config=config)
    assert done.returncode == 0, done.stderr
    assert f"indexed {archived} messages" in done.stdout
    found = axsync("search", "work", f"subject:{word}", "--json", config=config)
    assert found.returncode == 0 and "not indexed" not in found.stderr, found.stderr
    assert found.stdout.strip(), (word, found.stderr)
    assert json_lines(found.stdout)
    # A wrong type names the key.
    add_account(config, "bad", fake.url, tmp_path / "Bad", index="no")
    done = axsync("status", "bad", config=config)
    assert done.returncode == 2
    assert "accounts.bad.index: expected bool, got str" in done.stderr


def test_a_run_with_nothing_to_do_does_not_load_the_search_index(
        fake: FakeAxigen, tmp_path: Path) -> None:
    """The search index (its module, its parser, worker processes) is loaded only
    when there is something to index, and sqlite-utils only when the state DB has a
    migration to apply: a no-change run's start-up stays small. A run that downloads
    indexes what it downloaded."""
    config = tmp_path / "config.toml"
    add_account(config, "work", fake.url, tmp_path / "Mail")
    env = {"AXSYNC_PASSWORD": PASSWORD}

    def sync_importing() -> tuple[dict[str, Any], set[str]]:
        done = axsync("sync", "--json", "work", config=config, env={**env, "PYTHONPROFILEIMPORTTIME": "1"})
        assert done.returncode == 0, done.stderr
        imported = {line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines()
                    if line.startswith("import time:")}
        assert "axsync.sync.engine" in imported  # the import log is there
        return json_lines(done.stdout)[0], imported

    first, imported = sync_importing()
    assert first["pulled"]["new"] > 0 and "axsync.archive.index" in imported
    assert "sqlite_utils.migrations" in imported  # a new state DB: every migration applied
    again, imported = sync_importing()
    assert again["pulled"]["new"] == 0 and again["requests"] <= 5
    assert not {"axsync.archive.index", "axsync.archive.document", "sqlite_utils"} & imported
    fake.mailbox.add_mail(fake.mailbox.folder_id(("INBOX",)), b"From: a@example.com\r\nSubject: zanzibarquux arrives\r\n\r\nhi\r\n")
    third, imported = sync_importing()
    assert third["pulled"]["new"] == 1 and "axsync.archive.index" in imported
    found = axsync("search", "work", "subject:zanzibarquux", "--json", config=config)
    assert found.returncode == 0, found.stderr
    assert [hit["subject"] for hit in json_lines(found.stdout)] == ["zanzibarquux arrives"]


def _a_subject_word(fake: FakeAxigen) -> str:
    """A plain word of some archived mail's Subject."""
    import email
    import email.policy
    import re

    for mails in server_mails(fake).values():
        for mail in mails:
            parsed = email.message_from_bytes(mail.raw, policy=email.policy.default)
            subject = str(parsed.get("Subject", ""))  # decoded
            for word in re.findall(r"\b[A-Za-z]{5,}\b", subject):
                return word
    raise AssertionError("no subject with a plain word")
