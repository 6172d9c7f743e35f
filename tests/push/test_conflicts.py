"""Conflicts follow the ``conflict`` policy and are reported (run report, ``conflicts``
table, ``status --json``); changes on one side, or the same change on both, merge silently."""

from __future__ import annotations

import json

import pytest

from .conftest import MakeEnv
from .harness import (
    LocalMsg,
    PushEnv,
    cli,
    client_add_keyword,
    client_delete,
    client_move,
    client_remove_keyword,
    client_set_flags,
)

pytestmark = pytest.mark.timeout(120)


def first(env: PushEnv, folder: tuple[str, ...], pred: object = lambda m: True, skip: set[str] | None = None) -> LocalMsg:
    for key in sorted(env.local(), key=lambda k: int(k[1:].split("@")[0])):
        m = env.local()[key]
        if m.folder == folder and pred(m) and key not in (skip or set()):  # type: ignore[operator]
            return m
    raise AssertionError(f"no mail in {folder}")


def conflicts_table(env: PushEnv) -> list[dict[str, object]]:
    with env.db() as db:
        return db.conflicts(100)


#: What each policy resolves a conflict to (newest: move-vs-move as server, delete-vs-move as
#: local, the local deletion being the newer event; docs/usage.md).
MOVE_WINNER = {"server": "server", "local": "local", "newest": "server"}
DELETE_WINNER = {"server": "server", "local": "local", "newest": "local"}


@pytest.mark.parametrize("policy", ["server", "local", "newest"])
def test_move_vs_move(make_env: MakeEnv, api_version: str, policy: str) -> None:
    env = make_env(api_version, messages=16, conflict=policy)
    m = first(env, ("INBOX",))
    client_move(m, env.maildir, ".Work")                      # local: INBOX -> Work
    srv = env.server()[m.msgid]
    env.mb.move_mail(srv.id, env.folder("Archive"))           # server: INBOX -> Archive
    env.record_downloads()
    report = env.ok()
    assert report.conflicts == 1, report.to_json()
    resolution = MOVE_WINNER[policy]
    winner = ("Archive",) if resolution == "server" else ("Work",)
    assert env.server()[m.msgid].path == winner
    assert env.local()[m.msgid].folder == winner
    assert env.downloads == []  # moved, never fetched again
    rows = conflicts_table(env)
    assert len(rows) == 1
    row = rows[0]
    assert row["field"] == "folder" and row["resolution"] == resolution
    assert row["local"] == ".Work" and row["server"] == ".Archive", row
    assert row["run_id"] == report.run_id
    env.check()
    env.noop()
    # status --json shows it, with the run's summary counting it
    out = cli(env, "status", env.account.name, "--json")
    assert out.returncode == 0, out.stderr
    status = json.loads(out.stdout)
    assert [c["field"] for c in status["conflicts"]] == ["folder"]
    assert status["conflicts"][0]["resolution"] == resolution


@pytest.mark.parametrize("new_ids", [True, False], ids=["ids-change", "same-id"])
@pytest.mark.parametrize("policy", ["server", "local", "newest"])
def test_delete_vs_move(make_env: MakeEnv, api_version: str, policy: str, new_ids: bool) -> None:
    env = make_env(api_version, messages=16, conflict=policy, knobs={"ids_change_on_move": new_ids})
    m = first(env, ("INBOX",))
    client_delete(m)                                         # local: deleted
    srv = env.server()[m.msgid]
    env.mb.move_mail(srv.id, env.folder("Work"))             # server: moved to Work
    report = env.ok()
    assert report.conflicts == 1, report.to_json()
    rows = conflicts_table(env)
    resolution = DELETE_WINNER[policy]
    assert [(r["field"], r["local"], r["server"], r["resolution"]) for r in rows] == [
        ("delete", "deleted", "moved", resolution)]
    if resolution == "server":  # the move wins: the mail is back, in Work, on both sides
        assert env.server()[m.msgid].path == ("Work",)
        assert env.local()[m.msgid].folder == ("Work",)
    else:  # the deletion wins: deleted on the server (into Trash), wherever it moved
        assert env.server()[m.msgid].path == ("Trash",)
        assert env.local()[m.msgid].folder == ("Trash",)
    env.check()
    env.noop()


