"""Where the pull's network work runs: worker threads, or one asyncio event loop.

:class:`LoopRunner` is used when the API client can download on an event loop
(:meth:`axsync.api.mails.MailsMixin.source_fetcher`): all the network work on one thread.
The caller submits coroutine functions from its own thread, many at a time (one wake-up of
the loop per batch); leaving the ``with`` block waits for every submitted one to finish,
as a thread pool's shutdown does.

:func:`fan_in` runs the gather phase's listings (one producer thread per folder in flight)
and hands their pages to the one thread that writes the state DB. :func:`in_threads` runs
a few blocking file-system calls (fsync-bound) at once.

The event loop is uvloop's where it is installed, else asyncio's (:mod:`axsync.evloop`).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import queue
import threading
from collections.abc import Awaitable, Callable, Generator, Sequence
from concurrent.futures import ThreadPoolExecutor
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

from axsync.evloop import loop_factory

if TYPE_CHECKING:
    import asyncio

T = TypeVar("T")
R = TypeVar("R")

def new_event_loop() -> asyncio.AbstractEventLoop:
    """A new event loop of the kind ``AXSYNC_EVENT_LOOP`` asks for (:mod:`axsync.evloop`).
    ConfigError naming the variable for a value that is not a loop, or for uvloop asked
    for and not installed."""
    import asyncio  # here: a run with nothing to download does not pay for importing it

    from axsync.errors import ConfigError

    try:
        factory = loop_factory()
    except ValueError as exc:
        raise ConfigError("bad environment", [str(exc)]) from None
    return factory() if factory is not None else asyncio.new_event_loop()


def in_threads(fn: Callable[[T], R], items: Sequence[T], name: str, workers: int = 8) -> list[R]:
    """``[fn(item) for item in items]``, on up to ``workers`` threads at once (for calls
    that wait on the disk: each folder's fsyncs overlap the others'). The first exception
    (in ``items`` order) is raised once every call has ended."""
    if not items:
        return []
    with ThreadPoolExecutor(min(workers, len(items)), thread_name_prefix=name) as pool:
        return list(pool.map(fn, items))


class LoopRunner:
    """An event loop on its own thread, running at most ``connections`` submitted
    coroutines at a time."""

    def __init__(self, connections: int) -> None:
        import asyncio  # here: a run with nothing to download does not pay for importing it

        self.loop = new_event_loop()
        self._limit = asyncio.Semaphore(max(1, connections))
        self._pending: set[concurrent.futures.Future[None]] = set()
        self._pending_lock = threading.Lock()  # done callbacks run on the loop's thread
        self._thread = threading.Thread(target=self.loop.run_forever, name="axsync-net",
                                        daemon=True)
        self._thread.start()
        self._closers: list[Callable[[], None]] = []

    def on_close(self, closer: Callable[[], None]) -> None:
        """Call ``closer()`` on the loop's thread when the runner closes (its connections)."""
        self._closers.append(closer)

    def submit(self, job: Callable[..., Awaitable[None]], *args: Any) -> None:
        """Run ``await job(*args)`` on the loop. ``job`` must handle its own errors: an
        exception that escapes it is raised again by :meth:`close`."""
        self.submit_many(job, [args])

    def submit_many(self, job: Callable[..., Awaitable[None]], calls: Sequence[Sequence[Any]]) -> None:
        """:meth:`submit` for each argument list in ``calls``, with one wake-up of the loop
        (a wake-up per job cost two system calls and a thread switch per download)."""
        if not calls:
            return
        batch: concurrent.futures.Future[None] = concurrent.futures.Future()
        with self._pending_lock:
            self._pending.add(batch)
        batch.add_done_callback(self._finished)

        def start() -> None:
            left = len(calls)
            errors: list[BaseException] = []

            def one_done(task: asyncio.Task[None]) -> None:
                nonlocal left
                left -= 1
                if not task.cancelled() and task.exception() is not None:
                    errors.append(task.exception())  # type: ignore[arg-type]
                if not left:
                    if errors:
                        batch.set_exception(errors[0])
                    else:
                        batch.set_result(None)

            for args in calls:
                self.loop.create_task(self._limited(job, *args)).add_done_callback(one_done)

        self.loop.call_soon_threadsafe(start)

    def _finished(self, future: concurrent.futures.Future[None]) -> None:
        with self._pending_lock:
            self._pending.discard(future)

    async def _limited(self, job: Callable[..., Awaitable[None]], *args: Any) -> None:
        async with self._limit:
            await job(*args)

    def close(self) -> None:
        """Wait for every submitted job, run the closers (:meth:`on_close`) on the loop,
        then stop it."""
        errors: list[BaseException] = []
        try:
            while True:
                with self._pending_lock:
                    pending = list(self._pending)
                if not pending:
                    break
                done, _ = concurrent.futures.wait(pending)
                errors.extend(e for f in done if (e := f.exception()) is not None)
        finally:
            def closing() -> None:
                try:
                    for closer in self._closers:
                        try:
                            closer()
                        except Exception as exc:  # raised below, after the loop stopped
                            errors.append(exc)
                finally:
                    self.loop.stop()

            self.loop.call_soon_threadsafe(closing)
            self._thread.join()
            self.loop.close()
        if errors:
            raise errors[0]

    def __enter__(self) -> LoopRunner:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


