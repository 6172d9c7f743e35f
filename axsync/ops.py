"""Nightly operations: a Prometheus textfile after each run, and a dead man's switch ping.

Both take the reports of one ``axsync sync`` invocation: dicts shaped like the contract's
``sync --json`` object plus ``exit_code`` (``RunReport.to_json()``). ``sync`` calls them
for ``--metrics-file PATH`` and ``--healthcheck-url URL`` (docs/nightly.md).

* :func:`write_metrics` — node_exporter's textfile collector format, one series per
  account, written atomically (temp file in the same directory, fsync, rename; 0644).
  ``axsync_last_success_timestamp_seconds`` of an account whose run failed is carried over
  from the file being replaced, so "no success for 2 days" stays visible.
* :func:`ping_healthcheck` — healthchecks.io style: a POST to ``URL`` on success, to
  ``URL/fail`` otherwise, with a short summary as body; 10 s timeout; never raises.
"""

from __future__ import annotations

import logging
import math
import os
import re
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx

log = logging.getLogger("axsync.ops")

HEALTHCHECK_TIMEOUT_S = 10.0
MAX_PING_BODY = 10_000

# (name, help) of every gauge; each has one series per account (and kind)
_GAUGES: tuple[tuple[str, str], ...] = (
    ("axsync_last_run_timestamp_seconds", "When the last axsync run of the account ended (Unix time)."),
    ("axsync_last_success_timestamp_seconds",
     "When a run of the account last succeeded (Unix time); kept across failed runs."),
    ("axsync_run_ok", "1 if the last run succeeded (exit code 0), else 0."),
    ("axsync_messages_pulled_total", "Messages the last run brought from the server, by kind."),
    ("axsync_bytes_pulled", "Bytes of message source the last run downloaded."),
    ("axsync_pushed", "Changes the last run sent to the server, by kind."),
    ("axsync_failed_items", "Items that failed in the last run."),
    ("axsync_conflicts", "Conflicts resolved in the last run."),
    ("axsync_requests", "HTTP requests the last run made."),
    ("axsync_run_seconds", "Duration of the last run in seconds."),
    ("axsync_exit_code", "Exit code of the last run (0 ok, 1 items failed, 2 usage, 3 auth, "
                         "4 deletion guard, 5 fatal)."),
)
_PULLED_KINDS = ("new", "updated", "moved", "deleted")
_PUSHED_KINDS = ("flags", "labels", "moved", "deleted")
_SUCCESS_LINE = re.compile(
    r'^axsync_last_success_timestamp_seconds\{account="((?:[^"\\]|\\.)*)"\}\s+(\S+)')


