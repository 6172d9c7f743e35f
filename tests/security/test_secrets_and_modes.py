"""Passwords never reach argv, logs, errors or --json; everything axsync creates is owner-only."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from axsync.fake.corpus import generate
from axsync.fake.server import FakeAxigen

SECRET = "Sup3r-S3cret-Passw0rd-7f3a"


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeAxigen]:
    with FakeAxigen(generate(seed=3, messages=40), user="alice@example.com", password=SECRET) as server:
        yield server


def _config(tmp_path: Path, server: str, secret_file: Path) -> Path:
    cfg = tmp_path / "config.toml"
    cfg.write_text(
        "[accounts.work]\n"
        f'server = "{server}"\nusername = "alice@example.com"\n'
        f'maildir = "{tmp_path / "Mail"}"\n'
        f'password_command = "cat {secret_file}"\n'
    )
    return cfg


def _run(cfg: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("AXSYNC_PASSWORD", "AXSYNC_CONFIG")}
    return subprocess.run([sys.executable, "-m", "axsync", "--config", str(cfg), "-vv", *args],
                          capture_output=True, text=True, env=env, timeout=120)


def test_password_never_printed_or_logged(tmp_path: Path, fake: FakeAxigen) -> None:
    secret_file = tmp_path / "secret"
    secret_file.write_text(SECRET + "\n")
    cfg = _config(tmp_path, fake.url, secret_file)
    ok = _run(cfg, "sync", "--json")
    assert ok.returncode == 0, ok.stderr
    assert SECRET not in ok.stdout and SECRET not in ok.stderr
    # a wrong password: exit 3, and neither the wrong nor the right one is echoed
    secret_file.write_text("wrong-" + SECRET + "\n")
    bad = _run(cfg, "sync", "--json")
    assert bad.returncode == 3
    assert SECRET not in bad.stdout + bad.stderr
    # server unreachable: exit 5, no password either
    secret_file.write_text(SECRET + "\n")
    cfg.write_text(cfg.read_text().replace(fake.url, "http://127.0.0.1:9"))
    down = _run(cfg, "sync", "--json")
    assert down.returncode == 5
    assert SECRET not in down.stdout + down.stderr


def test_archive_state_and_config_are_owner_only(tmp_path: Path, fake: FakeAxigen) -> None:
    secret_file = tmp_path / "secret"
    secret_file.write_text(SECRET)
    cfg = tmp_path / "cfgdir" / "config.toml"
    maildir = tmp_path / "Mail"
    env = dict(os.environ, AXSYNC_PASSWORD=SECRET)
    init = subprocess.run(
        [sys.executable, "-m", "axsync", "--config", str(cfg), "init", "work", "--server", fake.url,
         "--user", "alice@example.com", "--maildir", str(maildir)],
        capture_output=True, text=True, env=env, timeout=60)
    assert init.returncode == 0, init.stderr
    assert SECRET not in cfg.read_text()
    assert stat.S_IMODE(cfg.stat().st_mode) == 0o600
    run = subprocess.run([sys.executable, "-m", "axsync", "--config", str(cfg), "sync"],
                         capture_output=True, text=True, env=env, timeout=120)
    assert run.returncode == 0, run.stderr
    assert stat.S_IMODE((maildir / "axsync.sqlite").stat().st_mode) == 0o600
    seen_files = 0
    for dirpath, dirnames, filenames in os.walk(maildir):
        for d in dirnames:
            assert stat.S_IMODE(os.stat(os.path.join(dirpath, d)).st_mode) == 0o700, d
        for f in filenames:
            mode = stat.S_IMODE(os.stat(os.path.join(dirpath, f)).st_mode)
            assert mode & 0o077 == 0, (dirpath, f, oct(mode))
            seen_files += 1
    assert seen_files >= 40
