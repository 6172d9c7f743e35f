"""axsync.evloop: which event loop the downloads, the fake server and the latency proxy
run on (AXSYNC_EVENT_LOOP; uvloop's by default where installed)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from axsync import evloop
from axsync.fake import server


@pytest.mark.parametrize(("value", "asked", "uvicorn"), [
    (None, "", "uvloop"), ("", "", "uvloop"), (" UVLoop ", "uvloop", "uvloop"),
    ("asyncio", "asyncio", "asyncio"), ("trio", None, "auto"),
])
def test_the_variable_picks_the_loop_everywhere(
        monkeypatch: pytest.MonkeyPatch, value: str | None, asked: str | None,
        uvicorn: str) -> None:
    pytest.importorskip("uvloop")
    if value is None:
        monkeypatch.delenv(evloop.EVENT_LOOP_ENV, raising=False)
    else:
        monkeypatch.setenv(evloop.EVENT_LOOP_ENV, value)
    if asked is None:
        with pytest.raises(ValueError, match="AXSYNC_EVENT_LOOP: 'trio' is not one of uvloop, asyncio"):
            evloop.asked_for()
    else:
        assert evloop.asked_for() == asked
        factory = evloop.loop_factory()
        assert (factory is None) == (asked == "asyncio")
    assert server._uvicorn_loop() == uvicorn  # the fake runs whatever the value


def test_without_uvloop_the_default_is_asyncio(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "uvloop", None)  # import uvloop raises ImportError
    monkeypatch.delenv(evloop.EVENT_LOOP_ENV, raising=False)
    assert evloop.loop_factory() is None
    assert server._uvicorn_loop() == "asyncio"
    monkeypatch.setenv(evloop.EVENT_LOOP_ENV, "uvloop")
    with pytest.raises(ValueError, match="AXSYNC_EVENT_LOOP: uvloop is not installed"):
        evloop.loop_factory()


def test_the_proxy_refuses_a_bad_value_with_its_message() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "axsync.netproxy", "--target", "127.0.0.1:9"],
        env={"AXSYNC_EVENT_LOOP": "trio", "PATH": "/usr/bin:/bin"},
        capture_output=True, text=True, timeout=30)
    assert proc.returncode == 1
    assert "netproxy: AXSYNC_EVENT_LOOP: 'trio' is not one of uvloop, asyncio" in proc.stderr