def test_same_change_on_both_sides_merges_silently(make_env: MakeEnv, api_version: str) -> None:
    env = make_env(api_version, messages=16)
    a = first(env, ("INBOX",), lambda m: "F" not in m.letters)
    b = first(env, ("INBOX",), lambda m: "todo" not in m.labels, skip={a.msgid})
    c = first(env, ("INBOX",), skip={a.msgid, b.msgid})
    client_set_flags(a, add="F")
    env.mb.set_flags(env.server()[a.msgid].id, flagged=True)
    client_add_keyword(b, "todo")
    env.mb.add_label_to_mail(env.server()[b.msgid].id, env.label("todo"))
    client_move(c, env.maildir, ".Archive")
    env.mb.move_mail(env.server()[c.msgid].id, env.folder("Archive"))
    env.fake.reset_counters()
    report = env.ok()
    j = report.to_json()
    assert j["conflicts"] == 0 and j["pushed"] == {"flags": 0, "labels": 0, "moved": 0, "deleted": 0}, j
    assert not any("batch" in k for k in env.fake.counters), env.fake.counters
    assert conflicts_table(env) == []
    srv = env.server()
    assert srv[a.msgid].flagged and "todo" in srv[b.msgid].labels and srv[c.msgid].path == ("Archive",)
    env.check()
    env.noop()


def test_changes_on_one_side_each_take_that_side(make_env: MakeEnv, api_version: str) -> None:
    """Per flag and per label: the server read a mail, the archive flagged it and removed a
    label; the server added a label to a mail the archive moved; the server moved a mail
    the archive marked read."""
    env = make_env(api_version, messages=24)
    a = first(env, ("INBOX",), lambda m: "S" not in m.letters and "F" not in m.letters and bool(m.atoms))
    b = first(env, ("INBOX",), lambda m: "Important" not in m.labels, skip={a.msgid})
    c = first(env, ("INBOX",), lambda m: "S" not in m.letters, skip={a.msgid, b.msgid})
    label = a.labels[0]
    client_remove_keyword(client_set_flags(a, add="F"), a.atoms[0])
    env.mb.set_flags(env.server()[a.msgid].id, unread=False)
    client_move(b, env.maildir, ".Work")
    env.mb.add_label_to_mail(env.server()[b.msgid].id, env.label("Important"))
    client_set_flags(c, add="S")
    env.mb.move_mail(env.server()[c.msgid].id, env.folder("Archive"))
    report = env.ok()
    assert report.conflicts == 0, report.to_json()
    srv = env.server()
    assert srv[a.msgid].letters == "FS" and label not in srv[a.msgid].labels
    assert srv[b.msgid].path == ("Work",) and "Important" in srv[b.msgid].labels
    assert srv[c.msgid].path == ("Archive",) and not srv[c.msgid].unread
    env.check()
    env.noop()


def test_server_delete_vs_local_flag_change(make_env: MakeEnv, api_version: str) -> None:
    """The server deleted (to Trash) a mail the archive flagged: no conflict, the flag
    follows the mail into Trash."""
    env = make_env(api_version, messages=16)
    a = first(env, ("INBOX",), lambda m: "F" not in m.letters)
    client_set_flags(a, add="F")
    env.mb.delete_mail(env.server()[a.msgid].id)
    env.record_downloads()
    report = env.ok()
    assert report.conflicts == 0
    assert env.server()[a.msgid].path == ("Trash",) and env.server()[a.msgid].flagged
    assert env.downloads == []
    env.check()
    env.noop()


