"""Regression tests for push bugs found while writing the push tests (see the report in
docs/design.md "Push and merge"), plus dry run, deletion guard and --push-only."""

from __future__ import annotations

import os
from typing import Any

import pytest

from axsync.config import MaxDelete
from axsync.fake.mailbox import InvalidError
from axsync.store import Store, compress_bytes
from axsync.sync.local import LocalView, detect

from .conftest import MakeEnv
from .harness import (
    LocalMsg,
    PushEnv,
    client_add_keyword,
    client_delete,
    client_move,
    client_set_flags,
    raw_mail,
)

pytestmark = pytest.mark.timeout(120)


def nth(env: PushEnv, folder: tuple[str, ...], n: int = 0, pred: Any = lambda m: True) -> LocalMsg:
    mails = [m for m in sorted(env.local().values(), key=lambda m: int(m.msgid[1:].split("@")[0]))
             if m.folder == folder and pred(m)]
    return mails[n]


def test_a_failed_part_of_a_change_is_sent_again(make_env: MakeEnv, api_version: str) -> None:
    """Flag and label change on one mail; the server fails the label item. The flag part
    is recorded, the label part is not lost: the next run sends it."""
    env = make_env(api_version, messages=12)
    m = nth(env, ("INBOX",), pred=lambda m: "F" not in m.letters and "todo" not in m.labels)
    client_add_keyword(client_set_flags(m, add="F"), "todo")
    target = env.server()[m.msgid].id
    real = env.mb.add_label_to_mail

    def flaky(mail_id: str, label_id: str) -> None:
        if mail_id == target:
            raise InvalidError("not now")
        real(mail_id, label_id)

    env.mb.add_label_to_mail = flaky
    report = env.run()
    assert report.exit_code == 1 and report.to_json()["failed"] == 1
    assert env.server()[m.msgid].flagged and "todo" not in env.server()[m.msgid].labels
    env.mb.add_label_to_mail = real
    again = env.ok()
    assert again.to_json()["pushed"]["labels"] == 1
    assert "todo" in env.server()[m.msgid].labels
    env.check()
    env.noop()


def test_conversation_member_in_trash_is_changed_too(make_env: MakeEnv, api_version: str) -> None:
    """m0 and its reply m1 form a conversation; m1 goes to Trash on the server. Flagging
    both here must flag both there (Trash is outside the server's conversations)."""
    env = make_env(api_version, messages=8)
    env.mb.delete_mail(env.server()["m1@push.test"].id)
    env.ok()
    loc = env.local()
    assert loc["m1@push.test"].folder == ("Trash",)
    for key in ("m0@push.test", "m1@push.test"):
        client_set_flags(loc[key], add="F", remove="")
    env.ok()
    srv = env.server()
    assert srv["m0@push.test"].flagged and srv["m1@push.test"].flagged
    env.check()
    env.noop()


def test_conversation_member_in_an_excluded_folder_is_left_alone(make_env: MakeEnv, api_version: str) -> None:
    """A third member of m0's thread lives in an excluded folder: marking the two archived
    members read must not mark it read on the server."""
    env = make_env(api_version, messages=8, exclude=("Junk", "Work"), initial_sync=False)
    env.mb.add_mail(env.folder("Work"), raw_mail(900, thread=0), date=1_760_000_900, unread=True)
    env.ok()
    loc = env.local()
    assert "m900@push.test" not in loc
    assert loc["m0@push.test"].folder == loc["m1@push.test"].folder  # m1 replies to m0
    for key in ("m0@push.test", "m1@push.test"):
        client_set_flags(loc[key], add="S")
    env.ok()
    srv = env.server()
    assert not srv["m0@push.test"].unread and not srv["m1@push.test"].unread
    assert srv["m900@push.test"].unread, "a mail outside the archive was changed"
    env.check(excluded_paths=[("Work",)])
    env.noop()


def test_server_deletion_for_good_removes_a_locally_moved_file(make_env: MakeEnv, api_version: str) -> None:
    env = make_env(api_version, messages=8)
    m = nth(env, ("INBOX",))
    env.mb.delete_mail(env.server()[m.msgid].id)
    env.ok()
    trash_copy = env.local()[m.msgid]
    assert trash_copy.folder == ("Trash",)
    client_move(trash_copy, env.maildir, ".Archive")            # moved out of Trash here
    env.mb.delete_mail(env.server()[m.msgid].id)                # deleted for good there
    report = env.ok()
    assert m.msgid not in env.server() and m.msgid not in env.local()
    assert "local_unknown_files" not in report.to_json()
    env.check()
    env.noop()


