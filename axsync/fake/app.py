"""The starlette app of the fake Axigen Mailbox API.

Routes live in ``routes_account``, ``routes_mails``, ``routes_conversations`` and ``batch``;
this module assembles them and adds :class:`FaultLayer`, which sees every request first:
it counts it (per route template), adds latency and seeded latency spikes, answers 503 +
Retry-After, or cuts the
reply body short and lets the server close the connection.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Sequence

from starlette._utils import get_route_path
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Match, Route, Router
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from axsync.fake import batch, routes_account, routes_conversations, routes_mails
from axsync.fake.web import Service, error_response, route_missing_response

INCOMPLETE_RESPONSE_LOG = "ASGI callable returned without completing response."


class QuietDrops(logging.Filter):
    """Hides uvicorn's complaint about the replies FaultLayer cuts short on purpose."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.getMessage() != INCOMPLETE_RESPONSE_LOG


def retry_after_header(seconds: float) -> str:
    """Retry-After is whole seconds (RFC 9110 delay-seconds)."""
    return str(max(0, math.ceil(seconds)))


class _Cut:
    """A ``send`` that delivers the headers and half of the first body chunk, then nothing:
    the client has a Content-Length it will never get, and the server closes the socket."""

    def __init__(self, send: Send) -> None:
        self._send = send
        self._cut = False

    async def __call__(self, message: Message) -> None:
        if self._cut:
            return
        body = message.get("body", b"") if message["type"] == "http.response.body" else b""
        if body:
            self._cut = True
            await self._send(
                {"type": "http.response.body", "body": body[: len(body) // 2], "more_body": True}
            )
            return
        await self._send(message)


_FOUND = "axsync.route"  # scope key: FaultLayer's routing decision, for _Router


class RouteTable:
    """The routes, looked up by path shape: only those with as many path segments as the
    request, and the same literal ones, are tried (in order, with starlette's own
    ``Route.matches``). A source download was tried against 31 routes before it matched,
    twice (to count it, then to route it): 40 % of the fake's CPU in a benchmark, which
    stands in for a C++ server. Routes of other kinds (mounts, path convertors) turn the
    shortcut off: every route is tried, as starlette does."""

    def __init__(self, routes: Sequence[BaseRoute]) -> None:
        self.routes = list(routes)
        shapes: dict[int, list[tuple[tuple[str | None, ...], BaseRoute]]] | None = {}
        for route in self.routes:
            shape = _shape(route)
            if shape is None or shapes is None:
                shapes = None
                continue
            shapes.setdefault(len(shape), []).append((shape, route))
        self._shapes = shapes
        # Per segment count, the literals each position has in some route: a request's
        # segments reduce to a key (a segment that is no such literal -> None, e.g. an id)
        # that decides the candidates, which are worked out once per key.
        self._literals = {n: [frozenset(shape[i] for shape, _ in bucket if shape[i] is not None)
                              for i in range(n)]
                          for n, bucket in (shapes or {}).items()}
        self._by_key: dict[tuple[str | None, ...], list[BaseRoute]] = {}

    def candidates(self, scope: Scope) -> Sequence[BaseRoute]:
        if self._shapes is None:
            return self.routes
        parts = get_route_path(scope).split("/")
        literals = self._literals.get(len(parts))
        if literals is None:
            return []
        key = tuple(p if p in lits else None for p, lits in zip(parts, literals, strict=True))
        found = self._by_key.get(key)
        if found is None:
            found = self._by_key[key] = [
                route for shape, route in self._shapes[len(parts)]
                if all(s is None or s == k for s, k in zip(shape, key, strict=True))]
        return found

    def match(self, scope: Scope) -> tuple[BaseRoute, Scope] | None:
        """The route starlette's router would pick (the first full match, else the first
        partial one: a 405) and its child scope, or None (a 404)."""
        partial = None
        for route in self.candidates(scope):
            match, child = route.matches(scope)
            if match is Match.FULL:
                return route, child
            if match is Match.PARTIAL and partial is None:
                partial = (route, child)
        return partial


def _shape(route: BaseRoute) -> tuple[str | None, ...] | None:
    """A route's path segments, None for a ``{param}`` one (starlette's default convertor
    matches one non-empty segment); None if the route is not of that simple kind."""
    if type(route) is not Route:
        return None
    shape: list[str | None] = []
    for part in route.path.split("/"):
        if "{" not in part and "}" not in part:
            shape.append(part)
        elif part.startswith("{") and part.endswith("}") and part.count("{") == 1 \
                and part.count("}") == 1 and ":" not in part:
            shape.append(None)
        else:
            return None
    return tuple(shape)


class _Router(Router):
    """Starlette's router, taking the route FaultLayer already found."""

    async def app(self, scope: Scope, receive: Receive, send: Send) -> None:
        found = scope.pop(_FOUND, None)
        if found is None:  # not looked up (or nothing matched: the 404 path)
            await super().app(scope, receive, send)
            return
        route, child = found
        if "router" not in scope:
            scope["router"] = self
        scope["route"] = route
        scope.update(child)
        await route.handle(scope, receive, send)


class FaultLayer:
    def __init__(self, app: ASGIApp, service: Service, table: RouteTable) -> None:
        self.app = app
        self.service = service
        self.table = table

    def route_key(self, scope: Scope) -> str:
        """``"METHOD /route/template"``, the way the router will pick the route; the route
        is left in the scope for the router."""
        found = self.table.match(scope)
        scope[_FOUND] = found
        path = found[0].path if found is not None and isinstance(found[0], Route) else None
        return f"{scope['method']} {path or '<unmatched>'}"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        service = self.service
        knobs = service.knobs
        service.count(self.route_key(scope))
        fail, drop, spike = service.draw_faults()
        if knobs.latency > 0 or spike > 0:
            await asyncio.sleep(knobs.latency + spike)
        if fail:
            headers = {"Retry-After": retry_after_header(knobs.retry_after)}
            reply = error_response(503, "SERVICE_UNAVAILABLE", "try again later", headers)
            await reply(scope, receive, send)
            return
        await self.app(scope, receive, _Cut(send) if drop else send)


async def _http_error(request: Request, exc: Exception) -> Response:
    if isinstance(exc, HTTPException) and exc.status_code == 405:
        return error_response(405, "METHOD_NOT_ALLOWED", "Method Not Allowed")
    return route_missing_response()


def build_app(service: Service) -> Starlette:
    routes: list[BaseRoute] = [
        *routes_account.ROUTES,
        *routes_mails.ROUTES,
        *routes_conversations.ROUTES,
        *batch.ROUTES,
    ]
    app = Starlette(
        routes=routes,
        middleware=[Middleware(FaultLayer, service=service, table=RouteTable(routes))],
        exception_handlers={404: _http_error, 405: _http_error},
    )
    app.router = _Router(routes=routes, redirect_slashes=False)
    app.state.service = service
    return app
