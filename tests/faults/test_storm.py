"""A fault storm: sync runs against a fake server that answers 10% of the requests with 503,
drops 3% of the connections mid-body, expires the session every 40 requests, holds 5% of
the requests 0.2 s longer and applies every batch of more than two items asynchronously
(201 + jobKey). Both API generations.

The scenario: a first pull of a few hundred messages (four folders, labels, threads) under
the storm; then changes on both sides — on the server as another client makes them (flags,
labels, moves, deletions, new mail, a folder rename), in the archive as a mail client makes
them (renames for flags and keywords, moves between folder directories, deletions) — and
sync runs under the storm again.

Asserted:

* every run ends with exit 0, or with exit 1 and a ``failures`` list whose entries each
  name an item and an error; never a crash or a fatal error;
* after every exit-0 run, even under the storm: the archive equals the server (each server
  mail exactly one file, in its folder's directory, with its flags and keywords) and every
  local change is on the server — a success never hides a lost change;
* each phase converges within ``MAX_RUNS`` runs;
* with the faults off: one clean run, the archive equals the server (also the strict pull
  oracle: bytes, sizes, mtimes, state DB rows), ``axsync verify`` and ``verify --remote``
  are clean, and a further run is a no-op (pulled 0, pushed 0).

The fault draws are seeded (``FAULT_SEEDS``); with concurrent downloads, which request gets
which draw depends on the order the requests reach the server, so two runs of this test
see storms of the same strength, not identical ones.
"""

from __future__ import annotations

import os
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from axsync.api import ApiClient
from axsync.statedb import StateDB
from axsync.store import Store, label_to_atom
from axsync.sync.report import RunReport
from axsync.verify import verify_local, verify_remote
from tests.push.harness import (
    PASSWORD,
    LocalMsg,
    PushEnv,
    client_add_keyword,
    client_delete,
    client_move,
    client_remove_keyword,
    client_set_flags,
    raw_mail,
    start_env,
)
from tests.sync.archive_check import assert_archive_equals_server

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

MESSAGES = 240
MAX_RUNS = 6
#: ``AXSYNC_STORM_SEED=n`` adds n to both (other storms of the same strength).
FAULT_SEEDS = {"10.4": 1004, "10.6": 1006}
SEED_OFFSET = int(os.environ.get("AXSYNC_STORM_SEED", "0"))
STORM: dict[str, Any] = {
    "fail_rate": 0.10,  # 503 ...
    "retry_after": 0.0,  # ... with "Retry-After: 0" (the header carries whole seconds)
    "drop_rate": 0.03,  # connection closed after half the body
    "session_max_requests": 40,  # then 401: the client must log in again
    "spike_rate": 0.05,  # latency spikes
    "spike_latency": 0.2,
    "async_batch_threshold": 2,  # batches of 3+ items: 201 + jobKey, applied later
    "async_batch_delay": 0.05,
}
CALM: dict[str, Any] = {"fail_rate": 0.0, "drop_rate": 0.0, "session_max_requests": None,
                        "spike_rate": 0.0}


@dataclass(frozen=True)
class Want:
    """Where a mail changed in the archive must end up on the server."""

    path: tuple[str, ...]
    letters: str
    labels: tuple[str, ...]


class Tally:
    """What the storm actually did, per route: the fake's fault draws, recorded next to the
    route key of the request they were drawn for (``Service.count`` and ``draw_faults`` run
    back to back on the server's event loop, with no await in between)."""

    def __init__(self, env: PushEnv) -> None:
        service = env.fake.service
        self.service = service
        self.faults: list[tuple[str, bool, bool, bool]] = []  # (route, 503, dropped, spike)
        self._route = ""
        count, draw = service.count, service.draw_faults

        def counted(key: str) -> None:
            self._route = key
            count(key)

        def drawn() -> tuple[bool, bool, float]:
            fail, drop, spike = draw()
            self.faults.append((self._route, fail, drop and not fail, spike > 0))
            return fail, drop, spike

        service.count = counted  # type: ignore[method-assign]
        service.draw_faults = drawn  # type: ignore[method-assign]

    def summary(self) -> dict[str, object]:
        f = self.faults
        changing = [x for x in f if not x[0].startswith("GET ")]
        return {
            "requests": len(f), "503": sum(x[1] for x in f), "dropped": sum(x[2] for x in f),
            "spikes": sum(x[3] for x in f), "changing requests": len(changing),
            "changing 503": sum(x[1] for x in changing),
            "changing dropped": sorted(x[0] for x in changing if x[2]),
            "logins": self.service._logins, "201 jobs": self.service._job_count,
        }


