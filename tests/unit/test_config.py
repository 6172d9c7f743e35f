"""Config: every problem named by its key; 0600 on write; password sources."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from axsync.config import command_argv, load_config, resolve_password, save_account
from axsync.errors import AuthError, ConfigError


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "config.toml"
    p.write_text(text)
    return p


def test_roundtrip_and_mode(tmp_path: Path) -> None:
    path = tmp_path / "cfg" / "config.toml"
    save_account(path, "work", {"server": "https://mail.example.com", "username": "a@example.com",
                                "maildir": str(tmp_path / "m"), "password_command": "pass show x"})
    assert os.stat(path).st_mode & 0o777 == 0o600
    cfg = load_config(path)
    acc = cfg.account("work")
    assert acc.mode == "sync" and acc.compression == "zstd" and acc.concurrency == 8
    assert acc.state_path == tmp_path / "m" / "axsync.sqlite"
    assert str(acc.max_delete) == "10%" and acc.max_delete.limit(1000) == 100
    assert acc.exclude == ("Junk",)


def test_every_problem_names_its_key(tmp_path: Path) -> None:
    path = write(tmp_path, """
[accounts.w]
server = "ftp://x"
username = "u"
maildir = "/tmp/m"
mode = "both"
concurrency = "8"
max_delete = "lots"
colour = "red"
""")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    text = str(info.value)
    # an unknown key or a wrong type does not hide the other problems of the same account
    for key in ("accounts.w.concurrency", "accounts.w.colour", "accounts.w.server",
                "accounts.w.mode", "accounts.w.max_delete"):
        assert key in text
    path = write(tmp_path, """
[accounts.w]
server = "ftp://x"
username = "u"
maildir = "/tmp/m"
mode = "both"
max_delete = "lots"
""")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    text = str(info.value)
    for key in ("accounts.w.server", "accounts.w.mode", "accounts.w.max_delete"):
        assert key in text
    assert info.value.exit_code == 2


def test_plain_http_only_to_loopback(tmp_path: Path) -> None:
    base = 'username = "u"\nmaildir = "/tmp/m"\n'
    with pytest.raises(ConfigError, match="accounts.w.server"):
        load_config(write(tmp_path, f'[accounts.w]\nserver = "http://mail.example.com"\n{base}'))
    load_config(write(tmp_path, f'[accounts.w]\nserver = "http://127.0.0.1:8080"\n{base}'))
    load_config(write(tmp_path, f'[accounts.w]\nserver = "http://mail.example.com"\ninsecure = true\n{base}'))


def test_bad_toml_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(write(tmp_path, "[accounts.w\n"))


def test_password_sources(tmp_path: Path) -> None:
    path = write(tmp_path, '[accounts.w]\nserver = "https://x"\nusername = "u"\nmaildir = "/tmp/m"\n'
                 'password_command = "printf secret-from-cmd"\n')
    acc = load_config(path).account("w")
    assert resolve_password(acc, {"AXSYNC_PASSWORD": "env"}) == "env"
    assert resolve_password(acc, {}) == "secret-from-cmd"


def test_failing_password_command_does_not_leak(tmp_path: Path) -> None:
    path = write(tmp_path, '[accounts.w]\nserver = "https://x"\nusername = "u"\nmaildir = "/tmp/m"\n'
                 'password_command = "sh -c \'echo hunter2; exit 3\'"\n')
    with pytest.raises(AuthError) as info:
        resolve_password(load_config(path).account("w"), {})
    assert "hunter2" not in str(info.value) and "status 3" in str(info.value)


def test_password_command_without_shell_unless_asked() -> None:
    assert command_argv("pass show axigen/alice") == ["pass", "show", "axigen/alice"]
    assert command_argv("gpg -d f | head -1")[:2] == ["/bin/sh", "-c"]


@pytest.mark.parametrize("value, ok", [(1, True), (128, True), (256, True), (0, False), (257, False)])
def test_concurrency_bounds(tmp_path: Path, value: int, ok: bool) -> None:
    """1-256 connections: one request per message, so a link with tens of ms of latency
    wants many (docs/performance.md); the ceiling keeps a typo from opening thousands."""
    path = write(tmp_path, f"""
[accounts.w]
server = "https://mail.example.com"
username = "u"
maildir = "{tmp_path / 'm'}"
concurrency = {value}
""")
    if ok:
        assert load_config(path).account("w").concurrency == value
    else:
        with pytest.raises(ConfigError, match=r"accounts\.w\.concurrency: must be between 1 and 256"):
            load_config(path)
