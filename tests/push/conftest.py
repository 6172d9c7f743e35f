"""Fixtures for the push tests: ``make_env(api_version, ...)`` starts a fake server with the
hand-built mailbox of :mod:`tests.push.harness` and syncs it once; servers stop at the end."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from .harness import PushEnv, start_env

API_VERSIONS = ("10.4", "10.6")

MakeEnv = Callable[..., PushEnv]


@pytest.fixture
def make_env(tmp_path: Path) -> Iterator[MakeEnv]:
    envs: list[PushEnv] = []

    def make(api_version: str = "10.6", **kw: Any) -> PushEnv:
        kw.setdefault("name", f"acct{len(envs)}")
        initial = kw.pop("initial_sync", True)
        env = start_env(tmp_path, api_version, initial_sync=False, **kw)
        envs.append(env)
        if initial:
            env.ok()
            env.check()
        return env

    yield make
    for env in envs:
        env.fake.stop()


@pytest.fixture(params=API_VERSIONS)
def api_version(request: pytest.FixtureRequest) -> str:
    return str(request.param)
