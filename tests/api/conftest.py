"""Fixtures for the API client tests: a fake Axigen server over real loopback HTTP."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator

import pytest

from axsync.api import ApiClient
from axsync.fake.corpus import Corpus, generate
from axsync.fake.server import FakeAxigen, Knobs

USER = "alice@example.com"
PASSWORD = "s3cret:pass"
API_VERSIONS = ("10.4", "10.6")


@functools.lru_cache(maxsize=4)
def corpus(seed: int = 7, messages: int = 80, big: int = 0) -> Corpus:
    """A small deterministic mailbox; ``big`` messages of 1-5 MB (none by default)."""
    return generate(seed, messages, big_messages=big)


MakeFake = Callable[..., FakeAxigen]
MakeClient = Callable[..., ApiClient]


@pytest.fixture
def make_fake() -> Iterator[MakeFake]:
    """``make_fake(api_version="10.6", **knobs)``: a started fake, stopped after the test."""
    started: list[FakeAxigen] = []

    def make(
        api_version: str = "10.6", *, messages: int = 80, big: int = 0, **knobs: object
    ) -> FakeAxigen:
        server = FakeAxigen(
            corpus(messages=messages, big=big),
            user=USER,
            password=PASSWORD,
            knobs=Knobs(api_version=api_version, **knobs),  # type: ignore[arg-type]
        )
        server.start()
        started.append(server)
        return server

    yield make
    for server in started:
        server.stop()


@pytest.fixture
def make_client() -> Iterator[MakeClient]:
    """``make_client(fake, **options)``: an ApiClient with test-sized backoff, closed after."""
    clients: list[ApiClient] = []

    def make(fake: FakeAxigen, **options: object) -> ApiClient:
        settings: dict[str, object] = {"backoff_base": 0.001, "backoff_max": 0.01, "timeout": 10.0}
        settings.update(options)
        client = ApiClient(fake.url, USER, PASSWORD, **settings)  # type: ignore[arg-type]
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


@pytest.fixture(params=API_VERSIONS)
def api_version(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def fake(make_fake: MakeFake, api_version: str) -> FakeAxigen:
    return make_fake(api_version)


@pytest.fixture
def client(make_client: MakeClient, fake: FakeAxigen) -> ApiClient:
    return make_client(fake)
