"""HTTP plumbing shared by the fake's routes: the service state (sessions, counters, fault
draws, delayed batch jobs), authentication, strict parameter parsing and error replies.

Errors are sent as ``{"error": {"code": NAME, "message": text}}`` (WIRE.md; the real body is
undocumented). Query parameters and JSON fields an endpoint does not document are refused
with 400, as the Error Handling page says ("a parameter is ... not expected").
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
import random
import threading
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from starlette.datastructures import QueryParams
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from axsync.fake.knobs import Knobs
from axsync.fake.mailbox import Mailbox
from axsync.fake.state import FakeError, InvalidError, NotFoundError

log = logging.getLogger("axsync.fake")

DEFAULT_SORT = ("date", "DESC")


class Unauthorized(FakeError):
    status = 401
    code = "UNAUTHORIZED"


def error_response(status: int, code: str, message: str, headers: Mapping[str, str] | None = None) -> Response:
    return JSONResponse({"error": {"code": code, "message": message}}, status, headers=headers)


def route_missing_response() -> Response:
    return error_response(404, "NOT_FOUND", "Not Found")


def empty_response(status: int = 200) -> Response:
    return Response(b"", status)


@dataclass(slots=True)
class Session:
    sid: str
    auth: str
    requests: int = 0
    first_login: bool = False
    #: Last sort field and direction per listing kind ("mail", "conversation"): sticky.
    sorts: dict[str, tuple[str, str]] = field(default_factory=dict)

    def last_sort(self, kind: str) -> tuple[str, str]:
        return self.sorts.get(kind, DEFAULT_SORT)


def _spike_rng(seed: int) -> random.Random:
    """The generator of latency-spike draws for ``fault_seed`` ``seed``."""
    return random.Random(f"axsync-fake-spikes/{seed}")


class Service:
    """Everything the routes share besides the mailbox itself."""

    def __init__(self, mailbox: Mailbox, knobs: Knobs, user: str, password: str) -> None:
        self.mailbox = mailbox
        self.knobs = knobs
        self.user = user
        self.password = password
        self.sessions: dict[str, Session] = {}
        self.counters: dict[str, int] = {}
        self._logins = 0
        self._rng = random.Random(knobs.fault_seed)
        self._spike_rng = _spike_rng(knobs.fault_seed)
        self._rng_generation = knobs.seed_generation
        self._jobs: dict[str, threading.Timer] = {}
        self._job_count = 0
        self._created = 0
        self._lock = threading.Lock()

    def reset(self, mailbox: Mailbox) -> None:
        """Serve ``mailbox`` from now on, as if freshly started."""
        self.cancel_jobs()
        with self._lock:
            self.mailbox = mailbox
            self.sessions.clear()
            self.counters.clear()
            self._logins = self._created = 0
            self._rng = random.Random(self.knobs.fault_seed)
            self._spike_rng = _spike_rng(self.knobs.fault_seed)
            self._rng_generation = self.knobs.seed_generation

    # ------------------------------------------------------------------ counters and faults

    def count(self, key: str) -> None:
        with self._lock:
            self.counters[key] = self.counters.get(key, 0) + 1

    def total_requests(self) -> int:
        with self._lock:
            return sum(self.counters.values())

    def reset_counters(self) -> None:
        with self._lock:
            self.counters.clear()

    def draw_faults(self) -> tuple[bool, bool, float]:
        """(answer 503, drop the reply body, extra seconds of delay) for one request, from
        the seeded generators. Latency spikes come from their own generator (seeded from
        ``fault_seed`` too), so switching spikes on does not move the 503s and drops."""
        knobs = self.knobs
        with self._lock:
            if knobs.seed_generation != self._rng_generation:
                self._rng = random.Random(knobs.fault_seed)
                self._spike_rng = _spike_rng(knobs.fault_seed)
                self._rng_generation = knobs.seed_generation
            fail = knobs.fail_rate > 0 and self._rng.random() < knobs.fail_rate
            drop = knobs.drop_rate > 0 and self._rng.random() < knobs.drop_rate
            spike = knobs.spike_rate > 0 and self._spike_rng.random() < knobs.spike_rate
        return fail, drop, knobs.spike_latency if spike else 0.0

    # ------------------------------------------------------------------ auth

    def credentials_ok(self, header: str | None) -> bool:
        if not header or not header.startswith("Basic "):
            return False
        value = header[len("Basic ") :].strip()
        if ":" not in value:  # the standard form; the docs also show the literal user:pass
            try:
                value = base64.b64decode(value, validate=True).decode()
            except (binascii.Error, UnicodeDecodeError):
                return False
        user, _, password = value.partition(":")
        return user == self.user and password == self.password

    def login(self, header: str) -> Session:
        with self._lock:
            self._logins += 1
            sid = hashlib.sha256(f"{self.user}\0{self._logins}".encode()).hexdigest()[:32]
            session = Session(sid, header, first_login=self._logins == 1)
            self.sessions[sid] = session
            return session

    def authenticate(self, request: Request, mode: str) -> Session | None:
        """``mode``: "none", "basic" (Authorization only), "session" (both headers)."""
        if mode == "none":
            return None
        header = request.headers.get("authorization")
        if mode == "basic":
            if not self.credentials_ok(header):
                raise Unauthorized("authentication required")
            return None
        sid = request.headers.get("x-axigen-session", "")
        with self._lock:
            session = self.sessions.get(sid)
            if session is None or not header or session.auth != header:
                raise Unauthorized("a valid session and the login's Authorization are required")
            session.requests += 1
            limit = self.knobs.session_max_requests
            if limit is not None and session.requests > limit:
                del self.sessions[sid]
                raise Unauthorized("session expired")
            return session

    # ------------------------------------------------------------------ delayed jobs

    def schedule(self, delay: float, work: Callable[[], None]) -> str:
        with self._lock:
            self._job_count += 1
            key = f"job-{self._job_count}"

        def run() -> None:
            try:
                work()
            except Exception:  # a background job has nobody to report to
                log.exception("fake batch job %s failed", key)
            finally:
                with self._lock:
                    self._jobs.pop(key, None)

        timer = threading.Timer(delay, run)
        timer.daemon = True
        with self._lock:
            self._jobs[key] = timer
        timer.start()
        return key

    def pending_jobs(self) -> int:
        with self._lock:
            return len(self._jobs)

    def cancel_jobs(self) -> None:
        with self._lock:
            timers, self._jobs = list(self._jobs.values()), {}
        for timer in timers:
            timer.cancel()

    def next_created(self) -> int:
        with self._lock:
            self._created += 1
            return self._created


# ---------------------------------------------------------------------------- parameters


def _parse_bool(name: str, value: str) -> bool:
    lowered = value.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    raise InvalidError(f"{name} must be true or false")


def _parse_int(name: str, value: str, minimum: int) -> int:
    try:
        number = int(value)
    except ValueError:
        raise InvalidError(f"{name} must be an integer") from None
    if number < minimum:
        raise InvalidError(f"{name} must be at least {minimum}")
    return number


class Call:
    """One request, parsed: the handler's view of it."""

    def __init__(
        self,
        service: Service,
        session: Session | None,
        path: Mapping[str, str],
        query: QueryParams,
        body: dict[str, Any],
    ) -> None:
        self.service = service
        self.mailbox = service.mailbox
        self.knobs = service.knobs
        self.session = session
        self.path = path
        self.query = query
        self.body = body

    # query ---------------------------------------------------------------

    def q(self, name: str, *, required: bool = False) -> str | None:
        value = self.query.get(name)
        if value is None or value == "":
            if required:
                raise InvalidError(f"{name} is required")
            return None
        return value

    def q_bool(self, name: str, default: bool = False) -> bool:
        value = self.q(name)
        return default if value is None else _parse_bool(name, value)

    def q_int(self, name: str, default: int | None, minimum: int = 0) -> int | None:
        value = self.q(name)
        return default if value is None else _parse_int(name, value, minimum)

    def q_list(self, name: str) -> list[str]:
        """A repeated and/or comma-separated query parameter."""
        return [v for raw in self.query.getlist(name) for v in raw.split(",") if v]

    def paging(self) -> tuple[int, int]:
        start = self.q_int("start", 0) or 0
        limit = self.q_int("limit", self.knobs.default_page_size, minimum=1)
        assert limit is not None
        return start, min(limit, self.knobs.max_page_size)

    def sort(self, kind: str, fields: Iterable[str]) -> tuple[str, str]:
        """``sort``/``dir``; missing ones are the session's last values (sticky)."""
        session = self.session
        last = session.last_sort(kind) if session and self.knobs.sticky_sort else DEFAULT_SORT
        name = self.q("sort") or last[0]
        direction = self.q("dir") or last[1]
        if name not in fields:
            raise InvalidError(f"invalid sort field {name!r}")
        if direction not in ("ASC", "DESC"):
            raise InvalidError("dir must be ASC or DESC")
        if session is not None:
            session.sorts[kind] = (name, direction)
        return name, direction

    # ids named in a query or a body: unknown ones are a bad parameter (400) -----

    def folder_arg(self, value: str | None, name: str, *, container_ok: bool = False) -> str:
        if value is None:
            raise InvalidError(f"{name} is required")
        if container_ok and value == self.mailbox.container_id:
            return value
        try:
            self.mailbox.folder_path(value)
        except NotFoundError:
            raise InvalidError(f"unknown {name} {value!r}") from None
        return value

    def label_arg(self, value: str | None, name: str = "labelId") -> str:
        if value is None:
            raise InvalidError(f"{name} is required")
        if all(label_id != value for label_id, _ in self.mailbox.labels()):
            raise InvalidError(f"unknown {name} {value!r}")
        return value

    def require_conversations(self) -> None:
        if not self.knobs.conversations_enabled:
            raise InvalidError("the conversation index is unavailable for this account")

    # body ----------------------------------------------------------------

    def field(self, name: str, kind: type, *, required: bool = False) -> Any:
        value = self.body.get(name)
        if value is None:
            if required:
                raise InvalidError(f"{name} is required")
            return None
        if kind is int and isinstance(value, bool) or not isinstance(value, kind):
            raise InvalidError(f"{name} must be of type {kind.__name__}")
        return value

    def field_str(self, name: str, *, required: bool = False) -> str | None:
        value: str | None = self.field(name, str, required=required)
        if required and not value:
            raise InvalidError(f"{name} is required")
        return value

    def field_bool(self, name: str) -> bool | None:
        value: bool | None = self.field(name, bool)
        return value


