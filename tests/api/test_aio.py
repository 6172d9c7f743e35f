"""axsync.api.aio: message sources downloaded on an asyncio event loop, over real loopback
sockets.

Two kinds of server: the fake Axigen (:class:`axsync.fake.server.FakeAxigen`, its faults
from the knobs, or scripted per request by replacing ``Service.draw_faults``), and a
scripted one (:class:`ScriptedApi` on top of ``test_lean.ScriptedServer``) that answers
``POST /api/v1/login`` with fresh session ids and every other request with the next raw
reply of its list, on whatever connection it arrives.

Many tests run the same scenario through both paths, ``"sync"``
(``ApiClient.download_source``, the reference) and ``"async"`` (``AsyncSource.download``):
the async one must give the same results, errors and request counts. Each test runs on
uvloop's event loop and on asyncio's.
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import io
import json
import ssl
import threading
import time
from collections.abc import Callable, Coroutine, Iterator, Sequence
from dataclasses import dataclass
from typing import BinaryIO, TypeVar, cast

import httpx
import pytest

from axsync.api import ApiClient
from axsync.api.aio import AsyncSource, _Stream
from axsync.api.download import vsize_of
from axsync.errors import (
    AuthError,
    IntegrityError,
    MalformedReply,
    NotFound,
    ServerError,
    ServerUnreachable,
    StoreError,
)
from axsync.evloop import EVENT_LOOP_ENV
from axsync.fake.server import FakeAxigen
from axsync.model import Download
from axsync.sync.fetch import new_event_loop

from . import test_lean
from .conftest import PASSWORD, USER, MakeClient, MakeFake
from .test_lean import PEER_TIMEOUT, Peer, ScriptedServer, Tls, parse_request

SOURCE = "GET /api/v1/mails/{id}/source"
FAKE_SOURCE = "GET /api/v1/mails/{mailId}/source"  # the fake's own route template
LOGIN = "POST /api/v1/login"
PATHS = ("sync", "async")
PREFIX = b"already here|"
T = TypeVar("T")

#: A self-signed certificate for 127.0.0.1 and a server context using it (module-scoped).
tls = test_lean.tls

_PROXY_VARS = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY")


@pytest.fixture(autouse=True, params=["uvloop", "asyncio"])
def event_loop_kind(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every test runs on uvloop's event loop (the pull's default when installed) and on
    asyncio's: :func:`run_loop` makes the one AXSYNC_EVENT_LOOP names, as the pull does."""
    monkeypatch.setenv(EVENT_LOOP_ENV, request.param)
    return str(request.param)


def run_loop(coro: Coroutine[object, object, T]) -> T:
    """``asyncio.run(coro)`` on the event loop the pull would use (:func:`new_event_loop`)."""
    with asyncio.Runner(loop_factory=new_event_loop) as runner:
        return runner.run(coro)


@pytest.fixture(autouse=True)
def no_proxy_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """A proxy in the environment would turn the lean (and async) path off."""
    for name in _PROXY_VARS:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    return monkeypatch


# ---------------------------------------------------------------------- helpers


def expected(raw: bytes) -> Download:
    return Download(size=len(raw), sha256=hashlib.sha256(raw).hexdigest(), vsize=vsize_of(raw))


def fetcher(client: ApiClient) -> AsyncSource:
    source = client.source_fetcher()
    assert isinstance(source, AsyncSource)
    return source


def download(client: ApiClient, path: str, mail_id: str, out: BinaryIO) -> Download:
    """One download through ``path``: "sync" (the reference) or "async" (its own loop)."""
    if path == "sync":
        return client.download_source(mail_id, out)
    source = fetcher(client)

    async def main() -> Download:
        try:
            return await source.download(mail_id, out)
        finally:
            source.close()

    return run_loop(main())


async def download_many(
    source: AsyncSource, jobs: Sequence[tuple[str, BinaryIO]], limit: int
) -> list[Download]:
    gate = asyncio.Semaphore(limit)

    async def one(mail_id: str, out: BinaryIO) -> Download:
        async with gate:
            return await source.download(mail_id, out)

    return await asyncio.gather(*(one(mail_id, out) for mail_id, out in jobs))


class Rewinds(io.BytesIO):
    """A BytesIO that counts the rewinds (truncate calls) of a retried download."""

    def __init__(self, initial: bytes = b"") -> None:
        super().__init__(initial)
        self.seek(0, io.SEEK_END)
        self.rewinds = 0

    def truncate(self, size: int | None = None) -> int:
        self.rewinds += 1
        return super().truncate(size)


class Unseekable(io.RawIOBase):
    """A write-only stream that cannot seek (a pipe)."""

    def __init__(self) -> None:
        self.data = bytearray()

    def writable(self) -> bool:
        return True

    def write(self, b: bytes) -> int:  # type: ignore[override]
        self.data += b
        return len(b)


