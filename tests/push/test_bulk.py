"""Volume and the asynchronous (201) batch path: 10,000 flag changes in a handful of
requests; 201 batches confirmed by the following pull; ``push_pending`` ends empty."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from .conftest import MakeEnv
from .harness import (
    PushEnv,
    client_delete,
    client_move,
    client_set_flags,
    folder_dir,
    read_keyword_file,
    start_env,
)

BATCH = "POST /api/v1/batch/"


def batch_requests(env: PushEnv) -> dict[str, int]:
    return {k: v for k, v in env.fake.counters.items() if k.startswith(BATCH)}


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_ten_thousand_flag_changes_in_few_requests_through_201(tmp_path: Path, api_version: str) -> None:
    knobs: dict[str, object] = {"async_batch_threshold": 500, "async_batch_delay": 0.3}
    if api_version == "10.4":
        knobs["conversation_index"] = "unavailable"  # the fake lists 10k conversations slowly
    env = start_env(tmp_path, api_version, bulk=10_000, concurrency=8, knobs=knobs, initial_sync=False)
    try:
        env.fast_sources = True  # the initial archive only; everything after goes over HTTP
        env.ok()
        env.fast_sources = False
        names = sorted(os.listdir(env.maildir / "cur"))
        assert len(names) == 10_000
        for n, name in enumerate(names):  # a mail client marks everything read, flags 40 %
            base, _, flags = name.partition(":2,")
            extra = "SF" if n % 5 < 2 else "S"
            os.rename(env.maildir / "cur" / name,
                      env.maildir / "cur" / f"{base}:2,{''.join(sorted(set(flags + extra)))}")
        env.fake.reset_counters()
        report = env.ok()
        j = report.to_json()
        assert j["pushed"] == {"flags": 10_000, "labels": 0, "moved": 0, "deleted": 0}, j
        assert j["pulled"]["bytes"] == 0 and j["conflicts"] == 0, j
        batches = batch_requests(env)
        assert sum(batches.values()) <= 10, batches
        assert batches == {BATCH + "mails/update": 5}, batches  # 6000 + 4000 in chunks of 2000
        assert env.pending_rows() == 0  # the confirming pull saw every change applied
        mails = env.mb.mails()
        assert all(not m.unread for m in mails)
        assert sum(m.flagged for m in mails) == 4000
        env.noop()
        assert env.pending_rows() == 0
    finally:
        env.fake.stop()


def test_201_path_moves_deletes_labels_converge(make_env: MakeEnv, api_version: str) -> None:
    """Every batch answered 201 (threshold 0): moves, deletions and flag changes are
    recorded as pending, confirmed by the pull that follows (the echo of our own move or
    deletion is no conflict), and nothing is fetched again but the deleted mail's copy in
    Trash."""
    env = make_env(api_version, messages=20, knobs={"async_batch_threshold": 0, "async_batch_delay": 0.2})
    loc = sorted(env.local().values(), key=lambda m: int(m.msgid[1:].split("@")[0]))
    inbox = [m for m in loc if m.folder == ("INBOX",)]
    a, b, c = inbox[:3]
    client_set_flags(a, add="F" if "F" not in a.letters else "", remove="F" if "F" in a.letters else "")
    client_move(b, env.maildir, ".Archive")
    client_delete(c)
    env.record_downloads()
    env.fake.reset_counters()
    report = env.ok()
    assert report.conflicts == 0, report.to_json()
    assert sum(batch_requests(env).values()) == 3
    assert env.pending_rows() == 0, "the confirming pull saw all three applied"
    srv = env.server()
    assert srv[a.msgid].flagged != ("F" in a.letters)
    assert srv[b.msgid].path == ("Archive",)
    assert srv[c.msgid].path == ("Trash",)
    assert env.downloads == [(c.msgid, ("Trash",))]
    env.check()
    env.noop()


@pytest.mark.parametrize("policy", ["server", "local"])
def test_201_applied_after_the_run_is_confirmed_next_time(make_env: MakeEnv, api_version: str, policy: str) -> None:
    """The 201 jobs apply only after the run (longer than its wait): the pending rows stay;
    the next run's pull confirms them (no conflict, whatever the policy; a deletion is
    never pushed again against the copy in Trash) and clears ``push_pending``."""
    env = make_env(api_version, messages=16, conflict=policy,
                   knobs={"async_batch_threshold": 0, "async_batch_delay": 12.0})
    loc = sorted(env.local().values(), key=lambda m: int(m.msgid[1:].split("@")[0]))
    inbox = [m for m in loc if m.folder == ("INBOX",)]
    a, b, c = inbox[:3]
    client_set_flags(a, add="F" if "F" not in a.letters else "", remove="F" if "F" in a.letters else "")
    client_move(b, env.maildir, ".Work")
    client_delete(c)
    report = env.ok(async_wait=0.5)
    assert report.conflicts == 0
    assert env.pending_rows() == 3  # sent, accepted (201), not seen applied yet
    env.knobs.async_batch_delay = 0.0
    env.fake.service.cancel_jobs()  # "the jobs ran": apply them now, as the server would
    srv = env.server()
    env.mb.set_flags(srv[a.msgid].id, flagged="F" not in a.letters)
    env.mb.move_mail(srv[b.msgid].id, env.folder("Work"))
    env.mb.delete_mail(srv[c.msgid].id)
    env.record_downloads()
    report = env.ok()
    assert report.conflicts == 0, report.to_json()
    assert report.to_json()["pushed"] == {"flags": 0, "labels": 0, "moved": 0, "deleted": 0}
    assert env.pending_rows() == 0
    assert env.server()[c.msgid].path == ("Trash",)  # not deleted for good
    assert env.downloads == [(c.msgid, ("Trash",))]
    env.check()
    env.noop()


@pytest.mark.parametrize("new_ids", [True, False], ids=["ids-change", "same-id"])
def test_201_move_of_a_mail_with_keywords_is_confirmed_in_one_run(
        make_env: MakeEnv, api_version: str, new_ids: bool) -> None:
    """The moved file's keyword letters differ from the row's old name (another folder's
    dovecot-keywords): a mere rename, not a change still to confirm — push_pending is
    cleared by the run itself (it was kept until a later run recorded the name)."""
    env = make_env(api_version, messages=20, knobs={"async_batch_threshold": 0, "async_batch_delay": 0.1,
                                                    "ids_change_on_move": new_ids})
    loc = sorted(env.local().values(), key=lambda m: int(m.msgid[1:].split("@")[0]))
    maps = {d: read_keyword_file(folder_dir(env.maildir, d)) for d in ("", ".Archive", ".Work", ".Work.Sub")}

    def letters(atoms: tuple[str, ...], dirname: str) -> set[int]:
        inverse = {a: i for i, a in maps[dirname].items()}
        return {inverse.get(a, -1) for a in atoms}

    m, dest = next((x, d) for x in loc if x.atoms for d in maps
                   if d != x.dirname and letters(x.atoms, d) != letters(x.atoms, x.dirname))
    moved = client_move(m, env.maildir, dest)
    assert moved.flags != m.flags and moved.labels == m.labels  # other letters, same labels
    env.ok()
    assert env.pending_rows() == 0
    assert env.server()[m.msgid].path == moved.folder and env.server()[m.msgid].labels == m.labels
    env.check()
    env.noop()