class End:
    """The last event of one item in :func:`fan_in`: ``error`` is what its producer raised."""

    __slots__ = ("error",)

    def __init__(self, error: BaseException | None) -> None:
        self.error = error


class _Stopped(BaseException):
    """The consumer of :func:`fan_in` went away (a BaseException, so that a producer's
    ``except Exception`` does not swallow it)."""


#: How often :func:`fan_in` calls its ``idle`` while no value comes.
IDLE_S = 0.02


def fan_in(items: Sequence[T], produce: Callable[[T, Callable[[Any], None]], None],
           workers: int, depth: int = 16, idle: Callable[[], None] | None = None,
           ) -> Generator[tuple[T, Any], None, None]:
    """Run ``produce(item, put)`` for every item on up to ``workers`` threads and yield
    ``(item, value)`` for each value it puts, in the order they were put (one item's values
    keep their order; items interleave), then ``(item, End)`` once its ``produce`` has
    returned or raised (``End.error``). At most ``depth`` values wait to be taken: a slow
    consumer holds the producers back, so memory does not grow with the data.

    For the network side of the gather phase: listings of many folders in flight at once,
    their pages applied to the state DB by the consumer (the only DB writer). Closing the
    generator early stops the producers at their next ``put``. ``idle()`` is called on the
    consumer's thread every ``IDLE_S`` seconds while it waits for a value (a streamed pull
    keeps its downloads going meanwhile)."""
    if not items:
        return
    events: queue.Queue[tuple[T, Any]] = queue.Queue(maxsize=max(1, depth))
    stop = threading.Event()

    def put(item: T, value: Any) -> None:
        while True:
            if stop.is_set():
                raise _Stopped
            try:
                events.put((item, value), timeout=0.1)
                return
            except queue.Full:
                continue

    def run(item: T) -> None:
        error: BaseException | None = None
        try:
            produce(item, lambda value: put(item, value))
        except _Stopped:
            return
        except BaseException as exc:  # handed to the consumer, raised there if it wants
            error = exc
        with contextlib.suppress(_Stopped):
            put(item, End(error))

    pool = ThreadPoolExecutor(max(1, min(workers, len(items))), thread_name_prefix="axsync-gather")
    try:
        for item in items:
            pool.submit(run, item)
        remaining = len(items)
        while remaining:
            if idle is None:
                item, value = events.get()
            else:
                try:
                    item, value = events.get(timeout=IDLE_S)
                except queue.Empty:
                    idle()
                    continue
            if isinstance(value, End):
                remaining -= 1
            yield item, value
    finally:
        stop.set()
        pool.shutdown(wait=True, cancel_futures=True)

