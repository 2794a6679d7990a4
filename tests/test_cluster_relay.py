"""``ClusterRelay``: two nodes' relays on one PostgreSQL database, joined by an in-process
doorbell that can lose, repeat and reorder messages the way a pub/sub link can. Whatever
the doorbell does, each node gets every other node's event once, in the conversation's
committed order, fetching what it missed from the database.

(The doorbell stands in for Redis here so that each fault can be made exactly; the
RedisBackplane's own tests run against a real redis-server.)
"""
from __future__ import annotations

import pytest
import pytest_twisted
from twisted.internet import defer, reactor

from chathub.cluster.relay import ClusterRelay
from chathub.events import Kind
from tests.store_fixtures import *  # noqa: F401,F403 (fixtures)
from tests.store_fixtures import EventMaker
from tests.support import until

on_postgres = pytest.mark.parametrize("store_factory", ["postgres"], indirect=True)


class Doorbell:
    """One node's end of an in-process pub/sub channel shared by ``Doorbell``s of a bus."""

    def __init__(self, bus: list, node_id: str) -> None:
        self.bus = bus
        bus.append(self)
        self.node_id = node_id
        self.connected = True
        self.subscribers: list = []
        self.resyncs: list = []
        #: what the channel does to each published message: a list of messages to hand on
        self.transform = lambda message: [message]

    def publish(self, message: dict) -> None:
        for copy in self.transform(message):
            for end in self.bus:  # every subscriber, this node included (it drops its echo)
                for callback in end.subscribers:
                    callback(copy)

    def subscribe(self, callback) -> None:
        self.subscribers.append(callback)

    def unsubscribe(self, callback) -> None:
        self.subscribers.remove(callback)

    def on_resync(self, callback) -> None:
        self.resyncs.append(callback)


class Node:
    def __init__(self, store, bus: list, node_id: str) -> None:
        self.store = store
        self.got: list = []
        self.holds: list[str] = []  # the relay's pause and resume calls, in order
        self.doorbell = Doorbell(bus, node_id)
        self.relay = ClusterRelay(
            store, self.doorbell, self.got.append, reactor, gap_wait=0.02,
            pause=lambda conv: self.holds.append(f"pause {conv}"), resume=lambda conv: self.holds.append(f"resume {conv}"),
        )
        self.relay.start()

    def texts(self) -> list[str]:
        return [e.text for e in self.got]


@pytest_twisted.async_yield_fixture
async def nodes(store_factory):
    bus: list = []
    made: list[Node] = []

    async def make(node_id: str) -> Node:
        node = Node(await store_factory(), bus, node_id)
        made.append(node)
        return node

    yield make
    for node in made:
        node.relay.stop()


async def in_touch(nodes, step: float = 1.0):
    """Nodes a and b, b having been shown a's first message in #r (so it knows the room)."""
    a, b = await nodes("a"), await nodes("b")
    make = EventMaker(step=step)
    await say(a, make, ["first"])
    await until(lambda: len(b.got) == 1)
    return a, b, make


async def say(node: Node, make: EventMaker, texts, room: str = "#r"):
    events = [make.msg(node.doorbell.node_id, room, t) for t in texts]
    await defer.gatherResults([node.store.append(e) for e in events])
    return events


@on_postgres
@pytest_twisted.ensureDeferred
async def test_the_other_node_gets_each_event_once_in_order_and_not_its_own(nodes):
    a, b = await nodes("a"), await nodes("b")
    make = EventMaker()
    await say(a, make, ["a1", "a2"])
    await until(lambda: len(b.got) == 2)
    await say(b, make, ["b1"])
    await say(a, make, ["a3"])
    await until(lambda: len(b.got) == 3 and len(a.got) == 1)
    assert b.texts() == ["a1", "a2", "a3"] and a.texts() == ["b1"]
    assert a.relay.duplicates == b.relay.duplicates == 0


