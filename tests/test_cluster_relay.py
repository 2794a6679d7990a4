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
from twisted.internet import defer, reactor, task

from chathub.cluster.redis import decode_message, encode_message
from chathub.cluster import relay as relay_module
from chathub.cluster.relay import FORGET_TICKS, ClusterRelay, GroupForm
from chathub.events import Event, Kind, Source
from chathub.hub.outbox import Outbox
from chathub.hub.roomclaims import ROOM_CLAIM
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
        # as it travels through Redis: packed, and read back by each subscriber
        message = decode_message(encode_message(message))
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
    """One node: its store, its relay, and a hub's outbox standing in for the hub: its own
    room messages wait there for their commit (and for the relay), as the hub's do."""

    def __init__(self, store, bus: list, node_id: str) -> None:
        self.store = store
        self.got: list = []  # other nodes' events the relay handed over
        self.convs: list[str] = []  # the conversation each was handed over in
        #: (text, conversation) of each event of several conversations handed over again
        #: at its number in another of them (``deliver_again``)
        self.again: list[tuple[str, str]] = []
        self.shown: list = []  # everything this node's users saw, its own events included
        self.mine: set[str] = set()  # ids of the events this node made
        #: (number, text, own) of each event the relay checked, and the texts it finds void
        self.checked: list[tuple[int, str, bool]] = []
        self.void: set[str] = set()
        self.outbox = Outbox()
        self.doorbell = Doorbell(bus, node_id)
        #: the conversations this node's hub no longer wants (``ChatHub.wants_order``)
        self.unwanted: set[str] = set()
        #: the rooms that ended (``ChatHub.room_is_live``)
        self.gone: set[str] = set()
        #: the rooms whose chat needs nothing of this node (``ChatHub.no_audience``)
        self.unheard: set[str] = set()
        self.relay = ClusterRelay(
            store, self.doorbell, self.handed_over, reactor, gap_wait=0.02,
            outbox=self.outbox, made_here=self.mine.__contains__,
            held_alone=lambda event: event.kind == Kind.MESSAGE and event.target.startswith("#"),
            admit=self.admit, wanted=lambda conv: conv not in self.unwanted,
            live=lambda conv: conv not in self.gone,
            deliver_again=lambda event, conv: self.again.append((event.text, conv)),
            no_audience=self.unheard.__contains__,
        )
        self.relay.start()

    def admit(self, conv: str, seq: int, event, own: bool) -> bool:
        self.checked.append((seq, event.text, own))
        return event.text not in self.void

    def handed_over(self, event, conv: str) -> None:
        self.got.append(event)
        self.convs.append(conv)
        self.shown.append(event)

    def append(self, event) -> defer.Deferred:
        """Store this node's ``event``; show it once committed, through the outbox."""
        self.mine.add(event.id)
        committed: defer.Deferred = defer.Deferred()
        settle = self.outbox.hold(lambda: self.shown.append(event), key=event.target)

        def notify(failure) -> None:
            settle(failure)
            committed.callback(None)

        self.store.append(event, notify=notify)
        return committed

    def texts(self) -> list[str]:
        return [e.text for e in self.got]

    def shown_texts(self) -> list[str]:
        return [e.text for e in self.shown]


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
    await defer.gatherResults([node.append(e) for e in events])
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
async def test_a_big_committed_group_goes_out_in_messages_of_at_most_publish_most(nodes, monkeypatch):
    monkeypatch.setattr("chathub.cluster.relay.PUBLISH_MOST", 4)
    a, b, make = await in_touch(nodes)
    sizes = []
    a.doorbell.transform = lambda message: sizes.append(len(message["group"])) or [message]
    texts = [f"m{i}" for i in range(10)]
    await say(a, make, texts)  # one reactor turn: one commit of ten
    await until(lambda: len(b.got) == 11)
    assert sizes == [4, 4, 2]
    assert b.texts() == ["first", *texts] and b.relay.duplicates == 0 and b.relay.fetched == 0


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


async def tick(node: Node) -> None:
    """One periodic comparison of ``node`` with the database (``on_resync(False)``), done."""
    await node.relay.resync(["#r"], at_once=False)


@on_postgres
@pytest_twisted.ensureDeferred
async def test_the_periodic_comparison_reads_only_numbers_missing_since_the_tick_before(nodes):
    """A tick reads a number the database had at the tick before and this node has not been
    shown since: its message was lost. A number whose message is merely on its way at a tick
    (every busy room has some) is not read: its message comes, once, with nothing read."""
    a, b, make = await in_touch(nodes)
    on_its_way: list = []
    a.doorbell.transform = lambda message: on_its_way.append(message) or []
    await say(a, make, ["late"])
    await tick(b)
    for message in on_its_way:  # it comes after that tick
        for callback in b.doorbell.subscribers:
            callback(message)
    assert b.texts() == ["first", "late"]
    await tick(b)
    await tick(b)
    assert b.relay.fetched == 0 and b.relay.duplicates == 0
    assert not b.relay.conversations["#r"].fetching
    a.doorbell.transform = lambda message: [message]
    lose_next_message(a)
    await say(a, make, ["lost"])
    await tick(b)  # committed, not shown here: it may still come
    assert b.texts() == ["first", "late"] and not b.relay.conversations["#r"].fetching
    await tick(b)  # still not shown a tick later: lost, read
    await until(lambda: b.texts() == ["first", "late", "lost"])
    assert b.relay.fetched == 1


