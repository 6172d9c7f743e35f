"""``axsync bench --quick --json`` runs end to end and reports sane figures.

Structure and sanity only: every figure is present and positive, counts add up, the
no-change run on 10.6 needs at most 3 requests, pushed flags reach the server. There are
NO timing assertions here: speed and memory targets live in the benchmark's own report
(docs/performance.md), not in unit tests on a shared machine.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from axsync.bench import QUICK_LATENCIES, QUICK_SIZES, SCENARIOS, format_report, ideal_seconds
from axsync.netproxy import LatencyProxy

pytestmark = pytest.mark.xdist_group("bench")


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("bench") / "report.json"
    res = subprocess.run(
        [sys.executable, "-m", "axsync", "bench", "--quick", "--json", "--out", str(out)],
        capture_output=True, text=True, timeout=600,
    )
    assert res.returncode == 0, res.stderr[-4000:]
    printed = json.loads(res.stdout)
    assert json.loads(out.read_text()) == printed
    data: dict[str, Any] = printed
    return data


def _positive(row: dict[str, Any], *keys: str) -> None:
    for key in keys:
        value = row[key]
        assert isinstance(value, int | float) and value > 0, (key, row)


def test_cli_names_every_scenario() -> None:
    from axsync.cli import bench as cli_bench

    assert cli_bench.SCENARIOS == SCENARIOS


def test_structure(report: dict[str, Any]) -> None:
    assert report["quick"] is True
    assert report["sizes"] == list(QUICK_SIZES)
    assert sorted(report["scenarios"]) == sorted(SCENARIOS)
    for key in ("machine", "bandwidth", "setup", "pull", "nochange", "scan", "push", "memory",
                "compression", "total_s"):
        assert key in report, key
    assert report["machine"]["cores"] >= 1 and report["machine"]["python"]
    _positive(report["bandwidth"], "bytes", "mb_per_s")
    assert "initial pull" in format_report(report)


def test_setup_and_pull(report: dict[str, Any]) -> None:
    assert {(s["messages"], s["api"]) for s in report["setup"]} == {
        (n, api) for n in QUICK_SIZES for api in ("10.6", "10.4")}
    for s in report["setup"]:
        _positive(s, "bytes")
        # set-up times are rounded to 10 ms and may be 0.0 on a fast machine
        assert all(isinstance(s[k], int | float) and s[k] >= 0
                   for k in ("generate_s", "mailbox_s", "warm_s"))
        assert s["warmed"] == s["messages"]  # the fake was warmed before the first run
    seen = {(p["messages"], p["api"], p["latency_ms"]) for p in report["pull"]}
    for n in QUICK_SIZES:
        assert (n, "10.6", 0.0) in seen and (n, "10.4", 0.0) in seen
    for lat in QUICK_LATENCIES:  # latency runs on the smallest size
        assert (min(QUICK_SIZES), "10.6", lat) in seen
    for p in report["pull"]:
        _positive(p, "seconds", "wall_s", "msgs_per_s", "mb_per_s", "bytes", "cpu_s",
                  "peak_rss_mb", "ideal_s", "ideal_ratio")
        assert p["requests"] > p["messages"]  # one source download per message, plus listing
        assert p["ideal_s"] == pytest.approx(ideal_seconds(
            p["bytes"], p["requests"], p["latency_ms"] / 1000, p["concurrency"],
            report["bandwidth"]["mb_per_s"] * 1_000_000), rel=0.01)


def test_nochange(report: dict[str, Any]) -> None:
    rows = {(r["messages"], r["api"]): r for r in report["nochange"]}
    assert set(rows) == {(n, api) for n in QUICK_SIZES for api in ("10.6", "10.4")}
    for (_n, api), r in rows.items():
        _positive(r, "requests", "seconds", "cpu_s", "peak_rss_mb")
        if api == "10.6":
            assert r["requests"] <= 3, r


def test_scan_push_memory(report: dict[str, Any]) -> None:
    assert [r["files"] for r in report["scan"]] == list(QUICK_SIZES)
    for r in report["scan"]:
        _positive(r, "files_per_s")
        assert r["seconds"] >= 0  # rounded to 1 ms: a small scan may show 0.0
    assert [r["messages"] for r in report["push"]] == list(QUICK_SIZES)
    for r in report["push"]:
        _positive(r, "changes", "requests", "seconds", "cpu_s", "peak_rss_mb")
        assert r["verified_on_server"] is True
        assert r["requests_after"] <= 3  # converged: the next run is a no-change run
    assert [r["messages"] for r in report["memory"]] == list(QUICK_SIZES)
    for r in report["memory"]:
        _positive(r, "initial_pull_rss_mb", "nochange_rss_mb")
    assert report["memory_growth"]["to_messages"] == max(QUICK_SIZES)


def test_compression(report: dict[str, Any]) -> None:
    methods = {(c["method"], c["level"]) for c in report["compression"]}
    assert ("zstd", 3) in methods and ("gzip", 3) in methods
    for c in report["compression"]:
        _positive(c, "bytes", "stored_bytes", "ratio", "compress_mb_s", "decompress_mb_s")
        assert c["ratio"] > 1 and c["stored_bytes"] < c["bytes"]


def test_latency_proxy_round_trip(tmp_path: Path) -> None:
    """The proxy forwards bytes unchanged both ways (it is also what peers.sh uses)."""
    import socket
    import threading

    srv = socket.create_server(("127.0.0.1", 0))
    port = srv.getsockname()[1]

    def echo() -> None:
        conn, _ = srv.accept()
        with conn:
            while data := conn.recv(65536):
                conn.sendall(data)

    threading.Thread(target=echo, daemon=True).start()
    payload = bytes(range(256)) * 4096
    with LatencyProxy(port, 10) as proxy, \
            socket.create_connection(("127.0.0.1", proxy.port), timeout=30) as c:
        c.sendall(payload)
        c.shutdown(socket.SHUT_WR)
        got = bytearray()
        while data := c.recv(65536):
            got += data
    srv.close()
    assert bytes(got) == payload
