"""axsync/sync/fetch.py: fan_in (producer threads, one consumer, bounded queue) and
LoopRunner (coroutines submitted from any thread, run on one event loop thread), and the
choice of that loop (uvloop's or asyncio's)."""

from __future__ import annotations

import asyncio
import itertools
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Generator
from typing import Any, cast

import pytest

from axsync.errors import ConfigError
from axsync.evloop import EVENT_LOOP_ENV
from axsync.sync.fetch import End, LoopRunner, fan_in, in_threads, new_event_loop

pytestmark = pytest.mark.timeout(60)

Put = Callable[[Any], None]


def gather_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("axsync-gather")]


def by_item(events: list[tuple[str, Any]]) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {}
    for item, value in events:
        out.setdefault(item, []).append(value)
    return out


# ---------------------------------------------------------------------------- fan_in


def test_values_keep_their_order_while_items_interleave() -> None:
    steps = 20
    both_put = threading.Barrier(2, timeout=5)

    def produce(item: str, put: Put) -> None:
        for i in range(steps):
            put(i)
            both_put.wait()  # neither producer puts i + 1 before both have put i

    events = list(fan_in(["a", "b"], produce, workers=2, depth=1))
    values = [(item, v) for item, v in events if not isinstance(v, End)]
    assert [v for _item, v in values] == [i for i in range(steps) for _ in range(2)]
    assert {item for item, _v in values[:2]} == {"a", "b"}, "the two items interleave"
    for item, seen in by_item(events).items():
        assert seen[:-1] == list(range(steps)), item
        assert isinstance(seen[-1], End)


def test_many_items_each_in_order_with_one_end_last() -> None:
    items = [f"folder{i}" for i in range(8)]

    def produce(item: str, put: Put) -> None:
        for i in range(200):
            put((item, i))

    events = list(fan_in(items, produce, workers=3, depth=4))
    seen = by_item(events)
    assert sorted(seen) == items
    for item in items:
        assert seen[item][:-1] == [(item, i) for i in range(200)]
        assert isinstance(seen[item][-1], End)
        assert seen[item][-1].error is None
    assert sum(isinstance(v, End) for _item, v in events) == len(items)
    assert isinstance(events[-1][1], End)
    assert not gather_threads()


def test_end_is_last_and_carries_the_producers_exception() -> None:
    errors: dict[str, BaseException] = {"b": ValueError("b broke"), "e": KeyError("e")}

    def produce(item: str, put: Put) -> None:
        if item == "e":
            raise errors["e"]  # before any value
        for i in range(5):
            if item == "b" and i == 2:
                raise errors["b"]
            put(i)

    events = list(fan_in(list("abcde"), produce, workers=2, depth=3))  # does not raise
    seen = by_item(events)
    assert sorted(seen) == list("abcde")
    for item, values in seen.items():
        end = values[-1]
        assert isinstance(end, End)
        assert not any(isinstance(v, End) for v in values[:-1])
        assert end.error is errors.get(item)
    assert seen["b"][:-1] == [0, 1]
    assert seen["e"][:-1] == []
    assert all(seen[item][:-1] == list(range(5)) for item in "acd")


@pytest.mark.parametrize("workers", [1, 3])
def test_slow_consumer_holds_the_producers_back(workers: int) -> None:
    depth, per_item = 1, 10
    lock = threading.Lock()
    produced = 0

    def produce(item: str, put: Put) -> None:
        nonlocal produced
        for i in range(per_item):
            with lock:
                produced += 1
            put(i)

    consumed = 0
    worst = 0
    for _item, value in fan_in(["a", "b", "c"], produce, workers=workers, depth=depth):
        if isinstance(value, End):
            continue
        consumed += 1
        time.sleep(0.004)  # a slow consumer: the producers run ahead until put blocks
        with lock:
            worst = max(worst, produced - consumed)
    assert consumed == 3 * per_item
    # Waiting: at most ``depth`` in the queue, plus one per producer blocked in put.
    assert worst <= depth + workers
    assert worst == depth + workers, "the producers did run ahead as far as allowed"


