"""The event loop axsync's own asyncio code runs on: the pull's downloads
(:mod:`axsync.sync.fetch`), the fake server and the latency proxy.

uvloop's where it is installed (a dependency on CPython outside Windows): its transports,
timers and callbacks are C, where asyncio's are Python, and the downloads' thread shares
the GIL with the rest of the pull. ``AXSYNC_EVENT_LOOP=asyncio`` picks the standard
library's loop, ``uvloop`` insists on uvloop; both pass the same tests.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING, cast

if TYPE_CHECKING:
    import asyncio

#: The environment variable that picks the event loop: "uvloop" or "asyncio" (unset or
#: empty: uvloop when installed).
EVENT_LOOP_ENV = "AXSYNC_EVENT_LOOP"
LOOPS = ("uvloop", "asyncio")


def asked_for() -> str:
    """"uvloop", "asyncio" or "" (the default), as :data:`EVENT_LOOP_ENV` says; ValueError
    naming the variable for any other value."""
    choice = os.environ.get(EVENT_LOOP_ENV, "").strip().lower()
    if choice not in ("", *LOOPS):
        raise ValueError(f"{EVENT_LOOP_ENV}: {choice!r} is not one of {', '.join(LOOPS)}")
    return choice


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's ``new_event_loop``, or None for asyncio's own loop, as :func:`asked_for`
    says. ValueError as :func:`asked_for` does, or for uvloop asked for and not installed."""
    choice = asked_for()
    if choice == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:
        if choice == "uvloop":
            raise ValueError(f"{EVENT_LOOP_ENV}: uvloop is not installed") from None
        return None
    return cast("Callable[[], asyncio.AbstractEventLoop]", uvloop.new_event_loop)
