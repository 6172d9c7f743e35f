"""Pull, end to end: the engine against the fake Axigen server over real loopback HTTP, for
both API generations (10.4: listings only; 10.6: folder and mail deltas).

Every test ends by comparing the whole archive with the server's mailbox
(:func:`assert_archive_equals_server`), not with what the engine says it did.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from axsync.config import MaxDelete
from axsync.fake.state import NotFoundError
from axsync.store import folder_dirname, is_safe_dirname

from .archive_check import (
    archive_files,
    local_dirs,
    message_bases,
    server_folders,
    server_mails,
)
from .conftest import API_VERSIONS, Env, MakeEnv, db_dump

NEW_MAIL = (b"From: New <new@example.com>\r\nTo: alice@example.com\r\nSubject: fresh\r\n"
            b"Message-ID: <fresh-1@example.com>\r\nDate: Sat, 21 Nov 2026 09:00:00 +0000\r\n\r\n"
            b"A new message.\r\n")
REPLACEMENT = b"Subject: replaced\nMessage-ID: <replaced@example.com>\n\nnew content, LF only\n"

pytestmark = pytest.mark.timeout(120)


def server_total(env: Env) -> tuple[int, int]:
    mails = [m for ms in server_mails(env.fake, env.account.exclude).values() for m in ms]
    return len(mails), sum(m.size for m in mails)


def sorted_inbox(env: Env) -> list[Any]:
    return sorted(env.mb.mails(env.folder("INBOX")), key=lambda m: m.id)


def count_source_bytes(env: Env) -> list[int]:
    """Patch the fake so every raw source it serves is counted (bytes served)."""
    served: list[int] = []
    mb = env.mb
    original = mb.get_mail

    def get_mail(mail_id: str) -> Any:
        mail = original(mail_id)
        served.append(len(mail.raw))
        return mail

    mb.get_mail = get_mail
    return served


def purge(env: Env, mail_id: str) -> None:
    """Delete a mail for good (into Trash, then from Trash)."""
    new_id = env.mb.delete_mail(mail_id)
    if new_id is not None:
        env.mb.delete_mail(new_id)


# ---------------------------------------------------------------------------- the oracle


def test_oracle_sees_every_kind_of_difference(make_env: MakeEnv) -> None:
    """The comparison helper itself: each single corruption of a correct archive fails it."""
    env = make_env("10.6", messages=40)
    env.ok()
    env.check()
    inbox_cur = env.maildir / "cur"
    files = sorted(p for p in inbox_cur.iterdir())
    victim = files[0]
    labelled = next(p for p in files if any(c.islower() for c in p.name.rsplit(":2,", 1)[1]))

    def breaks(undo: Any) -> None:
        with pytest.raises(AssertionError):
            env.check()
        undo()
        env.check()

    name, info = victim.name.rsplit(":2,", 1)
    flipped = victim.with_name(f"{name}:2,{''.join(sorted(set(info) ^ {'S'}))}")
    victim.rename(flipped)
    breaks(lambda: flipped.rename(victim))

    st = victim.stat()
    os.utime(victim, (st.st_atime, st.st_mtime + 3600))
    breaks(lambda: os.utime(victim, (st.st_atime, st.st_mtime)))

    kw = env.maildir / "dovecot-keywords"
    original = kw.read_bytes()
    lines = original.decode().splitlines()
    swapped = [f"{lines[0].split(' ')[0]} {lines[1].split(' ', 1)[1]}",
               f"{lines[1].split(' ')[0]} {lines[0].split(' ', 1)[1]}", *lines[2:]]
    kw.write_text("\n".join(swapped) + "\n")
    assert labelled.exists()
    breaks(lambda: kw.write_bytes(original))

    copy = env.maildir / ".Archive" / "cur" / victim.name
    copy.write_bytes(victim.read_bytes())
    breaks(copy.unlink)

    data = victim.read_bytes()
    victim.unlink()

    def put_back() -> None:
        victim.write_bytes(data)
        os.utime(victim, (st.st_atime, st.st_mtime))

    breaks(put_back)

    new = env.maildir / "new" / victim.name.split(":2,")[0]
    victim.rename(new)
    breaks(lambda: new.rename(victim))


# ---------------------------------------------------------------------------- first and second run


@pytest.mark.parametrize("api", API_VERSIONS)
def test_initial_pull_equals_server(make_env: MakeEnv, api: str) -> None:
    env = make_env(api, messages=150, big=1)
    report = env.ok()
    env.check()
    count, size = server_total(env)
    assert (report.pulled.new, report.pulled.bytes) == (count, size)
    assert report.pulled.deleted == report.pulled.moved == 0
    env.verify_clean()
    # Default exclude ["Junk"] matches Spam by its role: nothing of it is archived.
    spam = env.mb.folder_id(("Spam",))
    assert env.mb.mails(spam), "the corpus has spam"
    assert not (env.maildir / ".Spam").exists()
    with env.db() as db:
        assert db.count_messages("folder_id = ?", (spam,)) == 0


@pytest.mark.parametrize("api", API_VERSIONS)
def test_second_run_does_nothing_and_asks_little(make_env: MakeEnv, api: str) -> None:
    env = make_env(api, messages=60)
    env.ok()
    before_files, before_db = archive_files(env.maildir), db_dump(env.db_path)
    env.fake.reset_counters()
    report = env.ok()
    p = report.pulled
    assert (p.new, p.updated, p.moved, p.deleted, p.bytes) == (0, 0, 0, 0, 0)
    requests = env.fake.total_requests()
    folders = len(server_folders(env.fake, ()))
    limit = 3 if api == "10.6" else folders + 3
    assert requests <= limit, env.fake.counters
    assert report.requests == requests
    # Nothing was touched: same files (names, sizes, mtimes, inodes), same state DB.
    assert archive_files(env.maildir) == before_files
    assert db_dump(env.db_path) == before_db
    env.check()


# ---------------------------------------------------------------------------- server changes


@pytest.mark.parametrize("mode", ["mirror", "backup"])
@pytest.mark.parametrize("api", API_VERSIONS)
def test_server_changes_reach_the_archive(make_env: MakeEnv, api: str, mode: str) -> None:
    env = make_env(api, messages=80, mode=mode)
    first = env.ok()
    mb = env.mb
    inbox = env.folder("INBOX")
    mails = sorted_inbox(env)
    labels = {name: lid for lid, name in mb.labels()}
    bases_before = message_bases(env.maildir)
    with env.db() as db:
        moved_row = db.message_by_mail_id(mails[2].id)
        trashed_row = db.message_by_mail_id(mails[3].id)
    assert moved_row is not None and trashed_row is not None

    mb.set_flags(mails[0].id, unread=not mails[0].unread, flagged=not mails[0].flagged,
                 draft=True, deleted=True)
    mb.add_label_to_mail(mails[1].id, labels["To Do"])
    mb.add_label_to_mail(mails[1].id, labels["Ärger"])
    labelled = next(m for m in mb.mails() if m.label_ids and m.folder_id == inbox and m.id != mails[1].id)
    mb.remove_label_from_mail(labelled.id, labelled.label_ids[0])
    new_archive_id = mb.move_mail(mails[2].id, env.folder("Archive"))
    new_trash_id = mb.delete_mail(mails[3].id)
    new_id = mb.add_mail(inbox, NEW_MAIL, date=1_700_000_000, unread=False, labels=[labels["work"]])
    mb.replace_mail(mails[4].id, REPLACEMENT)
    assert new_archive_id != mails[2].id and new_trash_id not in (None, mails[3].id)

    report = env.ok()
    env.check()
    env.verify_clean()
    p = report.pulled
    assert p.new == 1 and p.moved == 2 and p.deleted == 0
    # Only the new mail and the replaced one were downloaded; moves are renames.
    assert p.bytes == len(NEW_MAIL) + len(REPLACEMENT)
    bases_after = message_bases(env.maildir)
    assert bases_after[moved_row.base] == ".Archive"
    assert bases_after[trashed_row.base] == ".Trash"
    with env.db() as db:
        row = db.message_by_mail_id(new_id)
        assert row is not None and row.state == "present"
        assert db.message_by_mail_id(new_archive_id).base == moved_row.base  # type: ignore[union-attr]
        replaced = db.message_by_mail_id(mails[4].id)
        assert replaced is not None and replaced.base not in bases_before
        old_versions = db.count_messages("state = ?", ("deleted" if mode == "backup" else "tombstoned",))
    assert old_versions == 1  # the replaced content: kept (backup) or gone (mirror)

    # Permanent deletion from Trash.
    trash = env.folder("Trash")
    doomed = sorted(mb.mails(trash), key=lambda m: m.id)[:2]
    with env.db() as db:
        doomed_bases = [db.message_by_mail_id(m.id).base for m in doomed]  # type: ignore[union-attr]
    for m in doomed:
        assert mb.delete_mail(m.id) is None
    report = env.ok()
    env.check()
    assert report.pulled.deleted == 2 and report.pulled.bytes == 0
    bases = message_bases(env.maildir)
    with env.db() as db:
        rows = [db.message_by_base(b) for b in doomed_bases]
    if mode == "backup":
        assert all(bases.get(b) == ".Trash" for b in doomed_bases), "backup keeps the files"
        assert all(r is not None and r.state == "deleted" and r.mail_id is None for r in rows)
    else:
        assert not any(b in bases for b in doomed_bases)
        assert all(r is not None and r.state == "tombstoned" for r in rows)
    env.verify_clean()

    third = env.ok()
    assert (third.pulled.new, third.pulled.updated, third.pulled.moved, third.pulled.deleted) == (0, 0, 0, 0)
    assert first.pulled.new > 60


@pytest.mark.parametrize("api", ["10.4", "10.6"])
def test_answered_flag_change_reaches_the_archive(make_env: MakeEnv, api: str) -> None:
    env = make_env(api, messages=30)
    env.ok()
    mail = next(m for m in sorted_inbox(env) if "re" not in m.refw)
    env.mb.set_flags(mail.id, refw="re")
    env.ok()
    env.check()


@pytest.mark.parametrize("api", ["10.6"])
def test_same_size_replacement_is_downloaded(make_env: MakeEnv, api: str) -> None:
    """A replacement of exactly the old size (and date) must not reuse the old file name.

    10.6 only: 10.4 has no replacedItems, and a listing shows nothing of a replacement
    with the same size and Message-ID (10.4 detects a changed size or Message-ID)."""
    env = make_env(api, messages=30)
    env.ok()
    mail = sorted_inbox(env)[0]
    raw = bytearray(mail.raw)
    cut = raw.rindex(b"\n", 0, len(raw) - 1) + 1
    raw[cut] = ord("X") if raw[cut] != ord("X") else ord("Y")
    env.mb.replace_mail(mail.id, bytes(raw))
    report = env.ok()
    env.check()
    assert report.pulled.bytes == len(raw)


@pytest.mark.parametrize("mode", ["mirror", "backup"])
@pytest.mark.parametrize("api", API_VERSIONS)
def test_folder_rename_and_move_are_directory_renames(make_env: MakeEnv, api: str, mode: str) -> None:
    env = make_env(api, messages=80, mode=mode)
    env.ok()
    mb = env.mb
    bases_before = message_bases(env.maildir)
    assert any(d == ".Receipts" for d in bases_before.values())
    assert any(d == ".Projects.Alpha" for d in bases_before.values())
    assert any(d == ".Archive.2023" for d in bases_before.values())

    mb.rename_folder(env.folder("Receipts"), "Receipts 2026")
    mb.rename_folder(env.folder("Projects"), "Proj.X")  # a parent: its subtree moves too
    mb.move_folder(env.folder("Archive", "2023"), env.folder("Work"))

    report = env.ok()
    env.check()
    assert report.pulled.bytes == 0 and report.pulled.new == 0
    bases_after = message_bases(env.maildir)
    assert set(bases_after) == set(bases_before), "no file was rewritten, added or lost"
    renamed = {".Receipts": ".Receipts 2026", ".Projects.Alpha": ".Proj\\2eX.Alpha",
               ".Projects.Alpha.Specs": ".Proj\\2eX.Alpha.Specs", ".Archive.2023": ".Work.2023"}
    for base, old in bases_before.items():
        assert bases_after[base] == renamed.get(old, old), base
    for old in renamed:
        assert not (env.maildir / old).exists()
    assert (env.maildir / ".Proj\\2eX").is_dir()
    env.verify_clean()


@pytest.mark.parametrize("mode", ["mirror", "backup"])
@pytest.mark.parametrize("api", API_VERSIONS)
def test_folder_delete(make_env: MakeEnv, api: str, mode: str) -> None:
    env = make_env(api, messages=80, mode=mode)
    env.ok()
    mb = env.mb
    receipts = env.folder("Receipts")
    count = len(mb.mails(receipts))
    assert count > 0
    bases = {b for b, d in message_bases(env.maildir).items() if d == ".Receipts"}

    mb.delete_folder(receipts)  # into Trash: a folder move, no download
    report = env.ok()
    env.check()
    assert report.pulled.bytes == 0
    assert {b for b, d in message_bases(env.maildir).items() if d == ".Trash.Receipts"} == bases

    mb.delete_folder(env.folder("Trash", "Receipts"))  # for good
    report = env.ok()
    env.check()
    assert report.pulled.deleted == count
    left = {b for b, d in message_bases(env.maildir).items() if b in bases}
    with env.db() as db:
        states = {db.message_by_base(b).state for b in bases}  # type: ignore[union-attr]
    if mode == "backup":
        assert left == bases and states == {"deleted"}
    else:
        assert not left and states == {"tombstoned"}
        assert not (env.maildir / ".Trash.Receipts").exists()
    env.verify_clean()


# ---------------------------------------------------------------------------- exclude, names


@pytest.mark.parametrize("api", API_VERSIONS)
def test_exclude_globs(make_env: MakeEnv, api: str) -> None:
    exclude = ("Junk", "Archive/*", "Projects")
    env = make_env(api, messages=80, exclude=exclude)
    report = env.ok()
    env.check()
    count, size = server_total(env)
    assert (report.pulled.new, report.pulled.bytes) == (count, size)
    dirs = set(local_dirs(env.maildir))
    assert ".Archive" in dirs
    assert not {d for d in dirs if d.startswith((".Archive.", ".Projects", ".Spam"))}
    # A mail moved into an excluded folder leaves the (mirror) archive; back out, it returns.
    mail = sorted_inbox(env)[0]
    spam_id = env.mb.move_mail(mail.id, env.folder("Spam"))
    assert env.ok().pulled.deleted == 1
    env.check()
    env.mb.move_mail(spam_id, env.folder("INBOX"))
    assert env.ok().pulled.new == 1
    env.check()


HOSTILE = ("..", ".", "a/b", "/", "../../escape", "cur", "new", "tmp", "~tilde", ".hidden",
           "\\", "back\\2eslash", "x\ty", "INBOX", "dovecot-keywords", "axsync.sqlite",
           "日" * 200, "a" * 255)


@pytest.mark.parametrize("api", API_VERSIONS)
def test_hostile_folder_names_stay_inside(make_env: MakeEnv, api: str, tmp_path: Path) -> None:
    env = make_env(api, messages=60, name="hostile")
    mb = env.mb
    dotdot = env.folder("..")
    top = mb.add_folder("H")
    for i, name in enumerate(HOSTILE):
        parent = dotdot if i % 2 else top
        fid = mb.add_folder(name, parent)
        mb.add_mail(fid, b"Subject: %d\n\nin a hostile folder\n" % i, date=1_600_000_000 + i)
    env.ok()
    env.check()
    # Nothing was written next to the maildir (only Mail/ is in its parent).
    assert sorted(os.listdir(tmp_path / "hostile")) == ["Mail"]
    dirs = local_dirs(env.maildir)
    assert all(d == "" or is_safe_dirname(d) for d in dirs)
    paths = set(server_folders(env.fake, env.account.exclude))
    # every server folder has a directory of its own (checked by env.check), and the
    # plain ones are exactly Dovecot's Maildir++ + listescape names:
    assert folder_dirname(("..",)) == ".\\2e\\2e" and ".\\2e\\2e" in dirs
    # a "/" inside a level is stored as its look-alike "∕" (U+2215), the real path next to it
    assert folder_dirname(("a/b",)) == ".a&IhU-b" and ".a&IhU-b" in dirs
    assert (env.maildir / ".a&IhU-b" / "axsync-folder-name").is_file()
    long_ones = 0
    for i, name in enumerate(HOSTILE):
        path = ("H" if i % 2 == 0 else "..", name)
        plain = folder_dirname(path)
        if len(plain.encode()) <= 255:
            assert plain in dirs, (path, plain)
        else:  # cut to fit, with the path recorded next to it
            long_ones += 1
            assert any(d.startswith(plain[:40]) and (env.maildir / d / "axsync-folder-name").is_file()
                       for d in dirs), path
    assert long_ones == 2
    assert len(dirs) == len(paths) - 1  # all but Spam
    # A second run changes nothing, also with these names.
    report = env.ok()
    assert report.pulled.new == report.pulled.moved == report.pulled.deleted == 0


# ---------------------------------------------------------------------------- recovery


@pytest.mark.parametrize("api", API_VERSIONS)
def test_expired_tokens_are_reconciled_cheaply(make_env: MakeEnv, api: str) -> None:
    env = make_env(api, messages=150, big=1)
    full = env.ok().pulled.bytes
    mb = env.mb
    mails = sorted_inbox(env)
    mb.set_flags(mails[0].id, flagged=not mails[0].flagged)
    mb.move_mail(mails[1].id, env.folder("Archive", "2024"))
    mb.add_mail(env.folder("INBOX"), NEW_MAIL, date=1_700_000_000)
    mb.expire_tokens()
    served = count_source_bytes(env)
    report = env.ok()
    env.check()
    assert sum(served) == report.pulled.bytes == len(NEW_MAIL)
    assert sum(served) < 0.05 * full
    if api == "10.6":
        assert any("token" in n for n in report.notes), report.notes
    # And the next run is incremental again.
    env.fake.reset_counters()
    env.ok()
    assert env.fake.total_requests() <= (3 if api == "10.6" else len(server_folders(env.fake, ())) + 3)


@pytest.mark.parametrize("api", API_VERSIONS)
def test_id_validity_reset_is_reconciled_cheaply(make_env: MakeEnv, api: str) -> None:
    env = make_env(api, messages=150, big=1)
    full = env.ok().pulled.bytes
    mb = env.mb
    before = message_bases(env.maildir)
    mb.reset_id_validity(env.folder("INBOX"))
    mb.reset_id_validity(env.folder("Archive", "2024"))
    served = count_source_bytes(env)
    report = env.ok()
    env.check()
    assert sum(served) < 0.05 * full, (sum(served), full)
    assert report.pulled.new == 0
    # The files stayed (same bases), only their ids changed.
    assert message_bases(env.maildir) == before
    env.verify_clean()


# ---------------------------------------------------------------------------- the deletion guard


@pytest.mark.parametrize("api", API_VERSIONS)
def test_deletion_guard_stops_then_force_passes(make_env: MakeEnv, api: str) -> None:
    env = make_env(api, messages=80, max_delete=MaxDelete(count=None, percent=10.0))
    env.ok()
    mails = sorted(env.mb.mails(), key=lambda m: m.id)
    excluded = {fid for fid, ex in server_folders(env.fake, env.account.exclude).values() if ex}
    victims = [m for m in mails if m.folder_id not in excluded][: len(mails) // 5]
    for m in victims:
        purge(env, m.id)
    env.mb.add_mail(env.folder("INBOX"), NEW_MAIL, date=1_700_000_000)
    files = archive_files(env.maildir)
    dump = db_dump(env.db_path, skip=("runs", "conversations"))

    report = env.run()
    assert report.exit_code == 4 and not report.ok
    assert "max_delete" in (report.fatal or "")
    assert report.pulled.deleted == 0
    assert archive_files(env.maildir) == files, "the guard run changed files"
    # (10.4 records conversation metadata while gathering; that is no deletion)
    assert db_dump(env.db_path, skip=("runs", "conversations")) == dump, "the guard run changed the state DB"
    assert env.run().exit_code == 4, "a second try without --force stops again"

    report = env.ok(force=True)
    assert report.pulled.deleted == len(victims) and report.pulled.new == 1
    env.check()
    assert env.ok().pulled.deleted == 0


@pytest.mark.parametrize("api", API_VERSIONS)
def test_deletion_guard_count_limit_and_backup_mode(make_env: MakeEnv, api: str) -> None:
    env = make_env(api, messages=40, max_delete=MaxDelete(count=2, percent=None))
    env.ok()
    victims = sorted_inbox(env)[:3]
    for m in victims:
        purge(env, m.id)
    assert env.run().exit_code == 4
    # backup mode deletes nothing locally: the guard does not apply
    env.with_account(mode="backup")
    report = env.ok()
    assert report.pulled.deleted == 3
    env.check()


# ---------------------------------------------------------------------------- dry run


@pytest.mark.parametrize("api", API_VERSIONS)
def test_dry_run_changes_nothing_and_lists_the_plan(make_env: MakeEnv, api: str) -> None:
    env = make_env(api, messages=80)
    env.ok()
    mb = env.mb
    mails = sorted_inbox(env)
    mb.add_mail(env.folder("INBOX"), NEW_MAIL, date=1_700_000_000)
    mb.move_mail(mails[0].id, env.folder("Archive"))
    mb.set_flags(mails[1].id, flagged=not mails[1].flagged)
    for m in sorted(mb.mails(env.folder("Trash")), key=lambda m: m.id)[:2]:
        mb.delete_mail(m.id)
    mb.rename_folder(env.folder("Receipts"), "Receipts 2026")
    files, dump = archive_files(env.maildir), db_dump(env.db_path)

    dry = env.ok(dry_run=True)
    assert archive_files(env.maildir) == files
    assert db_dump(env.db_path) == dump
    plan = dry.plan
    by_folder = {(e["folder"], "action" in e): e for e in plan}
    assert by_folder[("Receipts 2026", True)]["action"] == "rename"
    assert by_folder[("Receipts 2026", True)]["from"] == ".Receipts"
    assert by_folder[("INBOX", False)]["downloads"] == 1
    assert by_folder[("INBOX", False)]["bytes"] == len(NEW_MAIL)
    assert by_folder[("INBOX", False)]["flag_updates"] == 1
    assert by_folder[("Archive", False)]["renames"] == 1
    assert by_folder[("Trash", False)]["deletes"] == 2
    assert sum(e.get("downloads", 0) for e in plan) == 1

    real = env.ok()
    env.check()
    for key in ("new", "bytes", "deleted", "moved"):
        assert getattr(real.pulled, key) == getattr(dry.pulled, key), key


@pytest.mark.parametrize("api", API_VERSIONS)
def test_dry_run_of_a_first_sync_writes_no_mail(make_env: MakeEnv, api: str) -> None:
    env = make_env(api, messages=40)
    dry = env.ok(dry_run=True)
    count, size = server_total(env)
    assert (dry.pulled.new, dry.pulled.bytes) == (count, size)
    assert sum(e.get("downloads", 0) for e in dry.plan) == count
    assert {e["folder"] for e in dry.plan if e.get("action") == "create"} >= {"Archive/2024", "Receipts"}
    assert local_dirs(env.maildir) in ([], [""])
    assert not any((env.maildir / "cur").glob("*")) if (env.maildir / "cur").exists() else True
    assert env.ok().pulled.new == count
    env.check()


# ---------------------------------------------------------------------------- faults


@pytest.mark.parametrize("api", API_VERSIONS)
def test_faults_converge_and_are_never_silent(make_env: MakeEnv, api: str) -> None:
    env = make_env(api, messages=80, knobs={"fail_rate": 0.2, "drop_rate": 0.1,
                                            "session_max_requests": 15, "fault_seed": 3})
    outcomes = []
    for _ in range(3):
        report = env.run()
        outcomes.append((report.exit_code, len(report.failures), report.fatal))
        if report.exit_code == 0:
            assert report.ok and not report.failures
            env.check()  # a success is only ever claimed for a complete archive
            break
        assert report.exit_code in (1, 5), report.to_json()
        if report.exit_code == 1:
            assert report.failures and all(f["item"] and f["error"] for f in report.failures)
    else:
        pytest.fail(f"no clean run within 3 runs: {outcomes}")
    # With faults still on: server changes, two of the new mails' sources unavailable.
    mb = env.mb
    mails = sorted_inbox(env)
    mb.move_mail(mails[0].id, env.folder("Archive"))
    added = [mb.add_mail(env.folder("INBOX"), NEW_MAIL.replace(b"fresh-1", b"fresh-%d" % i),
                         date=1_700_000_000 + i) for i in range(3)]
    lost = set(added[:2])
    real_get = mb.get_mail

    def get_mail(mail_id: str) -> Any:
        if mail_id in lost:
            raise NotFoundError(f"no mail {mail_id}")
        return real_get(mail_id)

    mb.get_mail = get_mail
    for _ in range(3):
        report = env.run()
        assert report.exit_code in (1, 5), report.to_json()  # never 0 while two are missing
        if report.exit_code == 1:
            break
    assert {f["item"].split()[1] for f in report.failures} >= lost, report.failures
    with env.db() as db:
        assert db.message_by_mail_id(added[2]) is not None  # the rest went on
        assert all(db.message_by_mail_id(m) is None for m in lost)
    del mb.get_mail
    for _ in range(3):
        report = env.run()
        if report.exit_code == 0:
            env.check()
            break
        assert report.exit_code in (1, 5) and (report.failures or report.fatal)
    else:
        pytest.fail("no clean run within 3 runs once the sources were back")
    env.fake.knobs.fail_rate = env.fake.knobs.drop_rate = 0.0
    assert env.ok().pulled.new == 0


@pytest.mark.parametrize("mode", ["sync", "mirror"])
def test_a_run_with_nothing_to_do_does_not_grow_with_the_archive(
        make_env: MakeEnv, mode: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """What a no-change run asks the state DB does not grow with the archive: SQLite VM
    instructions of the whole run for 60 and for 600 messages (a query reading every
    message row costs thousands more at 600). Requests are checked above."""
    from axsync.statedb import StateDB

    opened = StateDB.open.__func__  # type: ignore[attr-defined]
    steps: list[int] = []

    def counting_open(cls: type[StateDB], *args: Any, **kwargs: Any) -> StateDB:
        db = opened(cls, *args, **kwargs)

        def tick() -> int:
            steps[-1] += 1
            return 0

        db.conn.set_progress_handler(tick, 1)
        return db

    per_size = []
    for count in (60, 600):
        env = make_env("10.6", messages=count, mode=mode, name=f"n{count}")
        env.ok()
        env.ok()  # a first no-change run may settle what the initial pull left
        steps.append(0)
        with monkeypatch.context() as m:
            m.setattr(StateDB, "open", classmethod(counting_open))
            report = env.ok()
        assert report.pulled.new == 0 and report.requests <= 3
        per_size.append(steps[-1])
    assert per_size[1] <= per_size[0] * 1.25 + 2000, per_size


@pytest.mark.parametrize("api_version", API_VERSIONS)
def test_a_pull_writes_each_folders_keywords_once_in_first_use_order(
        make_env: MakeEnv, monkeypatch: pytest.MonkeyPatch, api_version: str) -> None:
    """The labels of the mails to download get their keyword letters before the downloads,
    one ``dovecot-keywords`` write per folder, in the order the folder's mails (by date)
    first use them; past 26, the rest stay in the state DB and the report says so."""
    from axsync.store import Store

    env = make_env(api_version, messages=30, folders=(("INBOX",), ("Work",)))
    mb = env.mb
    tags = mb.add_folder("Tags")
    made = {i: mb.create_label(f"tag{i:02d}") for i in reversed(range(30))}  # ids: tag29 first
    labels = [made[i] for i in range(30)]
    base = 1_780_000_000
    # Mail k (dated in order k) uses labels k and k+1: first uses run tag00, tag01, ...
    # The mails are added newest first, so the server's order is not the date order.
    for k in reversed(range(29)):
        raw = (f"Subject: tagged {k}\r\nMessage-ID: <tag-{k}@example.com>\r\n\r\nbody {k}\r\n")
        mb.add_mail(tags, raw.encode(), date=base + k * 60, labels=[labels[k], labels[k + 1]])

    calls: list[str] = []
    real = Store.ensure_keywords

    def counted(self: Store, dirname: str, atoms: Any) -> dict[str, str]:
        calls.append(dirname)
        return real(self, dirname, atoms)

    monkeypatch.setattr(Store, "ensure_keywords", counted)
    report = env.ok()
    assert sorted(calls) == sorted(set(calls))  # once per folder
    assert ".Tags" in calls
    # First use: by date, and within one mail in the order of its label ids.
    name_of = {lid: f"tag{i:02d}" for i, lid in enumerate(labels)}
    order: list[str] = []
    for k in range(29):
        order += [name_of[lid] for lid in sorted((labels[k], labels[k + 1]))
                  if name_of[lid] not in order]
    assert order[:2] == ["tag01", "tag00"]  # the ids are not in name order
    lines = (env.maildir / ".Tags" / "dovecot-keywords").read_text().splitlines()
    assert lines == [f"{i} {name}" for i, name in enumerate(order[:26])]
    letter = {name: chr(97 + i) for i, name in enumerate(order[:26])}
    assert [n for n in report.notes if "more than 26" in n] == [
        "folder .Tags: more than 26 keywords; 4 label(s) kept only in the state DB"]
    # The files carry the 26 letters, the state DB every label (the archive check reads
    # the labels from the files: it cannot be used here).
    with env.db() as db:
        rows = db.execute("SELECT label_ids FROM messages WHERE dirname = '.Tags'").fetchall()
    assert sorted(tuple(json.loads(r[0])) for r in rows) == sorted(
        tuple(sorted((labels[k], labels[k + 1]))) for k in range(29))
    letters = sorted(f.name.rsplit(",", 1)[1].replace("Z", "")  # Z: compressed
                     for f in (env.maildir / ".Tags" / "cur").iterdir())
    assert letters == sorted("".join(sorted(letter[n] for n in (f"tag{k:02d}", f"tag{k + 1:02d}")
                                            if n in letter)) for k in range(29))
    env.verify_clean()
    calls.clear()
    env.ok()  # nothing new: no keyword work at all
    assert calls == []
