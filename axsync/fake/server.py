"""Run the fake Axigen server: in a background thread for tests, demo and benchmarks
(:class:`FakeAxigen`), or in the foreground for ``axsync fake-server`` (:func:`serve_forever`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import signal
import socket
import threading
import time
from collections.abc import Callable, Generator
from types import TracebackType

import uvicorn
from starlette.applications import Starlette

from axsync.evloop import loop_factory
from axsync.fake.app import QuietDrops, build_app
from axsync.fake.knobs import Knobs
from axsync.fake.mailbox import CorpusLike, Mailbox
from axsync.fake.web import Service

__all__ = ["FakeAxigen", "Knobs", "serve_forever"]

STARTUP_TIMEOUT = 10.0


class _Server(uvicorn.Server):
    """uvicorn, plus a callback once it listens (and handles signals), minus re-raising
    SIGINT/SIGTERM after a graceful stop: the CLI returns normally."""

    def __init__(self, config: uvicorn.Config, on_started: Callable[[], None] | None = None) -> None:
        super().__init__(config)
        self._on_started = on_started

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self._on_started is not None:
            self._on_started()

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {sig: signal.signal(sig, self.handle_exit) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


try:
    import httptools  # noqa: F401

    _HTTPTOOLS = True
except ImportError:  # pragma: no cover - a dependency; h11 still works
    _HTTPTOOLS = False


def _uvicorn_loop() -> str:
    """uvicorn's name for the event loop :mod:`axsync.evloop` picks ("auto" for a value
    of AXSYNC_EVENT_LOOP it does not know: the fake runs anyway)."""
    try:
        return "uvloop" if loop_factory() is not None else "asyncio"
    except ValueError:
        return "auto"


def _quiet_uvicorn() -> None:
    logger = logging.getLogger("uvicorn.error")
    if not any(isinstance(f, QuietDrops) for f in logger.filters):
        logger.addFilter(QuietDrops())


def _bind(host: str, port: int) -> socket.socket:
    family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(address)
    return sock


def _url(host: str, port: int) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


class FakeAxigen:
    """A fake Axigen Mailbox API server over a :class:`Mailbox`.

    ``knobs`` may be changed at any time; ``mailbox`` may be changed directly (as another
    client would) while the server runs. Use as a context manager to start and stop it.
    """

    def __init__(
        self,
        corpus: CorpusLike | None = None,
        *,
        user: str = "alice@example.com",
        password: str = "secret",
        knobs: Knobs | None = None,
    ) -> None:
        self.knobs = knobs if knobs is not None else Knobs()
        self.mailbox = Mailbox(corpus, knobs=self.knobs)
        self.user = user
        self.password = password
        self.service = Service(self.mailbox, self.knobs, user, password)
        self.app: Starlette = build_app(self.service)
        self.url = ""
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._sock: socket.socket | None = None

    def reset(self, corpus: CorpusLike | None = None, *, knobs: Knobs | None = None) -> None:
        """Start over while the server keeps running: a new mailbox from ``corpus``, the
        knobs set back to ``knobs`` (default values when None), no sessions, no counts."""
        self.service.cancel_jobs()
        values = knobs if knobs is not None else Knobs()
        for item in dataclasses.fields(Knobs):
            if item.init:
                setattr(self.knobs, item.name, getattr(values, item.name))
        self.mailbox = Mailbox(corpus, knobs=self.knobs)
        self.service.reset(self.mailbox)

    # ------------------------------------------------------------------ counters

    @property
    def counters(self) -> dict[str, int]:
        """Requests per ``"METHOD /route/template"``, faulted ones included."""
        return self.service.counters

    def total_requests(self) -> int:
        return self.service.total_requests()

    def reset_counters(self) -> None:
        self.service.reset_counters()

    # ------------------------------------------------------------------ running

    def _config(self) -> uvicorn.Config:
        _quiet_uvicorn()
        return uvicorn.Config(
            self.app,
            # httptools (C) when installed: the fake stands in for a C++ server, and with
            # h11 its own parsing took a third of a benchmark machine's second core.
            http="httptools" if _HTTPTOOLS else "h11",
            # uvloop's event loop where installed (a dependency), as for httptools, unless
            # AXSYNC_EVENT_LOOP says otherwise (axsync.evloop)
            loop=_uvicorn_loop(),
            ws="none",
            lifespan="off",
            log_config=None,
            access_log=False,
            proxy_headers=False,  # nothing forwards to the fake: no X-Forwarded-* to read
            timeout_graceful_shutdown=2,
        )

    def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Serve in a background thread; returns the base URL once it is listening."""
        if self._thread is not None:
            raise RuntimeError("the fake server is already running")
        sock = _bind(host, port)
        server = _Server(self._config())
        thread = threading.Thread(
            target=server.run, kwargs={"sockets": [sock]}, name="fake-axigen", daemon=True
        )
        self._server, self._thread, self._sock = server, thread, sock
        thread.start()
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("the fake server did not start")
            time.sleep(0.005)
        self.url = _url(host, sock.getsockname()[1])
        return self.url

    def stop(self) -> None:
        self.service.cancel_jobs()
        server, thread, sock = self._server, self._thread, self._sock
        self._server = self._thread = self._sock = None
        if server is not None:
            server.should_exit = True
        if thread is not None:
            thread.join(STARTUP_TIMEOUT)
        if sock is not None:
            sock.close()

    def serve_forever(
        self, host: str = "127.0.0.1", port: int = 0, on_ready: Callable[[str], None] | None = None
    ) -> None:
        """Serve in this thread until SIGINT or SIGTERM; ``on_ready(url)`` once listening."""
        sock = _bind(host, port)
        self.url = url = _url(host, sock.getsockname()[1])
        started = (lambda: on_ready(url)) if on_ready is not None else None
        try:
            _Server(self._config(), started).run(sockets=[sock])
        finally:
            self.service.cancel_jobs()
            sock.close()

    def __enter__(self) -> FakeAxigen:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def serve_forever(
    corpus: CorpusLike | None = None,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    user: str = "alice@example.com",
    password: str = "secret",
    knobs: Knobs | None = None,
    on_ready: Callable[[str], None] | None = None,
) -> None:
    """The ``axsync fake-server`` loop: build the server and serve until a signal."""
    FakeAxigen(corpus, user=user, password=password, knobs=knobs).serve_forever(host, port, on_ready)