@on_postgres
@pytest_twisted.ensureDeferred
async def test_a_room_whose_state_came_at_a_number_is_read_past_it_at_the_next_tick(nodes):
    """A room taken from another node's state at a number (``start_at``, after a cut): what
    was committed after that number before this node listened is no message on its way, and
    the next tick reads it at once."""
    a, b, make = await in_touch(nodes)
    a.doorbell.transform = lambda message: []  # (b hears none of them)
    await say(a, make, ["m2", "m3", "m4"])
    b.relay.start_at("#r", 2)  # its state, with m2 in it, came another way
    await tick(b)
    await until(lambda: b.texts() == ["first", "m3", "m4"])


@on_postgres
@pytest_twisted.ensureDeferred
async def test_cut_off_from_the_doorbell_a_tick_reads_what_is_missing_at_once(nodes):
    """While this node's doorbell is down no message is on its way to it: a tick reads
    every number the database has and it has not been shown."""
    a, b, make = await in_touch(nodes)
    b.doorbell.connected = False
    a.doorbell.transform = lambda message: []  # (nothing reaches b)
    await say(a, make, ["meanwhile"])
    for resync in b.doorbell.resyncs:
        resync(False)
    await until(lambda: b.texts() == ["first", "meanwhile"])


@on_postgres
@pytest_twisted.ensureDeferred
async def test_chat_of_a_room_with_no_audience_here_is_counted_not_read(nodes):
    """Another node's chat messages of a room whose copy here has nobody to show them to
    and nothing to check them against are passed in order without being built, checked or
    handed over; anything else of the room, or a room that waits for a number, goes the
    usual way, and so does the room once it has an audience."""
    a, b = await nodes("a"), await nodes("b")
    make = EventMaker()
    await say(a, make, ["m1"])
    await until(lambda: len(b.got) == 1)
    b.unheard.add("#r")
    await say(a, make, ["m2", "m3", "m4"])
    await until(lambda: b.relay.position("#r") == 4)
    assert b.texts() == ["m1"] and [text for _, text, _ in b.checked] == ["m1"] and b.relay.passed == 3
    # a topic change is no chat: checked and handed over, in its place
    await a.append(make.msg("a", "#r", "t5", kind=Kind.TOPIC))
    await until(lambda: b.relay.position("#r") == 5)
    assert b.texts() == ["m1", "t5"] and [seq for seq, _, _ in b.checked] == [1, 5]
    # a lost message: what comes after it waits for it, and the read delivers both
    lose_next_message(a)
    await say(a, make, ["m6"])
    await say(a, make, ["m7"])
    await until(lambda: b.relay.position("#r") == 7)
    assert b.texts() == ["m1", "t5", "m6", "m7"]
    # with an audience again, every message is handed over
    b.unheard.clear()
    await say(a, make, ["m8"])
    await until(lambda: b.relay.position("#r") == 8)
    assert b.texts() == ["m1", "t5", "m6", "m7", "m8"]
    assert b.relay.duplicates == 0 and [seq for seq, _, _ in b.checked] == [1, 5, 6, 7, 8] and b.relay.passed == 3


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
    # each with the conversation whose order reached it: the hub finds a room by that key
    assert b.convs == ["#x", "#y", "#x", "#y"]
    # and at its number in the other one: what a JOIN numbered before it there needs
    assert b.again == [("bye", "#y")]


@on_postgres
@pytest_twisted.ensureDeferred
async def test_two_writers_each_get_all_of_the_others_events_in_database_order(nodes):
    a, b, make = await in_touch(nodes, step=0.001)
    count = 200
    writes = []
    for i in range(count):
        for node in (a, b):
            event = make.msg(node.doorbell.node_id, "#r", f"{node.doorbell.node_id}{i}")
            writes.append(node.append(event))
    await defer.gatherResults(writes)
    await until(lambda: len(a.got) == count and len(b.got) == count + 1)
    order = [e for _, e in await a.store.conversation_range("#r", 0, 10**6, limit=10**6)]
    assert a.got == [e for e in order if e.source.nick == "b"]
    assert b.got == [e for e in order if e.source.nick == "a"]
    # and each node showed its own messages among the other's in that one order
    await until(lambda: len(a.shown) == len(b.shown) == 2 * count + 1)
    assert a.shown == b.shown == order
    assert a.relay.conversations["#r"].delivered == b.relay.conversations["#r"].delivered == 2 * count + 1


@on_postgres
@pytest_twisted.ensureDeferred
async def test_an_own_event_after_a_missing_one_holds_local_delivery_until_it_is_fetched(nodes):
    a, b, make = await in_touch(nodes)
    a.doorbell.transform = lambda message: []  # A's next message never rings B
    await say(a, make, ["lost"])
    assert b.relay.holds == 0
    await say(b, make, ["mine"])  # numbered after "lost", which B has not shown yet
    assert b.relay.holds == 1 and b.shown_texts() == ["first"]  # B's own message waits...
    await until(lambda: b.shown_texts() == ["first", "lost", "mine"])  # ...until "lost" is fetched and shown
    assert b.texts() == ["first", "lost"]


@on_postgres
@pytest_twisted.ensureDeferred
async def test_every_event_is_checked_at_its_number_and_a_void_one_is_not_delivered(nodes):
    a, b, make = await in_touch(nodes)
    a.void.add("void")
    b.void.add("void")
    lose_one = [True]

    def lose_first(message):  # B reads one of A's messages from the database instead
        if lose_one and message["node"] == "a":
            lose_one.clear()
            return []
        return [message]

    a.doorbell.transform = lose_first
    await say(a, make, ["a1"])
    await say(b, make, ["b1"])
    await say(a, make, ["void"])
    await say(b, make, ["b2"])
    await until(lambda: len(a.checked) == len(b.checked) == 5)
    order = [e.text for _, e in await a.store.conversation_range("#r", 0, 100)]
    assert order == ["first", "a1", "b1", "void", "b2"]
    # in number order on both nodes, each node's own events among the other's
    assert [(seq, text) for seq, text, _ in a.checked] == [(seq, text) for seq, text, _ in b.checked] == list(
        enumerate(order, 1))
    assert [own for *_, own in a.checked] == [True, True, False, True, False]
    assert [own for *_, own in b.checked] == [False, False, True, False, True]
    assert b.texts() == ["first", "a1"]  # the void one was not handed over
    assert a.texts() == ["b1", "b2"]


