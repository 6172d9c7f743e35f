"""Pure helpers of axsync.api: retry decisions, Retry-After, backoff, vsize digest, paging."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from axsync.api import paging
from axsync.api.download import SourceDigest, vsize_of
from axsync.api.retry import (
    Backoff,
    is_idempotent,
    is_permanent_transport_error,
    never_reached_server,
    parse_retry_after,
)
from axsync.api.transport import Route
from axsync.errors import ApiError

NOW = datetime(2025, 4, 11, 21, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        ("", None),
        ("  ", None),
        ("0", 0.0),
        ("7", 7.0),
        (" 2.5 ", 2.5),
        ("-1", None),
        ("nan", None),
        ("inf", None),
        ("soon", None),
        ("Fri, 11 Apr 2025 21:00:30 GMT", 30.0),
        ("Fri, 11 Apr 2025 20:59:00 GMT", 0.0),  # in the past
        ("Friday, 11-Apr-25 21:01:00 GMT", 60.0),  # RFC 850 form
    ],
)
def test_parse_retry_after(value: str | None, expected: float | None) -> None:
    assert parse_retry_after(value, now=NOW) == expected


def test_parse_retry_after_default_clock() -> None:
    later = (datetime.now(UTC) + timedelta(seconds=100)).strftime("%a, %d %b %Y %H:%M:%S GMT")
    seconds = parse_retry_after(later)
    assert seconds is not None and 90 < seconds <= 100


@settings(max_examples=200)
@given(st.integers(0, 80), st.floats(0.0001, 5), st.floats(0.001, 60), st.floats(0, 1))
def test_full_jitter_bounds(attempt: int, base: float, maximum: float, fraction: float) -> None:
    backoff = Backoff(base=base, maximum=maximum)
    ceiling = min(maximum, base * 2**attempt)
    delay = backoff.delay(attempt, None, lambda lo, hi: lo + (hi - lo) * fraction)
    assert 0 <= delay <= ceiling + 1e-9


def test_retry_after_replaces_jitter_and_is_capped() -> None:
    backoff = Backoff(base=0.5, maximum=30)
    assert backoff.delay(0, 12.0) == 12.0
    assert backoff.delay(0, 3600.0) == 30.0
    assert backoff.delay(0, 0.0) == 0.0


@pytest.mark.parametrize(
    ("method", "template", "expected"),
    [
        ("GET", "/api/v1/mails", True),
        ("GET", "/api/v1/mails/{id}/source", True),
        ("PATCH", "/api/v1/mails/{id}", True),
        ("PATCH", "/api/v1/folders/{id}", True),
        ("POST", "/api/v1/login", True),
        ("POST", "/api/v1/mails/{id}/labels", True),
        ("DELETE", "/api/v1/mails/{id}/labels/{label}", True),
        ("DELETE", "/api/v1/labels/{id}", True),
        ("DELETE", "/api/v1/mails/{id}", False),
        ("DELETE", "/api/v1/folders/{id}", False),
        ("POST", "/api/v1/mails/{id}/move", False),
        ("POST", "/api/v1/mails/{id}/copy", False),
        ("POST", "/api/v1/mails", False),
        ("POST", "/api/v1/folders/", False),
        ("POST", "/api/v1/labels", False),
        ("POST", "/api/v1/batch/mails/update", False),
    ],
)
def test_idempotency_table(method: str, template: str, expected: bool) -> None:
    assert is_idempotent(method, template) is expected


def test_transport_error_classes() -> None:
    request = httpx.Request("GET", "http://x/")
    assert never_reached_server(httpx.ConnectError("refused", request=request))
    assert never_reached_server(httpx.ConnectTimeout("slow", request=request))
    assert never_reached_server(httpx.PoolTimeout("busy", request=request))
    assert not never_reached_server(httpx.ReadError("reset", request=request))
    assert not never_reached_server(httpx.ReadTimeout("slow", request=request))
    assert not never_reached_server(httpx.RemoteProtocolError("cut", request=request))
    assert not never_reached_server(httpx.WriteError("pipe", request=request))
    assert is_permanent_transport_error(httpx.UnsupportedProtocol("ftp", request=request))
    assert is_permanent_transport_error(
        httpx.ConnectError(
            "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed", request=request
        )
    )
    assert not is_permanent_transport_error(httpx.ConnectError("refused", request=request))


def test_route_quotes_ids() -> None:
    route = Route("DELETE", "/api/v1/mails/{id}/labels/{label}")
    assert route.path("a/b c", "40_71") == "/api/v1/mails/a%2Fb%20c/labels/40_71"
    assert route.key == "DELETE /api/v1/mails/{id}/labels/{label}"


# ---------------------------------------------------------------------------- vsize digest


@settings(max_examples=300)
@given(
    st.lists(st.sampled_from([b"\r", b"\n", b"\r\n", b"a", b"\n\n", b"\r\r", b"xyz"]), max_size=40),
    st.lists(st.integers(0, 200), max_size=8),
)
def test_digest_matches_whole_body_for_any_chunking(parts: list[bytes], cuts: list[int]) -> None:
    body = b"".join(parts)
    points = sorted({min(c, len(body)) for c in cuts} | {0, len(body)})
    digest = SourceDigest()
    for lo, hi in zip(points, points[1:], strict=False):
        digest.update(body[lo:hi])
    digest.update(b"")
    result = digest.result()
    assert result.size == len(body)
    assert result.vsize == vsize_of(body)
    assert result.sha256 == hashlib.sha256(body).hexdigest()


def test_vsize_examples() -> None:
    assert vsize_of(b"a\nb\r\nc\n") == 9
    digest = SourceDigest()
    for chunk in (b"a\r", b"\nb\r", b"\r", b"\n"):
        digest.update(chunk)
    assert digest.size == digest.vsize == 7  # both LFs follow a CR, one across chunks


# ---------------------------------------------------------------------------- paging


class Listing:
    """A fake folder for page fetchers: clamps limit, can move its token after N pages."""

    def __init__(self, ids: list[str], clamp: int = 1000, total: int | None = None) -> None:
        self.ids = ids
        self.clamp = clamp
        self.total = total
        self.token = "t0"
        self.calls: list[tuple[int, int]] = []
        self.mutate_at: dict[int, list[str]] = {}

    def fetch(self, start: int, limit: int) -> tuple[str, int, list[str]]:
        self.calls.append((start, limit))
        if len(self.calls) in self.mutate_at:
            self.ids = self.mutate_at[len(self.calls)]
            self.token = f"t{len(self.calls)}"
        page = self.ids[start : start + min(limit, self.clamp)]
        return self.token, len(self.ids) if self.total is None else self.total, page


def test_clamp_safe_paging_advances_by_returned_count() -> None:
    listing = Listing([f"m{i}" for i in range(25)], clamp=7)
    token, items = paging.snapshot(listing.fetch, 500, str, what="f")
    assert token == "t0" and items == [f"m{i}" for i in range(25)]
    assert [c[0] for c in listing.calls] == [0, 7, 14, 21]
    assert all(limit == 500 for _, limit in listing.calls)


def test_empty_listing_is_one_request() -> None:
    listing = Listing([])
    assert paging.snapshot(listing.fetch, 50, str, what="f") == ("t0", [])
    assert len(listing.calls) == 1


def test_token_moving_mid_listing_restarts() -> None:
    listing = Listing([f"m{i}" for i in range(10)], clamp=3)
    # A mail is deleted while page 2 is served: the token moves; the re-run is consistent.
    listing.mutate_at[2] = [f"m{i}" for i in range(10) if i != 1]
    token, items = paging.snapshot(listing.fetch, 3, str, what="f")
    assert token == "t2" and items == [f"m{i}" for i in range(10) if i != 1]
    assert listing.calls[2] == (0, 3)  # restarted from the top right after the token moved


def test_dedupes_overlapping_pages() -> None:
    pages = {0: ["a", "b", "c"], 3: ["c", "d", "e"]}

    def fetch(start: int, limit: int) -> tuple[str, int, list[str]]:
        return "t", 5, pages.get(start, [])

    assert paging.snapshot(fetch, 3, str, what="f") == ("t", ["a", "b", "c", "d", "e"])


def test_short_listing_is_never_returned() -> None:
    listing = Listing(["a", "b"], total=5)
    with pytest.raises(ApiError, match="2 distinct items but the server reports 5"):
        paging.snapshot(listing.fetch, 10, str, what="folder X", attempts=3)
    assert listing.calls == [(0, 10), (2, 10)] * 3  # an empty page ends each pass


def test_longer_listing_than_total_is_fine() -> None:
    listing = Listing(["a", "b", "c"], total=2, clamp=3)
    assert paging.snapshot(listing.fetch, 3, str, what="f") == ("t0", ["a", "b", "c"])


def test_server_ignoring_start_does_not_loop_forever() -> None:
    calls = 0

    def fetch(start: int, limit: int) -> tuple[str, int, list[str]]:
        nonlocal calls
        calls += 1
        return "t", 10**18, ["a", "b"]

    with pytest.raises(ApiError, match="no consistent listing"):
        paging.snapshot(fetch, 2, str, what="f", attempts=2)
    assert calls == 4  # each pass stops at the first page that brings nothing new


def test_token_never_settles() -> None:
    counter = iter(range(10_000))

    def fetch(start: int, limit: int) -> tuple[str, int, list[str]]:
        return f"t{next(counter)}", 4, ["a", "b", "c", "d"][start : start + 2]

    with pytest.raises(ApiError, match="kept changing"):
        paging.snapshot(fetch, 2, str, what="f", attempts=4)
