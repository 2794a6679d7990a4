"""Retention on a large history does not hold the server up: while a prune of many rows runs
(in ``[history] prune_batch`` transactions through the writer), a client's messages are stored
and delivered between two batches, each one long before the prune is over."""
from __future__ import annotations

import time

import pytest_twisted
from twisted.internet import defer

from chathub.events import EventIds, Kind, Source
from tests.support import history_server

ROWS = 20_000
BATCH = 20  # 1,000 transactions: a long prune, each step short


@pytest_twisted.ensureDeferred
async def test_messages_are_answered_while_a_large_prune_runs(tmp_path):
    server = await history_server(tmp_path, protocols=("irc",), history={"max_age_days": 1, "prune_batch": BATCH})
    try:
        store = server.store
        # a month-old history of another room, written as the hub would
        old = EventIds(clock=iter(range(int(time.time()) - 30 * 86400, 2**40)).__next__)
        source = Source(nick="old", user="old", host="example.test")
        for start in range(0, ROWS, 5000):
            events = [old.make(Kind.MESSAGE, source, "#archive", f"old {i}") for i in range(start, start + 5000)]
            await defer.gatherResults([store.append(e) for e in events])
        alice = await server.irc("alice", rooms=["#live"])
        bob = await server.irc("bob", rooms=["#live"])
        pruning = store.prune()
        for i in range(5):
            alice.send(f"PRIVMSG #live :said during the prune {i}")
            await bob.expect_re(rf"PRIVMSG #live :said during the prune {i}$")
            # delivered, so committed: between two batches, not after the last
            assert not pruning.called, f"message {i} waited for the whole prune"
        assert await pruning == ROWS
        kept = await store.latest("bob", "#live", None, 10)
        assert [e.text for e in kept if e.kind == Kind.MESSAGE] == [f"said during the prune {i}" for i in range(5)]
        assert await store.latest("x", "#archive", None, 10) == []
    finally:
        await server.stop()