# -- a node's own events among the others' ---------------------------------------------------
# The store tells the relay of a commit just before the outbox shows the committed events
# (GroupCommitWriter: the listener, then the settles); another node's message can arrive at
# any point around that. These tests play each order exactly, calling the relay as the store
# and the doorbell do.


def committed(node: Node, event, seq: int, room: str = "#r"):
    """Play the store committing ``node``'s own ``event`` as number ``seq`` of ``room``: the
    relay is told, then the outbox entry is settled (as GroupCommitWriter._done does)."""
    node.relay._committed([(event, ((room, seq),))])


def held(node: Node, event):
    """``node``'s own ``event`` waiting in its outbox for its commit; returns the settle."""
    node.mine.add(event.id)
    return node.outbox.hold(lambda: node.shown.append(event), key=event.target)


def numbered(own: tuple[int, ...], last: int) -> dict:
    """Messages of #r numbered 1..``last``: B's at the numbers ``own``, the other node's
    at the rest."""
    make = EventMaker()
    return {n: make.msg("b" if n in own else "a", "#r", str(n)) for n in range(1, last + 1)}


def arrives(node: Node, event, seq: int, room: str = "#r") -> None:
    """Another node's ``event``, number ``seq`` of ``room``, rings ``node``'s doorbell."""
    node.doorbell.publish(GroupForm().message("other", [(event, ((room, seq),))]))


@pytest_twisted.ensureDeferred
async def test_an_event_after_an_own_one_waits_until_the_own_one_is_shown(nodes):
    b = await nodes("b")
    make = EventMaker()
    e1, e2, e3 = make.msg("a", "#r", "1"), make.msg("b", "#r", "2"), make.msg("a", "#r", "3")
    arrives(b, e1, 1)
    settle = held(b, e2)
    arrives(b, e3, 3)  # ahead of B's own 2, which B committed but has not shown yet
    committed(b, e2, 2)
    assert b.shown == [e1]  # 3 waits for 2...
    settle(None)
    assert b.shown == [e1, e2, e3]  # ...which the outbox shows first


@pytest_twisted.ensureDeferred
async def test_an_own_event_counted_before_the_room_was_held_is_not_held_with_it(nodes):
    b = await nodes("b")
    e = numbered((2, 4), 4)
    arrives(b, e[1], 1)
    settle2, settle4 = held(b, e[2]), held(b, e[4])
    committed(b, e[2], 2)  # next in number: counted as delivered, shown once its commit settles
    committed(b, e[4], 4)  # 3 (the other node's) missing: the room is held for 4
    settle2(None)
    settle4(None)
    assert b.shown == [e[1], e[2]]  # 2 is not held back by the pause meant for 4...
    arrives(b, e[3], 3)  # ...so 3, which waited for 2 to be shown, can be, and then 4
    assert [x.text for x in b.shown] == ["1", "2", "3", "4"]
    assert not b.outbox.pending


class _Member:
    """What the outbox reads of a user a reply is for: its rooms' folded names."""

    def __init__(self, *rooms: str) -> None:
        self.rooms = dict.fromkeys(rooms)


@pytest_twisted.ensureDeferred
async def test_while_a_room_is_held_only_its_members_replies_wait(nodes):
    """A node holds a room whose own event got a number above one still on its way; the
    replies of users in other rooms go on meanwhile (they waited, with every reply of the
    node, until the room went on), a member's wait for the room's held event."""
    b = await nodes("b")
    e = numbered((3,), 3)
    arrives(b, e[1], 1)
    settle = held(b, e[3])
    committed(b, e[3], 3)  # 2, the other node's, is on its way: #r is held for 3
    settle(None)
    replies = []
    b.outbox.after(lambda: replies.append("member"), (_Member("#r", "#s"),))
    b.outbox.after(lambda: replies.append("elsewhere"), (_Member("#s"),))
    assert b.shown == [e[1]] and replies == ["elsewhere"]
    arrives(b, e[2], 2)
    assert [x.text for x in b.shown] == ["1", "2", "3"] and replies == ["elsewhere", "member"]
    assert not b.outbox.pending


@pytest_twisted.ensureDeferred
async def test_a_stopped_relay_takes_nothing_more_in_and_sets_no_timer(nodes):
    """A commit told of after the relay stopped (its hub's users' quits, committed as the
    node stops), a message come in meanwhile or a fetch answered after it set gap timers that
    outlived the relay, into whatever ran next (the next test's server found them set)."""
    b = await nodes("b")
    clock = b.relay.clock = task.Clock()
    e = numbered((2,), 4)
    arrives(b, e[1], 1)
    arrives(b, e[3], 3)  # 2 is missing: a gap timer
    state = b.relay.conversations["#r"]
    clock.advance(b.relay.wait * 2)
    assert state.fetching
    b.relay.stop()
    committed(b, e[2], 4)
    arrives(b, e[4], 6)
    await until(lambda: not state.fetching)  # the fetch's answer comes after the stop
    assert clock.getDelayedCalls() == [] and state.timer is None
    assert b.relay.position("#r") == 1 and [x.text for x in b.got] == ["1"]


