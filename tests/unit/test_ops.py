"""axsync.ops: the Prometheus textfile and the healthcheck ping."""

from __future__ import annotations

import http.server
import logging
import os
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from axsync.ops import (
    escape_label,
    fail_url,
    ping_healthcheck,
    read_last_success,
    render_metrics,
    write_metrics,
)


def report(account: str, *, ok: bool = True, exit_code: int = 0, **extra: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "account": account, "ok": ok,
        "pulled": {"new": 3, "updated": 2, "moved": 1, "deleted": 4, "bytes": 12345},
        "pushed": {"flags": 5, "labels": 6, "moved": 7, "deleted": 8},
        "conflicts": 1, "failed": 0 if ok else 2, "requests": 42, "seconds": 1.5,
        "exit_code": exit_code,
    }
    base.update(extra)
    return base


def samples(text: str) -> dict[str, float]:
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            out[name] = float(value)
    return out


def test_textfile_has_help_type_and_every_gauge(tmp_path: Path) -> None:
    path = tmp_path / "axsync.prom"
    write_metrics(path, [report("work"), report("home", ok=False, exit_code=1)], now=1000.0)
    text = path.read_text()
    assert os.stat(path).st_mode & 0o777 == 0o644
    names = re.findall(r"^# TYPE (\S+) gauge$", text, re.M)
    assert names == [
        "axsync_last_run_timestamp_seconds", "axsync_last_success_timestamp_seconds",
        "axsync_run_ok", "axsync_messages_pulled_total", "axsync_bytes_pulled", "axsync_pushed",
        "axsync_failed_items", "axsync_conflicts", "axsync_requests", "axsync_run_seconds",
        "axsync_exit_code",
    ]
    assert len(re.findall(r"^# HELP ", text, re.M)) == len(names)
    s = samples(text)
    assert s['axsync_run_ok{account="work"}'] == 1
    assert s['axsync_run_ok{account="home"}'] == 0
    assert s['axsync_exit_code{account="home"}'] == 1
    assert s['axsync_messages_pulled_total{account="work",kind="deleted"}'] == 4
    assert s['axsync_pushed{account="work",kind="labels"}'] == 6
    assert s['axsync_bytes_pulled{account="work"}'] == 12345
    assert s['axsync_run_seconds{account="work"}'] == 1.5
    assert s['axsync_last_run_timestamp_seconds{account="home"}'] == 1000
    assert s['axsync_last_success_timestamp_seconds{account="work"}'] == 1000
    assert 'axsync_last_success_timestamp_seconds{account="home"}' not in s  # never succeeded
    assert [p.name for p in tmp_path.iterdir()] == ["axsync.prom"]  # no temp file left


def test_last_success_is_kept_from_the_previous_file_when_a_run_fails(tmp_path: Path) -> None:
    path = tmp_path / "axsync.prom"
    write_metrics(path, [report('we"ird\\acc\nount'), report("b")], now=100.0)
    write_metrics(path, [report('we"ird\\acc\nount', ok=False, exit_code=5, error="unreachable"),
                         report("b")], now=200.0)
    s = samples(path.read_text())
    weird = escape_label('we"ird\\acc\nount')
    assert weird == 'we\\"ird\\\\acc\\nount'
    assert s[f'axsync_last_success_timestamp_seconds{{account="{weird}"}}'] == 100
    assert s[f'axsync_last_run_timestamp_seconds{{account="{weird}"}}'] == 200
    assert s['axsync_last_success_timestamp_seconds{account="b"}'] == 200
    assert read_last_success(path) == {'we"ird\\acc\nount': 100.0, "b": 200.0}


def test_a_report_that_says_ok_but_has_an_exit_code_is_not_a_success() -> None:
    s = samples(render_metrics([report("a", ok=True, exit_code=1)], 10.0, {}))
    assert s['axsync_run_ok{account="a"}'] == 0
    fatal = samples(render_metrics([{"account": "f", "ok": False, "exit_code": 3,
                                     "error": "auth"}], 10.0, {"f": 5.0}))
    assert fatal['axsync_failed_items{account="f"}'] == 0  # missing fields are 0
    assert fatal['axsync_last_success_timestamp_seconds{account="f"}'] == 5


def test_unwritable_directory_raises_and_leaves_nothing(tmp_path: Path) -> None:
    with pytest.raises(OSError):
        write_metrics(tmp_path / "missing" / "x.prom", [report("a")])


class _Handler(http.server.BaseHTTPRequestHandler):
    hits: list[tuple[str, str, bytes]] = []
    status = 200

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.hits.append(("POST", self.path, body))
        self.send_response(self.status)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[tuple[str, type[_Handler]]]:
    handler = type("H", (_Handler,), {"hits": [], "status": 200})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/ping/abc-uuid", handler
    httpd.shutdown()
    httpd.server_close()


def test_ping_success_and_failure(server: tuple[str, type[_Handler]]) -> None:
    url, handler = server
    assert ping_healthcheck(url, True, "work: pulled 3 new")
    assert ping_healthcheck(url, False, "work: FAILED (exit 5)" + "x" * 50_000)
    assert [(m, p) for m, p, _ in handler.hits] == [("POST", "/ping/abc-uuid"),
                                                    ("POST", "/ping/abc-uuid/fail")]
    assert handler.hits[0][2] == b"work: pulled 3 new"
    assert handler.hits[1][2].startswith(b"work: FAILED") and len(handler.hits[1][2]) == 10_000


def test_ping_never_raises(server: tuple[str, type[_Handler]],
                           caplog: pytest.LogCaptureFixture) -> None:
    url, handler = server
    handler.status = 500
    caplog.set_level(logging.WARNING, "axsync.ops")
    assert not ping_healthcheck(url, True, "x")
    assert not ping_healthcheck("http://127.0.0.1:9/ping/secret-uuid", False, "x", timeout=2)
    assert not ping_healthcheck("ftp://example.invalid/x", True, "x")
    text = caplog.text
    assert "HTTP 500" in text and "secret-uuid" not in text and "abc-uuid" not in text


def test_fail_url_keeps_query() -> None:
    assert fail_url("https://hc-ping.com/u-u-i-d") == "https://hc-ping.com/u-u-i-d/fail"
    assert fail_url("https://hc.example/ping/x/?create=1") == "https://hc.example/ping/x/fail?create=1"