@pytest.mark.parametrize("how", ["break", "close"])
def test_closing_early_stops_the_producers_and_joins_the_threads(how: str) -> None:
    lock = threading.Lock()
    started: list[str] = []
    stopped: list[str] = []

    def produce(item: str, put: Put) -> None:
        with lock:
            started.append(item)
        try:
            for i in itertools.count():  # never ends by itself
                put(i)
        finally:
            with lock:
                stopped.append(item)

    items = [f"f{i}" for i in range(6)]
    taken = 0
    begin = time.monotonic()
    if how == "break":
        for _item, _value in fan_in(items, produce, workers=3, depth=2):
            taken += 1
            if taken == 10:
                break
    else:
        # fan_in is a generator (typed as an Iterator): close() is how a caller stops it
        gen = cast(Generator[tuple[str, Any], None, None],
                   fan_in(items, produce, workers=3, depth=2))
        for _ in range(10):
            next(gen)
            taken += 1
        gen.close()
    elapsed = time.monotonic() - begin
    assert taken == 10
    assert elapsed < 1.5, f"closing took {elapsed:.2f}s"
    assert started
    assert sorted(stopped) == sorted(started), "every producer that ran has returned"
    assert not gather_threads()


def test_no_items_yield_nothing_and_start_no_thread() -> None:
    called: list[str] = []

    def produce(item: str, put: Put) -> None:
        called.append(item)

    before = threading.active_count()
    assert list(fan_in([], produce, workers=4)) == []
    assert called == []
    assert threading.active_count() == before


def test_more_workers_than_items() -> None:
    names: set[str] = set()
    lock = threading.Lock()

    def produce(item: str, put: Put) -> None:
        with lock:
            names.add(threading.current_thread().name)
        put(item.upper())

    events = list(fan_in(["x", "y"], produce, workers=16, depth=16))
    seen = by_item(events)
    assert {item: values[:-1] for item, values in seen.items()} == {"x": ["X"], "y": ["Y"]}
    assert all(isinstance(values[-1], End) for values in seen.values())
    assert 1 <= len(names) <= 2, "no more threads than items"
    assert all(name.startswith("axsync-gather") for name in names)
    assert not gather_threads()


# ---------------------------------------------------------------------------- LoopRunner


@pytest.mark.parametrize(("connections", "limit"), [(0, 1), (1, 1), (4, 4)])
def test_submit_many_runs_each_job_once_with_at_most_connections_at_once(
        connections: int, limit: int) -> None:
    ran: list[tuple[int, str]] = []
    running = 0
    most = 0
    loop_threads: set[str] = set()

    async def job(n: int, tag: str) -> None:
        nonlocal running, most
        loop_threads.add(threading.current_thread().name)
        running += 1
        most = max(most, running)
        await asyncio.sleep(0.002)
        running -= 1
        ran.append((n, tag))

    with LoopRunner(connections) as runner:
        runner.submit_many(job, [(n, "first") for n in range(12)])
        runner.submit_many(job, [(n, "second") for n in range(6)])
        runner.submit(job, 99, "single")
    assert sorted(ran) == sorted(
        [(n, "first") for n in range(12)] + [(n, "second") for n in range(6)] + [(99, "single")])
    assert most == limit
    assert loop_threads == {"axsync-net"}
    assert runner.loop.is_closed()


def test_close_waits_for_the_jobs() -> None:
    done: list[int] = []

    async def job(n: int) -> None:
        await asyncio.sleep(0.03)
        done.append(n)

    runner = LoopRunner(2)
    runner.submit(job, 1)
    runner.submit_many(job, [(2,), (3,)])
    runner.close()
    assert sorted(done) == [1, 2, 3]
    assert not runner._thread.is_alive()


def test_an_escaping_exception_is_raised_by_close_after_the_other_jobs() -> None:
    boom = ValueError("job 3 failed")
    finished: list[int] = []

    async def job(n: int) -> None:
        if n == 3:
            raise boom
        await asyncio.sleep(0.02)
        finished.append(n)

    runner = LoopRunner(4)
    runner.submit_many(job, [(n,) for n in range(8)])
    runner.submit(job, 100)  # another batch: also waited for
    with pytest.raises(ValueError) as info:
        runner.close()
    assert info.value is boom
    assert sorted(finished) == [0, 1, 2, 4, 5, 6, 7, 100]
    assert runner.loop.is_closed()


def test_submit_many_of_nothing_is_a_no_op() -> None:
    called: list[Any] = []

    async def job(*args: Any) -> None:
        called.append(args)

    runner = LoopRunner(2)
    runner.submit_many(job, [])
    assert not runner._pending, "no batch to wait for"
    runner.close()
    assert called == []


