"""Fan-out coalescing (one write per member per batching block) and the direct socket
path of ``SendQueue``; speed itself is measured by bench/, not here."""
from __future__ import annotations

import socket
import threading
from contextlib import contextmanager
from types import SimpleNamespace

import pytest_twisted
from twisted.internet import defer, protocol, reactor, task
from twisted.internet.endpoints import TCP4ServerEndpoint
from twisted.internet.threads import deferToThread
from zope.interface import implementer

from chathub.events import EventIds, Kind, Source
from chathub.hub import fanout as F
from chathub.hub.fanout import Fanout
from chathub.interfaces import IParticipant
from chathub.protocols.sendqueue import SendQueue
from chathub.store.writer import GroupCommitWriter


@implementer(IParticipant)
class Member:
    """Encodes an event as ``<text>;`` and records every ``send``."""

    protocol = "test"
    echo_own = False
    format_key = "t"

    def __init__(self, name: str) -> None:
        self.nick = name
        self.sent: list[bytes] = []

    def encode(self, event) -> bytes:
        return f"{event.text};".encode()

    def send(self, data: bytes) -> None:
        self.sent.append(data)

    def deliver(self, event) -> None:
        self.send(self.encode(event))


class User:
    def __init__(self, name: str, protocol: str = "test") -> None:
        self.nick = name
        self.participant = Member(name)
        self.participant.protocol = protocol


ids = EventIds()


def message(sender: User, text: str):
    return ids.make(Kind.MESSAGE, Source(nick=sender.nick, protocol="test"), "#r", text)


def test_a_block_writes_once_per_member_across_senders_in_order():
    a, b, c = User("a"), User("b"), User("c")
    room1, room2 = (a, b, c), (a, b)
    hub = Fanout()
    with hub.batching():
        hub.publish(message(a, "1"), room1, a, batchable=True)
        hub.publish(message(a, "2"), room1, a, batchable=True)
        hub.publish(message(b, "3"), room2, b, batchable=True)
        hub.publish(message(c, "4"), room1, c, batchable=True)
        assert [u.participant.sent for u in (a, b, c)] == [[], [], []]
    assert a.participant.sent == [b"3;4;"]
    assert b.participant.sent == [b"1;2;4;"]
    assert c.participant.sent == [b"1;2;"]


def test_with_a_clock_the_reads_of_one_reactor_turn_share_one_write_per_member():
    a, b, c = User("a"), User("b"), User("c")
    room = (a, b, c)
    clock = task.Clock()
    hub = Fanout(clock)
    for sender, text in ((a, "1"), (b, "2"), (c, "3")):  # three reads in one turn
        with hub.batching():
            hub.publish(message(sender, text), room, sender, batchable=True)
    assert [u.participant.sent for u in room] == [[], [], []]
    assert len(clock.getDelayedCalls()) == 1  # one end-of-turn flush, however many reads
    clock.advance(0)
    assert [u.participant.sent for u in room] == [[b"2;3;"], [b"1;3;"], [b"1;2;"]]
    # something that must go out now (a join, a reply) writes what is held first, in order
    with hub.batching():
        hub.publish(message(a, "4"), room, a, batchable=True)
    hub.publish(message(b, "join"), room, None, batchable=False)
    assert b.participant.sent[-2:] == [b"4;", b"join;"]
    clock.advance(0)  # the scheduled flush finds nothing left
    assert b.participant.sent[-2:] == [b"4;", b"join;"] and not clock.getDelayedCalls()


def test_anything_else_writes_what_is_held_first():
    a, b = User("a"), User("b")
    room = (a, b)
    hub = Fanout()
    with hub.batching():
        hub.publish(message(a, "chat"), room, a, batchable=True)
        hub.publish(message(a, "join"), room, None, batchable=False)
        assert b.participant.sent == [b"chat;", b"join;"]
        hub.publish(message(a, "more"), room, a, batchable=True)
        hub.flush()  # what after_delivery does before a protocol's own reply
        assert b.participant.sent == [b"chat;", b"join;", b"more;"]
    assert b.participant.sent == [b"chat;", b"join;", b"more;"]


def test_outside_a_block_events_go_out_at_once():
    a, b = User("a"), User("b")
    hub = Fanout()
    hub.publish(message(a, "x"), (a, b), a, batchable=True)
    assert b.participant.sent == [b"x;"]


def test_a_member_owed_much_is_written_before_the_block_ends(monkeypatch):
    monkeypatch.setattr(F, "MAX_HELD_BYTES", 10)
    a, b, c = User("a"), User("b"), User("c")
    hub = Fanout()
    with hub.batching():
        for i in range(6):  # alternate senders: each run holds one event
            sender = (a, c)[i % 2]
            hub.publish(message(sender, f"{i}abc"), (a, b, c), sender, batchable=True)
        assert b.participant.sent and sum(map(len, b.participant.sent)) >= 10
    assert b"".join(b.participant.sent) == b"0abc;1abc;2abc;3abc;4abc;5abc;"


