"""StoreService (open on start, flush and close on stop) and RetentionService (periodic prune)."""
from __future__ import annotations

import pytest
import pytest_twisted
from twisted.internet import defer, task

from chathub.config.storage import HistoryConfig
from chathub.store import StorageError
from chathub.store.service import RetentionService, StoreService
from chathub.store.sqlite import SqliteStore
from tests.store_fixtures import EventMaker


@pytest_twisted.ensureDeferred
async def test_opens_on_start_and_flushes_on_stop(tmp_path):
    path = str(tmp_path / "chathub.sqlite3")
    store = SqliteStore(path)
    service = StoreService(store)
    service.startService()
    assert await service.ready() is store
    events = EventMaker().chat("alice", "#svc", 20)
    pending = [store.append(e) for e in events]
    await service.stopService()
    assert all(d.called for d in pending)
    with pytest.raises(StorageError):
        await store.append(EventMaker().msg("alice", "#svc", "after stop"))
    again = SqliteStore(path)
    await again.open()
    assert [e.text for e in await again.latest("x", "#svc", None, 100)] == [e.text for e in events]
    await again.close()


@pytest_twisted.ensureDeferred
async def test_failure_to_open_is_reported(tmp_path):
    path = tmp_path / "chathub.sqlite3"
    path.write_bytes(b"garbage " * 1000)
    reported = []
    service = StoreService(SqliteStore(str(path)), on_failure=reported.append)
    waiting = service.ready()
    service.startService()
    with pytest.raises(StorageError) as e:
        await waiting
    assert str(path) in str(e.value)
    assert len(reported) == 1 and reported[0].check(StorageError)
    with pytest.raises(StorageError):
        await service.ready()
    await service.stopService()


@pytest_twisted.ensureDeferred
async def test_retention_runs_at_start_and_every_interval(tmp_path):
    history = HistoryConfig(max_per_target=2, prune_interval_seconds=600)
    store = SqliteStore(str(tmp_path / "chathub.sqlite3"), history)
    await store.open()
    make = EventMaker()
    for e in make.chat("alice", "#r", 5):
        await store.append(e)
    clock = task.Clock()
    clock.advance(make.now)
    retention = RetentionService(store, history, clock)
    retention.startService()
    assert await retention.prune_now() == 3  # the run started at start-up
    for e in make.chat("alice", "#r", 4, prefix="n"):
        await store.append(e)
    clock.advance(599)
    assert await retention.prune_now() == 4  # called by hand: nothing was pending
    for e in make.chat("alice", "#r", 3, prefix="k"):
        await store.append(e)
    clock.advance(601)  # the interval passed: the loop started a prune
    assert await retention.prune_now() == 3
    assert [e.text for e in await store.latest("x", "#r", None, 10)] == ["k1", "k2"]
    await defer.maybeDeferred(retention.stopService)
    await store.close()


def test_retention_idle_without_limits():
    retention = RetentionService(store=None, history=HistoryConfig(), clock=task.Clock())
    retention.startService()
    assert not retention.active
    retention.stopService()