@pytest_twisted.ensureDeferred
async def test_events_waiting_only_for_an_own_one_to_be_shown_are_no_gap(nodes):
    b = await nodes("b")
    clock = b.relay.clock = task.Clock()  # the gap timer, played exactly
    e = numbered((2,), 6)
    arrives(b, e[1], 1)
    settle = held(b, e[2])
    committed(b, e[2], 2)  # B's own, committed, not shown yet
    arrives(b, e[3], 3)
    arrives(b, e[4], 4)  # 3 and 4 wait for 2 to be shown: nothing is missing
    state = b.relay.conversations["#r"]
    clock.advance(b.relay.wait * 2)
    assert not state.fetching and state.timer is None  # no read of what it holds
    arrives(b, e[6], 6)  # 5 is missing: that is a gap, read after the wait
    clock.advance(b.relay.wait * 2)
    assert state.fetching
    settle(None)
    assert [x.text for x in b.shown] == ["1", "2", "3", "4"]
    await until(lambda: not state.fetching)  # this store holds none of them: 5 reads as pruned
    assert [x.text for x in b.shown] == ["1", "2", "3", "4", "6"]


@pytest_twisted.ensureDeferred
async def test_own_events_between_the_others_are_shown_one_by_one_in_number_order(nodes):
    b = await nodes("b")
    e = numbered((3, 5), 6)
    arrives(b, e[1], 1)
    for n in (3, 5):  # B's own, numbered after 2 and 4, which have not arrived
        settle = held(b, e[n])
        committed(b, e[n], n)
        settle(None)
    assert b.shown == [e[1]]  # held: 2 is missing
    arrives(b, e[4], 4)
    arrives(b, e[6], 6)
    arrives(b, e[2], 2)
    assert [x.text for x in b.shown] == ["1", "2", "3", "4", "5", "6"]
    assert not b.outbox.pending


@pytest_twisted.ensureDeferred
async def test_a_node_that_hears_events_late_waits_longer_before_reading_a_gap(nodes):
    b = await nodes("b")
    # the relay's clock, stopped: each event is exactly a second old on arrival, however long
    # the machine takes over the arrivals (on the reactor's clock a slow run measured more)
    clock = b.relay.clock = task.Clock()
    clock.advance(10_000.0)
    assert b.relay.wait == b.relay.gap_wait == 0.02
    make = EventMaker(start=clock.seconds() - 1.0, step=0.0)
    for n in range(1, 40):
        arrives(b, make.msg("a", "#r", str(n)), n)
    # late messages are not lost ones: a gap now waits about twice the lag before the
    # database is asked for it
    assert 1.0 < b.relay.wait < 2.1
    old = EventMaker(start=clock.seconds() - 3600.0)  # a clock an hour wrong: not lag
    arrives(b, old.msg("a", "#r", "40"), 40)
    assert b.relay.wait < 2.1


def test_a_published_group_reads_back_as_its_events_and_positions():
    """A group's message (``GroupForm``), packed and read back as the backplane does, is
    the same events, in order, at the same positions, whatever the text, tags and data
    hold."""
    from hypothesis import given, settings, strategies as st

    from tests.test_events import any_events

    positions = st.lists(st.tuples(st.text(max_size=8), st.integers(min_value=1, max_value=2**53)), min_size=1,
                         max_size=3).map(tuple)
    form = GroupForm()

    @settings(max_examples=300, deadline=None)
    @given(st.lists(st.tuples(any_events(whole_bits=64), positions), max_size=4))
    def check(group):
        message = decode_message(encode_message(form.message("n\u00e4\"", group)))
        assert message["node"] == "n\u00e4\""
        assert form.decode(message["group"]) == [(where, event) for event, where in group]

    check()
    # the same sender's events share one Source
    make = EventMaker()
    one, two = make.msg("a", "#r", "1"), make.msg("a", "#r", "2")
    message = decode_message(encode_message(form.message("n", [(one, (("#r", 1),)), (two, (("#r", 2),))])))
    (_, first), (_, second) = form.decode(message["group"])
    assert first.source is second.source and first.source == one.source
    # a real name holding the separator, and an empty account (not none), travel listed
    odd = Source("b", "u", "h", "", "x\0y", "irc", "")
    three = Event("e3", 1.0, Kind.MESSAGE, odd, "#r", "3")
    message = decode_message(encode_message(form.message("n", [(three, (("#r", 3),))])))
    assert type(message["group"][0][4]) is list
    [(_, back)] = form.decode(message["group"])
    assert back.source == odd and back.source.account == ""