def delivered(counts) -> dict[str, int]:
    return {name: c.delivered for name, c in sorted(counts.protocols.items())}


def test_metrics_count_each_protocols_deliveries_and_one_latency_per_message():
    """The delivered counts per recipient protocol (the actor left out, other kinds not
    counted) and one latency observation per message, batched or not, exactly."""
    from chathub.counters import HubCounts

    a, b, c, d = User("a", "irc"), User("b", "irc"), User("c", "line"), User("d", "ws")
    room = (a, b, c, d)
    counts = HubCounts()
    hub = Fanout(counts=counts)
    tagmsg = ids.make(Kind.TAGMSG, Source(nick="a", protocol="test"), "#r", "")
    with hub.batching():
        hub.publish(message(a, "1"), room, a, batchable=True)  # a is left out: b, c, d
        hub.publish(message(a, "2"), room, a, batchable=True)
        hub.publish(tagmsg, room, a, batchable=True)  # not a message: not counted
        hub.publish(message(d, "3"), room, None, batchable=True)  # d sees its own: all four
        assert counts.delivery_latency.count == 0  # observed once written
    assert b.participant.sent == [b"1;2;;3;"]
    assert delivered(counts) == {"irc": 1 + 1 + 2, "line": 3, "ws": 3}
    assert counts.delivery_latency.count == 3
    hub.publish(message(c, "4"), room, c)  # not batched: written at once
    assert delivered(counts) == {"irc": 6, "line": 3, "ws": 4}
    # d left: the room's next snapshot is another tuple, counted afresh
    hub.publish(message(a, "5"), (a, b, c), a)
    assert delivered(counts) == {"irc": 7, "line": 4, "ws": 4}
    latency = counts.delivery_latency
    assert latency.count == 5 and latency.cumulative()[-1] == ("+Inf", 5) and latency.total >= 0.0
    # a message that reaches nobody (a cluster node's copy of a room whose members are all
    # on other nodes; a room of its sender alone) is no delivery and has no latency
    with hub.batching():
        hub.publish(message(a, "6"), (), None, batchable=True)
        hub.publish(message(a, "7"), (a,), a, batchable=True)
    hub.publish(message(a, "8"), (a,), a)
    assert delivered(counts) == {"irc": 7, "line": 4, "ws": 4} and latency.count == 5


def test_a_committed_group_is_released_inside_one_block():
    entered = []

    @contextmanager
    def around():
        entered.append("in")
        yield
        entered.append("out")

    runs = []

    def run(fn, *args):
        d = defer.Deferred()
        runs.append(d)
        return d

    clock = task.Clock()
    writer = GroupCommitWriter(run, lambda txn, items: None, lambda f, w: None, clock, around_release=around)
    fired = []
    for i in range(3):
        writer.append(i).addCallback(lambda _, i=i: fired.append((i, list(entered))))
    clock.advance(0)
    runs[0].callback(None)
    # all three Deferreds fired inside the same block, which then closed once
    assert fired == [(0, ["in"]), (1, ["in"]), (2, ["in"])]
    assert entered == ["in", "out"]


class _Writer(protocol.Protocol):
    """Writes ``chunks`` through a SendQueue as soon as the connection is made (the
    reader hangs up once it has them all)."""

    def connectionMade(self) -> None:
        self.queue = self.factory.queue = SendQueue(
            self.transport, 1 << 30, SimpleNamespace(send_queue_overflow=self.transport.abortConnection)
        )
        for chunk in self.factory.chunks:
            self.queue.write(chunk)
        self.factory.written.set()


@pytest_twisted.ensureDeferred
async def test_direct_socket_writes_and_twisted_buffering_keep_the_byte_order():
    # far more than the socket buffers take while the peer is not reading: the first
    # writes go to the socket directly, then Twisted buffers, pauses the queue, which
    # holds the rest until it is resumed; the reader must get every byte in order
    chunks = [(b"%06d" % i) * (1 + i % 700) for i in range(6000)]
    expected = b"".join(chunks)
    factory = protocol.Factory.forProtocol(_Writer)
    factory.chunks = chunks
    factory.written = threading.Event()
    port = await TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(factory)
    try:

        def read_all() -> bytes:
            with socket.create_connection(("127.0.0.1", port.getHost().port), timeout=20) as s:
                assert factory.written.wait(20)  # read only once everything was written
                parts = []
                got = 0
                while got < len(expected):
                    data = s.recv(65536)
                    if not data:
                        break
                    parts.append(data)
                    got += len(data)
                return b"".join(parts)

        received = await deferToThread(read_all)
    finally:
        await port.stopListening()
    assert factory.queue.peak_bytes > 0  # the queue did hold bytes while paused
    assert len(received) == len(expected)
    assert received == expected
