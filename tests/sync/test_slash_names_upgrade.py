"""Upgrading an archive written before a ``/`` in a folder name was stored as ``∕``.

Earlier versions stored server folder ``a/b`` as ``.a\\2fb`` (listescape), which Dovecot
shows as ``b`` below ``a`` and cannot open. The current encoding gives ``.a&IhU-b``
(``a∕b``, the real path in ``axsync-folder-name``). The engine keeps a known folder's
recorded dirname while its path is unchanged, except a dirname the encoding no longer
produces: that folder is planned like a server rename. So the first run of the new version
renames each such directory (files, state DB rows and keyword letters follow; nothing is
downloaded again), ``verify`` is clean, and the run after that changes nothing.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
from pathlib import Path

import pytest

from axsync import mutf7
from axsync.store import Store, names
from axsync.store import maildir as store_maildir
from axsync.store.maildir import FOLDER_NAME_FILE

from .archive_check import local_dirs
from .conftest import Env, MakeEnv, db_dump

FOLDERS = (("INBOX",), ("Sent",), ("Drafts",), ("Trash",), ("Spam",), ("a/b",), ("Work",))
OLD = {("a/b",): ".a\\2fb", ("H", "/"): ".H.\\2f", ("H", "x/../y"): ".H.x\\2f\\2e\\2e\\2fy"}
NEW = {("a/b",): ".a&IhU-b", ("H", "/"): ".H.&IhU-", ("H", "x/../y"): ".H.x&IhU-\\2e\\2e&IhU-y"}


def old_encode_component(component: str) -> str:
    """``encode_component`` as earlier versions had it: ``/`` as listescape ``\\2f``."""
    if component == "":
        return names.EMPTY_COMPONENT
    out: list[str] = []
    run: list[str] = []
    for i, ch in enumerate(component):
        if 0x20 <= ord(ch) <= 0x7E:
            if run:
                out.append(mutf7.mutf7_encode("".join(run)))
                run.clear()
            if ch in "./\\" or (i == 0 and ch == "~"):
                out.append(f"\\{ord(ch):02x}")
            else:
                out.append("&-" if ch == "&" else ch)
        else:
            run.append(ch)
    if run:
        out.append(mutf7.mutf7_encode("".join(run)))
    return "".join(out)


def old_needs_name_record(dirname: str, path: tuple[str, ...]) -> bool:
    return dirname != "" and names.folder_dirname(path) != dirname


def build_old_archive(env: Env, monkeypatch: pytest.MonkeyPatch, *, twin: bool) -> None:
    """Server folders with a "/" (and, with ``twin``, a real ``a∕b``), each with mail (one
    with a label, so the folder has a keyword letter), pulled by the old encoding."""
    mb = env.mb
    top = mb.add_folder("H")
    label = mb.label_id("Ärger")
    extra = [env.folder("a/b"), mb.add_folder("/", top), mb.add_folder("x/../y", top)]
    if twin:
        extra.append(mb.add_folder("a\u2215b"))
    for i, fid in enumerate(extra):
        for j in range(3):
            mb.add_mail(fid, b"Subject: %d.%d\nMessage-ID: <s%d.%d@upgrade.test>\n\nbody\n" % (i, j, i, j),
                        date=1_600_000_000 + 10 * i + j, unread=bool(j % 2),
                        labels=[label] if j == 0 else [])
    with monkeypatch.context() as m:
        m.setattr(names, "encode_component", old_encode_component)
        m.setattr(store_maildir, "needs_name_record", old_needs_name_record)
        env.ok()
    dirs = set(local_dirs(env.maildir))
    assert set(OLD.values()) <= dirs and not set(NEW.values()) & dirs - {".a&IhU-b"}
    for old in OLD.values():
        assert not (env.maildir / old / FOLDER_NAME_FILE).exists()
        assert len(os.listdir(env.maildir / old / "cur")) >= 3
        assert (env.maildir / old / "dovecot-keywords").is_file()
    assert (".a&IhU-b" in dirs) is twin  # old encoding: the twin's plain name


def snapshot(maildir: Path) -> dict[str, list[str]]:
    return {d: sorted(os.listdir(maildir / d / "cur")) for d in local_dirs(maildir)}


@pytest.mark.parametrize(("mode", "twin"), [("sync", False), ("mirror", True), ("backup", False)])
def test_old_slash_dirnames_are_renamed_not_downloaded_again(
        make_env: MakeEnv, monkeypatch: pytest.MonkeyPatch, mode: str, twin: bool) -> None:
    env = make_env("10.6", messages=40, mode=mode, folders=FOLDERS, name=f"up-{mode}")
    build_old_archive(env, monkeypatch, twin=twin)
    with env.db() as db:
        before = {r.uid: (r.dirname, r.base, r.sha256, r.filename) for r in db.messages_where("1")}
        old_keywords = {d: db.folder_keywords(d) for d in OLD.values()}
        fids = {r.path: r.id for r in db.folders()}
    files_before = snapshot(env.maildir)

    # --dry-run announces the renames and touches nothing.
    dry = env.run(dry_run=True)
    assert dry.ok and dry.pulled.new == 0
    renames = {p["from"]: p["folder"] for p in dry.plan if p.get("action") == "rename"}
    assert renames == {old: "/".join(path) for path, old in OLD.items()}, dry.plan
    assert snapshot(env.maildir) == files_before

    report = env.ok()
    assert report.pulled.new == 0 and report.pulled.bytes == 0 and report.pulled.deleted == 0
    new_dirnames = dict(NEW)
    if twin:  # the real "a∕b" keeps the plain name; "a/b" is disambiguated next to it
        twin_dir = names.assign_dirname(("a/b",), {".a&IhU-b": ("a\u2215b",)})
        assert twin_dir.startswith(".a&IhU-b~")
        new_dirnames[("a/b",)] = twin_dir
    after_files = snapshot(env.maildir)
    for path, old in OLD.items():
        new = new_dirnames[path]
        assert old not in after_files and after_files[new] == files_before[old], path
        assert Store(env.maildir).folder_path_of(new) == path
        record = json.loads((env.maildir / new / FOLDER_NAME_FILE).read_text("utf-8"))
        assert record == {"dirname": new, "path": list(path)}
    if twin:
        assert after_files[".a&IhU-b"] == files_before[".a&IhU-b"]
        assert not (env.maildir / ".a&IhU-b" / FOLDER_NAME_FILE).exists()
    with env.db() as db:
        rows = {r.path: r for r in db.folders()}
        for path, new in new_dirnames.items():
            assert rows[path].dirname == new and rows[path].id == fids[path]
            assert db.folder_keywords(new) == old_keywords[OLD[path]]
            assert db.folder_keywords(OLD[path]) == {}
        after = {r.uid: (r.dirname, r.base, r.sha256, r.filename) for r in db.messages_where("1")}
    moved = {OLD[p]: new_dirnames[p] for p in OLD}
    assert after == {uid: (moved.get(d, d), b, s, f) for uid, (d, b, s, f) in before.items()}
    env.verify_clean()
    env.check()
    subscriptions = (env.maildir / "subscriptions").read_text("utf-8")
    assert "a&IhU-b" in subscriptions and "\\2f" not in subscriptions

    # The next run changes nothing.
    dump = db_dump(env.db_path)
    again = env.ok()
    assert (again.pulled.new, again.pulled.moved, again.pulled.updated, again.pulled.deleted) == (0, 0, 0, 0)
    assert snapshot(env.maildir) == after_files
    assert db_dump(env.db_path) == dump
    env.verify_clean()


def test_an_upgrade_interrupted_between_renames_completes(
        make_env: MakeEnv, monkeypatch: pytest.MonkeyPatch) -> None:
    env = make_env("10.6", messages=40, mode="mirror", folders=FOLDERS, name="up-crash")
    build_old_archive(env, monkeypatch, twin=False)
    files_before = snapshot(env.maildir)
    first = env.run(stop_after=1)  # one folder renamed, then "killed"
    assert not first.ok
    halfway = set(local_dirs(env.maildir))
    assert len(set(OLD.values()) & halfway) == 2 and len(set(NEW.values()) & halfway) == 1
    report = env.ok()
    assert report.pulled.new == 0
    after = snapshot(env.maildir)
    assert {after[NEW[p]] == files_before[OLD[p]] for p in OLD} == {True}
    assert not set(OLD.values()) & set(after)
    env.verify_clean()
    env.check()
    again = env.ok()
    assert again.pulled.new == again.pulled.moved == 0 and snapshot(env.maildir) == after


@pytest.mark.interop
def test_dovecot_opens_the_upgraded_folders(make_env: MakeEnv, monkeypatch: pytest.MonkeyPatch,
                                            tmp_path: Path) -> None:
    dovecot = None
    for name in ("interop.dovecot", "tests.interop.dovecot"):
        with contextlib.suppress(ImportError):
            dovecot = importlib.import_module(name)
            break
    if dovecot is None:
        pytest.skip("the Dovecot harness tests/interop/dovecot.py is missing")
    skip = dovecot.requires_dovecot  # a skipif mark: (condition,), reason=...
    if skip.args and skip.args[0]:
        pytest.skip(skip.kwargs.get("reason", "no Dovecot"))
    env = make_env("10.6", messages=40, mode="mirror", folders=FOLDERS, name="up-dovecot")
    build_old_archive(env, monkeypatch, twin=True)
    env.ok()
    twin_dir = names.assign_dirname(("a/b",), {".a&IhU-b": ("a\u2215b",)})
    shown = {("a/b",): "/".join(names.folder_path(twin_dir)), ("a\u2215b",): "a\u2215b",
             ("H", "/"): "H/\u2215", ("H", "x/../y"): "H/x\u2215..\u2215y"}
    assert shown[("a/b",)].startswith("a\u2215b~")
    with dovecot.DovecotServer(env.maildir, tmp_path / "dovecot") as dv:
        imap = dv.imap()
        entries = dovecot.list_mailbox_entries(imap)
        assert {e.name for e in entries if not e.selectable} == set()
        assert set(shown.values()) <= {e.name for e in entries}
        mb = env.mb
        for path, name in shown.items():
            want = sorted(dovecot.imap_body(m.raw) for m in mb.mails(mb.folder_id(path)))
            got = sorted(f.body for f in dovecot.fetch_all(imap, name))
            assert got == want and len(got) >= 3, name
        assert dv.log_problems() == []