@on_postgres
@pytest_twisted.ensureDeferred
async def test_lost_messages_are_fetched_from_the_database(nodes):
    a, b, make = await in_touch(nodes)
    published = []

    def lose_some(message):
        published.append(message)
        return [] if len(published) in (1, 2, 4) else [message]  # three of five lost

    a.doorbell.transform = lose_some
    for i in range(5):
        await say(a, make, [f"m{i}"])  # one commit, so one message, each
    await until(lambda: len(b.got) == 6)
    assert b.texts() == ["first", "m0", "m1", "m2", "m3", "m4"]
    assert b.relay.fetched >= 3


@on_postgres
@pytest_twisted.ensureDeferred
async def test_repeated_and_reordered_messages_are_delivered_once_in_order(nodes):
    a, b, make = await in_touch(nodes)
    held = []

    def swap_pairs(message):
        held.append(message)
        if len(held) % 2:
            return []
        later, earlier = held[-1], held[-2]
        return [later, earlier, later, earlier]  # each twice, the later one first

    a.doorbell.transform = swap_pairs
    for i in range(6):
        await say(a, make, [f"m{i}"])
    await until(lambda: len(b.got) == 7)
    assert b.texts() == ["first"] + [f"m{i}" for i in range(6)]
    assert b.relay.duplicates >= 6


@on_postgres
@pytest_twisted.ensureDeferred
async def test_while_the_doorbell_is_down_nothing_is_published_and_resync_catches_up(nodes):
    a, b = await nodes("a"), await nodes("b")
    make = EventMaker()
    await say(a, make, ["before"])
    await until(lambda: len(b.got) == 1)
    a.doorbell.connected = False
    published = a.relay.published
    await say(a, make, ["down1", "down2"])
    assert a.relay.published == published and b.texts() == ["before"]  # nothing queued either
    a.doorbell.connected = True
    await b.relay.resync()  # what a reconnect (or the periodic check) runs
    await until(lambda: len(b.got) == 3)
    assert b.texts() == ["before", "down1", "down2"]


@on_postgres
@pytest_twisted.ensureDeferred
async def test_an_event_of_several_conversations_is_delivered_once(nodes):
    a, b = await nodes("a"), await nodes("b")
    make = EventMaker()
    await say(a, make, ["x"], room="#x")
    await say(a, make, ["y"], room="#y")
    await until(lambda: len(b.got) == 2)
    quit = make.msg("a", "", "bye", kind=Kind.QUIT)
    await a.store.append(quit, rooms=["#x", "#y"])
    await say(a, make, ["after"], room="#y")
    await until(lambda: len(b.got) == 4)
    assert b.texts() == ["x", "y", "bye", "after"]


@on_postgres
@pytest_twisted.ensureDeferred
async def test_two_writers_each_get_all_of_the_others_events_in_database_order(nodes):
    a, b, make = await in_touch(nodes, step=0.001)
    count = 200
    writes = []
    for i in range(count):
        for node in (a, b):
            event = make.msg(node.doorbell.node_id, "#r", f"{node.doorbell.node_id}{i}")
            writes.append(node.store.append(event))
    await defer.gatherResults(writes)
    await until(lambda: len(a.got) == count and len(b.got) == count + 1)
    order = [e for _, e in await a.store.conversation_range("#r", 0, 10**6, limit=10**6)]
    assert a.got == [e for e in order if e.source.nick == "b"]
    assert b.got == [e for e in order if e.source.nick == "a"]
    assert a.relay.conversations["#r"].delivered == b.relay.conversations["#r"].delivered == 2 * count + 1


@on_postgres
@pytest_twisted.ensureDeferred
async def test_an_own_event_after_a_missing_one_holds_local_delivery_until_it_is_fetched(nodes):
    a, b, make = await in_touch(nodes)
    a.doorbell.transform = lambda message: []  # A's next message never rings B
    await say(a, make, ["lost"])
    assert b.holds == []
    await say(b, make, ["mine"])  # numbered after "lost", which B has not shown yet
    assert b.holds == ["pause #r"]  # B's own message waits...
    await until(lambda: b.holds == ["pause #r", "resume #r"])  # ...until "lost" is fetched and shown
    assert b.texts() == ["first", "lost"]
