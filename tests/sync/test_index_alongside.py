"""The search index is built alongside an initial pull: pages of recorded messages are
parsed in worker processes while the downloads go on; the run's end indexes the rest.
The index must come out the same as one built afterwards in this process alone."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from archive.conftest import clear_index, index_dump

from axsync.archive import index as index_module
from axsync.archive.index import IndexAlongside, SearchIndex
from axsync.statedb import StateDB
from axsync.store import Store
from axsync.sync import pull as pull_module

from .conftest import MakeEnv


@pytest.mark.parametrize("api", ["10.4", "10.6"])
def test_initial_pull_indexes_alongside(make_env: MakeEnv, api: str, tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(index_module, "PARALLEL_MIN", 20)
    monkeypatch.setattr(index_module, "_BATCH_MESSAGES", 25)
    monkeypatch.setattr(index_module, "default_workers", lambda: 2)
    started: list[int] = []
    pokes: list[int] = []
    indexers: list[IndexAlongside] = []
    real_started, real_recorded = IndexAlongside.downloads_started, IndexAlongside.recorded
    real_keep = IndexAlongside.keep
    kept: list[str] = []

    def downloads_started(self: IndexAlongside, count: int) -> None:
        started.append(count)
        indexers.append(self)
        real_started(self, count)

    def keep(self: IndexAlongside, dirname: str, filename: str, sha256: str, data: bytes) -> None:
        if self.running:
            assert hashlib.sha256(data).hexdigest() == sha256
            kept.append(filename)
        real_keep(self, dirname, filename, sha256, data)

    def recorded(self: IndexAlongside) -> None:
        real_recorded(self)
        if self._feeder is not None:
            pokes.append(self._feeder.queued)  # handed to the workers

    ticks: list[int] = []
    real_tick = IndexAlongside.tick

    def tick(self: IndexAlongside) -> None:
        real_tick(self)
        ticks.append(1)

    monkeypatch.setattr(IndexAlongside, "downloads_started", downloads_started)
    monkeypatch.setattr(IndexAlongside, "recorded", recorded)
    monkeypatch.setattr(IndexAlongside, "tick", tick)
    monkeypatch.setattr(IndexAlongside, "keep", keep)
    monkeypatch.setattr(pull_module, "TICK_S", 0.0)  # told at every turn of the loop
    env = make_env(api, messages=150)
    report = env.ok()
    # told how many downloads there are: all at once, or (10.6, a streamed pull) more as
    # each folder is gathered
    assert started and started == sorted(set(started)) and started[-1] == report.pulled.new > 100
    assert len(started) == 1 if api == "10.4" else len(started) > 1
    assert pokes and max(pokes) >= 25, "no page was parsed alongside the downloads"
    assert len(ticks) > len(pokes), "the index was not told between recordings"
    # the workers parsed the bytes received, not the files, for every mail downloaded
    # once they were running (all but the few started before the workers were)
    assert len(set(indexers)) == 1 and indexers[0].from_memory == len(kept)
    assert report.pulled.new >= len(kept) > report.pulled.new // 2
    db = StateDB.open(env.db_path)
    try:
        index = SearchIndex(db, Store(env.maildir), workers=1)
        assert index.pending() == 0
        alongside = index_dump(db)
        assert len(alongside[1]) == report.pulled.new
        clear_index(db)
        index.catch_up()
        assert index_dump(db) == alongside
    finally:
        db.close()
    assert env.ok().pulled.new == 0
