"""Downloads are made durable by group commit (:class:`axsync.store.commit.GroupCommit`):
each file's content is durable before its rename into ``cur/``, and its name is durable
before its state row is committed (never a row for a name that might not survive a
crash). With syncfs(2) both steps are one system call per group; without it (not Linux),
each file and each ``cur/`` is fsynced."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from axsync.statedb import StateDB
from axsync.store import commit as commit_mod
from axsync.store import writer

from .archive_check import server_mails
from .conftest import MakeEnv


@pytest.mark.parametrize("use_syncfs", [True, False], ids=["syncfs", "fsync-each"])
@pytest.mark.parametrize("api", ["10.4", "10.6"])
def test_content_then_name_durable_before_the_row(make_env: MakeEnv, api: str, use_syncfs: bool,
                                                  monkeypatch: pytest.MonkeyPatch,
                                                  tmp_path: Path) -> None:
    if use_syncfs and not commit_mod.can_syncfs(tmp_path):
        pytest.skip("no syncfs(2) here")
    # (seal|publish|row, "dirname\0filename") or (sync, "") for a syncfs, or
    # (fsync-file, tmp path) / (fsync-dir, cur path) without it.
    events: list[tuple[str, str]] = []
    real_seal = writer.MessageWriter.seal
    real_publish = writer.SealedFile.publish
    real_insert = StateDB.insert_message
    real_insert_many = StateDB.insert_messages
    real_syncfs = commit_mod.syncfs
    real_fsync_dir = commit_mod.fsync_dir
    real_open = commit_mod.os.open

    def key(stored: writer.StoredFile) -> str:
        return f"{stored.dirname}\0{stored.filename}"

    def seal(self: writer.MessageWriter, flags: str, mtime: int) -> writer.SealedFile:
        sealed = real_seal(self, flags, mtime)
        events.append(("seal", key(sealed.stored)))
        return sealed

    def publish(self: writer.SealedFile) -> writer.StoredFile:
        if not use_syncfs:
            assert ("fsync-file", str(self.tmp)) in events, "renamed before its content was durable"
        stored = real_publish(self)
        events.append(("publish", key(stored)))
        return stored

    def insert_message(self: StateDB, values: dict[str, Any]) -> int:
        events.append(("row", f"{values['dirname']}\0{values['filename']}"))
        return real_insert(self, values)

    def insert_messages(self: StateDB, rows: Sequence[dict[str, Any]]) -> None:
        events.extend(("row", f"{values['dirname']}\0{values['filename']}") for values in rows)
        real_insert_many(self, rows)

    def syncfs(fd: int) -> None:
        real_syncfs(fd)
        events.append(("sync", ""))

    def fsync_dir(path: Path | str) -> None:
        real_fsync_dir(path)
        events.append(("fsync-dir", str(path)))

    def os_open(path: Any, flags: int, *args: Any, **kw: Any) -> int:
        fd = real_open(path, flags, *args, **kw)
        if "/tmp/" in str(path) and flags == commit_mod.os.O_RDONLY:
            events.append(("fsync-file", str(path)))  # _sync_contents opens a file to fsync it
        return fd

    monkeypatch.setattr(writer.MessageWriter, "seal", seal)
    monkeypatch.setattr(writer.SealedFile, "publish", publish)
    monkeypatch.setattr(StateDB, "insert_message", insert_message)
    monkeypatch.setattr(StateDB, "insert_messages", insert_messages)  # an initial pull's rows
    monkeypatch.setattr(commit_mod, "syncfs", syncfs)
    monkeypatch.setattr(commit_mod, "fsync_dir", fsync_dir)
    monkeypatch.setattr(commit_mod.os, "open", os_open)
    monkeypatch.setattr(commit_mod, "can_syncfs", lambda path: use_syncfs)
    env = make_env(api, messages=120)
    report = env.ok()
    new = report.pulled.new
    assert new > 100
    rows = [what for kind, what in events if kind == "row"]
    published = [what for kind, what in events if kind == "publish"]
    assert len(rows) == len(published) == new
    syncs = sum(1 for kind, _ in events if kind == "sync")
    if use_syncfs:
        assert 2 <= syncs < new / 3, "syncfs is called per group, not per message"
        assert not any(kind.startswith("fsync") for kind, _ in events)
    else:
        assert syncs == 0
        assert sum(1 for kind, _ in events if kind == "fsync-file") == new
    sealed: set[str] = set()
    content_durable: set[str] = set()
    renamed: set[str] = set()
    name_durable: set[str] = set()
    for kind, what in events:
        if kind == "seal":
            sealed.add(what)
        elif kind == "sync":
            content_durable |= sealed
            name_durable |= renamed
        elif kind == "fsync-dir":
            folder = Path(what).parent
            name_durable |= {w for w in renamed if Path(what).name == "cur" and folder == (
                env.maildir / w.split("\0")[0] if w.split("\0")[0] else env.maildir)}
        elif kind == "publish":
            if use_syncfs:
                assert what in content_durable, f"{what!r} renamed before its content was durable"
            renamed.add(what)
        elif kind == "row":
            assert what in name_durable, f"row for {what!r} recorded before its name was durable"
    env.verify_clean()
    env.check()


def test_flag_renames_durable_before_their_rows_one_sync_per_directory(
        make_env: MakeEnv, monkeypatch: pytest.MonkeyPatch) -> None:
    """Flag changes from the server rename files; each renamed file's directory is fsynced
    before the transaction recording the new names commits, once per directory and batch
    (not once per file)."""
    from axsync.store import maildir as maildir_mod

    env = make_env("10.6", messages=200, mode="sync")
    env.ok()
    changed = 0
    for fid in sorted({m.folder_id for m in env.mb.mails()}):
        for mail in sorted(env.mb.mails(fid), key=lambda m: m.id)[:12]:
            env.mb.set_flags(mail.id, flagged=not mail.flagged)
            changed += 1
    events: list[tuple[str, str]] = []
    real_rename = maildir_mod.os.rename
    real_fsync_dir = maildir_mod.fsync_dir
    real_execute = StateDB.execute

    def rename(src: Any, dst: Any) -> None:
        real_rename(src, dst)
        events.append(("rename", str(Path(dst).parent)))

    def fsync_dir(path: Path | str) -> None:
        real_fsync_dir(path)
        events.append(("fsync-dir", str(path)))

    def execute(self: StateDB, sql: str, *args: Any) -> Any:
        if sql == "COMMIT":
            events.append(("commit", ""))
        return real_execute(self, sql, *args)

    monkeypatch.setattr(maildir_mod.os, "rename", rename)
    monkeypatch.setattr(maildir_mod, "fsync_dir", fsync_dir)
    monkeypatch.setattr(StateDB, "execute", execute)
    report = env.ok()
    assert changed > report.pulled.updated > 40  # less: the excluded Spam folder
    renames = [what for kind, what in events if kind == "rename"]
    assert len(renames) == report.pulled.updated
    pending: set[str] = set()
    for kind, what in events:
        if kind == "rename":
            pending.add(what)
        elif kind == "fsync-dir":
            pending.discard(what)
        elif kind == "commit":
            assert not pending, f"committed with renames in {pending} not durable"
    syncs = sum(1 for kind, _ in events if kind == "fsync-dir")
    assert syncs <= len(set(renames)) + 2, "one directory sync per folder, not per file"
    env.verify_clean()
    env.check()


def test_adopted_files_names_durable_before_their_rows(
        make_env: MakeEnv, monkeypatch: pytest.MonkeyPatch) -> None:
    """A file a killed pull wrote but did not record is adopted by the next run; the killed
    run may not have made its name durable, so its directory is fsynced before its row
    is recorded. (The killed run is made here: rows dropped, tokens forgotten.)"""
    from axsync.store import maildir as maildir_mod
    from axsync.sync import pull as pull_mod

    env = make_env("10.6", messages=64)
    env.ok()
    db = StateDB.open(env.db_path)
    with db.transaction():
        rows = db.execute("SELECT uid, base FROM messages WHERE state = 'present' "
                          "ORDER BY uid LIMIT 6").fetchall()
        for uid, _base in rows:
            for table in ("message_history", "search_queue", "search_docs", "search_refs"):
                db.execute(f"DELETE FROM {table} WHERE uid = ?", (uid,))
            db.execute("DELETE FROM messages WHERE uid = ?", (uid,))
        db.execute("UPDATE folders SET delta_token = NULL, content_token = NULL")
    db.close()
    dropped = {base for _uid, base in rows}
    events: list[tuple[str, str]] = []
    cur_of: dict[str, str] = {}
    real_adopt = pull_mod.Puller._adopt
    real_fsync_dir = maildir_mod.fsync_dir
    real_insert = StateDB.insert_message

    def adopt(self: Any, mail: Any, dirname: str, *args: Any) -> Any:
        stored = real_adopt(self, mail, dirname, *args)
        if stored is not None:
            cur_of[stored.base] = str(self.store.path_of(dirname, "cur", stored.filename).parent)
            events.append(("adopt", stored.base))
        return stored

    def fsync_dir(path: Path | str) -> None:
        real_fsync_dir(path)
        events.append(("fsync-dir", str(path)))

    def insert(self: StateDB, values: dict[str, Any]) -> int:
        events.append(("row", values["base"]))
        return real_insert(self, values)

    monkeypatch.setattr(pull_mod.Puller, "_adopt", adopt)
    monkeypatch.setattr(maildir_mod, "fsync_dir", fsync_dir)
    monkeypatch.setattr(StateDB, "insert_message", insert)
    report = env.ok()
    assert set(cur_of) == dropped and report.pulled.new == len(dropped)
    unsynced: set[str] = set()
    for kind, what in events:
        if kind == "adopt":
            unsynced.add(cur_of[what])
        elif kind == "fsync-dir":
            unsynced.discard(what)
        elif kind == "row" and what in cur_of:
            assert cur_of[what] not in unsynced, f"row for {what} before its directory was synced"
    env.check()
    env.verify_clean()


def test_a_pull_stopped_while_recording_costs_no_download(
        make_env: MakeEnv, monkeypatch: pytest.MonkeyPatch) -> None:
    """Rows are recorded in big transactions (pull.RECORD_ROWS): a pull stopped in the
    middle of one leaves every file of it durable and unrecorded, and the next run adopts
    them all (verified) without downloading any again."""
    from axsync.sync import pull as pull_mod

    env = make_env("10.6", messages=120, concurrency=4)
    monkeypatch.setattr(pull_mod, "RECORD_ROWS", 40)
    real_row = pull_mod.Puller._new_row  # each row recorded, one by one or in bulk
    recorded: list[str] = []

    def row(self: Any, mail: Any, *args: Any) -> Any:
        if len(recorded) == 60:  # in the middle of the second transaction
            raise KeyboardInterrupt
        recorded.append(mail.id)
        return real_row(self, mail, *args)

    monkeypatch.setattr(pull_mod.Puller, "_new_row", row)
    with pytest.raises(KeyboardInterrupt):
        env.run()
    monkeypatch.setattr(pull_mod.Puller, "_new_row", real_row)
    with env.db() as db:
        kept = {r[0] for r in db.execute("SELECT mail_id FROM messages").fetchall()}
    # The first transaction (40 rows or a few more: the rows of every group that came
    # back before the count was checked), not the one stopped.
    assert 40 <= len(kept) < 60 and kept == set(recorded[:len(kept)])
    on_disk = sum(1 for p in env.maildir.rglob("cur/*"))
    assert on_disk > 60
    env.fake.reset_counters()
    report = env.ok()
    sources = sum(n for route, n in env.fake.counters.items() if route.endswith("/source"))
    total = sum(len(ms) for ms in server_mails(env.fake, env.account.exclude).values())
    assert sources == total - on_disk  # the unrecorded files were adopted, not fetched
    assert report.pulled.new == total - len(kept)
    env.check()
    env.verify_clean()
