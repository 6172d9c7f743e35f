"""Pure retry decisions for the API client: which failures may be retried, how long to wait.

Nothing here does I/O; :mod:`axsync.api.transport` applies these rules. The reasoning behind
them is written out in ``docs/client.md`` ("Retries").

Two kinds of request exist:

* **idempotent** ones (every GET, and the PATCH/DELETE/POST calls that set an absolute state,
  see :data:`IDEMPOTENT_ROUTES`): repeating them can never do more than doing them once, so they
  are retried on 5xx, 429, connection errors, timeouts and incomplete bodies;
* **non-idempotent** ones (create, move, copy, batch, deletes that may escalate from Trash to a
  permanent delete): they are retried only when the server *provably did not process them* —
  an explicit 503 or 429 reply, or a failure to open the connection at all. Any failure after
  the request may have reached the server is reported, never repeated.
"""

from __future__ import annotations

import email.utils
import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import httpx

#: Status codes worth another attempt for an idempotent request.
RETRYABLE_STATUS = frozenset({429, 500, 502, 503, 504})
#: Status codes that prove the server refused the request *before* processing it, so even a
#: non-idempotent request may be sent again.
REFUSED_STATUS = frozenset({429, 503})

#: ``"METHOD /template"`` of the non-GET routes that set an absolute state and may be repeated.
IDEMPOTENT_ROUTES = frozenset(
    {
        "PATCH /api/v1/mails/{id}",  # isUnread / isFlagged to given values
        "PATCH /api/v1/folders/{id}",  # name := given name
        "PATCH /api/v1/labels/{id}",
        "PUT /api/v1/labels/{id}",
        "POST /api/v1/mails/{id}/labels",  # label present
        "DELETE /api/v1/mails/{id}/labels/{label}",  # label absent
        "DELETE /api/v1/labels/{id}",  # labels have no Trash: gone is gone
        "POST /api/v1/login",  # opens a fresh session; repeating it is harmless
    }
)


def is_idempotent(method: str, template: str) -> bool:
    """True if repeating ``method template`` cannot do more than sending it once."""
    if method in ("GET", "HEAD", "OPTIONS"):
        return True
    return f"{method} {template}" in IDEMPOTENT_ROUTES


def never_reached_server(exc: httpx.TransportError) -> bool:
    """True if ``exc`` proves the request was never sent (so any request may be retried).

    Only failures to *obtain* a connection qualify: DNS/TCP/TLS connect errors and timeouts,
    and waiting too long for a pooled connection. A read or protocol error, a write error or
    a read timeout may all happen after the server received (and applied) the request.
    """
    return isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout)


def is_permanent_transport_error(exc: httpx.TransportError) -> bool:
    """Failures that another attempt cannot fix: a bad URL scheme, a local protocol misuse,
    or a TLS certificate the client refuses."""
    if isinstance(exc, httpx.UnsupportedProtocol | httpx.LocalProtocolError):
        return True
    text = str(exc)
    return "CERTIFICATE_VERIFY_FAILED" in text or "WRONG_VERSION_NUMBER" in text


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait according to a ``Retry-After`` header value, or None if absent/invalid.

    Accepts both forms of RFC 9110 §10.2.3: delta-seconds (``"120"``; a fractional value is
    tolerated) and an HTTP-date (``"Wed, 21 Oct 2015 07:28:00 GMT"``). A date in the past
    means 0. Negative or non-finite numbers are invalid.
    """
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        if seconds != seconds or seconds in (float("inf"), float("-inf")) or seconds < 0:
            return None
        return seconds
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    current = now if now is not None else datetime.now(UTC)
    return max(0.0, (when - current).total_seconds())


@dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential backoff with full jitter (AWS architecture blog, "Exponential Backoff And
    Jitter"): attempt *n* (0-based) waits ``uniform(0, min(maximum, base * 2**n))``. A
    ``Retry-After`` from the server replaces the random delay, capped at ``maximum``."""

    base: float = 0.5
    maximum: float = 30.0

    def delay(
        self,
        attempt: int,
        retry_after: float | None = None,
        uniform: Callable[[float, float], float] = random.uniform,
    ) -> float:
        """Seconds to sleep before retry number ``attempt + 1``."""
        if retry_after is not None:
            return min(retry_after, self.maximum)
        ceiling = min(self.maximum, self.base * (2 ** min(attempt, 62)))
        return uniform(0.0, max(0.0, ceiling))