def scripted_faults(monkeypatch: pytest.MonkeyPatch, fake: FakeAxigen, *plan: str) -> list[str]:
    """The next requests the fake receives get these faults, in order ("fail": 503 with
    Retry-After: 0, "drop": body cut half-way and connection closed, "ok"); then none.
    Returns the list of faults drawn so far (one per request)."""
    queue = list(plan)
    drawn: list[str] = []
    lock = threading.Lock()

    def draw() -> tuple[bool, bool, float]:
        with lock:
            fault = queue.pop(0) if queue else "ok"
            drawn.append(fault)
        return fault == "fail", fault == "drop", 0.0

    monkeypatch.setattr(fake.service, "draw_faults", draw)
    return drawn


# ---------------------------------------------------------------------- scripted server


def reply(body: bytes, *headers: bytes, status: bytes = b"200 OK") -> bytes:
    """A Content-Length reply (``headers``: extra raw header lines without CRLF)."""
    head = [b"HTTP/1.1 " + status, b"Content-Length: %d" % len(body), *headers]
    return b"\r\n".join(head) + b"\r\n\r\n" + body


def chunked(*pieces: bytes, headers: Sequence[bytes] = (), trailer: bytes = b"") -> bytes:
    head = [b"HTTP/1.1 200 OK", b"Transfer-Encoding: chunked", *headers]
    body = b"".join(b"%x;ext=1\r\n%s\r\n" % (len(p), p) for p in pieces)
    return b"\r\n".join(head) + b"\r\n\r\n" + body + b"0\r\n" + trailer + b"\r\n"


def login_reply(sid: str) -> bytes:
    body = json.dumps({"sessid": sid}).encode()
    return reply(body, b"Content-Type: application/json")


ERROR_500 = reply(b'{"error": {"code": "INTERNAL", "message": "boom"}}',
                  b"Content-Type: application/json", status=b"500 Internal Server Error")
UNAUTHORIZED = reply(b'{"error": {"code": "UNAUTHORIZED", "message": "no session"}}',
                     b"Content-Type: application/json", status=b"401 Unauthorized")


@dataclass(frozen=True)
class Close:
    """A reply after which the server closes the connection."""

    data: bytes


Answer = bytes | Close | Callable[[Peer], None]


@dataclass(frozen=True)
class Seen:
    conn: int
    line: str
    headers: dict[str, str]


class ScriptedApi:
    """The step every connection of the scripted server runs: ``POST /api/v1/login`` gets
    ``{"sessid": "s<n>"}`` (n counting logins), any other request the next of ``answers``
    (bytes: sent, connection kept; :class:`Close`; or a callable driving the connection)."""

    def __init__(self, *answers: Answer) -> None:
        self.answers = list(answers)
        self.logins = 0
        self.seen: list[Seen] = []
        self._lock = threading.Lock()

    def gets(self) -> list[Seen]:
        return [s for s in self.seen if s.line.startswith("GET ")]

    def __call__(self, peer: Peer) -> None:
        while (raw := peer.request()) is not None:
            line, fields, _ = parse_request(raw)
            with self._lock:
                self.seen.append(Seen(peer.index, line, {k.lower(): v for k, v in fields}))
                if line.startswith("POST /api/v1/login "):
                    self.logins += 1
                    answer: Answer | None = login_reply(f"s{self.logins}")
                else:
                    answer = self.answers.pop(0) if self.answers else None
            if answer is None:
                peer.server.fail(f"connection {peer.index}: unexpected request {line!r}")
                peer.close()
            elif isinstance(answer, bytes):
                peer.send(answer)
            elif isinstance(answer, Close):
                peer.send(answer.data)
                peer.close()
            else:
                answer(peer)
            if peer.closed:
                return


@dataclass
class Scripted:
    server: ScriptedServer
    api: ScriptedApi
    client: ApiClient


Serve = Callable[..., Scripted]


@pytest.fixture
def serve() -> Iterator[Serve]:
    """``serve(*answers, server_tls=None, **client_options)``: a scripted server (TLS with a server
    context) and an ApiClient for it (2 s timeouts, 2 retries, millisecond backoff); checked
    for unexpected traffic after."""
    made: list[Scripted] = []

    def start(
        *answers: Answer, server_tls: ssl.SSLContext | None = None, **options: object
    ) -> Scripted:
        api = ScriptedApi(*answers)
        server = ScriptedServer([[api]] * 16, tls=server_tls)
        settings: dict[str, object] = {"timeout": 2.0, "max_retries": 2,
                                       "backoff_base": 0.001, "backoff_max": 0.01}
        settings.update(options)
        client = ApiClient(server.url, USER, PASSWORD, **settings)  # type: ignore[arg-type]
        made.append(Scripted(server, api, client))
        return made[-1]

    yield start
    for one in made:
        one.client.close()
        one.server.stop()
    errors = [error for one in made for error in one.server.errors]
    assert not errors, errors


# ---------------------------------------------------------------------- 1. against the fake


