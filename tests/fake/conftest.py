"""Fixtures for the fake Axigen server tests: one server per worker, reset per test, and a
thin httpx wrapper that talks to it over real loopback HTTP."""

from __future__ import annotations

import base64
import ssl
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from axsync.fake.mailbox import Mailbox
from axsync.fake.server import FakeAxigen

USER = "alice@example.com"
PASSWORD = "secret"
BASIC = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
#: One TLS context for every client (httpx builds a new one per client otherwise: slow).
SSL = ssl.create_default_context()


def client(fake: FakeAxigen, **kwargs: Any) -> httpx.Client:
    """A plain httpx client for ``fake`` (no credentials)."""
    return httpx.Client(base_url=fake.url, timeout=10, verify=SSL, **kwargs)


def raw_message(
    subject: str = "Hello",
    *,
    message_id: str | None = None,
    in_reply_to: str | None = None,
    references: tuple[str, ...] = (),
    sender: str = "Bob <bob@example.org>",
    to: str = USER,
    body: str = "Hello there\r\n",
    headers: tuple[str, ...] = (),
) -> bytes:
    lines = [f"From: {sender}", f"To: {to}", f"Subject: {subject}"]
    if message_id:
        lines.append(f"Message-ID: <{message_id}>")
    if in_reply_to:
        lines.append(f"In-Reply-To: <{in_reply_to}>")
    if references:
        lines.append("References: " + " ".join(f"<{r}>" for r in references))
    lines.extend(headers)
    return ("\r\n".join(lines) + "\r\n\r\n" + body).encode()


def add_mails(mailbox: Mailbox, folder_id: str, count: int, *, first_date: int = 1_000) -> list[str]:
    """``count`` distinct mails, dated one second apart (the first is the oldest)."""
    return [
        mailbox.add_mail(
            folder_id,
            raw_message(f"mail {i:04d}", message_id=f"m{i}.{folder_id}@test"),
            date=first_date + i,
        )
        for i in range(count)
    ]


class Api:
    """A logged-in (after :meth:`login`) httpx client for the fake."""

    def __init__(self, fake: FakeAxigen) -> None:
        self.fake = fake
        self.http = client(fake)

    def login(self, auth: str = BASIC) -> str:
        reply = self.http.post("/api/v1/login", headers={"Authorization": auth})
        assert reply.status_code == 200, reply.text
        sid: str = reply.json()["sessid"]
        self.http.headers.update({"Authorization": auth, "X-Axigen-Session": sid})
        return sid

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        return self.http.request(method, path, **kwargs)

    def call(self, method: str, path: str, status: int = 200, **kwargs: Any) -> Any:
        """The JSON reply, after checking the status (None for an empty body)."""
        reply = self.http.request(method, path, **kwargs)
        assert reply.status_code == status, (reply.status_code, reply.text)
        return reply.json() if reply.content else None

    def get(self, path: str, status: int = 200, **params: Any) -> Any:
        return self.call("GET", path, status, params=params)

    def error(self, method: str, path: str, status: int, **kwargs: Any) -> str:
        """Check an error reply's status and shape; returns its code."""
        body = self.call(method, path, status, **kwargs)
        assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}
        code: str = body["error"]["code"]
        return code

    def close(self) -> None:
        self.http.close()


@pytest.fixture(scope="session")
def server() -> Iterator[FakeAxigen]:
    fake = FakeAxigen(user=USER, password=PASSWORD)
    fake.start()
    yield fake
    fake.stop()


@pytest.fixture
def fake(server: FakeAxigen) -> FakeAxigen:
    server.reset()
    return server


@pytest.fixture
def api(fake: FakeAxigen) -> Iterator[Api]:
    client = Api(fake)
    client.login()
    yield client
    client.close()


@pytest.fixture
def anon(fake: FakeAxigen) -> Iterator[httpx.Client]:
    """A client without credentials."""
    with client(fake) as http:
        yield http


@pytest.fixture
def inbox(fake: FakeAxigen) -> str:
    return fake.mailbox.folder_id("INBOX")
