"""A sync-mode run skips the whole-archive scan for local changes when no folder's cur/ or
new/ changed since the last clean run, and still finds a change made after it."""

from __future__ import annotations

import pytest

from axsync.store import Store
from axsync.sync import local
from tests.sync.conftest import MakeEnv


def test_no_scan_when_nothing_moved_and_changes_still_found(make_env: MakeEnv,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    env = make_env("10.6", messages=40)
    env.with_account(mode="sync")
    env.ok()
    env.ok()  # this run scans once and records the folders' fingerprint
    scans: list[int] = []
    real_scan = local.LocalView.scan.__func__  # type: ignore[attr-defined]

    def counting(cls: type[local.LocalView], store: Store) -> local.LocalView:
        scans.append(1)
        return real_scan(cls, store)

    monkeypatch.setattr(local.LocalView, "scan", classmethod(counting))
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