def test_downloads_equal_the_mailbox_and_the_sync_path(
    make_fake: MakeFake, make_client: MakeClient
) -> None:
    fake = make_fake(big=1)
    client = make_client(fake)
    source = fetcher(client)
    mails = sorted(fake.mailbox.mails(), key=lambda m: len(m.raw))
    bare_lf = next(m for m in mails if vsize_of(m.raw) != len(m.raw))
    picked = [mails[0], mails[len(mails) // 2], bare_lf, mails[-2], mails[-1]]
    assert len(picked[-1].raw) > 1_000_000  # several 64 KiB reads and flow-control pauses
    outs = [io.BytesIO() for _ in picked]

    async def main() -> list[Download]:
        try:
            return [await source.download(m.id, out) for m, out in zip(picked, outs, strict=True)]
        finally:
            source.close()

    results = run_loop(main())
    for mail, out, result in zip(picked, outs, results, strict=True):
        raw = fake.mailbox.get_mail(mail.id).raw
        assert out.getvalue() == raw
        assert result == expected(raw)
        sync_out = io.BytesIO()
        assert client.download_source(mail.id, sync_out) == result
        assert sync_out.getvalue() == raw
    assert results[2].vsize > results[2].size
    # one session for both paths, one request per download
    assert client._http.counts() == (1 + 2 * len(picked), {LOGIN: 1, SOURCE: 2 * len(picked)})
    assert client.requests == fake.total_requests()


def test_200_concurrent_downloads_one_request_each(
    make_fake: MakeFake, make_client: MakeClient
) -> None:
    fake = make_fake(big=1)
    client = make_client(fake)
    source = fetcher(client)
    mails = sorted(fake.mailbox.mails(), key=lambda m: m.id)
    jobs = [(mails[i % len(mails)].id, io.BytesIO()) for i in range(200)]
    idle: list[int] = []

    async def main() -> list[Download]:
        try:
            results = await download_many(source, cast(Sequence[tuple[str, BinaryIO]], jobs), 32)
            idle.append(sum(len(streams) for streams in source.pool._idle.values()))
            return results
        finally:
            source.close()

    results = run_loop(main())
    for (mail_id, out), result in zip(jobs, results, strict=True):
        raw = fake.mailbox.get_mail(mail_id).raw
        assert out.getvalue() == raw
        assert result == expected(raw)
    assert client._http.counts() == (201, {LOGIN: 1, SOURCE: 200})
    assert fake.total_requests() == 201 and fake.counters[FAKE_SOURCE] == 200
    assert 1 <= idle[0] <= 32  # connections kept alive, never more than in flight


# ---------------------------------------------------------------------- 2. source_fetcher


def test_source_fetcher_only_where_the_async_path_applies(
    make_fake: MakeFake, make_client: MakeClient, no_proxy_env: pytest.MonkeyPatch
) -> None:
    fake = make_fake()
    plain = make_client(fake)
    assert isinstance(plain.source_fetcher(), AsyncSource)
    mocked = make_client(fake, transport=httpx.MockTransport(lambda _r: httpx.Response(500)))
    assert mocked.source_fetcher() is None
    assert make_client(fake, transport=httpx.HTTPTransport()).source_fetcher() is None

    class Overriding(ApiClient):
        def download_source(
            self, mail_id: str, out: BinaryIO, *, expected_size: int | None = None
        ) -> Download:
            return super().download_source(mail_id, out, expected_size=expected_size)

    class Inheriting(Overriding):
        pass

    class Plain(ApiClient):
        pass

    made = [cls(fake.url, USER, PASSWORD) for cls in (Overriding, Inheriting, Plain)]
    try:
        assert [c.source_fetcher() is None for c in made] == [True, True, False]
        no_proxy_env.setenv("HTTP_PROXY", "http://proxy.invalid:3128")
        proxied = make_client(fake)
        assert proxied.source_fetcher() is None
        assert all(c.requests == 0 for c in (plain, mocked, proxied, *made))  # nothing sent
    finally:
        for one in made:
            one.close()
    assert fake.total_requests() == 0


# ---------------------------------------------------------------------- 3. faults of the fake


@pytest.mark.parametrize("path", PATHS)
def test_503_with_retry_after_is_retried(
    make_fake: MakeFake, make_client: MakeClient, monkeypatch: pytest.MonkeyPatch, path: str
) -> None:
    fake = make_fake()
    client = make_client(fake)
    client.login()
    mail = sorted(fake.mailbox.mails(), key=lambda m: m.id)[3]
    drawn = scripted_faults(monkeypatch, fake, "fail", "fail")
    jitter: list[tuple[float, float]] = []
    client._http.uniform = lambda a, b: jitter.append((a, b)) or 0.0  # type: ignore[func-returns-value]
    out = io.BytesIO()
    assert download(client, path, mail.id, out) == expected(mail.raw)
    assert out.getvalue() == mail.raw
    assert drawn == ["fail", "fail", "ok"]
    assert client.request_counts == {LOGIN: 1, SOURCE: 3}
    assert jitter == []  # the waits were the server's Retry-After (0 s), not the backoff


def test_503_storm_with_concurrent_downloads(make_fake: MakeFake, make_client: MakeClient) -> None:
    fake = make_fake(fail_rate=0.3, retry_after=0, fault_seed=11)
    client = make_client(fake, max_retries=10)
    source = fetcher(client)
    mails = sorted(fake.mailbox.mails(), key=lambda m: m.id)
    jobs = [(m.id, io.BytesIO()) for m in mails]
    started = time.monotonic()

    async def main() -> list[Download]:
        try:
            return await download_many(source, cast(Sequence[tuple[str, BinaryIO]], jobs), 16)
        finally:
            source.close()

    results = run_loop(main())
    assert time.monotonic() - started < 5  # Retry-After: 0 honoured, no long backoff
    for mail, (_id, out), result in zip(mails, jobs, results, strict=True):
        assert out.getvalue() == mail.raw and result == expected(mail.raw)
    sent = client.request_counts[SOURCE]
    assert sent > len(mails) + 10  # many 503s, each retried and counted
    assert client.requests == fake.total_requests()
    assert fake.counters[FAKE_SOURCE] == sent


@pytest.mark.parametrize("path", PATHS)
def test_body_cut_once_is_retried_into_the_rewound_output(
    make_fake: MakeFake, make_client: MakeClient, monkeypatch: pytest.MonkeyPatch, path: str
) -> None:
    fake = make_fake(big=1)
    client = make_client(fake)
    client.login()
    big = max(fake.mailbox.mails(), key=lambda m: len(m.raw))
    drawn = scripted_faults(monkeypatch, fake, "drop")
    out = Rewinds(PREFIX)  # what the caller wrote before stays
    assert download(client, path, big.id, out) == expected(big.raw)
    assert out.getvalue() == PREFIX + big.raw  # not doubled, not shifted
    assert out.rewinds == 1
    assert drawn == ["drop", "ok"]
    assert client.request_counts == {LOGIN: 1, SOURCE: 2}


def test_dropped_bodies_under_concurrency(make_fake: MakeFake, make_client: MakeClient) -> None:
    fake = make_fake(big=2)
    client = make_client(fake, max_retries=10)
    client.login()
    fake.knobs.drop_rate = 0.25
    fake.knobs.fault_seed = 5
    source = fetcher(client)
    mails = sorted(fake.mailbox.mails(), key=lambda m: m.id)
    outs = [Rewinds(PREFIX) for _ in mails]

    async def main() -> list[Download]:
        try:
            jobs = [(m.id, cast(BinaryIO, out)) for m, out in zip(mails, outs, strict=True)]
            return await download_many(source, jobs, 16)
        finally:
            source.close()

    results = run_loop(main())
    for mail, out, result in zip(mails, outs, results, strict=True):
        assert out.getvalue() == PREFIX + mail.raw
        assert result == expected(mail.raw)
    sent = client.request_counts[SOURCE]
    assert sent > len(mails)
    # every extra request followed a cut body, and each cut body was rewound once
    assert sum(out.rewinds for out in outs) == sent - len(mails)
    assert client.requests == fake.total_requests()


@pytest.mark.parametrize("path", PATHS)
def test_body_cut_every_time_is_server_unreachable(
    make_fake: MakeFake, make_client: MakeClient, path: str
) -> None:
    fake = make_fake(big=1)
    client = make_client(fake, max_retries=2)
    client.login()
    big = max(fake.mailbox.mails(), key=lambda m: len(m.raw))
    half = len(big.raw) // 2  # what the fake sends of a body it cuts
    fake.knobs.drop_rate = 1.0
    out = Rewinds(PREFIX)
    with pytest.raises(ServerUnreachable, match="after 3 attempts"):
        download(client, path, big.id, out)
    assert client.request_counts == {LOGIN: 1, SOURCE: 3}
    assert out.rewinds == 2
    assert out.getvalue().startswith(PREFIX)
    rest = out.getvalue()[len(PREFIX):]
    # the last attempt's bytes only (the sync path writes whole 64 KiB pieces, so it may
    # hold back the tail of what arrived; the async one writes what it receives)
    assert 0 < len(rest) <= half and big.raw.startswith(rest)
    if path == "async":
        assert len(rest) == half


@pytest.mark.parametrize("path", PATHS)
def test_cut_into_an_unseekable_output_cannot_be_retried(
    make_fake: MakeFake, make_client: MakeClient, monkeypatch: pytest.MonkeyPatch, path: str
) -> None:
    fake = make_fake(big=1)
    client = make_client(fake)
    client.login()
    big = max(fake.mailbox.mails(), key=lambda m: len(m.raw))
    scripted_faults(monkeypatch, fake, "drop")
    out = Unseekable()
    with pytest.raises(ServerUnreachable, match="cannot be rewound"):
        download(client, path, big.id, cast(BinaryIO, out))
    assert 0 < len(out.data) <= len(big.raw) // 2 and big.raw.startswith(out.data)
    assert client.request_counts == {LOGIN: 1, SOURCE: 2}


@pytest.mark.parametrize("path", PATHS)
def test_session_expiring_every_3_requests(
    make_fake: MakeFake, make_client: MakeClient, path: str
) -> None:
    fake = make_fake(session_max_requests=3)
    client = make_client(fake)
    mails = sorted(fake.mailbox.mails(), key=lambda m: m.id)[:12]
    for mail in mails:
        out = io.BytesIO()
        assert download(client, path, mail.id, out) == expected(mail.raw)
        assert out.getvalue() == mail.raw
    # sessions serve 3 downloads each; the 4th, 7th and 10th get a 401 and are sent again
    assert client.request_counts == {LOGIN: 4, SOURCE: 15}
    assert client.requests == fake.total_requests()


def test_session_expiry_under_concurrency_shares_logins(
    make_fake: MakeFake, make_client: MakeClient
) -> None:
    fake = make_fake(session_max_requests=5)
    client = make_client(fake)
    source = fetcher(client)
    mails = sorted(fake.mailbox.mails(), key=lambda m: m.id)
    jobs = [(m.id, io.BytesIO()) for m in mails]

    async def main() -> list[Download]:
        try:
            return await download_many(source, cast(Sequence[tuple[str, BinaryIO]], jobs), 16)
        finally:
            source.close()

    results = run_loop(main())
    for mail, (_id, out), result in zip(mails, jobs, results, strict=True):
        assert out.getvalue() == mail.raw and result == expected(mail.raw)
    logins = client.request_counts[LOGIN]
    # each session serves 5 downloads; coroutines refused on the same session share a login
    assert len(mails) // 5 <= logins <= len(mails) // 5 + 1
    assert client.request_counts[SOURCE] > len(mails)  # the 401s were counted
    assert client.requests == fake.total_requests()


# ---------------------------------------------------------------------- 4. status errors


@pytest.mark.parametrize("path", PATHS)
def test_unknown_mail_is_not_found(make_fake: MakeFake, make_client: MakeClient, path: str) -> None:
    fake = make_fake()
    client = make_client(fake)
    out = io.BytesIO()
    with pytest.raises(NotFound) as info:
        download(client, path, "no-such-mail", out)
    assert info.value.status == 404
    assert out.getvalue() == b""
    assert client.request_counts == {LOGIN: 1, SOURCE: 1}  # a 404 is not retried


def test_persistent_503_is_the_same_server_error_on_both_paths(
    make_fake: MakeFake, make_client: MakeClient
) -> None:
    fake = make_fake()
    errors: list[ServerError] = []
    for path in PATHS:
        client = make_client(fake, max_retries=2)
        client.login()
        fake.knobs.fail_rate = 1.0
        with pytest.raises(ServerError) as info:
            download(client, path, fake.mailbox.mails()[0].id, io.BytesIO())
        fake.knobs.fail_rate = 0.0
        assert info.value.status == 503
        assert client.request_counts == {LOGIN: 1, SOURCE: 3}
        errors.append(info.value)
    assert str(errors[0]) == str(errors[1])
    assert "after 3 attempts" in str(errors[1])


@pytest.mark.parametrize("path", PATHS)
def test_persistent_500_is_a_server_error_after_the_retries(serve: Serve, path: str) -> None:
    run = serve(ERROR_500, ERROR_500, ERROR_500, ERROR_500, max_retries=3)
    out = io.BytesIO()
    with pytest.raises(ServerError, match=r"HTTP 500: .*boom.*after 4 attempts") as info:
        download(run.client, path, "m1", out)
    assert info.value.status == 500
    assert run.client.request_counts == {LOGIN: 1, SOURCE: 4}
    assert len(run.api.gets()) == 4 and not run.api.answers
    assert out.getvalue() == b""


# ---------------------------------------------------------------------- 5. scripted replies


def test_request_on_the_wire(serve: Serve) -> None:
    run = serve(reply(b"x"))
    assert download(run.client, "async", "a/b c", io.BytesIO()) == expected(b"x")
    (get,) = run.api.gets()
    assert get.line == "GET /api/v1/mails/a%2Fb%20c/source HTTP/1.1"
    assert get.headers["host"] == f"127.0.0.1:{run.server.port}"
    assert get.headers["x-axigen-session"] == "s1"
    assert get.headers["authorization"] == run.client._http.authorization
    assert get.headers["accept"] == "message/rfc822, */*"
    assert get.headers["accept-encoding"] == "identity"


def test_chunked_and_other_framings_decoded_on_one_connection(serve: Serve) -> None:
    big = bytes(range(256)) * 4096  # 1 MiB in one chunk: many reads, paused and resumed
    split = (b"Subject: split\r", b"\nbare\nlf\r\n")  # a CRLF across two chunks
    interim = b"HTTP/1.1 100 Continue\r\n\r\n"
    run = serve(
        chunked(*split, trailer=b"X-Trailer: yes\r\n"),
        chunked(big, b"tail"),
        interim + reply(b"after interim"),
        Close(b"HTTP/1.0 200 OK\r\nContent-Type: message/rfc822\r\n\r\nuntil close"),
    )
    source = fetcher(run.client)
    outs = [io.BytesIO() for _ in range(4)]

    async def main() -> list[Download]:
        try:
            return [await source.download(f"m{i}", out) for i, out in enumerate(outs)]
        finally:
            source.close()

    results = run_loop(main())
    bodies = [b"".join(split), big + b"tail", b"after interim", b"until close"]
    assert [out.getvalue() for out in outs] == bodies
    assert results == [expected(body) for body in bodies]
    assert results[0].vsize == len(bodies[0]) + 1  # "\r" + "\n" across chunks is one CRLF
    assert [get.conn for get in run.api.gets()] == [1, 1, 1, 1]  # kept alive throughout
    assert run.client.request_counts == {LOGIN: 1, SOURCE: 4}


@pytest.mark.parametrize("path", PATHS)
def test_complete_body_disagreeing_with_content_length_is_an_integrity_error(
    serve: Serve, path: str
) -> None:
    """Chunked framing wins over Content-Length, so the body arrives whole, yet shorter than
    the length announced: retried, then the IntegrityError of ``RetryableBody.final``."""
    wrong = (b"Content-Length: 100",)
    bodies = [b"first attempt", b"second attempt!", b"third"]
    run = serve(*(chunked(body, headers=wrong) for body in bodies))
    out = Rewinds(PREFIX)
    with pytest.raises(IntegrityError, match="Content-Length 100 but 5 bytes arrived") as info:
        download(run.client, path, "m1", out)
    assert (info.value.details["expected"], info.value.details["received"]) == (100, 5)
    assert run.client.request_counts == {LOGIN: 1, SOURCE: 3}
    assert out.getvalue() == PREFIX + b"third"  # nothing left of the failed attempts
    assert out.rewinds == 2


@pytest.mark.parametrize("path", PATHS)
def test_body_cut_short_every_time_is_server_unreachable(serve: Serve, path: str) -> None:
    """A Content-Length body cut by the server closing: a transport failure, retried with
    the output rewound, then ServerUnreachable."""
    cuts = [Close(reply(b"x" * 100)[:-60]), Close(reply(b"y" * 100)[:-70]),
            Close(reply(b"z" * 100)[:-80])]
    run = serve(*cuts)
    out = Rewinds(PREFIX)
    with pytest.raises(ServerUnreachable, match="after 3 attempts"):
        download(run.client, path, "m1", out)
    # nothing of the failed attempts but the last one's bytes (which the sync path, writing
    # whole 64 KiB pieces, does not even write)
    assert out.getvalue() in (PREFIX, PREFIX + b"z" * 20)
    if path == "async":
        assert out.getvalue() == PREFIX + b"z" * 20
        assert out.rewinds == 2
    assert run.client.request_counts == {LOGIN: 1, SOURCE: 3}


@pytest.mark.parametrize("path", PATHS)
def test_gzip_reply_is_decoded(serve: Serve, path: str) -> None:
    payload = b"From: a@example.com\r\nSubject: zipped\r\n\r\n" + b"hello gzip\n" * 3000
    packed = gzip.compress(payload, mtime=0)
    run = serve(
        reply(packed, b"Content-Encoding: gzip"),
        chunked(packed[:1000], packed[1000:], headers=[b"Content-Encoding: gzip"]),
    )
    for mail_id in ("m1", "m2"):
        out = io.BytesIO()
        assert download(run.client, path, mail_id, out) == expected(payload)
        assert out.getvalue() == payload
    assert run.client.request_counts == {LOGIN: 1, SOURCE: 2}
    if path == "async":  # asked for identity, coped with gzip anyway
        assert {g.headers["accept-encoding"] for g in run.api.gets()} == {"identity"}


@pytest.mark.parametrize("path", ["sync", "async"])
def test_undecodable_gzip_body_is_a_malformed_reply(serve: Serve, path: str) -> None:
    bad = reply(b"this is not gzip data", b"Content-Encoding: gzip")
    run = serve(bad, bad, bad)
    with pytest.raises(MalformedReply, match="cannot be decoded"):
        download(run.client, path, "m1", io.BytesIO())
    assert run.client.request_counts == {LOGIN: 1, SOURCE: 3}


@pytest.mark.parametrize("path", ["sync", "async"])
def test_error_body_mislabelled_as_gzip_keeps_its_status(serve: Serve, path: str) -> None:
    run = serve(reply(b"<html>no such mail</html>", b"Content-Encoding: gzip",
                      status=b"404 Not Found"))
    with pytest.raises(NotFound):
        download(run.client, path, "m1", io.BytesIO())
    assert run.client.request_counts == {LOGIN: 1, SOURCE: 1}


@pytest.mark.parametrize("path", PATHS)
def test_401_on_the_first_session_logs_in_again(serve: Serve, path: str) -> None:
    run = serve(UNAUTHORIZED, reply(b"the source"))
    out = io.BytesIO()
    assert download(run.client, path, "m1", out) == expected(b"the source")
    assert out.getvalue() == b"the source"
    assert run.api.logins == 2
    assert [g.headers["x-axigen-session"] for g in run.api.gets()] == ["s1", "s2"]
    assert run.client.request_counts == {LOGIN: 2, SOURCE: 2}


@pytest.mark.parametrize("path", PATHS)
def test_401_on_a_session_just_opened_is_an_auth_error(serve: Serve, path: str) -> None:
    run = serve(UNAUTHORIZED, UNAUTHORIZED)
    with pytest.raises(AuthError, match="401 again after logging in again"):
        download(run.client, path, "m1", io.BytesIO())
    assert run.api.logins == 2
    assert run.client.request_counts == {LOGIN: 2, SOURCE: 2}


def _hang(peer: Peer) -> None:
    """Never answer; wait until the client gives up and closes."""
    peer.wait_eof()
    peer.close()


@pytest.mark.parametrize("path", PATHS)
def test_read_timeout_is_retried_then_server_unreachable(serve: Serve, path: str) -> None:
    run = serve(_hang, _hang, timeout=0.3, max_retries=1)
    started = time.monotonic()
    with pytest.raises(ServerUnreachable, match="ReadTimeout.*after 2 attempts"):
        download(run.client, path, "m1", io.BytesIO())
    assert time.monotonic() - started < PEER_TIMEOUT
    assert run.client.request_counts == {LOGIN: 1, SOURCE: 2}


class Broken(io.BytesIO):
    def write(self, b: bytes) -> int:  # type: ignore[override]
        raise OSError(28, "No space left on device")


@pytest.mark.parametrize("path", PATHS)
def test_output_that_cannot_be_written_is_a_store_error(serve: Serve, path: str) -> None:
    run = serve(reply(b"x" * 1000))
    with pytest.raises(StoreError, match="cannot write the source of mail m1"):
        download(run.client, path, "m1", Broken())
    assert run.client.request_counts == {LOGIN: 1, SOURCE: 1}  # not retried


def _big_503(peer: Peer) -> None:
    """A 503 whose 100 kB body the client reads only 64 KiB of (then closes)."""
    try:
        peer.send(reply(b"e" * 100_000, b"Retry-After: 0", status=b"503 Service Unavailable"))
    except OSError:
        pass


@pytest.mark.parametrize("path", PATHS)
def test_large_error_body_is_capped_and_its_connection_dropped(serve: Serve, path: str) -> None:
    run = serve(_big_503, reply(b"ok"))
    assert download(run.client, path, "m1", io.BytesIO()) == expected(b"ok")
    first, second = run.api.gets()
    assert first.conn != second.conn  # a half-read reply never goes back to the pool
    assert run.client.request_counts == {LOGIN: 1, SOURCE: 2}


def _half_then_wait(peer: Peer) -> None:
    peer.send(reply(b"x" * 100)[:-50])
    peer.wait_eof()
    peer.close()


def test_cancelled_download_gives_up_its_connection(serve: Serve) -> None:
    run = serve(_half_then_wait, reply(b"two"))
    source = fetcher(run.client)
    out = io.BytesIO()

    async def main() -> Download:
        try:
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(source.download("m1", out), 0.2)
            assert not any(source.pool._idle.values())
            return await source.download("m2", io.BytesIO())
        finally:
            source.close()

    assert run_loop(main()) == expected(b"two")
    assert out.getvalue() == b"x" * 50
    assert [g.conn for g in run.api.gets()] == [1, 2]
    assert run.client.request_counts == {LOGIN: 1, SOURCE: 2}


def test_tls_trusted_and_untrusted(serve: Serve, tls: Tls) -> None:
    run = serve(reply(b"one"), reply(b"two"), server_tls=tls.server, verify=str(tls.cert))
    assert run.client._http.origin[0] == "https"
    source = fetcher(run.client)
    outs = [io.BytesIO(), io.BytesIO()]

    async def main() -> list[Download]:
        try:
            return [await source.download(f"m{i}", out) for i, out in enumerate(outs)]
        finally:
            source.close()

    assert run_loop(main()) == [expected(b"one"), expected(b"two")]
    assert [g.conn for g in run.api.gets()] == [1, 1]
    untrusting = fetcher(run.client)
    untrusting.pool._ssl_context = ssl.create_default_context()  # the system CAs only

    async def refused() -> None:
        try:
            await untrusting.download("m3", io.BytesIO())
        finally:
            untrusting.close()

    with pytest.raises(ServerUnreachable, match="CERTIFICATE_VERIFY_FAILED"):
        run_loop(refused())
    assert run.client.request_counts == {LOGIN: 1, SOURCE: 3}  # a refused certificate: no retry
    assert len(run.api.gets()) == 2  # the third request never went out


# ---------------------------------------------------------------------- 6. stale connections


async def _until(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + PEER_TIMEOUT
    while not condition():
        assert time.monotonic() < deadline, "the server's move never reached the idle connection"
        await asyncio.sleep(0.005)


def _only_idle(source: AsyncSource) -> _Stream:
    (streams,) = source.pool._idle.values()
    (stream,) = streams
    return stream


def test_idle_connection_closed_by_the_server_is_replaced(serve: Serve) -> None:
    run = serve(Close(reply(b"one")), reply(b"two"))
    source = fetcher(run.client)
    outs = [io.BytesIO(), io.BytesIO()]

    async def main() -> list[Download]:
        try:
            first = await source.download("m1", outs[0])
            idle = _only_idle(source)
            await _until(lambda: not idle.reusable())  # the server's FIN arrived
            return [first, await source.download("m2", outs[1])]
        finally:
            source.close()

    assert run_loop(main()) == [expected(b"one"), expected(b"two")]
    assert [out.getvalue() for out in outs] == [b"one", b"two"]
    assert run.client.request_counts == {LOGIN: 1, SOURCE: 2}  # no failed attempt, no retry
    assert [g.conn for g in run.api.gets()] == [1, 2]
    assert run.server.accepts == 3  # the login's, the closed one, its replacement


def test_idle_connection_with_unasked_bytes_is_replaced(serve: Serve) -> None:
    go = threading.Event()

    def reply_then_408(peer: Peer) -> None:
        peer.send(reply(b"one"))
        assert go.wait(PEER_TIMEOUT)
        peer.send(b"HTTP/1.1 408 Request Timeout\r\nContent-Length: 0\r\n\r\n")  # no FIN

    run = serve(reply_then_408, reply(b"two"))
    source = fetcher(run.client)

    async def main() -> list[Download]:
        try:
            first = await source.download("m1", io.BytesIO())
            idle = _only_idle(source)
            go.set()
            await _until(lambda: not idle.reusable())  # the 408 sits in its buffer
            return [first, await source.download("m2", io.BytesIO())]
        finally:
            source.close()

    assert run_loop(main()) == [expected(b"one"), expected(b"two")]
    assert run.client.request_counts == {LOGIN: 1, SOURCE: 2}
    assert [g.conn for g in run.api.gets()] == [1, 2]


def test_reply_asking_to_close_is_not_pooled(serve: Serve) -> None:
    run = serve(reply(b"one", b"Connection: close"), reply(b"two"))
    source = fetcher(run.client)

    async def main() -> list[Download]:
        try:
            first = await source.download("m1", io.BytesIO())
            assert not any(source.pool._idle.values())
            return [first, await source.download("m2", io.BytesIO())]
        finally:
            source.close()

    assert run_loop(main()) == [expected(b"one"), expected(b"two")]
    assert [g.conn for g in run.api.gets()] == [1, 2]
    assert run.client.request_counts == {LOGIN: 1, SOURCE: 2}


# ------------------------------------------------------------ read deadlines (the watch)


def test_read_deadlines_fire_per_wait_and_leave_no_timer() -> None:
    """A wait for data longer than the read timeout fails with ReadTimeout (up to one
    WATCH_TICK late); data trickling in faster than the timeout never does, however long
    the whole reply takes; when nothing waits, the watch has no timer left."""
    from axsync.api.aio import WATCH_TICK, _Watch

    async def main() -> None:
        loop = asyncio.get_running_loop()
        watch = _Watch(loop)
        stalled, trickled = _Stream(loop, watch), _Stream(loop, watch)
        for stream in (stalled, trickled):
            stream.timeout = 0.3

        async def trickle() -> None:
            for piece in (b"HTTP/1.1 ", b"200 ", b"OK", b"\r\n"):
                await asyncio.sleep(0.15)
                trickled.data_received(piece)

        feeder = asyncio.create_task(trickle())
        started = loop.time()
        stalled.data_received(b"HTTP/1.1 200")  # and no line end, ever
        results = await asyncio.gather(stalled.readline(), trickled.readline(), return_exceptions=True)
        await feeder
        assert isinstance(results[0], httpx.ReadTimeout)
        assert results[1] == b"HTTP/1.1 200 OK\r\n"  # 0.6 s in all, 0.15 s per wait
        assert 0.3 <= loop.time() - started < 0.6 + 2 * WATCH_TICK
        assert not watch._waiting
        await asyncio.sleep(WATCH_TICK * 1.5)
        assert watch._timer is None

    run_loop(main())


def test_a_stream_without_a_timeout_waits_without_the_watch() -> None:
    from axsync.api.aio import _Watch

    async def main() -> None:
        loop = asyncio.get_running_loop()
        watch = _Watch(loop)
        stream = _Stream(loop, watch)  # timeout None
        task = asyncio.create_task(stream.readline())
        await asyncio.sleep(0.05)
        assert not watch._waiting and watch._timer is None
        stream.data_received(b"line\n")
        assert await task == b"line\n"

    run_loop(main())
