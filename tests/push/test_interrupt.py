"""Interrupted pushes converge: an in-process crash after k steps for every k (the
``push_stop_after`` hook: a step before each server write and one before recording its
outcome), and SIGKILL of a ``sync`` subprocess at random moments (fixed seeds). After the
runs that follow: every local change is on the server exactly once (no duplicate moves, no
lost flags), the archive equals the server, and nothing was downloaded again except the
copies in Trash of the mails deleted here."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from axsync.errors import AxsyncError

from .conftest import MakeEnv
from .harness import (
    PASSWORD,
    LocalMsg,
    PushEnv,
    client_add_keyword,
    client_delete,
    client_move,
    client_remove_keyword,
    client_set_flags,
    ensure_local_folder,
    write_config,
)

pytestmark = pytest.mark.timeout(300)


@dataclass(frozen=True)
class Want:
    path: tuple[str, ...]
    letters: str
    labels: tuple[str, ...]


def make_changes(env: PushEnv) -> dict[str, Want]:
    """A mix of every kind of local change (new label, new folder, moves with flags, a
    whole conversation read, deletions); returns the server state each changed mail must
    end in."""
    loc = sorted(env.local().values(), key=lambda m: int(m.msgid[1:].split("@")[0]))
    want: dict[str, Want] = {}

    def note(m: LocalMsg, path: tuple[str, ...] | None = None) -> None:
        want[m.msgid] = Want(path or m.folder, m.letters, m.labels)

    used: set[str] = set()

    def take(folder: tuple[str, ...] | None, pred: object = lambda m: True) -> LocalMsg:
        for m in loc:
            if m.msgid not in used and (folder is None or m.folder == folder) and pred(m):  # type: ignore[operator]
                used.add(m.msgid)
                return m
        raise AssertionError(f"no mail left in {folder}")

    # a whole thread (root + reply share the folder) marked read and flagged
    thread = [m for m in loc if m.msgid in ("m0@push.test", "m1@push.test")]
    used.update(m.msgid for m in thread)
    for m in thread:
        note(client_set_flags(m, add="SF"))
    m = take(("INBOX",))
    note(client_set_flags(m, add="F" if "F" not in m.letters else "", remove="F" if "F" in m.letters else ""))
    note(client_add_keyword(take(("INBOX",)), "Fresh"))
    m = take(("INBOX",))
    note(client_add_keyword(m, "todo" if "todo" not in m.labels else "Important"))
    tagged = take(None, lambda m: bool(m.atoms))
    note(client_remove_keyword(tagged, tagged.atoms[0]))
    note(client_set_flags(client_move(take(("INBOX",)), env.maildir, ".Archive"), add="S"), ("Archive",))
    note(client_add_keyword(client_move(take(("Work",)), env.maildir, ".Work.Sub"), "Fresh"), ("Work", "Sub"))
    ensure_local_folder(env.maildir, ".Later")
    note(client_move(take(("Work", "Sub")), env.maildir, ".Later"), ("Later",))
    for m in (take(("INBOX",)), take(("Work", "Sub"))):
        client_delete(m)
        want[m.msgid] = Want(("Trash",), m.letters, m.labels)
    return want


def assert_converged(env: PushEnv, want: dict[str, Want], deleted: set[str], *, once: bool = True) -> None:
    """``once``: each Trash copy fetched once (a SIGKILL during that very download may
    legitimately fetch it again)."""
    srv = env.server()
    for msgid, w in want.items():
        s = srv[msgid]
        assert (s.path, s.letters, s.labels) == (w.path, w.letters, w.labels), (msgid, s, w)
    assert env.pending_rows() == 0
    env.check()
    assert {d[0] for d in env.downloads} <= deleted, env.downloads
    assert all(folder == ("Trash",) for _m, folder in env.downloads), env.downloads
    if once:
        assert len(env.downloads) == len({d[0] for d in env.downloads}), "fetched twice"


def total_steps(make_env: MakeEnv, api_version: str) -> int:
    env = make_env(api_version, messages=24)
    make_changes(env)
    from axsync.sync import push as P

    counted: list[int] = []
    real = P.Pusher.run

    def run(self: P.Pusher, changes: object) -> P.PushPlan:
        try:
            return real(self, changes)  # type: ignore[arg-type]
        finally:
            counted.append(self._steps)

    P.Pusher.run = run  # type: ignore[method-assign]
    try:
        env.ok()
    finally:
        P.Pusher.run = real  # type: ignore[method-assign]
    return counted[0]


def test_push_interrupted_after_every_step_converges(make_env: MakeEnv, api_version: str) -> None:
    steps = total_steps(make_env, api_version)
    assert steps >= 16, steps  # 2 labels... 1 folder, about 8 batches, two steps each
    for k in range(steps):
        env = make_env(api_version, messages=24)
        want = make_changes(env)
        deleted = {m for m, w in want.items() if w.path == ("Trash",)}
        env.record_downloads()
        crashed = env.run(push_stop_after=k)
        assert crashed.exit_code != 0 and "push stopped after" in (crashed.fatal or ""), crashed.to_json()
        env.settle()
        assert_converged(env, want, deleted)
        env.noop()
        env.fake.stop()


def test_crash_inside_the_confirming_pull_converges(make_env: MakeEnv, api_version: str) -> None:
    """--push-only runs no pull first, so ``stop_after`` (the pull's hook) stops the
    confirming pull after k actions: the pushes are done, their echo half-recorded."""
    for k in range(5):  # the confirming pull has 5 actions here: 3 relocations, 2 downloads
        env = make_env(api_version, messages=24)
        want = make_changes(env)
        deleted = {m for m, w in want.items() if w.path == ("Trash",)}
        env.record_downloads()
        crashed = env.run(push_only=True, stop_after=k)
        assert crashed.exit_code != 0 and "stopped after" in (crashed.fatal or ""), crashed.to_json()
        env.settle()
        assert_converged(env, want, deleted)
        env.noop()
        env.fake.stop()


# ---------------------------------------------------------------------------- SIGKILL


def sync_subprocess(config: Path, account: str) -> subprocess.Popen[str]:
    env = {**os.environ, "AXSYNC_PASSWORD": PASSWORD}
    return subprocess.Popen([sys.executable, "-m", "axsync", "--config", str(config), "sync", account,
                             "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def server_writes(env: PushEnv) -> int:
    """Requests that change the server: batches, label and folder creation."""
    return sum(n for key, n in env.fake.counters.items()
               if key.startswith("POST") and "login" not in key)


@pytest.mark.parametrize("seed", [11, 12, 13])
def test_sigkill_at_random_moments_converges(make_env: MakeEnv, api_version: str, seed: int) -> None:
    """A ``sync`` subprocess is killed (SIGKILL) at a random moment of its push: after a
    random number of server writes plus a random delay; repeated until a run finishes."""
    rng = random.Random(seed)
    env = make_env(api_version, messages=24, knobs={"latency": 0.02})
    want = make_changes(env)
    deleted = {m for m, w in want.items() if w.path == ("Trash",)}
    config = write_config(env)
    env.record_downloads()
    env.fake.reset_counters()
    kills = 0
    for _ in range(8):
        target = server_writes(env) + rng.randint(0, 4)
        proc = sync_subprocess(config, env.account.name)
        deadline = time.monotonic() + 60
        while proc.poll() is None and server_writes(env) < target and time.monotonic() < deadline:
            time.sleep(0.001)
        time.sleep(rng.uniform(0, 0.05))
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            kills += 1
        proc.communicate(timeout=60)
        if proc.returncode == 0:
            break
    assert kills >= 2, "no run was killed"
    env.settle()
    assert_converged(env, want, deleted, once=False)
    env.noop()


def test_interrupted_error_type() -> None:
    from axsync.sync.pull import Interrupted

    assert issubclass(Interrupted, AxsyncError)
