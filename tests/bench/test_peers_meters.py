"""The CPU meters of tests/bench/peers.py: what a run costs the server, the proxy and the
machine, read from /proc. Real processes burn real CPU; nothing is mocked."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from tests.bench.peers import Meters, machine_cpu_s, process_cpu_s, session_cpu_s

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")

BURN = "import time\nt = time.process_time()\nwhile time.process_time() - t < {s}: pass\n"


def burn(seconds: float) -> list[str]:
    return [sys.executable, "-c", BURN.format(s=seconds)]


def test_process_cpu_counts_a_process_and_the_children_it_reaped() -> None:
    # A parent that burns 0.2 s itself, then runs a child that burns 0.3 s and waits for it.
    code = (BURN.format(s=0.2) + "import subprocess, sys\n"
            f"subprocess.run({burn(0.3)!r}, check=True)\n"
            "print('done', flush=True)\nsys.stdin.read()\n")
    proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline() == "done\n"
        used = process_cpu_s(proc.pid)
        assert 0.45 <= used < 2.0
    finally:
        proc.communicate("")


def test_session_cpu_sums_live_members_and_reaped_ones() -> None:
    # The leader of a new session runs one child to its end (reaped: the leader's cutime)
    # and keeps one burning (live: counted on its own).
    code = ("import subprocess, sys\n"
            f"subprocess.run({burn(0.3)!r}, check=True)\n"
            f"live = subprocess.Popen({burn(30)!r})\n"
            "print(live.pid, flush=True)\nsys.stdin.read()\nlive.kill()\nlive.wait()\n")
    leader = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True, start_new_session=True)
    try:
        assert leader.stdout is not None
        live = int(leader.stdout.readline())
        first = session_cpu_s(leader.pid)
        assert first >= 0.25  # the reaped child (0.3 s, counted in 10 ms ticks)
        time.sleep(0.5)
        second = session_cpu_s(leader.pid)
        live_cpu = process_cpu_s(live)
        assert live_cpu > 0.1
        assert second - first >= 0.25  # the live child burned meanwhile
        assert second >= 0.25 + live_cpu - 0.05
        # Not counted: processes outside the session (this one, burning right now).
        assert session_cpu_s(leader.pid) < process_cpu_s(leader.pid) + live_cpu + 0.2
    finally:
        leader.communicate("")


def test_machine_cpu_grows_by_at_least_what_a_process_burned() -> None:
    before = machine_cpu_s()
    subprocess.run(burn(0.4), check=True)
    after = machine_cpu_s()
    assert after["busy"] - before["busy"] >= 0.3
    assert after["steal"] >= before["steal"] >= 0


def test_meters_pick_the_server_of_the_tool() -> None:
    wait = "import sys\nprint(flush=True)\nsys.stdin.read()\n"
    fake = subprocess.Popen([sys.executable, "-c", BURN.format(s=0.3) + wait],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    dovecot = subprocess.Popen([sys.executable, "-c", wait], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, text=True, start_new_session=True)
    try:
        assert fake.stdout is not None and dovecot.stdout is not None
        fake.stdout.readline()
        dovecot.stdout.readline()
        meters = Meters(fake.pid, dovecot.pid, {"fake": dovecot.pid})
        ax = meters.snapshot("axsync-noindex")
        mb = meters.snapshot("mbsync")
        assert ax["server_cpu_s"] >= 0.25 > mb["server_cpu_s"]  # 0.3 s burned, in ticks
        assert ax["proxy_cpu_s"] == process_cpu_s(dovecot.pid) < 0.3
        assert mb["proxy_cpu_s"] == 0.0  # no proxy in front of Dovecot (0 ms)
        assert set(ax) == {"server_cpu_s", "proxy_cpu_s", "machine_busy_s", "steal_s"}
    finally:
        fake.communicate("")
        dovecot.communicate("")