def escape_label(value: str) -> str:
    """A label value for the text format: ``\\`` ``"`` and newline escaped."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _unescape_label(value: str) -> str:
    return re.sub(r"\\(.)", lambda m: "\n" if m.group(1) == "n" else m.group(1), value)


def _number(value: Any) -> float:
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, int | float) and math.isfinite(value):
        return float(value)
    return 0.0


def _fmt(value: float) -> str:
    return str(int(value)) if value.is_integer() and abs(value) < 2**53 else repr(value)


def read_last_success(path: Path) -> dict[str, float]:
    """account → ``axsync_last_success_timestamp_seconds`` from an existing file."""
    out: dict[str, float] = {}
    try:
        text = path.read_text("utf-8")
    except (OSError, UnicodeDecodeError):
        return out
    for line in text.splitlines():
        m = _SUCCESS_LINE.match(line)
        if m:
            try:
                out[_unescape_label(m.group(1))] = float(m.group(2))
            except ValueError:
                continue
    return out


def _run_ok(report: Mapping[str, Any]) -> bool:
    return bool(report.get("ok")) and int(_number(report.get("exit_code", 0))) == 0 \
        and not report.get("error")


def render_metrics(reports: Sequence[Mapping[str, Any]], now: float,
                   previous_success: Mapping[str, float]) -> str:
    """The textfile content for these reports (pure)."""
    series: dict[str, list[tuple[str, float]]] = {name: [] for name, _ in _GAUGES}
    for report in sorted(reports, key=lambda r: str(r.get("account", ""))):
        account = str(report.get("account", ""))
        acc = f'account="{escape_label(account)}"'
        ok = _run_ok(report)
        pulled = report.get("pulled") or {}
        pushed = report.get("pushed") or {}
        series["axsync_last_run_timestamp_seconds"].append((acc, now))
        success = now if ok else previous_success.get(account)
        if success is not None:
            series["axsync_last_success_timestamp_seconds"].append((acc, success))
        series["axsync_run_ok"].append((acc, 1.0 if ok else 0.0))
        for kind in _PULLED_KINDS:
            series["axsync_messages_pulled_total"].append(
                (f'{acc},kind="{kind}"', _number(pulled.get(kind))))
        series["axsync_bytes_pulled"].append((acc, _number(pulled.get("bytes"))))
        for kind in _PUSHED_KINDS:
            series["axsync_pushed"].append((f'{acc},kind="{kind}"', _number(pushed.get(kind))))
        series["axsync_failed_items"].append((acc, _number(report.get("failed"))))
        series["axsync_conflicts"].append((acc, _number(report.get("conflicts"))))
        series["axsync_requests"].append((acc, _number(report.get("requests"))))
        series["axsync_run_seconds"].append((acc, _number(report.get("seconds"))))
        code = report.get("exit_code")
        series["axsync_exit_code"].append((acc, _number(code if code is not None else (0 if ok else 1))))
    lines: list[str] = []
    for name, help_text in _GAUGES:
        lines.append(f"# HELP {name} {help_text}")
        lines.append(f"# TYPE {name} gauge")
        lines.extend(f"{name}{{{labels}}} {_fmt(value)}" for labels, value in series[name])
    return "\n".join(lines) + "\n"


def write_metrics(path: Path | str, reports: Sequence[Mapping[str, Any]], *,
                  now: float | None = None) -> None:
    """Replace ``path`` atomically with the metrics of ``reports`` (mode 0644). Raises
    OSError if the directory is not writable (the caller logs it; the run's exit code
    does not change)."""
    target = Path(path)
    text = render_metrics(reports, time.time() if now is None else now, read_last_success(target))
    directory = target.parent if str(target.parent) else Path(".")
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fchmod(fh.fileno(), 0o644)
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    try:
        dfd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass


def fail_url(url: str) -> str:
    """``url`` with ``/fail`` appended to its path (a query string is kept)."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=parts.path.rstrip("/") + "/fail"))


def ping_healthcheck(url: str, ok: bool, summary: str, *,
                     timeout: float = HEALTHCHECK_TIMEOUT_S,
                     transport: httpx.BaseTransport | None = None) -> bool:
    """Tell a healthchecks.io-style monitor how the run went: POST ``summary`` to ``url``
    when ``ok``, to ``url + "/fail"`` otherwise. Returns whether the monitor answered 2xx;
    never raises (a warning is logged, naming only the host: the URL is a secret)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        log.warning("healthcheck URL is not http(s); not pinged")
        return False
    target = url if ok else fail_url(url)
    body = summary.encode("utf-8", "replace")[:MAX_PING_BODY]
    try:
        with httpx.Client(timeout=timeout, transport=transport, follow_redirects=True) as client:
            response = client.post(target, content=body,
                                   headers={"Content-Type": "text/plain; charset=utf-8"})
        if response.is_success:
            return True
        log.warning("healthcheck ping to %s answered HTTP %s", parts.hostname, response.status_code)
    except Exception as exc:  # noqa: BLE001 - a monitor being down must not fail the backup
        log.warning("healthcheck ping to %s failed: %s", parts.hostname, exc.__class__.__name__)
    return False