def set_knobs(env: PushEnv, values: dict[str, Any]) -> None:
    for name, value in values.items():
        setattr(env.knobs, name, value)


def number(msgid: str) -> int:
    return int(msgid.split("@")[0].lstrip("mn"))


# ---------------------------------------------------------------------------- the changes

#: The folder the server renames in each round (Work/Sub moves along with Work).
RENAMES = [(("Work",), "Work 2026"), (("Archive",), "Archiv"), (("Work 2026", "Sub"), "Sub 2")]
ROUNDS = len(RENAMES)
MOVABLE = "mails"  # folder_type of folders mail can be moved to


def renamed(path: tuple[str, ...], rename: tuple[tuple[str, ...], str]) -> tuple[str, ...]:
    old, name = rename
    if path[:len(old)] == old:
        return (*old[:-1], name, *path[len(old):])
    return path


def user_folders(env: PushEnv) -> list[tuple[str, ...]]:
    """INBOX and the folders the mailbox was built with (as they are named now)."""
    mb = env.mb
    special = {"Drafts", "Sent", "Trash", "Spam"}
    return sorted(tuple(mb.folder_path(f.id)) for f in mb.folders()
                  if f.folder_type == MOVABLE and mb.folder_path(f.id)[0] not in special)


def server_changes(env: PushEnv, rng: random.Random, avoid: set[str], round_: int) -> set[str]:
    """What another client does meanwhile; returns the Message-IDs it touched. Mails in
    ``avoid`` are left alone (their local changes must reach the server as they are)."""
    mb = env.mb
    pool = sorted((m for m in env.server().values() if m.msgid not in avoid and m.path != ("Spam",)),
                  key=lambda m: number(m.msgid))
    rng.shuffle(pool)
    folders = user_folders(env)
    touched: set[str] = set()

    def take(n: int, pred: Any = lambda m: True) -> list[Any]:
        out = [m for m in pool if m.msgid not in touched and pred(m)][:n]
        touched.update(m.msgid for m in out)
        return out

    for m in take(10):
        mb.set_flags(m.id, unread=not m.unread, flagged=not m.flagged)
    labels = {name: lid for lid, name in mb.labels()}
    for m in take(5, lambda m: "Important" not in m.labels):
        mb.add_label_to_mail(m.id, labels["Important"])
    for m in take(4, lambda m: bool(m.labels)):
        mb.remove_label_from_mail(m.id, labels[m.labels[0]])
    for m in take(6, lambda m: m.path != ("Trash",)):
        dest = rng.choice([f for f in folders if f != m.path])
        mb.move_mail(m.id, env.folder(*dest))
    for m in take(5, lambda m: m.path != ("Trash",)):
        mb.delete_mail(m.id)  # to Trash
    for m in take(2, lambda m: m.path != ("Trash",)):
        mb.delete_mail(m.id)  # to Trash ...
        mb.delete_mail(env.server()[m.msgid].id)  # ... and for good
    for m in take(2, lambda m: m.path == ("Trash",)):
        mb.move_mail(m.id, env.folder("INBOX"))  # back from Trash
    roots = sorted((m for m in env.server().values() if m.path == ("INBOX",) and m.msgid.startswith("m")),
                   key=lambda m: number(m.msgid))
    for i in range(12):  # new mail, some of it replies to mail already archived
        n = 900 + 20 * round_ + i
        thread = number(roots[i].msgid) if i % 3 == 0 else None
        mb.add_mail(env.folder(*folders[i % len(folders)]),
                    raw_mail(n, thread=thread, tag="n" if thread is None else "m"),
                    date=1_760_900_000 + n, unread=bool(i % 2),
                    labels=[labels["todo"]] if i % 5 == 0 else [])
    old, name = RENAMES[round_]
    mb.rename_folder(env.folder(*old), name)
    return touched


