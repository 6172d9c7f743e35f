"""The guarantees: on a copy of the archive, without network, nothing is ever written."""

from __future__ import annotations

import dataclasses
import hashlib
import shutil
import socket
import warnings
from pathlib import Path

import pytest

from archive.conftest import Built
from axsync.archive.access import Archive
from axsync.browse.app import create_app
from axsync.cli import main

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient


def snapshot(root: Path) -> dict[str, tuple[str, int]]:
    """Every file but SQLite's own -wal/-shm: content hash and mtime."""
    return {
        str(p.relative_to(root)): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
        for p in sorted(root.rglob("*"))
        if p.is_file() and not p.name.endswith(("-wal", "-shm"))
    }


def no_network(*args: object, **kwargs: object) -> None:
    raise AssertionError("the archive commands must not use the network")


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_read_commands_write_nothing_and_need_no_network(
    sample: Built, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(sample.maildir, copy)
    config = tmp_path / "config.toml"
    config.write_text(sample.config_path.read_text().replace(str(sample.maildir), str(copy)))
    before = snapshot(copy)
    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)

    def cli(*args: str) -> None:
        try:
            main(["--config", str(config), *args])
        except SystemExit as exc:
            assert exc.code in (0, None), args

    uid = str(sample.names["hostile"])
    cli("search", "test", "--json", "budget OR has:attachment")
    for extra in ((), ("--json",), ("--raw",), ("--thread",)):
        cli("show", "test", uid, *extra)
    for fmt in ("mbox", "eml", "maildir"):
        cli("export", "test", str(tmp_path / fmt), "--format", fmt)

    account = dataclasses.replace(sample.account, maildir=copy)
    archive = Archive.open(account, shared=True)
    with TestClient(create_app(archive, "test"), base_url="http://127.0.0.1") as client:
        for url in ("/", "/?q=kiwi", f"/message/{uid}", f"/message/{uid}/body?images=1",
                    f"/message/{uid}/part/4", f"/message/{uid}/raw", f"/thread/{uid}"):
            assert client.get(url).status_code == 200, url
    archive.close()
    assert snapshot(copy) == before
