"""Restore URL, password and --as-of parsing."""

from __future__ import annotations

import pytest

from axsync.errors import AuthError, UsageError
from axsync.restore.target import imap_password, parse_as_of, parse_imap_url


def test_urls() -> None:
    t = parse_imap_url("imaps://alice%40example.com@Mail.Example.com")
    assert (t.user, t.host, t.port, t.tls) == ("alice@example.com", "mail.example.com", 993, "implicit")
    assert t.identity == "alice@example.com@mail.example.com:993"
    s = parse_imap_url("imap://bob@[::1]:1143/")
    assert (s.host, s.port, s.tls, s.loopback) == ("::1", 1143, "starttls", True)
    assert s.identity == "bob@[::1]:1143"
    assert parse_imap_url("imap://u@localhost", insecure=True).insecure


@pytest.mark.parametrize("url, message", [
    ("https://u@host", "expected imaps://"),
    ("imaps://host", "needs the IMAP user"),
    ("imaps://u:secret@host", "do not put the password in the URL"),
    ("imaps://u@host/INBOX", "no path"),
    ("imaps://u@host:99999", "not a valid URL"),
])
def test_bad_urls(url: str, message: str) -> None:
    with pytest.raises(UsageError, match=message) as exc:
        parse_imap_url(url)
    assert "secret" not in str(exc.value)


def test_insecure_only_for_loopback() -> None:
    with pytest.raises(UsageError, match="loopback"):
        parse_imap_url("imaps://u@mail.example.com", insecure=True)
    assert parse_imap_url("imaps://u@127.0.0.2", insecure=True).insecure


def test_password_sources() -> None:
    assert imap_password("false", env={"AXSYNC_IMAP_PASSWORD": "from-env"}) == "from-env"
    assert imap_password("printf 's3cr3t\\nrest'", env={}) == "s3cr3t"
    with pytest.raises(AuthError, match="exited with status 1"):
        imap_password("false", env={})
    with pytest.raises(UsageError, match="AXSYNC_IMAP_PASSWORD"):
        imap_password(None, env={})


def test_as_of() -> None:
    assert parse_as_of("2026-11-21") == 1795305599  # 2026-11-21T23:59:59Z
    assert parse_as_of("2026-11-21T09:51:11+00:00") == 1795254671
    assert parse_as_of("2026-11-21T09:51:11Z") == 1795254671
    assert parse_as_of("2026-11-21T10:51:11+01:00") == 1795254671
    assert parse_as_of("2026-11-21T09:51:11") == 1795254671  # no offset: UTC
    with pytest.raises(UsageError, match="ISO 8601"):
        parse_as_of("21/11/2026")
