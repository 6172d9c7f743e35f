"""A scripted Axigen stand-in for ``httpx.MockTransport`` unit tests."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import httpx

from axsync.api import ApiClient

Reply = (
    httpx.Response
    | dict[str, object]
    | list[object]
    | Exception
    | Callable[[httpx.Request], httpx.Response]
)

BASE = "http://axigen.test"
USER = "user@example.com"
PASSWORD = "pässword:with colon"


def ok(data: object, status: int = 200, **headers: str) -> httpx.Response:
    return httpx.Response(
        status,
        content=json.dumps(data).encode(),
        headers={"Content-Type": "application/json", **headers},
    )


def status(code: int, body: bytes = b"", **headers: str) -> httpx.Response:
    return httpx.Response(code, content=body, headers=headers)


class CutStream(httpx.SyncByteStream):
    """A body that delivers ``chunks`` then fails like a dropped connection."""

    def __init__(self, chunks: list[bytes], error: Exception | None = None) -> None:
        self.chunks = chunks
        self.error = error or httpx.RemoteProtocolError(
            "peer closed connection without sending complete message body"
        )

    def __iter__(self) -> Iterator[bytes]:
        yield from self.chunks
        raise self.error


class ChunkStream(httpx.SyncByteStream):
    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = chunks

    def __iter__(self) -> Iterator[bytes]:
        yield from self.chunks


@dataclass
class MockApi:
    """Routes ``(METHOD, path)`` to queued replies (the last one repeats). Login is built in:
    each login issues a new session id; ``expire()`` invalidates the current ones."""

    routes: dict[tuple[str, str], list[Reply]] = field(default_factory=dict)
    requests: list[httpx.Request] = field(default_factory=list)
    sessions: set[str] = field(default_factory=set)
    logins: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    login_reply: Reply | None = None

    def on(self, method: str, path: str, *replies: Reply) -> MockApi:
        self.routes[(method, path)] = list(replies)
        return self

    def expire(self) -> None:
        with self.lock:
            self.sessions.clear()

    def calls(self, method: str, path: str) -> list[httpx.Request]:
        return [r for r in self.requests if r.method == method and r.url.path == path]

    def __call__(self, request: httpx.Request) -> httpx.Response:
        with self.lock:
            self.requests.append(request)
        if request.method == "POST" and request.url.path == "/api/v1/login":
            if self.login_reply is not None:
                return self._render(self.login_reply, request)
            with self.lock:
                self.logins += 1
                sid = f"s{self.logins}"
                self.sessions.add(sid)
            return ok({"sessid": sid})
        key = (request.method, request.url.path)
        if (
            request.url.path != "/api/"
            and request.headers.get("X-Axigen-Session") not in self.sessions
        ):
            return status(401, b'{"error": {"code": "UNAUTHORIZED", "message": "no session"}}')
        queue = self.routes.get(key)
        if not queue:
            return status(404, b"<html>not found</html>")
        with self.lock:
            reply = queue.pop(0) if len(queue) > 1 else queue[0]
        return self._render(reply, request)

    @staticmethod
    def _render(reply: Reply, request: httpx.Request) -> httpx.Response:
        if isinstance(reply, Exception):
            raise reply
        if isinstance(reply, httpx.Response):  # a fresh copy: queued replies may repeat
            return httpx.Response(reply.status_code, headers=reply.headers, stream=reply.stream)
        if isinstance(reply, dict | list):
            return ok(reply)
        return reply(request)

    def client(self, **kwargs: object) -> ApiClient:
        options: dict[str, object] = {
            "backoff_base": 0.0001,
            "backoff_max": 0.001,
            "max_retries": 3,
        }
        options.update(kwargs)
        client = ApiClient(BASE, USER, PASSWORD, transport=httpx.MockTransport(self), **options)  # type: ignore[arg-type]
        client._http.sleep = lambda seconds: None
        return client


def mail(i: int | str, folder: str = "80_2", **extra: object) -> dict[str, object]:
    return {
        "id": f"m{i}",
        "folderId": folder,
        "size": 100,
        "date": "1744407421",
        "isUnread": False,
        **extra,
    }