def test_file_of_a_deleted_mail_put_back_is_reported(make_env: MakeEnv, api_version: str) -> None:
    """A user restores a deleted file (same name) from a backup: no server copy, no live
    row: kept and reported, never silently ignored."""
    env = make_env(api_version, messages=8)
    m = nth(env, ("INBOX",))
    saved = m.path.read_bytes()
    env.mb.delete_mail(env.server()[m.msgid].id)  # to Trash
    env.ok()
    env.mb.delete_mail(env.server()[m.msgid].id)  # for good
    env.ok()
    m.path.write_bytes(saved)
    report = env.ok()
    assert report.to_json().get("local_unknown_files") == 1
    assert m.path.exists()


def test_keyword_spelled_differently_finds_its_label(make_env: MakeEnv, api_version: str) -> None:
    """``project~20x`` decodes to "project x": the label "Project X" (case-insensitive),
    not a new label."""
    env = make_env(api_version, messages=8)
    m = nth(env, ("INBOX",), pred=lambda m: "Project X" not in m.labels)
    labels_before = sorted(n for _i, n in env.mb.labels())
    client_add_keyword(m, "project~20x")
    env.ok()
    assert sorted(n for _i, n in env.mb.labels()) == labels_before
    assert "Project X" in env.server()[m.msgid].labels
    env.noop()


def test_label_created_by_an_interrupted_run_is_found(make_env: MakeEnv, api_version: str) -> None:
    """The label exists on the server but not in the state DB (created by a run killed
    right after): --push-only finds it instead of failing."""
    env = make_env(api_version, messages=8)
    m = nth(env, ("INBOX",))
    env.mb.create_label("Fresh")
    client_add_keyword(m, "Fresh")
    report = env.ok(push_only=True)
    assert report.to_json()["pushed"]["labels"] == 1
    assert "Fresh" in env.server()[m.msgid].labels
    env.ok()
    env.check()
    env.noop()


def test_dry_run_prints_the_push_plan_and_changes_nothing(make_env: MakeEnv, api_version: str) -> None:
    env = make_env(api_version, messages=12)
    a = nth(env, ("INBOX",), 0, lambda m: "F" not in m.letters)
    b = nth(env, ("INBOX",), 1)
    c = nth(env, ("INBOX",), 2)
    client_add_keyword(client_set_flags(a, add="F"), "Fresh")
    client_move(b, env.maildir, ".Work")
    client_delete(c)
    before_server = env.server()
    before_local = sorted(p.name for p in env.maildir.rglob("*"))
    env.fake.reset_counters()
    report = env.ok(dry_run=True)
    plan = report.to_json()["plan"]
    pushes = sorted(p["push"] for p in plan if "push" in p)
    assert pushes == ["labels/create", "mails/delete", "mails/move", "mails/update"], plan
    assert report.to_json()["pushed"] == {"flags": 1, "labels": 0, "moved": 1, "deleted": 1}
    assert env.server() == before_server
    assert sorted(p.name for p in env.maildir.rglob("*")) == before_local
    assert not any(k.startswith("POST") and "login" not in k for k in env.fake.counters)


def test_local_deletions_pass_the_deletion_guard_only_with_force(make_env: MakeEnv, api_version: str) -> None:
    env = make_env(api_version, messages=12, max_delete=MaxDelete(count=2, percent=None))
    victims = [nth(env, ("INBOX",), i) for i in range(3)]
    for v in victims:
        client_delete(v)
    report = env.run()
    assert report.exit_code == 4, report.to_json()
    assert "max_delete" in (report.fatal or "")
    assert all(env.server()[v.msgid].path == ("INBOX",) for v in victims)
    env.ok(force=True)
    assert all(env.server()[v.msgid].path == ("Trash",) for v in victims)
    env.check()


def test_push_only_sends_without_pulling_first(make_env: MakeEnv, api_version: str) -> None:
    env = make_env(api_version, messages=8)
    m = nth(env, ("INBOX",), pred=lambda m: "F" not in m.letters)
    client_set_flags(m, add="F")
    env.mb.add_mail(env.folder("INBOX"), raw_mail(700), date=1_760_000_700)
    report = env.ok(push_only=True)
    assert report.to_json()["pushed"]["flags"] == 1
    assert env.server()[m.msgid].flagged
    env.ok()
    assert "m700@push.test" in env.local()
    env.check()