def local_changes(env: PushEnv, rng: random.Random, round_: int) -> dict[str, Want]:
    """What a mail client does in the archive; returns where each changed mail must end
    (folder paths as they will be after the server's rename of this round)."""
    loc = sorted(env.local().values(), key=lambda m: number(m.msgid))
    rng.shuffle(loc)
    dirnames = {m.folder: m.dirname for m in loc}
    used: set[str] = set()
    want: dict[str, Want] = {}

    def note(m: LocalMsg, path: tuple[str, ...] | None = None) -> None:
        want[m.msgid] = Want(renamed(path or m.folder, RENAMES[round_]), m.letters, m.labels)

    def take(pred: Any = lambda m: True) -> LocalMsg:
        for m in loc:
            if m.msgid not in used and m.folder != ("Trash",) and pred(m):
                used.add(m.msgid)
                return m
        raise AssertionError("no mail left")

    for _ in range(6):  # read / unread
        m = take()
        note(client_set_flags(m, add="" if "S" in m.letters else "S", remove="S" if "S" in m.letters else ""))
    for _ in range(4):  # flagged
        note(client_set_flags(take(lambda m: "F" not in m.letters), add="F"))
    old = RENAMES[round_][0]
    m = take(lambda m: m.folder[:len(old)] == old)  # in a folder the server renames meanwhile
    note(client_set_flags(m, add="F" if "F" not in m.letters else "", remove="F" if "F" in m.letters else ""))
    for _ in range(4):  # an existing label added
        note(client_add_keyword(take(lambda m: "Project X" not in m.labels), label_to_atom("Project X")))
    for _ in range(3):  # a label removed
        m = take(lambda m: bool(m.atoms))
        note(client_remove_keyword(m, m.atoms[0]))
    for _ in range(2):  # a label the server does not know yet (in the first round)
        note(client_add_keyword(take(lambda m: "Storm" not in m.labels), "Storm"))
    for _ in range(6):  # moved to another folder
        m = take()
        dest = rng.choice([f for f in dirnames if f not in (m.folder, ("Trash",), ("Spam",))])
        note(client_move(m, env.maildir, dirnames[dest]), dest)
    m = take(lambda m: m.folder != ("Archive",) and "S" not in m.letters)  # moved and read
    dest = next(f for f in dirnames if f[0] in ("Archive", "Archiv"))
    note(client_set_flags(client_move(m, env.maildir, dirnames[dest]), add="S"), dest)
    for _ in range(3):  # deleted: to Trash on the server
        m = take()
        client_delete(m)
        want[m.msgid] = Want(("Trash",), m.letters, m.labels)
    return want


# ---------------------------------------------------------------------------- the checks


def assert_reported(report: RunReport) -> None:
    """Exit 0, or exit 1 with every failure naming its item: never anything else."""
    j = report.to_json()
    assert report.fatal is None and report.exit_code in (0, 1), j
    if report.exit_code == 1:
        assert report.failures, j
        for failure in report.failures:
            assert failure.get("item", "").strip() and failure.get("error", "").strip(), j
    else:
        assert report.ok and not report.failures, j


def assert_agree(env: PushEnv, want: dict[str, Want]) -> None:
    """The archive equals the server, and every local change is on the server."""
    env.wait_jobs()  # a 201 batch that landed after the run's wait is still the run's work
    try:
        env.check()
    except AssertionError as exc:
        with env.db() as db:
            pending = db.execute("SELECT uid, op, value, job_key, attempts FROM push_pending").fetchall()
        last = env.reports[-1].to_json() if env.reports else None
        raise AssertionError(f"{exc}\npush_pending: {pending}\nlast run: {last}") from None
    srv = env.server()
    for msgid, w in want.items():
        s = srv.get(msgid)
        assert s is not None, f"{msgid} changed here, gone from the server"
        assert (s.path, s.letters, s.labels) == (w.path, w.letters, w.labels), (msgid, s, w)