def test_a_received_group_brings_each_rooms_chat_together_and_nothing_passes_a_change():
    """``by_conversation``: the same items; each conversation's in their order; an item that
    is not a chat message of one conversation (a JOIN, a QUIT numbered in two rooms) keeps
    every item on its side of it; and between two such items each conversation's chat
    messages are one run."""
    from hypothesis import given, settings, strategies as st

    make = EventMaker()
    kinds = st.sampled_from([Kind.MESSAGE, Kind.NOTICE, Kind.ACTION, Kind.JOIN, Kind.TOPIC])
    rooms = st.sampled_from(["#a", "#b", "#c", "@#a", "a b"])

    @settings(max_examples=300, deadline=None)
    @given(st.lists(st.tuples(kinds, st.lists(rooms, min_size=1, max_size=2, unique=True)), max_size=30))
    def check(specs):
        numbers: dict[str, int] = {}
        items = []
        for kind, convs in specs:
            positions = []
            for conv in convs:
                numbers[conv] = numbers.get(conv, 0) + 1
                positions.append((conv, numbers[conv]))
            items.append((tuple(positions), make.msg("a", convs[0], str(len(items)), kind=kind)))
        out = relay_module.by_conversation(items)
        assert sorted(id(item) for item in out) == sorted(id(item) for item in items)
        for conv in numbers:  # each conversation's own order
            assert [seq for where, _ in out for c, seq in where if c == conv] == list(range(1, numbers[conv] + 1))
        index = {id(item): i for i, item in enumerate(out)}
        runs: list[list[str]] = [[]]
        for i, (where, event) in enumerate(items):
            if len(where) == 1 and event.kind in Kind.TEXT_KINDS:
                runs[-1].append(where[0][0])
                continue
            runs.append([])
            # nothing crosses it: what came before it still does, what came after still does
            assert all(index[id(items[j])] < index[id(items[i])] for j in range(i))
            assert all(index[id(items[j])] > index[id(items[i])] for j in range(i + 1, len(items)))
        chat = [where[0][0] for where, event in out if len(where) == 1 and event.kind in Kind.TEXT_KINDS]
        for run in runs:  # in each stretch between changes, one run per conversation
            stretch, chat = chat[:len(run)], chat[len(run):]
            assert sorted(stretch) == sorted(run)
            assert sum(1 for i, conv in enumerate(stretch) if i == 0 or stretch[i - 1] != conv) == len(set(run))

    check()


@pytest.mark.parametrize("item", [
    [[["#r", 1]], "id", 1.0, "message", "a\0\0\0\0\0", "#r", "x", [], None],  # tags not a dict
    [[["#r"]], "id", 1.0, "message", "a\0\0\0\0\0", "#r", "x", None, None],  # half a position
    [[[1, "#r"]], "id", 1.0, "message", "a\0\0\0\0\0", "#r", "x", None, None],  # swapped
    [[["#r", 1]], "id", 1.0, "message"],  # short
    [[["#r", 1]], "id", "soon", "message", "a\0\0\0\0\0", "#r", "x", None, None],  # no time
    [[["#r", 1]], "id", 1.0, "message", "a\0\0\0\0", "#r", "x", None, None],  # a source of six fields
    [[["#r", 1]], "id", 1.0, "message", ["a", "", "", None, "", ""], "#r", "x", None, None],  # the same, listed
    [[["#r", 1]], "id", 1.0, "message", ["a", "", "", None, "", "", 7], "#r", "x", None, None],  # not a string
    [[["#r", 1]], "id", 1.0, "message", 7, "#r", "x", None, None],  # no source
])
def test_a_malformed_group_item_is_refused(item):
    with pytest.raises((ValueError, TypeError)):
        GroupForm().decode([item])


def idle(node: Node, ticks: int = FORGET_TICKS) -> None:
    """``ticks`` resync ticks pass on ``node`` with nothing heard (what the backplane's
    periodic ``on_resync`` counts)."""
    node.relay.tick += ticks


@on_postgres
@pytest_twisted.ensureDeferred
async def test_idle_conversations_no_longer_wanted_are_forgotten_and_start_afresh(nodes):
    """A conversation the hub no longer wants (a private talk with nobody here: here the
    stand-in hub's ``unwanted``) is forgotten once idle; heard of again, it starts where it
    is heard of, as a first-heard one does. What is wanted, or not idle long enough, stays."""
    a, b = await nodes("a"), await nodes("b")
    make = EventMaker()
    await say(a, make, ["r1"], room="#r")
    await say(a, make, ["g1"], room="#gone")
    await say(a, make, ["n1"], room="#new")
    await until(lambda: len(b.got) == 3)
    b.unwanted |= {"#gone", "#new"}
    idle(b, FORGET_TICKS - 1)
    await say(a, make, ["n2"], room="#new")  # heard of a tick before the others fell idle
    await until(lambda: len(b.got) == 4)
    idle(b, 1)
    assert sorted(b.relay.sweep()) == ["#new", "#r"]  # compared with the database
    assert "#gone" not in b.relay.conversations and b.relay.forgotten == 1
    assert b.relay.position("#r") == 1
    # a's next message there is heard of afresh and shown (nobody here waited for the rest)
    await say(a, make, ["g2"], room="#gone")
    await until(lambda: len(b.got) == 5)
    assert b.texts()[-1] == "g2" and b.relay.position("#gone") == 2


@on_postgres
@pytest_twisted.ensureDeferred
async def test_an_idle_ended_room_is_kept_in_brief_and_taken_up_where_it_was(nodes):
    """A room that ended and fell idle is no longer tracked, but its place in the order is
    kept: when it speaks again (a message whose doorbell was lost first), the node fills the
    gap from its place, in order, as if it had tracked it all along. A live room stays
    tracked."""
    a, b = await nodes("a"), await nodes("b")
    make = EventMaker()
    await say(a, make, ["r1"], room="#r")
    await say(a, make, ["g1"], room="#gone")
    await until(lambda: len(b.got) == 2)
    b.gone.add("#gone")
    idle(b)
    assert b.relay.sweep() == ["#r"]  # compared with the database; #gone is not any more
    assert "#gone" not in b.relay.conversations and b.relay.ended == {"#gone": 1}
    assert b.relay.position("#gone") == 1 and b.relay.forgotten == 0
    sent = []
    a.doorbell.transform = lambda message: [] if not sent and not sent.append(1) else [message]
    await say(a, make, ["g2"], room="#gone")  # its doorbell is lost
    await say(a, make, ["g3"], room="#gone")
    await until(lambda: len(b.got) == 4)
    assert b.texts()[-2:] == ["g2", "g3"] and b.relay.fetched >= 1
    assert b.relay.position("#gone") == 3 and "#gone" not in b.relay.ended
    assert [seq for seq, text, _ in b.checked if text.startswith("g")] == [1, 2, 3]  # checked at each number


