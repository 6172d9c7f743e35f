"""HTTP plumbing of the API client: an ``httpx.Client`` per thread, the Axigen session, retries,
request counting, and the translation of every foreign failure into :mod:`axsync.errors`.

:class:`Http` is thread-safe: the sync engine downloads from a worker pool while the main
thread lists and updates. All state shared between threads (session id, counters) is
guarded by locks; each thread sends through its own ``httpx.Client``.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import os
import random
import ssl
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar
from urllib.parse import quote

import httpx

from axsync import __version__
from axsync.api import jsonread, wire
from axsync.api.lean import LeanTransport
from axsync.api.retry import (
    REFUSED_STATUS,
    RETRYABLE_STATUS,
    Backoff,
    is_idempotent,
    is_permanent_transport_error,
    never_reached_server,
    parse_retry_after,
)
from axsync.errors import (
    ApiError,
    AuthError,
    BadRequest,
    ConfigError,
    Forbidden,
    HttpStatusError,
    MalformedReply,
    NotFound,
    ServerError,
    ServerUnreachable,
)

log = logging.getLogger("axsync.api")

T = TypeVar("T")
Params = Mapping[str, str | int | Sequence[str]]

LOGIN = "/api/v1/login"
_ERROR_BODY_LIMIT = 64 * 1024
USER_AGENT = f"axsync/{__version__}"
#: Connections of one thread's client: one in use, one spare for a call made meanwhile.
_PER_THREAD = 2
#: Re-logins one request may do after 401s on sessions that never served anything.
_MAX_UNPROVEN_ROUNDS = 3
#: Hard cap on re-logins of one request, whatever the reason (termination guarantee).
_MAX_AUTH_ROUNDS = 100


@dataclass(slots=True)
class _Session:
    """An Axigen session: its id, the login that opened it, how many requests were sent with
    it and how many it answered with a 2xx. A 401 on a session that served requests, or
    that other requests used as well, is taken for expiry; a 401 on a session that only
    the refused request ever used is a refusal."""

    sid: str
    generation: int
    sent: int = 0
    served: int = 0

    @property
    def unproven(self) -> bool:
        return self.served == 0 and self.sent <= 1


@dataclass(frozen=True, slots=True)
class Route:
    """An endpoint: ``method`` plus a path template such as ``/api/v1/mails/{id}``."""

    method: str
    template: str
    accept: str = "application/json"

    @property
    def key(self) -> str:
        """``"METHOD /template"``: the key of ``request_counts`` and of error messages."""
        return f"{self.method} {self.template}"

    def path(self, *ids: str) -> str:
        """The template with each ``{...}`` placeholder replaced, in order, by a URL-quoted id."""
        out = self.template
        for value in ids:
            head, _, tail = out.partition("{")
            _, _, rest = tail.partition("}")
            out = head + quote(value, safe="") + rest
        return out


@dataclass(slots=True)
class _Attempt:
    """The state of one logical request across its attempts."""

    route: Route
    path: str
    params: Params | None
    json: object
    safe: bool = True  # idempotent: may be repeated after an ambiguous failure
    retries: int = 0
    ambiguous: bool = False  # an earlier attempt may have been applied by the server
    refusals: int = 0  # 401s so far
    unproven: int = 0  # 401s on sessions nobody else used
    own: _Session | None = None  # the session this very call opened, if any


@dataclass(frozen=True, slots=True)
class _Again:
    """Send the request again after ``delay`` seconds (``reason`` is logged)."""

    delay: float
    reason: str


_RELOGIN = _Again(0.0, "HTTP 401")


class RetryableBody(Exception):
    """Raised by a response handler when a 2xx body arrived damaged in a way a new attempt may
    fix (shorter than its Content-Length). ``final`` is raised once the retries are spent."""

    def __init__(self, final: ApiError) -> None:
        super().__init__(str(final))
        self.final = final


def status_error(
    route: Route, status: int, body: bytes, attempts: int, location: str | None = None
) -> HttpStatusError:
    """The exception for a non-2xx reply that will not be retried. A redirect names its
    target (a server redirecting http to https, or to a login page, is a setup problem)."""
    reason = jsonread.error_text(body)
    text = body[:2000].decode("utf-8", errors="replace")
    message = f"{route.key}: HTTP {status}" + (f": {reason}" if reason else "")
    if location and 300 <= status < 400:
        message += f" (redirected to {location}; check the server URL)"
    if attempts > 1:
        message += f" (after {attempts} attempts)"
    cls: type[HttpStatusError]
    if status == 400:
        cls = BadRequest
    elif status == 403:
        cls = Forbidden
    elif status == 404:
        cls = NotFound
    elif status == 429 or status >= 500:
        cls = ServerError
    else:
        cls = HttpStatusError
    return cls(message, status=status, body=text, endpoint=route.key, attempts=attempts)


def _proxied(base_url: str) -> bool:
    """True if the environment (``HTTPS_PROXY``, ``ALL_PROXY``…) sends ``base_url`` through a
    proxy, as httpx would."""
    parts = urllib.parse.urlsplit(base_url)
    proxies = urllib.request.getproxies_environment()
    if not (proxies.get(parts.scheme) or proxies.get("all")):
        return False
    bypass = urllib.request.proxy_bypass_environment  # type: ignore[attr-defined]
    return not bypass(parts.hostname or "", proxies)


def _ssl_context(verify: bool | str) -> ssl.SSLContext:
    """The TLS context ``verify`` asks for: True, the CAs httpx trusts; a path, that CA
    file or directory instead; False, no verification (tests, a lab server)."""
    if verify is False:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    if isinstance(verify, bool):
        return httpx.create_ssl_context(verify)
    if os.path.isdir(verify):
        return httpx.create_ssl_context(ssl.create_default_context(capath=verify))
    return httpx.create_ssl_context(ssl.create_default_context(cafile=verify))


class Http:
    """Sends requests with Basic auth + ``X-Axigen-Session``, logging in lazily and again on
    a 401, retrying per :mod:`axsync.api.retry`, counting every request sent."""

    def __init__(
        self,
        base_url: str,
        username: str,
        password: str,
        *,
        timeout: float,
        verify: bool | str,
        max_retries: int,
        backoff: Backoff,
        transport: httpx.BaseTransport | None,
    ) -> None:
        # One httpx.Client per thread (see :attr:`client`): a pool shared by the download
        # threads serialised them on its lock, and every request polled every idle
        # connection under that lock (a 10k pull spent more time there than downloading).
        try:
            # Our lean transport (axsync.api.lean) unless the caller brings one, or the
            # environment asks for a proxy (httpx's own transport handles proxies).
            url = httpx.URL(base_url.rstrip("/"))
            self.lean = (transport is None and url.scheme in ("http", "https")
                          and not _proxied(base_url))
            # Loading the CA certificates takes ~30 ms, a large part of a run with nothing
            # to do: plain http on our own transport never needs them.
            ssl_context = (None if self.lean and url.scheme == "http"
                           else _ssl_context(verify))
            self.ssl_context = ssl_context
            self.origin = (url.scheme, url.raw_host.decode("ascii"),  # IDNA, as on the wire
                            url.port or (443 if url.scheme == "https" else 80))
            self.prefix = url.raw_path.decode("ascii").rstrip("/")
            self.timeouts = (timeout, timeout, timeout)
            self._client_options: dict[str, object] = {
                "base_url": base_url.rstrip("/"),
                "timeout": httpx.Timeout(timeout),
                "verify": True if ssl_context is None else ssl_context,  # None: no https here
                "transport": transport,
                "follow_redirects": False,
                "headers": {"User-Agent": USER_AGENT},
                "limits": httpx.Limits(max_connections=_PER_THREAD, max_keepalive_connections=_PER_THREAD),
            }
            self._clients: dict[int, tuple[threading.Thread, httpx.Client]] = {}
            self._clients_lock = threading.Lock()
            self._thread_client = threading.local()
            # the caller's own client, built now so that bad options fail here
            self._accept_encoding = self.client.headers.get("Accept-Encoding", "identity")
        except (OSError, ssl.SSLError, ValueError, httpx.InvalidURL) as exc:
            raise ConfigError(
                f"cannot set up the HTTP client: {exc}", problems=[f"server URL / CA bundle: {exc}"]
            ) from exc
        token = base64.b64encode(f"{username}:{password}".encode()).decode("ascii")
        self.authorization = f"Basic {token}"
        self.max_retries = max(0, max_retries)
        self.backoff = backoff
        self.sleep: Callable[[float], None] = time.sleep
        self.uniform: Callable[[float, float], float] = random.uniform
        self.requests = 0
        self.request_counts: dict[str, int] = {}
        self._count_lock = threading.Lock()
        self._login_lock = threading.Lock()
        self._session: _Session | None = None
        self._generation = 0  # bumped by every successful login

    # ------------------------------------------------------------------ session

    @property
    def client(self) -> httpx.Client:
        """The calling thread's own ``httpx.Client`` (at most two connections), made on first
        use; clients of threads that ended are closed then."""
        return self._mine()[0]

    def _lean_transport(self) -> LeanTransport:
        """The calling thread's lean transport (the one under its :attr:`client`)."""
        lean = self._mine()[1]
        assert lean is not None, "only in lean mode"
        return lean

    def _mine(self) -> tuple[httpx.Client, LeanTransport | None]:
        mine: tuple[httpx.Client, LeanTransport | None] | None = getattr(
            self._thread_client, "mine", None)
        if mine is not None and not mine[0].is_closed:
            return mine
        options = dict(self._client_options)
        lean = LeanTransport(self.ssl_context) if self.lean else None
        if lean is not None:
            options["transport"] = lean
        client = httpx.Client(**options)  # type: ignore[arg-type]
        me = threading.current_thread()
        with self._clients_lock:
            gone = [key for key, (thread, _c) in self._clients.items() if not thread.is_alive()]
            stale = [self._clients.pop(key)[1] for key in gone]
            self._clients[id(me)] = (me, client)
        for old in stale:
            old.close()
        self._thread_client.mine = mine = (client, lean)
        return mine

    def close(self) -> None:
        """Close every thread's client (their connections)."""
        with self._clients_lock:
            clients = [c for _t, c in self._clients.values()]
            self._clients.clear()
        for one in clients:
            one.close()

    def counts(self) -> tuple[int, dict[str, int]]:
        """``(requests, request_counts)``: a consistent copy."""
        with self._count_lock:
            return self.requests, dict(self.request_counts)

    def _count(self, route: Route) -> None:
        with self._count_lock:
            self.requests += 1
            self.request_counts[route.key] = self.request_counts.get(route.key, 0) + 1

    def _mark(self, session: _Session | None, *, served: bool) -> None:
        if session is not None:
            with self._count_lock:
                if served:
                    session.served += 1
                else:
                    session.sent += 1

    def login(self) -> None:
        """Open a new session now (``POST /api/v1/login``). AuthError on 401."""
        with self._login_lock:
            self._login_locked()

    def _login_locked(self) -> None:
        route = Route("POST", LOGIN)
        try:
            data = self.call(route, session=False, handle=read_json(route))
        except AuthError as exc:
            raise AuthError(
                "login refused (HTTP 401): wrong username or password, or the account may not "
                "use the Mailbox API",
                endpoint=route.key,
            ) from exc
        sid = wire.parse_sessid(data, route.key)
        self._generation += 1
        self._session = _Session(sid, self._generation)
        log.debug("logged in (session generation %d)", self._generation)

    def _current_session(self) -> _Session:
        """The current session, logging in first if none was opened yet."""
        current = self._session
        if current is not None:
            return current
        with self._login_lock:
            if self._session is None:
                self._login_locked()
            assert self._session is not None
            return self._session

    def _after_401(
        self, route: Route, used: _Session, own: _Session | None, rounds: tuple[int, int]
    ) -> _Session | None:
        """React to a 401 on ``used``: log in again, unless another thread already did since
        ``used`` was opened (then that session is reused: many workers seeing their session
        expire together cause one login). Returns the session this call opened, if any.

        ``rounds`` = (401s so far, 401s on unproven sessions). AuthError when ``used`` was
        opened by this very call and nothing but this request ever used it (a fresh session
        refused at once: the "second 401"), after more than 3 refusals of unproven sessions,
        or after 100 rounds in all. A session that served requests or that other workers
        used as well and then answers 401 has merely expired (servers may cap requests per
        session; under concurrency other workers may use a new session up before this
        request's retry reaches it).
        """
        total, unproven = rounds
        fresh_refusal = used is own and used.unproven
        if fresh_refusal or unproven > _MAX_UNPROVEN_ROUNDS or total > _MAX_AUTH_ROUNDS:
            raise AuthError(
                f"{route.key}: HTTP 401 again after logging in again ({total} refusals)",
                endpoint=route.key,
                status=401,
            )
        with self._login_lock:
            if self._generation != used.generation:
                return own
            self._login_locked()
            return self._session

    # ------------------------------------------------------------------ requests

    def call(
        self,
        route: Route,
        *ids: str,
        handle: Callable[[httpx.Response], T],
        params: Params | None = None,
        json: object = None,
        session: bool = True,
        idempotent: bool | None = None,
    ) -> T:
        """Send ``route`` (path ids in order) and return ``handle(response)`` for a 2xx reply.

        ``handle`` receives a streaming response and must consume the body; it may raise
        :class:`RetryableBody`. ``idempotent`` defaults to :func:`retry.is_idempotent`.

        Raises: AuthError (401 after one re-login), HttpStatusError subclasses (non-2xx,
        after retries where allowed), ServerUnreachable (connection failures), MalformedReply
        (undecodable body), ConfigError (invalid URL), or whatever ``handle`` raises.
        """
        safe = is_idempotent(route.method, route.template) if idempotent is None else idempotent
        attempt = _Attempt(route, route.path(*ids), params, json, safe)
        while True:
            used = self.begin(attempt, session)
            outcome = self._send(attempt, handle, used)
            if not isinstance(outcome, _Again):
                return outcome
            delay = self.wait_after(attempt, outcome, used)
            if delay is not None:
                self.sleep(delay)

    # The steps of one logical request, shared with the asyncio downloads (axsync.api.aio).

    def begin(self, attempt: _Attempt, session: bool = True) -> _Session | None:
        """Before each attempt: the session to send with (logging in if none is open yet),
        the request counted."""
        used = self._current_session() if session else None
        self._count(attempt.route)
        self._mark(used, served=False)
        return used

    def wait_after(self, attempt: _Attempt, outcome: _Again, used: _Session | None) -> float | None:
        """After a failed attempt: log in again after a 401 (None: send again at once), or
        count the retry and return the seconds to wait. AuthError per :meth:`_after_401`."""
        route = attempt.route
        if outcome is _RELOGIN:  # outside the reply's block: its connection is free
            if used is None:
                raise AuthError(f"{route.key}: HTTP 401", endpoint=route.key, status=401)
            attempt.refusals += 1
            attempt.unproven += used.unproven
            attempt.own = self._after_401(route, used, attempt.own,
                                          (attempt.refusals, attempt.unproven))
            return None
        attempt.retries += 1
        log.info("%s: %s; retry %d/%d in %.2fs", route.key, outcome.reason, attempt.retries,
                 self.max_retries, outcome.delay)
        return outcome.delay

    def failed(self, attempt: _Attempt,
               exc: RetryableBody | httpx.TransportError | httpx.DecodingError) -> _Again:
        """What to do after an attempt failed with ``exc``: when to try again, or raise
        (not idempotent, retries spent, a permanent failure)."""
        route, retries = attempt.route, attempt.retries
        if isinstance(exc, httpx.TransportError):
            delay = self._transport_failure(route, exc, attempt.safe, retries)
            attempt.ambiguous = attempt.ambiguous or not never_reached_server(exc)
            return _Again(delay, f"{exc.__class__.__name__}: {exc}")
        if not attempt.safe or retries >= self.max_retries:
            if isinstance(exc, RetryableBody):
                raise exc.final from exc.__cause__
            raise MalformedReply(
                f"{route.key}: reply body cannot be decoded: {exc}", endpoint=route.key
            ) from exc
        reason = str(exc) if isinstance(exc, RetryableBody) else f"undecodable: {exc}"
        return _Again(self.backoff.delay(retries, None, self.uniform), reason)

    def _send(
        self, attempt: _Attempt, handle: Callable[[httpx.Response], T], used: _Session | None
    ) -> T | _Again:
        """One attempt: the handler's result, or what to do next (:class:`_Again`)."""
        route = attempt.route
        headers = {"Authorization": self.authorization, "Accept": route.accept}
        if used is not None:
            headers["X-Axigen-Session"] = used.sid
        try:
            with self._open(attempt, headers) as resp:
                if 200 <= resp.status_code < 300:
                    self._mark(used, served=True)
                    return handle(resp)
                return self._refused(attempt, resp)
        except (RetryableBody, httpx.TransportError, httpx.DecodingError) as exc:
            return self.failed(attempt, exc)
        except httpx.InvalidURL as exc:
            raise ConfigError(
                f"{route.key}: invalid URL: {exc}", problems=[f"server URL: {exc}"]
            ) from exc

    @contextlib.contextmanager
    def _open(self, attempt: _Attempt, headers: dict[str, str]) -> Iterator[httpx.Response]:
        """Send one attempt; the reply (body not read yet) is closed on leaving."""
        if not self.lean:
            with self.client.stream(attempt.route.method, attempt.path, params=attempt.params,
                                    json=attempt.json, headers=headers) as resp:
                yield resp
            return
        target = self.prefix + attempt.path
        if attempt.params:
            target += "?" + str(httpx.QueryParams(attempt.params))
        fields = [("Accept-Encoding", self._accept_encoding), ("Connection", "keep-alive"),
                  ("User-Agent", USER_AGENT), *headers.items()]
        body: bytes | None = None
        if attempt.json is not None:  # encoded as httpx does
            body = json.dumps(attempt.json, ensure_ascii=False, separators=(",", ":"),
                              allow_nan=False).encode("utf-8")
            fields.append(("Content-Type", "application/json"))
        resp = self._lean_transport().send(attempt.route.method, self.origin, target, fields, body,
                              self.timeouts)
        try:
            yield resp
        finally:
            resp.close()

    def _refused(self, attempt: _Attempt, resp: httpx.Response) -> _Again:
        """A non-2xx reply: re-login (401), wait and retry, or raise the status error."""
        status = resp.status_code
        body = _read_capped(resp)
        if status == 401:
            return _RELOGIN
        allowed = RETRYABLE_STATUS if attempt.safe else REFUSED_STATUS
        if status not in allowed or attempt.retries >= self.max_retries:
            location = resp.headers.get("Location")
            err = status_error(attempt.route, status, body, attempt.retries + 1, location)
            err.details["after_ambiguous_failure"] = attempt.ambiguous
            raise err
        hint = parse_retry_after(resp.headers.get("Retry-After"))
        return _Again(self.backoff.delay(attempt.retries, hint, self.uniform), f"HTTP {status}")

    def _transport_failure(
        self, route: Route, exc: httpx.TransportError, safe: bool, retries: int
    ) -> float:
        """Delay before the next attempt after ``exc``, or raise ServerUnreachable."""
        name = f"{exc.__class__.__name__}: {exc}" if str(exc) else exc.__class__.__name__
        if is_permanent_transport_error(exc):
            raise ServerUnreachable(f"{route.key}: {name}", endpoint=route.key) from exc
        if not safe and not never_reached_server(exc):
            raise ServerUnreachable(
                f"{route.key}: the connection failed after the request may have reached the "
                f"server ({name}); it was NOT retried because it is not idempotent - check the "
                "mailbox state before repeating it",
                endpoint=route.key,
                maybe_applied=True,
            ) from exc
        if retries >= self.max_retries:
            tries = f" (after {retries + 1} attempts)" if retries else ""
            raise ServerUnreachable(f"{route.key}: {name}{tries}", endpoint=route.key) from exc
        return self.backoff.delay(retries, None, self.uniform)


def _read_capped(resp: httpx.Response) -> bytes:
    """Up to 64 KiB of an error body; a body cut off mid-way is fine for an error."""
    out = bytearray()
    try:
        for chunk in resp.iter_bytes():
            out += chunk
            if len(out) >= _ERROR_BODY_LIMIT:
                break
    except (httpx.TransportError, httpx.DecodingError):
        pass
    return bytes(out[:_ERROR_BODY_LIMIT])


def read_json(route: Route) -> Callable[[httpx.Response], object]:
    """A handler returning the decoded JSON body (MalformedReply if it is not JSON)."""

    def handle(resp: httpx.Response) -> object:
        return jsonread.decode_json(resp.read(), route.key)

    return handle


def read_optional_json(route: Route) -> Callable[[httpx.Response], object]:
    """Like :func:`read_json`, but an empty body (or only whitespace) gives None."""

    def handle(resp: httpx.Response) -> object:
        body = resp.read()
        return jsonread.decode_json(body, route.key) if body.strip() else None

    return handle


def discard(resp: httpx.Response) -> None:
    """A handler for replies documented as empty: the body, if any, is read and ignored."""
    for _ in resp.iter_raw():
        pass
