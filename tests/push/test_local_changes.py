"""Every kind of local change, made the way a mail client makes it, ends up on the server;
the run after is a no-op. Both API generations."""

from __future__ import annotations

import json
import os

import pytest

from axsync.store import label_to_atom

from .conftest import MakeEnv
from .harness import (
    LocalMsg,
    client_add_keyword,
    client_delete,
    client_move,
    client_remove_keyword,
    client_rewrite,
    client_set_flags,
    dovecot_base,
    ensure_local_folder,
    raw_mail,
)

pytestmark = pytest.mark.timeout(120)


def pick(local: dict[str, LocalMsg], used: set[str], pred: object, folder: tuple[str, ...] | None = None) -> LocalMsg:
    """The first mail (by number) not used yet that satisfies ``pred``."""
    for key in sorted(local, key=lambda k: int(k[1:].split("@")[0])):
        m = local[key]
        if key in used or (folder is not None and m.folder != folder):
            continue
        if pred(m):  # type: ignore[operator]
            used.add(key)
            return m
    raise AssertionError("no mail fits")


def test_every_local_change_reaches_the_server(make_env: MakeEnv, api_version: str) -> None:
    env = make_env(api_version, messages=40)
    loc = env.local()
    used: set[str] = set()
    px = label_to_atom("Project X")
    assert px == "Project~20X"
    a = pick(loc, used, lambda m: m.letters == "", ("INBOX",))
    b = pick(loc, used, lambda m: "S" in m.letters)
    c = pick(loc, used, lambda m: "Project X" not in m.labels and m.dirname != "")
    d = pick(loc, used, lambda m: "todo" in m.labels)
    e = pick(loc, used, lambda m: True, ("INBOX",))
    f = pick(loc, used, lambda m: True, ("INBOX",))
    g = pick(loc, used, lambda m: bool(m.atoms), ("Work",))
    h = pick(loc, used, lambda m: True, ("Archive",))
    i = pick(loc, used, lambda m: "F" not in m.letters, ("INBOX",))
    j = pick(loc, used, lambda m: True, ("Work", "Sub"))
    k = pick(loc, used, lambda m: "todo" not in m.labels, ("INBOX",))

    client_set_flags(a, add="SF")                      # read + flagged
    client_set_flags(b, remove="S")                    # back to unread
    client_add_keyword(c, px)                          # an existing label (non-atom name)
    client_remove_keyword(d, "todo")                   # a label removed
    client_add_keyword(e, "Brandneu")                  # a label the server does not have yet
    client_move(f, env.maildir, ".Work.Sub")           # moved to an existing folder
    client_move(g, env.maildir, ".Archive")            # moved, keywords translated
    client_delete(h)                                   # deleted (to Trash on the server)
    moved = client_move(i, env.maildir, ".Work")       # moved and flagged
    client_set_flags(moved, add="F")
    ensure_local_folder(env.maildir, ".Projects")      # a folder only the archive has
    client_move(j, env.maildir, ".Projects")
    moved = client_move(k, env.maildir, ".Archive")    # moved and a brand-new keyword
    client_add_keyword(moved, "Neu2")
    env.record_downloads()

    report = env.ok()
    j_ = report.to_json()
    assert j_["pushed"] == {"flags": 3, "labels": 4, "moved": 5, "deleted": 1}, j_
    assert j_["pulled"]["bytes"] == len(raw_mail(int(h.msgid[1:].split("@")[0]))), j_
    srv = env.server()
    assert srv[a.msgid].letters == "FS"
    assert srv[b.msgid].unread
    assert "Project X" in srv[c.msgid].labels
    assert "todo" not in srv[d.msgid].labels
    assert "Brandneu" in srv[e.msgid].labels
    assert srv[f.msgid].path == ("Work", "Sub")
    assert srv[g.msgid].path == ("Archive",) and srv[g.msgid].labels == g.labels
    assert srv[h.msgid].path == ("Trash",)
    assert srv[i.msgid].path == ("Work",) and srv[i.msgid].flagged
    assert srv[j.msgid].path == ("Projects",)
    assert srv[k.msgid].path == ("Archive",) and "Neu2" in srv[k.msgid].labels
    # nothing else changed on the server
    before = {m: (s.path, s.letters, s.labels) for m, s in env.server().items()}
    changed = {x.msgid for x in (a, b, c, d, e, f, g, h, i, j, k)}
    for m, s in before.items():
        if m not in changed:
            assert (loc[m].folder, loc[m].letters, loc[m].labels) == s, m
    # the only mail downloaded again is the one deleted (now in Trash)
    assert env.downloads == [(h.msgid, ("Trash",))]
    env.check()
    env.noop()
    assert env.pending_rows() == 0