def test_jobs_submitted_from_several_threads_all_run() -> None:
    ran: list[tuple[int, int]] = []

    async def job(t: int, i: int) -> None:
        await asyncio.sleep(0)
        ran.append((t, i))

    runner = LoopRunner(8)
    start = threading.Barrier(6)

    def submitter(t: int) -> None:
        start.wait()
        for i in range(20):
            runner.submit(job, t, i)
        runner.submit_many(job, [(t, i) for i in range(20, 40)])

    threads = [threading.Thread(target=submitter, args=(t,)) for t in range(6)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    runner.close()
    counts = Counter(ran)
    assert set(counts) == {(t, i) for t in range(6) for i in range(40)}
    assert set(counts.values()) == {1}


def test_closers_run_on_the_loop_after_the_jobs() -> None:
    events: list[tuple[str, str]] = []

    async def job() -> None:
        await asyncio.sleep(0.01)
        events.append(("job", threading.current_thread().name))

    runner = LoopRunner(1)
    runner.on_close(lambda: events.append(("closer", threading.current_thread().name)))
    runner.submit(job)
    runner.close()
    assert events == [("job", "axsync-net"), ("closer", "axsync-net")]


def test_a_raising_closer_does_not_hang_close() -> None:
    runner = LoopRunner(1)

    def closer() -> None:
        raise OSError("closing a connection failed")

    runner.on_close(closer)
    errors: list[BaseException] = []

    def close() -> None:
        try:
            runner.close()
        except BaseException as exc:
            errors.append(exc)

    closing = threading.Thread(target=close, daemon=True)
    closing.start()
    closing.join(0.5)  # nothing to wait for: close() takes a few ms
    hung = closing.is_alive()
    if hung:  # release it, so that no thread outlives the test
        runner.loop.call_soon_threadsafe(runner.loop.stop)
        closing.join(5.0)
    assert not hung, "close() hangs"


def test_in_threads_keeps_the_order_runs_at_once_and_raises_the_first_error() -> None:
    assert in_threads(lambda x: x * 2, [], "t") == []
    active, peak = [0], [0]
    lock = threading.Lock()

    def slow(x: int) -> int:
        with lock:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
        time.sleep(0.05)
        with lock:
            active[0] -= 1
        return x * 10

    assert in_threads(slow, list(range(12)), "t", workers=4) == [x * 10 for x in range(12)]
    assert 2 <= peak[0] <= 4
    done: list[int] = []

    def failing(x: int) -> int:
        time.sleep(0.01 * x)
        done.append(x)
        if x in (3, 5):
            raise ValueError(f"item {x}")
        return x

    with pytest.raises(ValueError, match="item 3"):
        in_threads(failing, list(range(8)), "t", workers=8)
    assert sorted(done) == list(range(8))  # every call ended before the error was raised


# ---------------------------------------------------------------------------- event loop


def loop_kind(loop: asyncio.AbstractEventLoop) -> str:
    return "uvloop" if type(loop).__module__.startswith("uvloop") else "asyncio"


@pytest.mark.parametrize(("value", "kind"), [
    (None, "uvloop"), ("", "uvloop"), ("uvloop", "uvloop"), (" UVLoop ", "uvloop"),
    ("asyncio", "asyncio"),
])
def test_the_event_loop_is_uvloop_unless_asyncio_is_asked_for(
        monkeypatch: pytest.MonkeyPatch, value: str | None, kind: str) -> None:
    pytest.importorskip("uvloop")
    if value is None:
        monkeypatch.delenv(EVENT_LOOP_ENV, raising=False)
    else:
        monkeypatch.setenv(EVENT_LOOP_ENV, value)
    with LoopRunner(2) as runner:
        seen: list[str] = []

        async def job() -> None:
            seen.append(loop_kind(asyncio.get_running_loop()))

        runner.submit(job)
    assert loop_kind(runner.loop) == kind
    assert seen == [kind]


def test_an_unknown_event_loop_is_a_config_error_naming_the_variable(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(EVENT_LOOP_ENV, "trio")
    with pytest.raises(ConfigError) as info:
        new_event_loop()
    assert info.value.exit_code == 2
    assert "AXSYNC_EVENT_LOOP: 'trio' is not one of uvloop, asyncio" in str(info.value)


def test_uvloop_asked_for_and_missing_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(EVENT_LOOP_ENV, "uvloop")
    monkeypatch.setitem(sys.modules, "uvloop", None)  # import uvloop raises ImportError
    with pytest.raises(ConfigError, match="AXSYNC_EVENT_LOOP: uvloop is not installed"):
        new_event_loop()
    monkeypatch.setenv(EVENT_LOOP_ENV, "")  # the default falls back to asyncio's loop
    loop = new_event_loop()
    try:
        assert loop_kind(loop) == "asyncio"
    finally:
        loop.close()
