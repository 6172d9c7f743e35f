"""A sync-mode run skips the whole-archive scan for local changes when no folder's cur/ or
new/ changed since the last clean run, and still finds a change made after it."""

from __future__ import annotations

import pytest

from axsync.store import Store
from axsync.sync import local
from tests.sync.conftest import MakeEnv


def _count_scans(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    scans: list[int] = []
    real_scan = local.LocalView.scan.__func__  # type: ignore[attr-defined]

    def counting(cls: type[local.LocalView], store: Store) -> local.LocalView:
        scans.append(1)
        return real_scan(cls, store)

    monkeypatch.setattr(local.LocalView, "scan", classmethod(counting))
    return scans


def test_no_scan_when_nothing_moved_and_changes_still_found(make_env: MakeEnv,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    env = make_env("10.6", messages=40)
    env.with_account(mode="sync")
    env.ok()
    env.ok()  # a no-change run (the first sync counted as a scan)
    scans = _count_scans(monkeypatch)
    report = env.ok()
    assert scans == [] and report.requests <= 3
    # a mail client flags a message: the next run scans, finds and pushes it
    store = Store(env.maildir)
    f = next(f for f in store.scan_folder("") if "F" not in f.flags)
    store.set_flags("", f.filename, "".join(sorted(set(f.flags) | {"F"})))
    report = env.ok()
    assert scans and report.pushed.flags == 1
    with env.db() as db:
        row = db.message_by_base(f.base)
        assert row is not None and "F" in row.flags
    assert env.mb.get_mail(row.mail_id).flagged


def test_a_first_sync_into_an_empty_archive_counts_as_a_scan(make_env: MakeEnv,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """Everything in the archive after a first sync was written by it: the second run is a
    true no-change run (no listing of the whole archive)."""
    env = make_env("10.6", messages=40)
    env.with_account(mode="sync")
    scans = _count_scans(monkeypatch)
    env.ok()
    report = env.ok()
    assert scans == [] and report.requests <= 3


def test_a_first_sync_into_a_maildir_with_files_still_scans_next(make_env: MakeEnv,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """A Maildir that already held mail before the first sync: the next run lists it and
    reports the files the server does not have."""
    env = make_env("10.6", messages=40)
    env.with_account(mode="sync")
    (env.maildir / "cur").mkdir(parents=True)
    (env.maildir / "new").mkdir()
    (env.maildir / "tmp").mkdir()
    (env.maildir / "cur" / "1700000000.M1P1.old:2,S").write_bytes(b"Subject: old\n\nkept\n")
    scans = _count_scans(monkeypatch)
    env.run()
    report = env.run()
    assert scans and report.to_json().get("local_unknown_files") == 1
