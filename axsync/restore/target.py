"""What ``restore`` is pointed at: the IMAP URL, the password, the ``--as-of`` instant.

URL rules (docs/migration.md):

* ``imaps://USER@HOST[:PORT]`` — TLS from the first byte, port 993 by default;
* ``imap://USER@HOST[:PORT]`` — port 143, STARTTLS required; only to a loopback host
  (127.0.0.0/8, ::1, ``localhost``) may the session stay in plain text when the server
  offers no STARTTLS (the test Dovecot);
* certificates and host names are always verified (system CAs, or ``ca_bundle``);
  ``insecure`` switches that off and is refused for anything but a loopback host;
* USER may be percent-encoded (``alice%40example.com``); a password in the URL is
  refused, as are paths, queries and fragments.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

from axsync.config import run_password_command
from axsync.errors import UsageError

PASSWORD_ENV = "AXSYNC_IMAP_PASSWORD"
DEFAULT_PORTS = {"imaps": 993, "imap": 143}


@dataclass(frozen=True, slots=True)
class ImapTarget:
    """A parsed restore URL. ``tls`` is ``implicit`` (imaps) or ``starttls`` (imap)."""

    scheme: str
    user: str
    host: str
    port: int
    tls: str
    insecure: bool = False
    ca_bundle: Path | None = None

    @property
    def identity(self) -> str:
        """``user@host:port`` (host lower case): the restore log's key for this account."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.user}@{host.lower()}:{self.port}"

    @property
    def loopback(self) -> bool:
        return is_loopback(self.host)

    def ssl_context(self) -> ssl.SSLContext:
        """Verifying context (system CAs or ``ca_bundle``); unverified only if insecure."""
        ctx = ssl.create_default_context(cafile=str(self.ca_bundle) if self.ca_bundle else None)
        if self.insecure:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        return ctx


def is_loopback(host: str) -> bool:
    if host.lower() in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def parse_imap_url(url: str, *, insecure: bool = False, ca_bundle: Path | None = None) -> ImapTarget:
    """Parse and check a restore URL (UsageError, exit 2, for anything not allowed)."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError as exc:
        raise UsageError(f"--imap: not a valid URL ({exc})") from None
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS:
        raise UsageError("--imap: expected imaps://USER@HOST[:PORT] or imap://USER@HOST[:PORT]")
    if parts.password is not None:
        raise UsageError(
            f"--imap: do not put the password in the URL; use env {PASSWORD_ENV} "
            "or --imap-password-command"
        )
    if not parts.username:
        raise UsageError("--imap: the URL needs the IMAP user: imaps://USER@HOST")
    if not parts.hostname:
        raise UsageError("--imap: the URL needs a host")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise UsageError("--imap: the URL takes no path, query or fragment (use --folder)")
    host = parts.hostname
    if insecure and not is_loopback(host):
        raise UsageError("--insecure is only allowed for loopback hosts (testing)")
    return ImapTarget(
        scheme=scheme,
        user=unquote(parts.username),
        host=host,
        port=port or DEFAULT_PORTS[scheme],
        tls="implicit" if scheme == "imaps" else "starttls",
        insecure=insecure,
        ca_bundle=ca_bundle,
    )


def imap_password(command: str | None, env: Mapping[str, str] | None = None) -> str:
    """env ``AXSYNC_IMAP_PASSWORD``, else the output of ``command`` (first line)."""
    env = os.environ if env is None else env
    if env.get(PASSWORD_ENV):
        return env[PASSWORD_ENV]
    if command:
        return run_password_command(command, "IMAP target")
    raise UsageError(f"no IMAP password: set env {PASSWORD_ENV} or use --imap-password-command")


def parse_as_of(value: str) -> int:
    """``--as-of`` → Unix seconds (inclusive). A date alone is the end of that day UTC;
    a date-time without offset is taken as UTC; ``Z`` is accepted."""
    text = value.strip()
    try:
        if len(text) == 10:
            day = dt.date.fromisoformat(text)
            end = dt.datetime(day.year, day.month, day.day, 23, 59, 59, tzinfo=dt.UTC)
            return int(end.timestamp())
        when = dt.datetime.fromisoformat(text.replace("z", "Z"))
    except ValueError:
        raise UsageError(
            f"--as-of: expected an ISO 8601 date like 2026-11-21 or 2026-11-21T09:51:11+00:00, "
            f"got {value!r}"
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return int(when.timestamp())