@pytest.mark.parametrize("policy", ["server", "local"])
def test_move_vs_move_when_ids_survive_moves(make_env: MakeEnv, api_version: str, policy: str) -> None:
    """A server that keeps the mail id on move (the same-id path of the pull)."""
    env = make_env(api_version, messages=16, conflict=policy, knobs={"ids_change_on_move": False})
    m = first(env, ("INBOX",))
    n = first(env, ("INBOX",), skip={m.msgid})
    client_move(m, env.maildir, ".Work")
    env.mb.move_mail(env.server()[m.msgid].id, env.folder("Archive"))
    client_move(n, env.maildir, ".Archive")  # a plain local move, same-id server
    report = env.ok()
    assert report.conflicts == 1, report.to_json()
    winner = ("Archive",) if policy == "server" else ("Work",)
    assert env.server()[m.msgid].path == winner and env.local()[m.msgid].folder == winner
    assert env.server()[n.msgid].path == ("Archive",)
    assert [(r["field"], r["resolution"]) for r in conflicts_table(env)] == [("folder", policy)]
    env.check()
    env.noop()


def test_label_deleted_on_the_server_is_not_recreated(make_env: MakeEnv, api_version: str) -> None:
    """Deleting a label on the server removes its keyword from the archive; the push must
    not take the keyword for a new label and create it again. A mail that got the keyword
    here meanwhile keeps it: for that one it is a new label."""
    env = make_env(api_version, messages=16)
    tagged = sorted((m for m in env.local().values() if "todo" in m.labels), key=lambda m: m.msgid)
    assert len(tagged) >= 2
    client_set_flags(tagged[0], add="F" if "F" not in tagged[0].letters else "",
                     remove="F" if "F" in tagged[0].letters else "")  # also changed here
    env.mb.delete_label(env.label("todo"))
    report = env.ok()
    assert report.conflicts == 0
    assert "todo" not in [n for _i, n in env.mb.labels()], "the deleted label came back"
    assert all("todo" not in m.labels for m in env.local().values())
    assert env.server()[tagged[0].msgid].flagged != ("F" in tagged[0].letters)
    env.check()
    env.noop()
    # tagged here while the server deletes it: for that mail it is a new label
    m = next(m for m in env.local().values() if "Important" not in m.labels)
    client_add_keyword(m, "Important")
    env.mb.delete_label(env.label("Important"))
    env.ok()
    assert env.server()[m.msgid].labels == tuple(sorted({*m.labels, "Important"}))
    assert [msgid for msgid, s in env.server().items() if "Important" in s.labels] == [m.msgid]
    env.check()
    env.noop()


def test_label_renamed_on_the_server(make_env: MakeEnv, api_version: str) -> None:
    """The archive's keywords follow a label renamed on the server (pull bug: files kept
    the old keyword, and in sync mode the push then created the old label again and put it
    back on every mail). A keyword removed here meanwhile stays removed (pushed)."""
    env = make_env(api_version, messages=16)
    tagged = sorted((m for m in env.local().values() if "todo" in m.labels), key=lambda m: m.msgid)
    assert len(tagged) >= 3
    client_set_flags(tagged[0], add="F" if "F" not in tagged[0].letters else "",
                     remove="F" if "F" in tagged[0].letters else "")
    client_remove_keyword(tagged[1], "todo")
    env.mb.rename_label(env.label("todo"), "Later on")
    report = env.ok()
    assert report.to_json()["pushed"]["labels"] == 1, report.to_json()  # tagged[1]'s removal
    assert sorted(n for _i, n in env.mb.labels()) == ["Important", "Later on", "Project X"]
    srv = env.server()
    assert "Later on" in srv[tagged[0].msgid].labels and "Later on" in srv[tagged[2].msgid].labels
    assert "Later on" not in srv[tagged[1].msgid].labels
    assert "Later~20on" in env.local()[tagged[2].msgid].atoms
    env.check()
    env.noop()