#: Found by this storm and fixed (``test_async_flag_change_of_a_mail_moved_in_the_same_run``):
#: a run could exit 0 while a change it sent as a 201 batch was skipped by the server (the
#: mail had been moved meanwhile). Kept as a switch for investigating similar cases: True
#: lets an exit-0 run leave changes that are in ``push_pending``.
TOLERATE_PENDING_AFTER_SUCCESS = False


def differences(env: PushEnv, want: dict[str, Want]) -> set[str]:
    """Message-IDs whose archive copy and server copy differ (or that exist on one side
    only), and changed mails that are not on the server as wanted."""
    srv = {k: (m.path, m.letters, m.labels) for k, m in env.server().items() if m.path != ("Spam",)}
    loc = {k: (m.folder, m.letters, m.labels) for k, m in env.local().items()}
    out = {k for k in srv.keys() | loc.keys() if srv.get(k) != loc.get(k)}
    out |= {k for k, w in want.items() if srv.get(k) != (w.path, w.letters, w.labels)}
    return out


def pending_msgids(env: PushEnv) -> set[str]:
    """Message-IDs of the mails with a change in ``push_pending``."""
    with env.db() as db:
        uids = [r[0] for r in db.execute("SELECT DISTINCT uid FROM push_pending").fetchall()]
        bases = {row.base for uid in uids if (row := db.message_by_uid(uid)) is not None}
    return {m.msgid for m in env.local().values() if m.base in bases}


def storm_runs(env: PushEnv, want: dict[str, Want], log: list[str]) -> int:
    """Sync under the storm until a run is clean; returns the number of runs."""
    for n in range(1, MAX_RUNS + 1):
        start = time.monotonic()
        report = env.run(async_wait=2.0)
        assert_reported(report)
        line = (f"run {n}: exit {report.exit_code}, {len(report.failures)} failed, "
                f"{report.requests} requests, {time.monotonic() - start:.1f} s")
        if report.exit_code == 0:
            env.wait_jobs()
            left = differences(env, want)
            if left and TOLERATE_PENDING_AFTER_SUCCESS and left <= pending_msgids(env):
                log.append(f"{line}; known bug: {len(left)} change(s) pending, not on the server")
                continue
            log.append(line)
            assert_agree(env, want)  # even under the storm, a success hides nothing
            if env.pending_rows() == 0:
                return n
        else:
            log.append(line + "".join(f"\n    {f['item']}: {f['error'][:100]}" for f in report.failures[:5]))
    raise AssertionError(f"no clean run within {MAX_RUNS} runs:\n" + "\n".join(log))


def assert_calm_and_verified(env: PushEnv, want: dict[str, Want]) -> None:
    set_knobs(env, CALM)
    env.wait_jobs()
    env.ok()
    assert env.pending_rows() == 0
    assert_agree(env, want)
    assert_archive_equals_server(env.fake, env.maildir, env.account.state_path, mode="sync",
                                 excludes=env.account.exclude)
    db = StateDB.open(env.account.state_path, readonly=True)
    try:
        report = verify_local(db, Store(env.maildir))
        with ApiClient(env.fake.url, env.account.username, PASSWORD) as api:
            verify_remote(db, api, report)
    finally:
        db.close()
    assert report.clean and not report.unknown_files, report.to_json()
    assert report.ok == report.checked > 0 and report.remote_checked == report.checked, report.to_json()
    env.noop()


# ---------------------------------------------------------------------------- the test