def test_refused_label_name_fails_the_items_and_loses_nothing(make_env: MakeEnv, api_version: str) -> None:
    """``junk`` / ``notjunk`` are hidden IMAP keywords on Axigen: creating such a label is
    refused. Those items fail (exit 1, clear message); the keyword stays in the file and
    every other change of the same mails still reaches the server."""
    env = make_env(api_version, messages=16)
    loc = env.local()
    used: set[str] = set()
    a = pick(loc, used, lambda m: "F" not in m.letters, ("INBOX",))
    b = pick(loc, used, lambda m: True, ("INBOX",))
    a2 = client_add_keyword(client_set_flags(a, add="F"), "junk")
    b2 = client_add_keyword(b, "NotJunk")
    report = env.run()
    assert report.exit_code == 1
    j = report.to_json()
    assert j["failed"] == 2, j
    errors = " ".join(f["item"] + " " + f["error"] for f in j["failures"])
    assert "'junk'" in errors and "'NotJunk'" in errors and "refused" in errors, errors
    srv = env.server()
    assert srv[a.msgid].flagged  # the rest of a's change went through
    assert srv[a.msgid].labels == a.labels and srv[b.msgid].labels == b.labels
    # nothing lost locally: the keyword letters are still there
    now = env.local()
    assert now[a.msgid].atoms == a2.atoms and "junk" in now[a.msgid].atoms
    assert "NotJunk" in now[b.msgid].atoms
    # a second run reports the same, and still changes nothing else
    again = env.run()
    assert again.exit_code == 1 and again.to_json()["failed"] == 2
    assert env.local()[b.msgid].atoms == b2.atoms
    # once the user drops the keywords, everything is in step
    client_remove_keyword(env.local()[a.msgid], "junk")
    client_remove_keyword(env.local()[b.msgid], "NotJunk")
    env.ok()
    env.check()
    env.noop()


def test_unknown_file_is_kept_reported_never_uploaded(make_env: MakeEnv, api_version: str) -> None:
    env = make_env(api_version, messages=12)
    from axsync.store import compress_bytes

    raw = raw_mail(999, tag="dropped")
    name = f"1760009999.M1P1.userhost,S={len(raw)},W={len(raw)}:2,S"
    (env.maildir / "cur" / name).write_bytes(raw)
    plain = "1760009998.M2P1.userhost:2,"
    (env.maildir / ".Work" / "cur" / plain).write_bytes(compress_bytes(raw_mail(998, tag="dropped"), "zstd"))
    env.fake.reset_counters()
    report = env.ok()
    j = report.to_json()
    assert j["local_unknown_files"] == 2, j
    assert any("2 local file(s) have no server copy" in n for n in j["notes"]), j
    assert j["pushed"] == {"flags": 0, "labels": 0, "moved": 0, "deleted": 0}
    assert not any(k.startswith("POST") and "login" not in k for k in env.fake.counters), env.fake.counters
    assert (env.maildir / "cur" / name).read_bytes() == raw
    assert (env.maildir / ".Work" / "cur" / plain).exists()
    assert "dropped999@push.test" not in env.server()
    env.check(unknown={"dropped999@push.test", "dropped998@push.test"})
    # still kept and reported by the next runs, and by status
    again = env.ok()
    assert again.to_json()["local_unknown_files"] == 2
    from axsync.store import Store
    from axsync.verify import status

    with env.db() as db:
        assert status(db, Store(env.maildir))["pending_local_changes"]["unknown_files"] == 2


