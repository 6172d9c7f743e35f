"""Stateful property test of ``sync``: random local edits (as a mail client makes them),
random server edits (as another client), random faults, and runs.

After every fault-free run: the archive equals the server (each server mail exactly one
file, in its folder's directory, with its flags and keywords; no extra file except the
reported unknown ones); every mail changed only locally since the last clean run is on the
server as the archive has it; an immediate further run is a no-op.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, rule, run_state_machine_as_test

from axsync.store import label_to_atom

from .harness import (
    LABELS,
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

DIRS = {"": ("INBOX",), ".Archive": ("Archive",), ".Work": ("Work",), ".Work.Sub": ("Work", "Sub")}
PATHS = list(DIRS.values())
MAX_MAILS = 30
SETTINGS = settings(max_examples=6, stateful_step_count=22, deadline=None, derandomize=True,
                    database=None, suppress_health_check=list(HealthCheck), print_blob=True)

index = st.integers(min_value=0, max_value=10_000)


class SyncMachine(RuleBasedStateMachine):
    api_version = "10.6"

    def __init__(self) -> None:
        super().__init__()
        self.tmp = Path(tempfile.mkdtemp(prefix="axsync-machine-"))
        self.env: PushEnv | None = None
        # Message-ID -> (folder, flags, labels) the server must end with (None: not
        # checked), or None: deleted for good
        self.local_edits: dict[str, tuple[tuple[str, ...], str | None, tuple[str, ...] | None] | None] = {}
        self.server_edits: set[str] = set()
        self.unknown: set[str] = set()
        self.new_mails = 0

    @initialize(conflict=st.sampled_from(["server", "local"]), seed=st.integers(0, 3),
                new_ids=st.booleans())
    def start(self, conflict: str, seed: int, new_ids: bool) -> None:
        knobs = {"async_batch_delay": 0.05, "fault_seed": seed, "retry_after": 0.0,
                 "ids_change_on_move": new_ids}
        self.env = start_env(self.tmp, self.api_version, messages=16, seed=seed, conflict=conflict,
                             knobs=knobs)

    def teardown(self) -> None:
        if self.env is not None:
            self.env.fake.stop()
        shutil.rmtree(self.tmp, ignore_errors=True)

    # ------------------------------------------------------------------ helpers

    @property
    def e(self) -> PushEnv:
        assert self.env is not None
        return self.env

    def local_pick(self, i: int, pred: object = lambda m: True) -> LocalMsg | None:
        mails = [m for m in sorted(self.e.local().values(), key=lambda m: m.msgid)
                 if m.msgid not in self.unknown and m.dirname in DIRS | {".Trash": ()} and pred(m)]  # type: ignore[operator]
        return mails[i % len(mails)] if mails else None

    def noted(self, m: LocalMsg) -> None:
        self.local_edits[m.msgid] = (m.folder, m.letters, m.labels)

    def server_pick(self, i: int) -> object | None:
        mails = sorted((m for m in self.e.server().values() if m.path != ("Spam",)), key=lambda m: m.msgid)
        return mails[i % len(mails)] if mails else None

    # ------------------------------------------------------------------ local edits

    @rule(i=index, letter=st.sampled_from("SF"))
    def local_flag(self, i: int, letter: str) -> None:
        m = self.local_pick(i)
        if m is not None:
            on = letter in m.letters
            self.noted(client_set_flags(m, add="" if on else letter, remove=letter if on else ""))

    def label_name(self, k: int) -> str:
        """The current name of the k-th label (they get renamed)."""
        return sorted(name for _i, name in self.e.mb.labels())[k % len(LABELS)]

    @rule(i=index, k=st.integers(0, len(LABELS) - 1))
    def local_keyword_add(self, i: int, k: int) -> None:
        label = self.label_name(k)
        m = self.local_pick(i, lambda m: label not in m.labels)
        if m is not None:
            self.noted(client_add_keyword(m, label_to_atom(label)))

    @rule(i=index)
    def local_keyword_remove(self, i: int) -> None:
        m = self.local_pick(i, lambda m: bool(m.atoms))
        if m is not None:
            self.noted(client_remove_keyword(m, m.atoms[i % len(m.atoms)]))

    @rule(i=index, j=st.integers(0, 3))
    def local_move(self, i: int, j: int) -> None:
        m = self.local_pick(i)
        dest = list(DIRS)[j]
        if m is not None and dest != m.dirname:
            moved = client_move(m, self.e.maildir, dest)
            self.noted(moved)

    @rule(i=index)
    def local_delete(self, i: int) -> None:
        m = self.local_pick(i)
        if m is not None:
            client_delete(m)
            # a deleted file's earlier renames are gone with it: only the folder is known
            self.local_edits[m.msgid] = None if m.dirname == ".Trash" else (("Trash",), None, None)

    @rule(n=st.integers(0, 999))
    def local_unknown_file(self, n: int) -> None:
        """A message a user dropped into cur/: no server copy, kept and reported."""
        if len(self.unknown) >= 2:
            return
        raw = raw_mail(n, tag="dropped")
        key = f"dropped{n}@push.test"
        if key in self.unknown:
            return
        name = f"1760100{n:03d}.M{n}P1.user,S={len(raw)},W={len(raw)}:2,S"
        (self.e.maildir / "cur" / name).write_bytes(raw)
        self.unknown.add(key)

    # ------------------------------------------------------------------ server edits

    @rule(i=index, unread=st.booleans(), flagged=st.booleans())
    def server_flags(self, i: int, unread: bool, flagged: bool) -> None:
        m = self.server_pick(i)
        if m is not None:
            self.e.mb.set_flags(m.id, unread=unread, flagged=flagged)  # type: ignore[attr-defined]
            self.server_edits.add(m.msgid)  # type: ignore[attr-defined]

    @rule(i=index, k=st.integers(0, len(LABELS) - 1), add=st.booleans())
    def server_label(self, i: int, k: int, add: bool) -> None:
        m = self.server_pick(i)
        if m is not None:
            lid = self.e.label(self.label_name(k))
            if add:
                self.e.mb.add_label_to_mail(m.id, lid)  # type: ignore[attr-defined]
            else:
                self.e.mb.remove_label_from_mail(m.id, lid)  # type: ignore[attr-defined]
            self.server_edits.add(m.msgid)  # type: ignore[attr-defined]

    @rule(k=st.integers(0, len(LABELS) - 1))
    def server_rename_label(self, k: int) -> None:
        name = self.label_name(k)
        new = name[:-2] if name.endswith(" 2") else f"{name} 2"
        if new.casefold() in {n.casefold() for _i, n in self.e.mb.labels()}:
            return
        lid = self.e.label(name)
        self.e.mb.rename_label(lid, new)
        self.server_edits.update(m.msgid for m in self.e.server().values() if new in m.labels)

    @rule(i=index, j=st.integers(0, 3))
    def server_move(self, i: int, j: int) -> None:
        m = self.server_pick(i)
        if m is not None and m.path != PATHS[j]:  # type: ignore[attr-defined]
            self.e.mb.move_mail(m.id, self.e.folder(*PATHS[j]))  # type: ignore[attr-defined]
            self.server_edits.add(m.msgid)  # type: ignore[attr-defined]

    @rule(i=index)
    def server_delete(self, i: int) -> None:
        m = self.server_pick(i)
        if m is not None:
            self.e.mb.delete_mail(m.id)  # type: ignore[attr-defined]
            self.server_edits.add(m.msgid)  # type: ignore[attr-defined]

    @rule(j=st.integers(0, 3), unread=st.booleans())
    def server_new_mail(self, j: int, unread: bool) -> None:
        if len(self.e.server()) >= MAX_MAILS:
            return
        self.new_mails += 1
        raw = raw_mail(500 + self.new_mails, tag="n")
        self.e.mb.add_mail(self.e.folder(*PATHS[j]), raw, date=1_760_500_000 + self.new_mails, unread=unread)

    # ------------------------------------------------------------------ faults and runs

    @rule(fail=st.sampled_from([0.0, 0.15]), drop=st.sampled_from([0.0, 0.1]),
          threshold=st.sampled_from([0, 1, 200]))
    def faults(self, fail: float, drop: float, threshold: int) -> None:
        k = self.e.knobs
        k.fail_rate, k.drop_rate, k.async_batch_threshold = fail, drop, threshold

    @rule()
    def sync(self) -> None:
        """A run under whatever faults are on: it may fail items, never crash."""
        report = self.e.run(async_wait=0.5)
        assert not (report.fatal or "").startswith("internal error"), report.to_json()
        if report.exit_code == 0:
            self.after_clean(report.to_json())

    @rule()
    def clean_sync(self) -> None:
        k = self.e.knobs
        k.fail_rate = k.drop_rate = 0.0
        self.e.wait_jobs()
        report = self.e.run(async_wait=0.5)
        assert report.exit_code == 0 and report.ok, report.to_json()
        self.after_clean(report.to_json())

    def after_clean(self, j: dict[str, object]) -> None:
        """The invariants of a fault-free run (faults are switched off for the checks)."""
        k = self.e.knobs
        faults = (k.fail_rate, k.drop_rate)
        k.fail_rate = k.drop_rate = 0.0
        self.e.wait_jobs()
        if self.e.pending_rows():  # 201 jobs landed after the run's wait: one more run
            report = self.e.run(async_wait=0.5)
            assert report.exit_code == 0, report.to_json()
        assert self.e.pending_rows() == 0
        self.e.check(unknown=self.unknown)
        srv = self.e.server()
        for msgid, wanted in self.local_edits.items():
            if msgid in self.server_edits:
                continue  # changed on both sides: the policy decided; convergence checked
            if wanted is None:
                assert msgid not in srv, f"{msgid} deleted from Trash here, still on the server"
            else:
                s = srv[msgid]
                path, letters, labels = wanted
                got = (s.path, s.letters if letters is not None else None, s.labels if labels is not None else None)
                assert got == wanted, (msgid, s, wanted)
        assert j.get("local_unknown_files", 0) == len(self.unknown), j
        noop = self.e.noop()
        assert noop.to_json().get("local_unknown_files", 0) == len(self.unknown)
        self.local_edits.clear()
        self.server_edits.clear()
        k.fail_rate, k.drop_rate = faults

    def check_final(self) -> None:
        self.clean_sync()


@pytest.mark.timeout(300)
@pytest.mark.parametrize("api_version", ["10.4", "10.6"])
def test_sync_machine(api_version: str) -> None:
    machine = type(f"SyncMachine_{api_version.replace('.', '_')}", (SyncMachine,), {"api_version": api_version})
    run_state_machine_as_test(machine, settings=SETTINGS)
