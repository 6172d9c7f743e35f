"""Serving the browse UI on 127.0.0.1 (never another interface) with uvicorn."""

from __future__ import annotations

import socket
import threading
import time
import webbrowser
from types import TracebackType

import click
import uvicorn

from axsync.archive.access import Archive
from axsync.browse.app import create_app
from axsync.errors import UsageError

HOST = "127.0.0.1"


def _bind(port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((HOST, port))
    except OSError as exc:
        sock.close()
        raise UsageError(f"cannot listen on {HOST}:{port}: {exc.strerror}; try --port 0") from exc
    sock.listen(64)
    return sock


def _server(archive: Archive, account: str) -> uvicorn.Server:
    config = uvicorn.Config(create_app(archive, account), log_level="warning",
                            server_header=False, date_header=False, access_log=False,
                            lifespan="off")
    return uvicorn.Server(config)


def serve(archive: Archive, account: str, *, port: int, open_browser: bool) -> None:
    """Serve until interrupted. ``archive`` must be opened ``shared=True``: requests are
    served on uvicorn's event-loop thread."""
    sock = _bind(port)
    url = f"http://{HOST}:{sock.getsockname()[1]}/"
    server = _server(archive, account)
    click.echo(f"axsync browse: {account} at {url}  (read-only; Ctrl-C to stop)", err=True)
    if open_browser:
        threading.Timer(0.5, webbrowser.open, (url,)).start()
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()


class Running:
    """The UI served from a background thread (tests, embedding)::

        with Running(archive, "work") as ui:
            fetch(ui.url)
    """

    def __init__(self, archive: Archive, account: str, port: int = 0) -> None:
        self.sock = _bind(port)
        self.url = f"http://{HOST}:{self.sock.getsockname()[1]}/"
        self.server = _server(archive, account)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]},
                                       name="axsync-browse", daemon=True)

    def __enter__(self) -> Running:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the browse server did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.server.should_exit = True
        self.thread.join(10)
        self.sock.close()