def test_dovecot_rewritten_file_is_adopted_not_uploaded(make_env: MakeEnv, api_version: str) -> None:
    """COPY + EXPUNGE by Dovecot (maildir_copy_with_hardlinks): same content under a new
    base name. axsync adopts the file (no upload, no download, no deletion) and pushes the
    flag change that came with it."""
    env = make_env(api_version, messages=12)
    loc = env.local()
    used: set[str] = set()
    a = pick(loc, used, lambda m: "F" not in m.letters, ("INBOX",))
    b = pick(loc, used, lambda m: True, ("Work",))
    a2 = client_set_flags(client_rewrite(a, env.maildir), add="F")
    b2 = client_move(b, env.maildir, ".Archive", new_base=dovecot_base(b))
    env.record_downloads()
    report = env.ok()
    j = report.to_json()
    assert j["pushed"] == {"flags": 1, "labels": 0, "moved": 1, "deleted": 0}, j
    assert j["pulled"]["bytes"] == 0 and env.downloads == [], (j, env.downloads)
    assert "local_unknown_files" not in j
    assert a2.path.exists() and b2.path.exists()
    srv = env.server()
    assert srv[a.msgid].flagged and srv[b.msgid].path == ("Archive",)
    with env.db() as db:
        row = db.message_by_base(a2.base)
        assert row is not None and row.state == "present" and row.filename == a2.filename
        assert db.message_by_base(a.base) is None
    env.check()
    env.noop()


def test_second_run_is_cheap_after_a_push(make_env: MakeEnv, api_version: str) -> None:
    env = make_env(api_version, messages=20)
    loc = env.local()
    for m in list(loc.values())[:5]:
        client_set_flags(m, add="F" if "F" not in m.letters else "", remove="F" if "F" in m.letters else "")
    env.ok()
    env.noop()
    env.noop()


def test_status_json_lists_pending_changes(make_env: MakeEnv, api_version: str) -> None:
    from axsync.store import Store
    from axsync.verify import status

    env = make_env(api_version, messages=12)
    loc = env.local()
    used: set[str] = set()
    a = pick(loc, used, lambda m: "F" not in m.letters, ("INBOX",))
    b = pick(loc, used, lambda m: True, ("INBOX",))
    c = pick(loc, used, lambda m: True, ("INBOX",))
    client_set_flags(a, add="F")
    client_move(b, env.maildir, ".Work")
    client_delete(c)
    with env.db() as db:
        pending = status(db, Store(env.maildir))["pending_local_changes"]
    assert pending == {"flag_changes": 1, "moved": 1, "deleted": 1, "unknown_files": 0}, pending
    env.ok()
    with env.db() as db:
        pending = status(db, Store(env.maildir))["pending_local_changes"]
    assert pending == {"flag_changes": 0, "moved": 0, "deleted": 0, "unknown_files": 0}, pending
    json.dumps(pending)
    assert os.path.isdir(env.maildir / ".Trash")


def test_move_into_new_nested_folders(make_env: MakeEnv, api_version: str) -> None:
    """A mail client creates ``Projects/2026`` (and its parent) in the archive and moves
    mail there: both folders are created on the server, parent first."""
    env = make_env(api_version, messages=12)
    loc = env.local()
    used: set[str] = set()
    a = pick(loc, used, lambda m: True, ("INBOX",))
    b = pick(loc, used, lambda m: bool(m.atoms), None)
    ensure_local_folder(env.maildir, ".Projects")
    ensure_local_folder(env.maildir, ".Projects.2026")
    client_move(a, env.maildir, ".Projects.2026")
    client_move(b, env.maildir, ".Projects")
    report = env.ok()
    assert report.to_json()["pushed"]["moved"] == 2
    srv = env.server()
    assert srv[a.msgid].path == ("Projects", "2026")
    assert srv[b.msgid].path == ("Projects",) and srv[b.msgid].labels == b.labels
    env.check()
    env.noop()