Handler = Callable[[Call], Response]
Endpoint = Callable[[Request], Awaitable[Response]]


async def _read_body(request: Request, fields: frozenset[str]) -> dict[str, Any]:
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise InvalidError("the request body is not valid JSON") from None
    if not isinstance(data, dict):
        raise InvalidError("the request body must be a JSON object")
    unknown = sorted(set(data) - fields)
    if unknown:
        raise InvalidError(f"unexpected field(s): {', '.join(unknown)}")
    return data


def endpoint(
    *,
    query: Iterable[str] = (),
    fields: Iterable[str] | None = None,
    auth: str = "session",
    since: tuple[int, ...] | None = None,
) -> Callable[[Handler], Endpoint]:
    """Wrap a handler: version gate, authentication, strict parameters, error replies.

    ``fields`` None means the endpoint takes no body; ``since`` the first server version
    that has the endpoint (older ones answer like an unknown path).
    """
    allowed = frozenset(query)
    body_fields = frozenset(fields) if fields is not None else None

    def wrap(handler: Handler) -> Endpoint:
        async def run(request: Request) -> Response:
            service: Service = request.app.state.service
            if since is not None and not service.knobs.has_version(since):
                return route_missing_response()
            try:
                session = service.authenticate(request, auth)
                unknown = sorted(set(request.query_params) - allowed)
                if unknown:
                    raise InvalidError(f"unexpected parameter(s): {', '.join(unknown)}")
                body: dict[str, Any] = {}
                if body_fields is not None:
                    body = await _read_body(request, body_fields)
                call = Call(service, session, request.path_params, request.query_params, body)
                return handler(call)
            except FakeError as exc:
                return error_response(exc.status, exc.code, exc.message)

        run.__name__ = handler.__name__
        return run

    return wrap
