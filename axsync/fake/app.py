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

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Match, Route
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


class FaultLayer:
    def __init__(self, app: ASGIApp, service: Service, routes: Sequence[BaseRoute]) -> None:
        self.app = app
        self.service = service
        self.routes = routes

    def route_key(self, scope: Scope) -> str:
        """``"METHOD /route/template"``, the way the router will pick the route."""
        method = scope["method"]
        partial = None
        for route in self.routes:
            match, _ = route.matches(scope)
            if match is Match.FULL and isinstance(route, Route):
                return f"{method} {route.path}"
            if match is Match.PARTIAL and partial is None and isinstance(route, Route):
                partial = route.path
        return f"{method} {partial or '<unmatched>'}"

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
        middleware=[Middleware(FaultLayer, service=service, routes=routes)],
        exception_handlers={404: _http_error, 405: _http_error},
    )
    app.router.redirect_slashes = False
    app.state.service = service
    return app
