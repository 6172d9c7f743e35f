"""RouteTable picks the route starlette's router would pick (the first full match in route
order, else the first partial one, else none), for any path and method."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from starlette.responses import PlainTextResponse
from starlette.routing import BaseRoute, Match, Mount, Route

from axsync.fake import batch, routes_account, routes_conversations, routes_mails
from axsync.fake.app import RouteTable

ROUTES: list[BaseRoute] = [*routes_account.ROUTES, *routes_mails.ROUTES,
                           *routes_conversations.ROUTES, *batch.ROUTES]
TABLE = RouteTable(ROUTES)
METHODS = ("GET", "HEAD", "POST", "PATCH", "DELETE", "PUT", "OPTIONS")
WORDS = sorted({part for r in ROUTES if isinstance(r, Route) for part in r.path.split("/")
                if "{" not in part} | {"", "x", "123", "a b", "%2F", "v2", "Mails"})


def starlette_pick(routes: list[BaseRoute], scope: dict[str, Any]) -> tuple[BaseRoute, Any] | None:
    """Router.app's loop, as starlette writes it."""
    partial = None
    for route in routes:
        match, child = route.matches(scope)
        if match is Match.FULL:
            return route, child
        if match is Match.PARTIAL and partial is None:
            partial = (route, child)
    return partial


def scope(path: str, method: str, root_path: str = "") -> dict[str, Any]:
    return {"type": "http", "path": path, "method": method, "root_path": root_path}


def test_the_fake_s_routes_all_take_the_shortcut() -> None:
    assert TABLE._shapes is not None
    assert sum(len(v) for v in TABLE._shapes.values()) == len(ROUTES)
    one = scope("/api/v1/mails/ODBfMTVfMQ/source", "GET")
    assert len(TABLE.candidates(one)) < 10 < len(ROUTES)


def test_every_route_template_is_found() -> None:
    for route in ROUTES:
        assert isinstance(route, Route)
        path = route.path.replace("{", "").replace("}", "")  # a param becomes its name
        for method in METHODS:
            s = scope(path, method)
            assert TABLE.match(s) == starlette_pick(ROUTES, s), (path, method)
        assert TABLE.match(scope(path, sorted(route.methods or {"GET"})[0]))[0] is route  # type: ignore[index]


@settings(max_examples=400, deadline=None)
@given(parts=st.lists(st.sampled_from(WORDS) | st.text(max_size=4), max_size=8),
       method=st.sampled_from(METHODS), trailing=st.booleans(),
       root=st.sampled_from(["", "/api", "/prefix"]))
def test_agrees_with_starlette_on_any_path(parts: list[str], method: str, trailing: bool,
                                           root: str) -> None:
    path = "/" + "/".join(parts) + ("/" if trailing else "")
    for p in (path, root + path):
        s = scope(p, method, root)
        assert TABLE.match(s) == starlette_pick(ROUTES, s)


def test_other_kinds_of_route_turn_the_shortcut_off() -> None:
    async def ok(request: Any) -> PlainTextResponse:
        return PlainTextResponse("ok")

    for odd in (Route("/n/{x:int}", ok), Mount("/m", routes=[Route("/y", ok)]),
                Route("/p/{x}.txt", ok)):
        routes: list[BaseRoute] = [Route("/n/{x}", ok, methods=["POST"]), odd, *ROUTES]
        table = RouteTable(routes)
        assert table._shapes is None
        for path in ("/n/12", "/m/y", "/p/a.txt", "/api/v1/mails/1/source", "/nope"):
            s = scope(path, "GET")
            assert table.candidates(s) == routes
            assert table.match(s) == starlette_pick(routes, s)