@pytest.mark.parametrize("api_version", ["10.4", "10.6"])
def test_sync_converges_through_a_fault_storm(tmp_path: Path, api_version: str) -> None:
    knobs = {**STORM, "fault_seed": FAULT_SEEDS[api_version] + SEED_OFFSET}
    env = start_env(tmp_path, api_version, messages=MESSAGES, seed=7, knobs=knobs, initial_sync=False)
    rng = random.Random(f"storm-{api_version}-{SEED_OFFSET}")
    log: list[str] = []
    tally = Tally(env)
    try:
        log.append("initial pull")
        storm_runs(env, {}, log)
        assert len(env.local()) == MESSAGES

        for round_ in range(ROUNDS):
            want = local_changes(env, rng, round_)
            touched = server_changes(env, rng, set(want), round_)
            assert not touched & set(want)
            log.append(f"round {round_ + 1}: {len(want)} local and {len(touched) + 12} server changes")
            storm_runs(env, want, log)
        storm = tally.summary()
        log.append(f"storm: {storm}")
        # the storm really blew (about 650 requests: ~65 503s, ~15 drops, ~30 spikes)
        minimum = {"503": 20, "dropped": 3, "spikes": 10, "logins": 8, "201 jobs": 5}
        assert all(int(storm[k]) >= n for k, n in minimum.items()), storm  # type: ignore[call-overload]

        assert_calm_and_verified(env, want)
        print("\n".join(log))
    finally:
        env.fake.stop()


# ---------------------------------------------------------------------------- found by the storm


@pytest.mark.parametrize("api_version", ["10.4", "10.6"])
def test_async_flag_change_of_a_mail_moved_in_the_same_run(tmp_path: Path, api_version: str) -> None:
    """Three mails marked read (one batch of 3: answered 201, applied 0.3 s later) and one
    of them also moved (a batch of 1: applied at once, new id). The job then names an id
    that no longer exists. A run that exits 0 must have put every change on the server."""
    env = start_env(tmp_path, api_version, messages=12, seed=3,
                    knobs={"async_batch_threshold": 2, "async_batch_delay": 0.3})
    try:
        unread = sorted((m for m in env.local().values() if "S" not in m.letters and m.folder != ("Archive",)),
                        key=lambda m: number(m.msgid))
        assert len(unread) >= 3
        want: dict[str, Want] = {}
        for m in unread[:2]:
            m = client_set_flags(m, add="S")
            want[m.msgid] = Want(m.folder, m.letters, m.labels)
        m = client_move(client_set_flags(unread[2], add="S"), env.maildir, ".Archive")
        want[m.msgid] = Want(("Archive",), m.letters, m.labels)
        report = env.run()
        # The move waits for the 201 job that names the mail (it lands within the wait).
        assert report.exit_code == 0 and report.ok, report.to_json()
        assert_agree(env, want)
    finally:
        env.fake.stop()


@pytest.mark.parametrize("api_version", ["10.4", "10.6"])
def test_a_201_job_that_has_not_landed_when_the_run_ends_is_said_and_kept(
        tmp_path: Path, api_version: str) -> None:
    """A change the server accepted for later and did not apply before the run's wait ran
    out is not forgotten: the report says so, the change stays pending, and the next run,
    after the job has landed, confirms it (sending nothing again)."""
    env = start_env(tmp_path, api_version, messages=12, seed=3,
                    knobs={"async_batch_threshold": 2, "async_batch_delay": 3.0})
    try:
        unread = sorted((m for m in env.local().values() if "S" not in m.letters),
                        key=lambda m: number(m.msgid))[:3]
        assert len(unread) == 3
        want = {}
        for m in unread:
            m = client_set_flags(m, add="S")
            want[m.msgid] = Want(m.folder, m.letters, m.labels)
        report = env.run(async_wait=0.5)
        assert report.exit_code == 0, report.to_json()
        assert any("3 change(s) accepted by the server for later" in n for n in report.notes), report.notes
        assert env.pending_rows() == 3  # kept: nothing is forgotten
        env.wait_jobs()
        again = env.run()
        assert again.exit_code == 0 and again.ok, again.to_json()
        assert again.to_json()["pushed"] == {"flags": 0, "labels": 0, "moved": 0, "deleted": 0}
        assert env.pending_rows() == 0
        assert_agree(env, want)
    finally:
        env.fake.stop()