def test_detect_unit_cases(make_env: MakeEnv) -> None:
    """detect() on a real archive: one base in two folders, a same-content rewrite, a
    plain rename that only needs recording."""
    env = make_env("10.6", messages=8)
    store = Store(env.maildir)
    a = nth(env, ("INBOX",), 0)
    b = nth(env, ("INBOX",), 1)
    c = nth(env, ("INBOX",), 2)
    os.link(a.path, env.maildir / ".Work" / "cur" / a.filename)          # COPY to Work
    new_name = "1760009999.M1P1.other,S=1,W=1:2," + "".join(ch for ch in b.flags if ch != "Z")
    os.rename(b.path, env.maildir / "cur" / new_name)                     # re-written
    os.rename(c.path, c.path.with_name(c.filename + "T"))                 # \\Deleted: local only
    (env.maildir / "cur" / "1760009998.M2P1.other:2,").write_bytes(compress_bytes(b"x: y\r\n\r\nz\r\n", "zstd"))
    with env.db() as db:
        by_atom = {atom: lid for lid, (_n, atom) in db.labels().items()}
        changes = detect(db, LocalView.scan(store), by_atom)
    unknown = sorted((f.dirname, f.filename) for f in changes.unknown)
    assert unknown == [("", "1760009998.M2P1.other:2,"), (".Work", a.filename)]
    assert [(r.base, f.filename) for r, f in changes.adopted] == [(b.base, new_name)]
    edits = {e.row.base: e for e in changes.edits}
    assert a.base not in edits  # the original stays where it was: no move
    rewritten = edits[b.base].file
    assert rewritten is not None and rewritten.filename == new_name
    assert edits[c.base].letters == "".join(sorted(set(c.letters) | {"T"}))


@pytest.mark.parametrize("mode", ["mirror", "sync"])
def test_same_id_move_is_not_a_deletion(make_env: MakeEnv, api_version: str, mode: str) -> None:
    """A server that keeps the id on move reports it removed from the source folder and
    new in the destination; the removal must not cancel the move when the destination
    folder is gathered first (pull staging bug: the mail vanished from the archive)."""
    env = make_env(api_version, messages=16, knobs={"ids_change_on_move": False})
    env.with_account(mode=mode)
    moves = [(("INBOX",), ("Archive",)), (("INBOX",), ("Work",)), (("Work", "Sub"), ("INBOX",))]
    for src, dest in moves:
        m = nth(env, src)
        env.mb.move_mail(env.server()[m.msgid].id, env.folder(*dest))
        report = env.ok()
        j = report.to_json()
        assert j["pulled"]["moved"] == 1 and j["pulled"]["deleted"] == 0, j
        assert env.local()[m.msgid].folder == dest
    env.check()
    env.noop()


def test_201_never_applied_is_reported_after_max_attempts(make_env: MakeEnv, api_version: str) -> None:
    """A server that accepts a batch (201) but never applies it: re-issued by the next
    runs, then reported as failed (exit 1) with a clear message; nothing lost locally."""
    from axsync.sync.push import MAX_ATTEMPTS

    env = make_env(api_version, messages=8, knobs={"async_batch_threshold": 0, "async_batch_delay": 3600})
    m = nth(env, ("INBOX",), pred=lambda m: "F" not in m.letters)
    flagged = client_set_flags(m, add="F")
    codes = []
    for _ in range(MAX_ATTEMPTS + 1):
        report = env.run(async_wait=0.2)
        env.fake.service.cancel_jobs()  # the jobs are lost
        codes.append(report.exit_code)
    assert codes == [0] * MAX_ATTEMPTS + [1], codes
    errors = report.to_json()["failures"]
    assert "never applied" in errors[0]["error"], errors
    assert env.pending_rows() == 1
    assert env.local()[m.msgid].letters == flagged.letters  # the local change is kept
    env.knobs.async_batch_threshold = 200  # the server behaves again
    env.ok()
    assert env.server()[m.msgid].flagged and env.pending_rows() == 0
    env.noop()


def test_folder_created_by_an_interrupted_run_is_found(make_env: MakeEnv, api_version: str) -> None:
    """The folder exists on the server but not in the state DB (created by a run killed
    right after): --push-only moves into it instead of failing."""
    env = make_env(api_version, messages=8)
    m = nth(env, ("INBOX",))
    env.mb.add_folder("Projects")
    client_move(m, env.maildir, ".Projects")
    report = env.ok(push_only=True)
    assert report.to_json()["pushed"]["moved"] == 1
    assert env.server()[m.msgid].path == ("Projects",)
    assert [f.name for f in env.mb.folders()].count("Projects") == 1
    env.ok()
    env.check()
    env.noop()


@pytest.mark.parametrize("policy", ["server", "local"])
def test_pushed_deletion_on_a_same_id_server_is_not_deleted_for_good(
        make_env: MakeEnv, api_version: str, policy: str) -> None:
    """201 + a server that keeps ids on move: the confirming pull sees our own deletion as
    the same id now in Trash. It must fetch the Trash copy, not push the deletion again
    (which would delete the mail for good from Trash)."""
    env = make_env(api_version, messages=8, conflict=policy,
                   knobs={"ids_change_on_move": False, "async_batch_threshold": 0, "async_batch_delay": 0.1})
    m = nth(env, ("INBOX",))
    client_delete(m)
    report = env.ok()
    assert report.conflicts == 0
    assert env.server()[m.msgid].path == ("Trash",)
    assert env.local()[m.msgid].folder == ("Trash",)
    env.check()
    env.noop()
    assert env.server()[m.msgid].path == ("Trash",)
