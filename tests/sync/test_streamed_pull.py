"""A streamed initial pull (10.6, nothing archived yet): each folder's mails are
downloaded as soon as its gathering ends, while other folders are still gathered
(``Puller._can_stream``, ``_Downloads.feed_folder``). It must leave what the pull that
gathers everything first leaves, and survive what the server does meanwhile."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest

from axsync.api.client import ApiClient
from axsync.errors import ServerError
from axsync.sync.pull import Puller, _Downloads

from .conftest import MakeEnv
from .test_crash import rows

_ROW = ("mail_id, folder_id, dirname, filename, size, server_size, vsize, sha256, flags, "
        "refw, label_ids, internal_date, message_id, conversation_id, state")


def _archive(env: Any) -> tuple[dict[str, bytes], list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """Every file of the Maildir (relative path -> bytes, the lock and state DB left out),
    the messages' rows (without uid and clock columns), and the folders' keyword letters."""
    files = {}
    for path in env.maildir.rglob("*"):
        rel = str(path.relative_to(env.maildir))
        if path.is_file() and not rel.startswith(("axsync.", ".axsync")):
            files[rel] = path.read_bytes()
    with env.db() as db:
        rows = sorted(db.execute(f"SELECT {_ROW} FROM messages").fetchall())
        keywords = sorted(db.execute("SELECT * FROM folder_keywords").fetchall())
    return files, rows, keywords


def test_a_streamed_pull_leaves_what_a_gathered_one_leaves(
        make_env: MakeEnv, monkeypatch: pytest.MonkeyPatch) -> None:
    streamed = make_env("10.6", messages=150, name="streamed", knobs={"max_page_size": 7})
    fed: list[str] = []
    real_feed = _Downloads.feed_folder

    def feed_folder(self: _Downloads, folder_id: str) -> None:
        fed.append(folder_id)
        real_feed(self, folder_id)

    monkeypatch.setattr(_Downloads, "feed_folder", feed_folder)
    report = streamed.ok()
    assert len(fed) > 3, "the folders were not fed one by one"
    monkeypatch.setattr(Puller, "_can_stream", lambda self, mail_delta: False)
    gathered = make_env("10.6", messages=150, name="gathered", knobs={"max_page_size": 7})
    reference = gathered.ok()
    assert report.pulled == reference.pulled and report.pulled.new > 100
    assert _archive(streamed) == _archive(gathered)
    streamed.check()
    streamed.verify_clean()
    assert streamed.ok().pulled.new == 0


def test_downloads_start_while_folders_are_still_gathered(
        make_env: MakeEnv, monkeypatch: pytest.MonkeyPatch) -> None:
    env = make_env("10.6", messages=150, knobs={"max_page_size": 2})
    started: list[float] = []
    gathered: list[float] = []
    real_download = Puller._download_async
    real_gather = Puller._gather_folders

    async def download(self: Puller, *args: Any) -> None:
        started.append(time.monotonic())
        await real_download(self, *args)

    def gather(self: Puller, *args: Any) -> None:
        real_gather(self, *args)
        gathered.append(time.monotonic())

    monkeypatch.setattr(Puller, "_download_async", download)
    monkeypatch.setattr(Puller, "_gather_folders", gather)
    report = env.ok()
    assert len(started) == report.pulled.new > 100
    early = sum(1 for t in started if t < gathered[0])
    assert early > 0, "no download started before the last folder was gathered"
    env.check()
    env.verify_clean()


def _move_during_gathering(env: Any, monkeypatch: pytest.MonkeyPatch, streamed: bool) -> tuple[Any, str]:
    """The first pull of ``env``, during which a mail moves (same id) from a folder
    already gathered to INBOX, not gathered yet (its gathering waits for the move), which
    then reports it as new. Streamed, the mail was fed with its first folder already.
    Returns the pull's report and the mail's id; the patches are undone."""
    if not streamed:
        monkeypatch.setattr(Puller, "_can_stream", lambda self, mail_delta: False)
    mb = env.mb
    late = env.folder("INBOX")
    moved: list[str] = []
    go = threading.Event()

    def move(mail_id: str) -> None:
        mb.move_mail(mail_id, late)
        moved.append(mail_id)
        go.set()

    real_delta = ApiClient.iter_mails_delta

    def iter_mails_delta(self: ApiClient, folder_id: str, *args: Any, **kw: Any) -> Any:
        if folder_id == late:
            assert go.wait(30), "no folder was gathered"
        yield from real_delta(self, folder_id, *args, **kw)
        mails = list(mb.mails(folder_id))
        if not streamed and not moved and folder_id != late and mails:
            move(mails[0].id)  # the folder's last page is in: it is gathered

    real_feed = _Downloads.feed_folder

    def feed_folder(self: _Downloads, folder_id: str) -> None:
        real_feed(self, folder_id)
        self.pump()  # the folder's first mails are taken (marked fed) and sent
        if moved or folder_id == late:
            return
        fed = self.p.db.execute("SELECT mail_id FROM st_new WHERE folder_id = ? AND fed = 1 "
                                "ORDER BY mail_id LIMIT 1", (folder_id,)).fetchone()
        if fed is not None:
            move(fed[0])

    monkeypatch.setattr(ApiClient, "iter_mails_delta", iter_mails_delta)
    monkeypatch.setattr(_Downloads, "feed_folder", feed_folder)
    env.fake.reset_counters()
    report = env.ok()
    monkeypatch.undo()
    assert len(moved) == 1
    return report, moved[0]


@pytest.mark.parametrize("streamed", [True, False], ids=["streamed", "gathered"])
def test_a_mail_moved_during_the_gathering_is_archived_once_where_it_is(
        make_env: MakeEnv, monkeypatch: pytest.MonkeyPatch, streamed: bool) -> None:
    """Streamed, the moved mail's file is moved, not downloaded twice. Either way the next
    run, told by the first folder that the mail left it, does not delete it: the server
    still has it, where the archive has it (Puller._still_there)."""
    env = make_env("10.6", messages=150, knobs={"ids_change_on_move": False})
    report, mail_id = _move_during_gathering(env, monkeypatch, streamed)
    sources = sum(n for route, n in env.fake.counters.items() if route.endswith("/source"))
    assert sources == report.pulled.new, "a mail was downloaded twice"
    assert report.pulled.moved == (1 if streamed else 0)
    with env.db() as db:
        row = db.message_by_mail_id(mail_id)
        assert row is not None and row.folder_id == env.folder("INBOX") and row.state == "present"
    env.check()
    env.verify_clean()
    env.fake.reset_counters()
    again = env.ok()
    assert (again.pulled.new, again.pulled.moved, again.pulled.deleted) == (0, 0, 0)
    assert env.fake.counters.get("GET /api/v1/mails/{mailId}", 0) == 1  # asked about it
    env.check()
    assert env.ok().requests < again.requests  # and the removal is not reported again


def test_a_removal_the_server_cannot_confirm_keeps_the_mail_and_fails_the_run(
        make_env: MakeEnv, monkeypatch: pytest.MonkeyPatch) -> None:
    env = make_env("10.6", messages=150, knobs={"ids_change_on_move": False})
    _report, mail_id = _move_during_gathering(env, monkeypatch, streamed=False)

    def unavailable(self: ApiClient, mid: str) -> Any:
        raise ServerError("503 from GET /mails/{id}", status=503)

    monkeypatch.setattr(ApiClient, "get_mail", unavailable)
    failed = env.run()
    assert failed.exit_code == 1 and failed.pulled.deleted == 0
    assert any(mail_id in f["item"] for f in failed.to_json()["failures"]), failed.to_json()
    monkeypatch.undo()
    again = env.ok()  # the folder's removal comes again, and is checked this time
    assert (again.pulled.new, again.pulled.moved, again.pulled.deleted) == (0, 0, 0)
    with env.db() as db:
        row = db.message_by_mail_id(mail_id)
        assert row is not None and row.state == "present"
    env.check()
    env.verify_clean()


@pytest.mark.parametrize("k", [0, 1, 3, 10, 40, 90, 140])
def test_a_streamed_pull_stopped_after_k_actions_ends_as_an_uninterrupted_one(
        make_env: MakeEnv, k: int, tmp_path: Path) -> None:
    env = make_env("10.6", messages=150, knobs={"max_page_size": 5})
    first = env.run(stop_after=k)
    assert first.exit_code != 0 and "stopped after" in (first.fatal or ""), first.to_json()
    with env.db() as db:
        recorded = db.count_messages("state = 'present'")
    assert recorded <= k  # recorded only once downloaded, each download an action
    env.ok()
    env.check()
    env.verify_clean()
    reference = make_env("10.6", messages=150, name="reference")
    reference.ok()
    assert rows(env.db_path) == rows(reference.db_path)
    again = env.ok()
    assert (again.pulled.new, again.pulled.moved, again.pulled.deleted) == (0, 0, 0)