async def ended_room(nodes):
    """Nodes a and b; #gone said g1 on a, then ended and fell idle: kept in brief on b."""
    a, b = await nodes("a"), await nodes("b")
    make = EventMaker()
    await say(a, make, ["g1"], room="#gone")
    await until(lambda: len(b.got) == 1)
    b.gone.add("#gone")
    idle(b)
    b.relay.sweep()
    assert b.relay.ended == {"#gone": 1}
    return a, b, make


def lose_next_message(node: Node) -> None:
    """The doorbell drops ``node``'s next published message (its events are committed)."""
    lost: list = []
    node.doorbell.transform = lambda message: [] if not lost and not lost.append(message) else [message]


@on_postgres
@pytest_twisted.ensureDeferred
async def test_an_ended_room_taken_up_by_an_own_event_fetches_what_it_missed_first(nodes):
    """A JOIN here makes the ended room again: b's own event comes after a's that b never
    heard of; b takes the room up from its place, fetches a's first and checks both at their
    numbers, in order."""
    a, b, make = await ended_room(nodes)
    lose_next_message(a)
    await say(a, make, ["g2"], room="#gone")
    await say(b, make, ["g3"], room="#gone")
    await until(lambda: b.relay.position("#gone") == 3)
    assert [(seq, text) for seq, text, _ in b.checked if text.startswith("g")] == [(1, "g1"), (2, "g2"), (3, "g3")]
    assert b.shown_texts()[-2:] == ["g2", "g3"]


@on_postgres
@pytest_twisted.ensureDeferred
async def test_an_ended_room_is_compared_with_the_database_at_a_reconnect_and_in_turn(nodes):
    """A message of a room kept in brief whose doorbell was lost is found at the next
    reconnect (every conversation compared, the ended rooms too) and, without one, by the
    ticks (the ended rooms' share in turn): the first takes the room up again, the next reads
    what is still missing."""
    a, b, make = await ended_room(nodes)
    lose_next_message(a)
    await say(a, make, ["g2"], room="#gone")
    await b.relay.resync()  # what a reconnect does
    await until(lambda: b.texts()[-1:] == ["g2"])
    assert b.relay.position("#gone") == 2 and "#gone" in b.relay.conversations
    idle(b)
    b.relay.sweep()
    assert b.relay.ended == {"#gone": 2}
    lose_next_message(a)
    await say(a, make, ["g3"], room="#gone")
    for conv in b.doorbell.resyncs:
        conv(False)  # a resync tick
    await until(lambda: "#gone" in b.relay.conversations)  # taken up: its head was past its place
    assert b.texts()[-1:] == ["g2"] and b.relay.position("#gone") == 2
    for conv in b.doorbell.resyncs:
        conv(False)  # the next: g3 is still missing
    await until(lambda: b.texts()[-1:] == ["g3"])
    assert b.relay.position("#gone") == 3 and b.relay.duplicates == 0


@on_postgres
@pytest_twisted.ensureDeferred
async def test_past_max_ended_the_oldest_room_kept_in_brief_is_forgotten(nodes):
    a, b = await nodes("a"), await nodes("b")
    b.relay.max_ended = 1
    make = EventMaker()
    await say(a, make, ["x1"], room="#x")
    await until(lambda: len(b.got) == 1)
    await say(a, make, ["y1", "y2"], room="#y")
    await until(lambda: len(b.got) == 3)
    b.gone |= {"#x", "#y"}
    idle(b)
    b.relay.sweep()
    assert b.relay.ended == {"#y": 2} and b.relay.evicted == 1
    assert b.relay.position("#x") is None and b.relay.position("#y") == 2
    b.relay.max_ended = 0  # nothing kept in brief at all
    b.relay.start_at("#y", 2)  # tracked again
    idle(b)
    b.relay.sweep()
    assert b.relay.ended == {} and b.relay.position("#y") is None and b.relay.evicted == 2


@on_postgres
@pytest_twisted.ensureDeferred
async def test_a_conversation_being_read_from_the_database_is_not_forgotten(nodes, monkeypatch):
    """A resync found a message b never heard of (lost on its way, the last one): while
    its read is under way nothing else waits, and the conversation still stays."""
    a, b = await nodes("a"), await nodes("b")
    make = EventMaker()
    await say(a, make, ["m1"])
    await until(lambda: len(b.got) == 1)
    a.doorbell.transform = lambda message: []
    await say(a, make, ["m2"])  # lost on its way, and nothing follows it
    fetches: list = []
    read = b.store.conversation_range

    def held_back(*args):  # the read waits until the test lets it go
        waiting: defer.Deferred = defer.Deferred()
        fetches.append((read(*args), waiting))
        return waiting

    monkeypatch.setattr(b.store, "conversation_range", held_back)
    await b.relay.resync()
    assert fetches and not b.relay.conversations["#r"].ahead  # only the read is on its way
    b.unwanted.add("#r")
    idle(b)
    assert b.relay.sweep() == ["#r"] and b.relay.forgotten == 0
    answer, waiting = fetches[0]
    answer.chainDeferred(waiting)
    await until(lambda: b.texts() == ["m1", "m2"])  # nothing lost
    assert b.relay.sweep() == [] and b.relay.forgotten == 1  # now idle with nothing on its way


