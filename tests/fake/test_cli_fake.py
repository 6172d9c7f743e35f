"""``axsync fake-server`` as a user runs it: a process that prints where it listens and
serves until SIGTERM/SIGINT."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from axsync.cli import cli
from axsync.cli.fake import register

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(("sig", "generation"), [(signal.SIGTERM, "10.4"), (signal.SIGINT, "10.6")])
def test_fake_server_process(sig: signal.Signals, generation: str) -> None:
    command = [
        sys.executable, "-m", "axsync", "fake-server", "--messages", "30", "--seed", "3",
        "--api-version", generation, "--user", "bob@example.net", "--password", "pw",
    ]
    proc = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        url, user, password = (proc.stdout.readline().strip() for _ in range(3))
        assert url.startswith("http://127.0.0.1:") and (user, password) == ("bob@example.net", "pw")
        with httpx.Client(base_url=url, timeout=10) as http:
            assert http.get("/api/").json()["serverVersion"].startswith(generation)
            sid = http.post("/api/v1/login", auth=(user, password)).json()["sessid"]
            http.headers["X-Axigen-Session"] = sid
            inbox = next(f for f in http.get("/api/v1/folders/", auth=(user, password)).json()["items"]
                         if f["role"] == "inbox")
            assert inbox["totalItems"] > 0
        proc.send_signal(sig)
        assert proc.wait(timeout=15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_fake_server_options_are_validated() -> None:
    register(cli)
    runner = CliRunner()
    result = runner.invoke(cli, ["fake-server", "--api-version", "9.9"])
    assert result.exit_code == 2 and "9.9" in result.output
    result = runner.invoke(cli, ["fake-server", "--fail-rate", "2"])
    assert result.exit_code == 2
    help_text = runner.invoke(cli, ["fake-server", "--help"]).output
    for option in ("--host", "--port", "--api-version", "--seed", "--messages", "--corpus", "--user",
                   "--password", "--latency-ms", "--fail-rate", "--drop-rate"):
        assert option in help_text
