"""Downloads are made durable by group commit: each file is fsynced before its rename into
``cur/``, and each folder's ``cur/`` is fsynced once per batch, before the batch's state
rows are committed (never a row for a name that might not survive a crash)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from axsync.statedb import StateDB
from axsync.store import Store, writer

from .conftest import MakeEnv


@pytest.mark.parametrize("api", ["10.4", "10.6"])
def test_cur_is_synced_once_per_batch_before_the_rows(make_env: MakeEnv, api: str,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    events: list[tuple[str, str]] = []  # (commit|sync|row, dirname or file name)
    real_sync_cur = Store.sync_cur
    real_commit = writer.MessageWriter.commit
    real_insert = StateDB.insert_message
    real_fsync_dir = writer.fsync_dir
    dir_syncs: list[str] = []

    def sync_cur(self: Store, dirname: str) -> None:
        real_sync_cur(self, dirname)
        events.append(("sync", dirname))

    def commit(self: writer.MessageWriter, flags: str, mtime: int, **kw: Any) -> writer.StoredFile:
        stored = real_commit(self, flags, mtime, **kw)  # the file is fsynced in there
        events.append(("commit", f"{stored.dirname}\0{stored.filename}"))
        return stored

    def insert_message(self: StateDB, values: dict[str, Any]) -> int:
        events.append(("row", f"{values['dirname']}\0{values['filename']}"))
        return real_insert(self, values)

    def fsync_dir(path: Path | str) -> None:
        dir_syncs.append(str(path))
        real_fsync_dir(path)

    monkeypatch.setattr(Store, "sync_cur", sync_cur)
    monkeypatch.setattr(writer.MessageWriter, "commit", commit)
    monkeypatch.setattr(writer, "fsync_dir", fsync_dir)
    monkeypatch.setattr(StateDB, "insert_message", insert_message)
    env = make_env(api, messages=120)
    report = env.ok()
    new = report.pulled.new
    assert new > 100
    commits = [e for e in events if e[0] == "commit"]
    syncs = [e for e in events if e[0] == "sync"]
    assert len(commits) == len([e for e in events if e[0] == "row"]) == new
    assert dir_syncs == []  # no per-message directory fsync in the workers
    folders = {e[1].split("\0")[0] for e in commits}
    assert len(folders) <= len(syncs) < new / 3, "cur/ is synced per batch, not per message"
    written: dict[str, set[str]] = {}  # folder -> files committed since its last sync
    durable: set[str] = set()
    for kind, what in events:
        if kind == "commit":
            written.setdefault(what.split("\0")[0], set()).add(what)
        elif kind == "sync":
            durable |= written.pop(what, set())
        else:
            assert what in durable, f"row for {what!r} recorded before its name was durable"
    env.verify_clean()
    env.check()