@on_postgres
@pytest_twisted.ensureDeferred
async def test_each_tick_compares_its_share_of_the_conversations_in_turn(nodes, monkeypatch):
    """A node tracking many conversations asks the database for ``SWEEP`` heads a tick,
    each conversation in turn; a reconnect asks for all of them at once."""
    a, b = await nodes("a"), await nodes("b")
    make = EventMaker()
    rooms = [f"#r{i}" for i in range(5)]
    for room in rooms:
        await say(a, make, [room], room=room)
    await until(lambda: len(b.got) == 5)
    monkeypatch.setattr(relay_module, "SWEEP", 2)
    asked = []
    heads = b.store.conversation_heads

    def recorded(convs):
        asked.append(sorted(convs))
        return heads(convs)

    monkeypatch.setattr(b.store, "conversation_heads", recorded)
    for _ in range(4):
        for resync in b.doorbell.resyncs:
            resync(False)
    # every tick: those heard of in the last RECENT_TICKS ticks (the latest SWEEP of the
    # five), and the next SWEEP in turn
    assert [len(convs) for convs in asked] == [4, 3, 2, 4]  # {r3, r4} with r0-r1, r2-r3, r4, r0-r1
    assert all({"#r3", "#r4"} <= set(convs) for convs in asked)  # heard of last
    b.relay.tick += relay_module.RECENT_TICKS
    b.relay._recent_ticks.clear()  # (long ago)
    asked.clear()
    for _ in range(3):
        for resync in b.doorbell.resyncs:
            resync(False)
    assert sorted(len(convs) for convs in asked) == [1, 2, 2]
    assert sorted(c for convs in asked for c in convs) == rooms  # each once a turn
    await say(a, make, ["again"], room="#r3")  # heard of now: compared every tick
    await until(lambda: len(b.got) == 6)
    asked.clear()
    for _ in range(2):
        for resync in b.doorbell.resyncs:
            resync(False)
    assert all("#r3" in convs and len(convs) <= 3 for convs in asked)  # its share, and #r3
    asked.clear()
    for resync in b.doorbell.resyncs:
        resync(True)
    assert asked == [rooms]


@on_postgres
@pytest_twisted.ensureDeferred
async def test_a_room_taken_from_a_snapshot_is_compared_at_the_next_tick(nodes, monkeypatch):
    """A room whose state came with the start-up snapshot (``start_at``) is compared with the
    database at the next tick, whatever the turn: what was committed after its snapshot
    position and before the relay listened is fetched then."""
    b = await nodes("b")
    monkeypatch.setattr(relay_module, "SWEEP", 1)
    for i in range(3):
        b.relay.start_at(f"#old{i}", 1)
    b.relay.tick += relay_module.RECENT_TICKS
    b.relay._recent_ticks.clear()
    b.relay._recent.clear()  # (long ago)
    b.relay.start_at("#new", 5)
    asked = []
    monkeypatch.setattr(b.store, "conversation_heads", lambda convs: asked.append(sorted(convs)) or defer.succeed({}))
    for resync in b.doorbell.resyncs:
        resync(False)
    assert "#new" in asked[0] and len(asked[0]) == 2  # and its share of the others


# -- rooms learned after a cut (ChatHub.learn_rooms) ---------------------------------------------


@on_postgres
@pytest_twisted.ensureDeferred
async def test_past_the_bound_of_what_is_held_a_held_room_loses_nothing(nodes, monkeypatch):
    """While the hub learns the rooms, the relay holds the events of rooms it neither heard
    of nor holds, up to a bound. Past it, a held room started at the event that passed it
    and what was held of it (the numbers below) was dropped as duplicates: lost."""
    monkeypatch.setattr("chathub.cluster.relay.HELD_MOST", 3)
    a, b, make = await in_touch(nodes)
    b.gone.add("#new")  # b's hub holds no copy of #new
    b.relay.hold_unknown_rooms()
    await say(a, make, [f"n{i}" for i in range(6)], room="#new")  # one commit: one message
    await until(lambda: b.relay.received >= 2)
    assert b.texts() == ["first"]  # all held
    b.relay.release_unknown_rooms()  # no state came for #new: it starts at what was held first
    await say(a, make, ["n6"], room="#new")  # its gap (n3..n5, past the bound) is read
    await until(lambda: len(b.got) == 8)
    assert b.texts() == ["first"] + [f"n{i}" for i in range(7)]


@on_postgres
@pytest_twisted.ensureDeferred
async def test_a_number_below_where_a_rooms_state_was_taken_is_a_duplicate(nodes):
    """A room first heard at a later number, then given another node's state of it (a later
    number still): an earlier number arriving late was handed over again on top of that
    state (the floor stayed where the room was first heard)."""
    a, b, make = await in_touch(nodes)
    late: list = []
    a.doorbell.transform = lambda message: late.append(message) or []
    await say(a, make, ["s1"], room="#s")
    a.doorbell.transform = lambda message: [message]
    await say(a, make, ["s2"], room="#s")
    await until(lambda: b.texts() == ["first", "s2"])
    b.relay.start_at("#s", b.relay.position("#s") + 5)  # the state taken stands past it
    for message in late:  # s1 comes at last
        for callback in b.doorbell.subscribers:
            callback(message)
    await say(a, make, ["s8"], room="#s")
    assert b.texts() == ["first", "s2"]  # s1 is in the state taken: not handed over again


@on_postgres
@pytest_twisted.ensureDeferred
async def test_a_row_of_its_own_the_store_never_told_of_holds_nothing_for_good(nodes, monkeypatch):
    """A read of a gap that finds a row of this node's own waits for the store to tell the
    relay of its commit (a moment after it). A row never told of held the conversation, and
    with it the node's outbox, for good (a stall of two nodes, cause not found): past
    ``UNTOLD_WAIT`` it is passed over, and what follows it is delivered."""
    monkeypatch.setattr(relay_module, "UNTOLD_WAIT", 0.3)
    a, b, make = await in_touch(nodes)
    untold = make.msg("a", "#r", "never told")
    b.mine.add(untold.id)  # b's, as far as b knows, stored without its relay told (by a's store)
    a.doorbell.transform = lambda message: []  # and no doorbell rings for it
    await a.store.append(untold)
    a.doorbell.transform = lambda message: [message]
    await say(a, make, ["after it"])
    await until(lambda: b.texts()[-1:] == ["after it"], timeout=10)
    assert b.texts() == ["first", "after it"]  # the untold row passed over, not shown


# -- a room first heard of while the hub holds no copy waits for the room ---------------------


def unheld_room(node: Node, room: str = "#new") -> EventMaker:
    """``room`` is no room ``node``'s hub holds (a rename's new name whose RENAME has not
    reached it); returns a maker of the other node's events."""
    node.gone.add(room)
    return EventMaker()


@pytest_twisted.ensureDeferred
async def test_a_room_first_heard_of_without_a_copy_waits_until_another_event_makes_it_here(nodes):
    """Delivered at once, what was said in a rename's new name before the RENAME reached
    this node went to no room (shown to none of its members). Held, it is handed over, in
    its order, after the event that brings the room (the RENAME, in its old name's order)."""
    b = await nodes("b")
    make = unheld_room(b)
    x, y = make.msg("a", "#new", "x"), make.msg("a", "#new", "y")
    arrives(b, y, 6, "#new")
    arrives(b, x, 5, "#new")
    assert b.got == [] and b.relay.position("#new") is None
    rename = make.msg("a", "#old", "renamed", kind=Kind.RENAME, data={"new": "#new"})
    b.gone.discard("#new")  # what handing the RENAME over does in the hub
    arrives(b, rename, 1, "#old")
    assert b.texts() == ["renamed", "x", "y"] and b.convs == ["#old", "#new", "#new"]
    assert b.relay.position("#new") == 6 and not b.relay.began_unseen("#new")
    arrives(b, make.msg("a", "#new", "z"), 7, "#new")
    assert b.texts()[-1] == "z"


@pytest_twisted.ensureDeferred
async def test_a_room_whose_making_never_came_waits_a_few_gap_waits_and_goes_on(nodes):
    """No event makes the room (its making's message was lost): after ``AWAIT_WAITS`` gap
    waits its events go on as before the wait, the room's order marked as begun unseen."""
    b = await nodes("b")
    make = unheld_room(b)
    arrives(b, make.msg("a", "#new", "x"), 3, "#new")
    started = reactor.seconds()
    await until(lambda: b.texts() == ["x"])
    assert reactor.seconds() - started >= relay_module.AWAIT_WAITS * b.relay.wait * 0.9
    assert b.relay.began_unseen("#new") and not b.relay._awaited


@pytest_twisted.ensureDeferred
async def test_a_rooms_making_is_not_held_and_lets_what_waited_before_it_go_on(nodes):
    """A JOIN that makes the room (with its claim) is never held: what came before it goes
    on with it, in number order."""
    b = await nodes("b")
    make = unheld_room(b)
    arrives(b, make.msg("a", "#new", "x"), 2, "#new")
    assert b.got == []
    arrives(b, make.msg("a", "#new", "made", kind=Kind.JOIN, data={ROOM_CLAIM: "token"}), 1, "#new")
    assert b.texts() == ["made", "x"]
    arrives(b, make.msg("a", "#other", "made", kind=Kind.JOIN, data={ROOM_CLAIM: "token"}), 1, "#other")
    assert b.texts()[-1] == "made"  # heard of first at its making: at once


@pytest_twisted.ensureDeferred
async def test_an_own_event_of_a_room_held_for_its_copy_lets_what_waited_go_on_first(nodes):
    """This node numbered an event of the room: the room is here, and the other node's
    events numbered before it are handed over first."""
    b = await nodes("b")
    make = unheld_room(b)
    arrives(b, make.msg("a", "#new", "theirs"), 1, "#new")
    own = make.msg("b", "#new", "mine")
    held(b, own)
    committed(b, own, 2, "#new")
    assert b.texts() == ["theirs"] and b.relay.position("#new") == 2


@pytest_twisted.ensureDeferred
async def test_what_a_room_held_for_its_copy_may_hold_is_bounded(nodes, monkeypatch):
    """Past ``max_ahead`` events of one room, or ``AWAITED_MOST`` rooms, nothing more is
    held: the room's events go on as before the wait; a stopped relay's waits end."""
    monkeypatch.setattr(relay_module, "AWAITED_MOST", 1)
    b = await nodes("b")
    make = unheld_room(b)
    b.gone.add("#second")
    b.relay.max_ahead = 3
    arrives(b, make.msg("a", "#second", "s"), 1, "#second")
    arrives(b, make.msg("a", "#new", "n"), 1, "#new")  # past AWAITED_MOST rooms: at once
    assert b.texts() == ["n"]
    for seq in (2, 3):
        arrives(b, make.msg("a", "#second", f"s{seq}"), seq, "#second")
    assert b.texts() == ["n", "s", "s2", "s3"] and not b.relay._awaited
    b.gone.add("#third")
    arrives(b, make.msg("a", "#third", "t"), 1, "#third")
    (_, timer), = b.relay._awaited.values()
    b.relay.stop()
    assert not timer.active() and not b.relay._awaited
