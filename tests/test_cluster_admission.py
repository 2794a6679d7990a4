"""Two hubs, each with its cluster relay, on one PostgreSQL database, their doorbell a gate
the test closes: a request checked on one node against a copy of the room that lacks the
other node's change numbered before it is found void at its number on both nodes
(``chathub.hub.admission``; docs/cluster.md, "Checked at its number"). The same races with
real nodes and IRC clients are in tests/test_cluster_races.py."""
from __future__ import annotations

from typing import Optional

import pytest
import pytest_twisted
from twisted.internet import reactor, task

from chathub.cluster.relay import ClusterRelay
from chathub.config import Config
from chathub.events import Kind
from chathub.hub import errors
from chathub.hub.outbox import Receipt
from tests.store_fixtures import *  # noqa: F401,F403 (fixtures)
from tests.support import RecorderWorld, until
from tests.test_cluster_relay import on_postgres
from tests.test_remote_directory import LinkedBackplane


class Gate:
    """Stands between one node's backplane and another's: open, messages pass at once;
    closed, they wait until it opens (a doorbell that is late)."""

    def __init__(self, to: LinkedBackplane) -> None:
        self.to = to
        self.node_id = to.node_id
        self.closed = False
        self.waiting: list = []

    def receive(self, message: dict) -> None:
        if self.closed:
            self.waiting.append(message)
        else:
            self.to.receive(message)

    def open(self) -> None:
        self.closed = False
        waiting, self.waiting = self.waiting, []
        for message in waiting:
            self.to.receive(message)


async def cluster_node(
    store_factory, backplane: LinkedBackplane, config: Optional[Config] = None
) -> tuple[RecorderWorld, ClusterRelay]:
    world = RecorderWorld(config or Config(), store=await store_factory())
    hub = world.hub
    relay = ClusterRelay(
        hub.store, backplane, hub.deliver_remote, reactor, gap_wait=0.02, outbox=hub.outbox,
        made_here=hub.ids.made_here, held_alone=hub.held_alone, admit=hub.admit, batching=hub.batching,
        live=hub.room_is_live, deliver_again=hub.deliver_again,
    )
    await hub.join_cluster(backplane, relay, reactor, wait=2.0)
    relay.start()
    return world, relay


async def two_nodes(store_factory, config: Optional[Config] = None):
    """Nodes a and b (with ``config``), and the gate a's messages pass to reach b; alice (on
    a) founded #x, bob and dave (on b) joined it, and both nodes applied every join."""
    pa, pb = LinkedBackplane("a"), LinkedBackplane("b")
    gate = Gate(pb)
    pa.link(gate)
    pb.link(pa)
    a, relay_a = await cluster_node(store_factory, pa, config)
    b, relay_b = await cluster_node(store_factory, pb, config)
    alice = a.connect("alice")
    a.hub.join(alice, "#x")
    await until(lambda: "#x" in b.hub.rooms)
    bob, dave = b.connect("bob"), b.connect("dave")
    b.hub.join(bob, "#x")
    b.hub.join(dave, "#x")
    await until(lambda: {"bob", "dave"} <= set(a.hub.rooms["#x"].members))
    return a, b, gate, (alice, bob, dave), (relay_a, relay_b)


@pytest_twisted.async_yield_fixture
async def nodes(store_factory):
    """``two_nodes``, their relays and hubs stopped after the test (a hub's timers, such as
    its next ask for a room held in part, else ran on into the next test)."""
    made = await two_nodes(store_factory)
    yield made
    await stop_nodes(made[:2], made[4])


async def stop_nodes(worlds, relays) -> None:
    """Stop the hubs of ``worlds``, then, once their users' quits are committed, ``relays``:
    a hub's timers (its next ask for a room held in part) and a relay's (a gap check) else
    ran on into the next test, whose server found them set at its stop."""
    for world in worlds:
        world.hub.stopService()
    await until(lambda: all(world.hub.outbox.pending == 0 for world in worlds))
    for relay in relays:
        relay.stop()


async def late_modes(a, gate: Gate, setter, changes) -> None:
    """``setter`` (on node a) changes #x's modes while a's doorbell to b is held back;
    returns once a has committed and shown the change."""
    gate.closed = True
    a.hub.change_room_modes(setter, "#x", changes)
    await until(lambda: a.hub.outbox.pending == 0)


async def caught_up(gate: Gate, relays) -> None:
    """Let the held messages through and wait until both nodes stand at one number of #x."""
    gate.open()
    await until(lambda: relays[0].position("#x") == relays[1].position("#x"))


async def join_made_void(a, b, gate: Gate, relays, setter, changes, code: str):
    """``setter``'s change of #x on A is late to reach B, so B lets erin join; the join is
    void at its number (``code``), undone on B and never shown on A. Returns erin."""
    await late_modes(a, gate, setter, changes)
    erin = b.connect("erin")
    answered = Receipt()
    assert b.hub.join(erin, "#x", receipt=answered) is b.hub.rooms["#x"]  # B had not the change yet
    await until(lambda: b.hub.outbox.pending == 0)
    assert answered.code == code
    assert erin.rooms == {} and "erin" not in b.hub.rooms["#x"].members
    await caught_up(gate, relays)
    assert set(a.hub.rooms["#x"].members) == {"alice", "bob", "dave"}
    assert not [e for e in setter.participant.events if e.kind == Kind.JOIN and e.source.nick == "erin"]
    return erin


def texts(user) -> list[str]:
    return [e.text for e in user.participant.events if e.kind == Kind.MESSAGE]


@on_postgres
@pytest_twisted.ensureDeferred
async def test_a_message_checked_before_its_senders_kick_arrived_is_void_on_both_nodes(nodes):
    a, b, gate, (alice, bob, dave), relays = nodes
    gate.closed = True  # A's KICK is late to reach B...
    a.hub.kick(alice, "#x", "bob")
    await until(lambda: a.hub.outbox.pending == 0)  # committed and shown on A
    assert "bob" in b.hub.rooms["#x"].members  # ...so B lets bob talk
    answered = Receipt()
    b.hub.send(bob, "#x", "with a receipt", receipt=answered)
    b.hub.send(bob, "#x", "without one")
    # B reads the KICK from PostgreSQL (a gap before its own numbers) and then finds both void
    await until(lambda: b.hub.outbox.pending == 0)
    assert answered.error is not None and answered.code == "cannot_send"
    notice = bob.participant.events[-1]
    assert notice.kind == Kind.NOTICE and notice.data["error"] == "cannot_send" and notice.data["room"] == "#x"
    assert "bob" not in b.hub.rooms["#x"].members
    assert [e.kind for e in dave.participant.events][-1] == Kind.KICK and texts(dave) == []
    await caught_up(gate, relays)
    assert texts(alice) == []  # A found them void too
    history = await b.hub.history(dave, "latest", "#x", None, limit=50)
    assert [e.kind for e in history][-1] == Kind.KICK  # and neither is stored


@on_postgres
@pytest_twisted.ensureDeferred
async def test_a_join_checked_before_a_plus_i_arrived_is_void_and_undone(nodes):
    a, b, gate, (alice, bob, dave), relays = nodes
    await late_modes(a, gate, alice, [("+i", None)])
    erin = b.connect("erin")
    answered = Receipt()
    assert b.hub.join(erin, "#x", receipt=answered) is b.hub.rooms["#x"]  # B had no +i yet
    frank = b.connect("frank")
    frank.participant.clear()
    b.hub.join(frank, "#x")  # no receipt: told with a notice
    b.hub.send(frank, "#x", "hello?")  # said as a member on B: void as well
    await until(lambda: b.hub.outbox.pending == 0)
    assert answered.code == "invite_only"
    # (a member of B's copy until then, frank was shown the +i B read on its way)
    assert [e.data.get("error") for e in frank.participant.events if e.kind == Kind.NOTICE] == [
        "invite_only", "cannot_send"]
    room = b.hub.rooms["#x"]
    assert "i" in room.modes and set(room.members) == {"alice", "bob", "dave"}
    assert erin.rooms == {} and frank.rooms == {}
    assert [e.kind for e in dave.participant.events if e.kind in (Kind.JOIN, Kind.MESSAGE)] == []
    await caught_up(gate, relays)
    assert set(a.hub.rooms["#x"].members) == {"alice", "bob", "dave"}
    assert texts(alice) == []
    # an invited user still gets in past the +i
    a.hub.invite(alice, "#x", "erin")
    assert b.hub.join(erin, "#x") is room
    await until(lambda: "erin" in a.hub.rooms["#x"].members)


@on_postgres
@pytest_twisted.ensureDeferred
async def test_a_message_checked_before_a_ban_or_plus_m_arrived_is_void_on_both_nodes(nodes):
    a, b, gate, (alice, bob, dave), relays = nodes
    a.hub.change_room_modes(alice, "#x", [("+v", "dave")])
    await until(lambda: b.hub.rooms["#x"].members["dave"].is_voiced)

    async def late_and_void(changes, why: str, dave_says: str) -> None:
        # A's change is late to reach B, so B lets bob talk; dave, voiced, talks through it
        await late_modes(a, gate, alice, changes)
        refused = Receipt()
        b.hub.send(bob, "#x", f"{why} already", receipt=refused)
        b.hub.send(dave, "#x", dave_says)
        await until(lambda: b.hub.outbox.pending == 0)
        assert refused.code == "cannot_send" and why in str(refused.error)
        await caught_up(gate, relays)

    await late_and_void([("+b", "bob!*@*")], "banned", "voiced: speaks through bans")
    a.hub.change_room_modes(alice, "#x", [("-b", "bob!*@*")])
    await until(lambda: not b.hub.rooms["#x"].bans)
    await late_and_void([("+m", None)], "moderated", "voiced: speaks through +m")
    spoken = ["voiced: speaks through bans", "voiced: speaks through +m"]
    assert texts(alice) == spoken  # A found bob's void too, and showed dave's
    assert not {"banned already", "moderated already"} & set(texts(dave))
    history = await b.hub.history(dave, "latest", "#x", None, limit=50)
    assert [e.text for e in history if e.kind == Kind.MESSAGE] == spoken


@on_postgres
@pytest_twisted.ensureDeferred
async def test_a_join_checked_before_a_ban_arrived_is_void_and_undone(nodes):
    a, b, gate, (alice, bob, dave), relays = nodes
    await join_made_void(a, b, gate, relays, alice, [("+b", "erin!*@*")], "banned")


@on_postgres
@pytest_twisted.ensureDeferred
async def test_a_join_checked_before_a_key_arrived_is_void_unless_it_gave_the_key(nodes):
    a, b, gate, (alice, bob, dave), relays = nodes
    erin = await join_made_void(a, b, gate, relays, alice, [("+k", "sesame")], "bad_key")
    assert b.hub.rooms["#x"].key == "sesame"
    # on A, where the key was set, a join with it stands at once (its number follows the
    # +k's there), and so does erin's on B now that B has the key
    gina = a.connect("gina")
    a.hub.join(gina, "#x", key="sesame")
    assert b.hub.join(erin, "#x", key="sesame") is b.hub.rooms["#x"]
    await until(lambda: {"erin", "gina"} <= set(a.hub.rooms["#x"].members)
                and {"erin", "gina"} <= set(b.hub.rooms["#x"].members))
    await until(lambda: a.hub.outbox.pending == 0 and b.hub.outbox.pending == 0)
    assert gina.rooms and erin.rooms
    # a join on A right after A's own key change, before that change is numbered: its
    # node checked it against the new key, which it gave, so it stands everywhere
    a.hub.change_room_modes(alice, "#x", [("+k", "open sesame"[:4])])
    hank = a.connect("hank")
    assert a.hub.join(hank, "#x", key="open") is a.hub.rooms["#x"]
    await until(lambda: a.hub.outbox.pending == 0 and "hank" in b.hub.rooms["#x"].members)
    assert hank.rooms and "hank" in a.hub.rooms["#x"].members


@on_postgres
@pytest_twisted.ensureDeferred
async def test_a_join_checked_before_a_limit_arrived_is_void_when_the_room_is_full_at_its_number(nodes):
    """+l 3 on A, where #x holds alice, bob and dave, while B lets erin in: her JOIN
    finds the room full at its number, on both nodes (it stood before: four members)."""
    a, b, gate, (alice, bob, dave), relays = nodes
    await join_made_void(a, b, gate, relays, alice, [("+l", "3")], "room_full")
    assert b.hub.rooms["#x"].limit == 3


@on_postgres
@pytest_twisted.ensureDeferred
async def test_a_join_checked_before_a_limit_arrived_stands_when_there_was_room(nodes):
    a, b, gate, (alice, bob, dave), relays = nodes
    await late_modes(a, gate, alice, [("+l", "4")])
    erin = b.connect("erin")
    answered = Receipt()
    b.hub.join(erin, "#x", receipt=answered)
    await until(lambda: b.hub.outbox.pending == 0)
    await caught_up(gate, relays)
    assert answered.error is None and "erin" in a.hub.rooms["#x"].members and "erin" in b.hub.rooms["#x"].members


@on_postgres
@pytest_twisted.ensureDeferred
async def test_a_check_at_its_number_that_fails_admits_the_event_and_says_so(nodes, captured, monkeypatch):
    """The relay calls ``admit`` for every event with nothing around it: a check that
    raises admits (every node shows the event) and logs the fault, never a lost event."""
    a, b, gate, (alice, bob, dave), relays = nodes

    def broken(conv, seq, event):
        raise RuntimeError("the admission check broke")

    monkeypatch.setattr(b.hub.admission, "check", broken)
    a.hub.change_room_modes(alice, "#x", [("+m", None)])
    await until(lambda: "m" in b.hub.rooms["#x"].modes)
    assert captured.matching("at its number failed")
    assert relays[1].position("#x") == relays[0].position("#x")


@on_postgres
@pytest_twisted.ensureDeferred
async def test_an_irc_join_found_void_gets_the_refusal_and_no_replay(nodes):
    """An IRC client's JOIN that B let through without A's late ``+i`` is answered 473
    alone: not the room's last lines (read while the verdict was on its way), and its
    output is not held for them."""
    from chathub.auth.portal import build_portal
    from chathub.protocols.irc import IrcFactory
    from tests.support import IrcConn

    a, b, gate, (alice, bob, dave), relays = nodes
    a.hub.send(alice, "#x", "said before the +i")
    await until(lambda: "said before the +i" in texts(dave))  # stored, and shown on B
    clock = task.Clock()
    factory = IrcFactory.for_hub(b.hub, build_portal(b.hub, b.hub.config, [], clock=clock), b.hub.config,
                                 reactor=clock)
    erin = IrcConn(factory, 40000)
    erin.send("NICK erin", "USER erin 0 * :Erin")
    await erin.written("001")
    reads: list = []
    real = b.hub.recent_history

    def recorded(user, target, limit, before=None):
        reads.append(real(user, target, limit, before))
        return reads[-1]

    b.hub.recent_history = recorded
    await late_modes(a, gate, alice, [("+i", None)])
    erin.send("JOIN #x")
    lines = await erin.written("473")
    await until(lambda: reads and reads[0].called)  # the replay was read
    erin.send("PING :after")
    lines += await erin.written("PONG")
    # (the +i B read on its way was shown to erin, a member of B's copy until the verdict)
    assert [m.command for m in lines if m.command != "MODE"] == ["473", "PONG"]  # no JOIN, no replay, nothing held
    await caught_up(gate, relays)


@on_postgres
@pytest_twisted.ensureDeferred
async def test_an_irc_joiner_gets_its_join_then_the_replay_then_the_room_live_never_twice(nodes):
    """erin (IRC, on B) joins #x while A's lines, numbered before her JOIN, are on their way
    to B: B had put her in its copy of the room at once, so they reached her before her own
    JOIN line (which waits for its number), and again in the replay (a two-node probe: 4 of
    9 joins in a busy room). Now the chat numbered before the JOIN is in the replay only, a
    change numbered before it follows the answer (whose names and topic were B's copy's when
    she joined), so does what comes after it, and no line comes twice."""
    from chathub.auth.portal import build_portal
    from chathub.protocols.irc import IrcFactory
    from tests.support import IrcConn

    a, b, gate, (alice, bob, dave), relays = nodes
    clock = task.Clock()
    factory = IrcFactory.for_hub(b.hub, build_portal(b.hub, b.hub.config, [], clock=clock), b.hub.config,
                                 reactor=clock)
    erin = IrcConn(factory, 40000).register("erin", "batch server-time message-tags")
    gate.closed = True  # A's lines are on their way to B...
    for i in range(5):
        a.hub.send(alice, "#x", f"before{i}")
    a.hub.set_topic(alice, "#x", "set before")  # (a change: shown after her JOIN's answer)
    await until(lambda: a.hub.outbox.pending == 0)
    erin.send("JOIN #x")  # ...when erin joins there: her JOIN is numbered after them
    await until(lambda: relays[1].conversations["#x"].own_ahead)  # committed, waiting for them
    a.hub.send(alice, "#x", "after")  # numbered after her JOIN, on its way with them
    await until(lambda: a.hub.outbox.pending == 0)
    gate.open()
    lines = await erin.written("366")
    await until(lambda: b.hub.outbox.pending == 0)
    await until(lambda: relays[0].position("#x") == relays[1].position("#x"))
    erin.send("PING :end")
    lines += await erin.written("PONG")
    commands = [m.command for m in lines]
    assert commands.index("JOIN") < commands.index("PRIVMSG")
    said = [m.params[-1] for m in lines if m.command == "PRIVMSG"]
    assert said == [f"before{i}" for i in range(5)] + ["after"]  # the replay's, then live: once each
    batch = [m for m in lines if m.command == "BATCH"]
    assert len(batch) == 2 and commands.index("BATCH") < commands.index("PRIVMSG")  # the replay's batch
    ids = [m.tags["msgid"] for m in lines if m.command == "PRIVMSG"]
    assert len(set(ids)) == len(ids)
    assert commands.index("366") < commands.index("TOPIC")  # her answer's topic was B's copy's then
    assert [m.params[-1] for m in lines if m.command == "TOPIC"] == ["set before"]


@on_postgres
@pytest_twisted.ensureDeferred
async def test_a_node_wants_the_order_of_its_rooms_and_of_its_users_private_talks(nodes):
    """What the relay may forget once idle (``ChatHub.wants_order``): the STATUSMSG audience
    of a room that ended, a private conversation with no party signed on here (a user of
    another node is no party here); never a room (made again, it numbers on from the old
    one: a node that forgot it would start at the first number it heard, and show the
    smaller ones that came later unchecked)."""
    a, b, gate, (alice, bob, dave), relays = nodes
    wants = b.hub.wants_order
    assert wants("#x") and wants("@#x") and wants("+#x")
    assert wants("#nowhere") and not wants("@#nowhere")
    assert wants("bob zed") and wants("alice dave") and wants(f"/{bob.session} zed")  # a guest: its connection
    assert not wants("alice zed") and not wants("yan zed") and not wants(f"/{alice.session} zed")
    b.hub.part(bob, "#x", "")
    b.hub.part(dave, "#x", "")
    await until(lambda: set(a.hub.rooms["#x"].members) == {"alice"})
    a.hub.part(alice, "#x", "")  # the last member, and its node knows it
    await until(lambda: "#x" not in b.hub.rooms and "#x" not in b.hub.admission.joins)
    assert wants("#x") and not wants("@#x")


async def third_node(store_factory, a, b, gate: Gate):
    """Node c, started now and linked to a and b (a's messages to b still pass ``gate``)."""
    pa, pb, pc = a.hub.cluster, b.hub.cluster, LinkedBackplane("c")
    pc.link(pa, pb)
    pa.link(gate, pc)
    pb.link(pa, pc)
    return await cluster_node(store_factory, pc)


async def joins_everywhere(node, nick: str, room: str, nodes) -> None:
    """``nick``, a new user of ``node``, joins ``room``: it stands at its number, and every
    one of ``nodes`` shows the user in the room."""
    user = node.connect(nick)
    answered = Receipt()
    node.hub.join(user, room, receipt=answered)
    await until(lambda: node.hub.outbox.pending == 0)
    assert answered.error is None
    for each in nodes:
        await until(lambda each=each: room in each.hub.rooms and nick in each.hub.rooms[room].members)


@on_postgres
@pytest_twisted.ensureDeferred
async def test_a_room_made_again_by_a_node_that_never_heard_of_it_is_joined_everywhere(nodes, store_factory):
    """#t was +i and ended (its last member parted: the PART says so); a node started
    afterwards knows nothing of it, so its user's JOIN carries position 0. The nodes that
    saw the old room forgot its facts at that PART: the join stands everywhere (it was
    void on them, and stood on the new node, which showed carl in a room no one else did)."""
    from chathub.hub.admission import ROOM_ENDS

    a, b, gate, (alice, bob, dave), relays = nodes
    a.hub.join(alice, "#t")
    a.hub.change_room_modes(alice, "#t", [("+i", None)])
    await until(lambda: a.hub.outbox.pending == 0)  # numbered: a's position holds them
    event = a.hub.part(alice, "#t", "")
    assert [room for room, _ in event.data[ROOM_ENDS]] == ["#t"]
    await until(lambda: "#t" not in b.hub.rooms and a.hub.outbox.pending == 0)
    c, relay_c = await third_node(store_factory, a, b, gate)
    try:
        assert relay_c.position("#t") is None  # never heard of it
        await joins_everywhere(c, "carl", "#t", (a, b, c))
        assert "i" not in c.hub.rooms["#t"].modes  # a new room
    finally:
        await stop_nodes([c], [relay_c])


@on_postgres
@pytest_twisted.ensureDeferred
async def test_a_node_that_starts_takes_the_facts_of_every_rooms_order(nodes, store_factory):
    """#t was +i and ended without its end being honoured (its last two members parted at
    once from two nodes, each the last but one on its copy: the facts stay). A node started
    afterwards takes those facts, with where they stand, from the start-up snapshot, so it
    comes to the same verdict as the others: its user's JOIN making #t again stands
    everywhere."""
    a, b, gate, (alice, bob, dave), relays = nodes
    a.hub.join(alice, "#t")
    await until(lambda: "#t" in b.hub.rooms)
    b.hub.join(bob, "#t")
    await until(lambda: "bob" in a.hub.rooms["#t"].members)
    a.hub.change_room_modes(alice, "#t", [("+i", None)])
    await until(lambda: "i" in b.hub.rooms["#t"].modes)
    gate.closed = True  # a's PART is late to reach b
    a.hub.part(alice, "#t", "")
    b.hub.part(bob, "#t", "")
    await until(lambda: a.hub.outbox.pending == 0 == b.hub.outbox.pending)
    gate.open()
    await until(lambda: "#t" not in a.hub.rooms and "#t" not in b.hub.rooms)
    await until(lambda: relays[1].position("#t") == relays[0].position("#t") == 5)
    assert "#t" in a.hub.admission.rooms and "#t" in b.hub.admission.rooms  # the +i is remembered
    c, relay_c = await third_node(store_factory, a, b, gate)
    try:
        assert relay_c.position("#t") == 5  # where the facts it took stand
        assert c.hub.admission.rooms["#t"].invite_only_since == 3
        assert c.hub.admission.joins["#t"] == a.hub.admission.joins["#t"]
        await joins_everywhere(c, "carl", "#t", (a, b, c))
    finally:
        await stop_nodes([c], [relay_c])


@on_postgres
@pytest_twisted.ensureDeferred
async def test_a_room_made_and_left_at_once_is_forgotten_everywhere(nodes):
    """One client sends JOIN, +i and PART (or a KICK of itself) at once: its node had
    numbered none of them when it checked the leaving, so that carries a position before
    the JOIN; the JOIN was made on the same node, so the room's end is honoured and no node
    keeps its facts (each such room's facts stayed in every node's memory for good)."""
    a, b, gate, (alice, bob, dave), relays = nodes
    for room, leave in (("#t", lambda: a.hub.part(alice, "#t", "")),
                        ("#u", lambda: a.hub.kick(alice, "#u", "alice", ""))):
        a.hub.join(alice, room)
        a.hub.change_room_modes(alice, room, [("+i", None), ("+b", "*!*@*")])
        leave()
        await until(lambda: a.hub.outbox.pending == 0)
        await until(lambda room=room: relays[1].position(room) == relays[0].position(room) == 3)
        for node in (a, b):
            assert room not in node.hub.rooms and room not in node.hub.admission.rooms
            assert room not in node.hub.admission.joins
        await joins_everywhere(b, "carl" + room[1:], room, (a, b))  # made again: nothing of the old one


@on_postgres
@pytest_twisted.ensureDeferred
async def test_a_kick_of_a_user_whose_nick_change_is_on_its_way_removes_it_everywhere(nodes):
    """alice (on a) changes nick while bob (on b, an operator) kicks her by the nick b still
    has: b removes her at once; on a the NICK is numbered first and the KICK named a nick no
    longer in the room, so she stayed there (in the room on a, gone from it on b). The KICK
    carries the kicked connection, which names her under her new nick."""
    a, b, gate, (alice, bob, dave), relays = nodes
    a.hub.change_room_modes(alice, "#x", [("+o", "bob")])
    await until(lambda: b.hub.rooms["#x"].members["bob"].is_operator)
    gate.closed = True  # a's NICK is late to reach b
    a.hub.change_nick(alice, "alicex")
    await until(lambda: a.hub.outbox.pending == 0)  # numbered: before the KICK
    b.hub.kick(bob, "#x", "alice", "out")
    await until(lambda: "alicex" not in a.hub.rooms["#x"].members)
    gate.open()
    await until(lambda: set(b.hub.rooms["#x"].members) == set(a.hub.rooms["#x"].members) == {"bob", "dave"})
    kick = [e for e in alice.participant.events if e.kind == Kind.KICK][-1]
    assert kick.data["nick"] == "alicex" and "#x" not in alice.rooms  # told by the nick she has


@on_postgres
@pytest_twisted.ensureDeferred
async def test_a_topics_time_is_the_same_on_every_node(nodes):
    """The setter's node took its own clock for the topic's time, the others the event's:
    chathub.v1's ``topic_time`` (and IRC's 333) differed between nodes by microseconds."""
    a, b, gate, (alice, bob, dave), relays = nodes
    event = a.hub.set_topic(alice, "#x", "one time")
    await until(lambda: b.hub.rooms["#x"].topic == "one time")
    assert a.hub.rooms["#x"].topic_time == b.hub.rooms["#x"].topic_time == event.time


def state(world) -> tuple:
    room = world.hub.rooms["#x"]
    return (room.topic, room.topic_setter, sorted(room.modes), room.key, room.limit,
            [b.mask for b in room.bans], {n: m.privileges for n, m in room.members.items()})


async def operator_on_b(a, b, alice, bob) -> None:
    a.hub.change_room_modes(alice, "#x", [("+o", "bob")])
    await until(lambda: b.hub.rooms["#x"].members["bob"].is_operator)


@on_postgres
@pytest_twisted.ensureDeferred
async def test_changes_of_the_same_moment_on_two_nodes_end_in_their_numbered_order_on_both(nodes):
    """Two operators on two nodes set the topic, the key and the limit at the same moment.
    Each node applied its own change at once and the other's at its number, which came
    before its own: each copy ended with the other node's values (a random driver: 20 of
    20 rounds), each node letting joiners in with another key. Each node applies its own
    change again at its number: both end with the one numbered last."""
    a, b, gate, (alice, bob, dave), relays = nodes
    await operator_on_b(a, b, alice, bob)
    gate.closed = True  # A's changes are late to reach B: B numbers its own after them
    a.hub.set_topic(alice, "#x", "from a")
    a.hub.change_room_modes(alice, "#x", [("+k", "ka"), ("+l", "10"), ("+m", None)])
    await until(lambda: a.hub.outbox.pending == 0)
    b.hub.set_topic(bob, "#x", "from b")
    b.hub.change_room_modes(bob, "#x", [("+k", "kb"), ("+l", "50"), ("+s", None)])
    await until(lambda: b.hub.outbox.pending == 0)  # B read A's from the store first
    await caught_up(gate, relays)
    await until(lambda: a.hub.outbox.pending == 0)
    assert state(a) == state(b)
    assert state(b)[:5] == ("from b", bob.mask, ["m", "n", "s", "t"], "kb", 50)


@on_postgres
@pytest_twisted.ensureDeferred
async def test_a_nodes_own_change_is_applied_again_only_when_another_nodes_came_between(nodes, captured):
    """Applied again at its number without one between, a +k brought the key back over the
    -k made after it until the -k's number (joiners there refused meanwhile)."""
    a, b, gate, (alice, bob, dave), relays = nodes
    seen: list = []
    real = a.hub._own_change_at_its_number

    def watching(conv, event):
        real(conv, event)
        seen.append((event.data["changes"], a.hub.rooms["#x"].key))

    a.hub._own_change_at_its_number = watching
    a.hub.change_room_modes(alice, "#x", [("+k", "kx")])
    a.hub.change_room_modes(alice, "#x", [("-k", None)])
    await until(lambda: len(seen) == 2)
    assert seen == [([("+k", "kx")], None), ([("-k", "*")], None)]  # the key never came back
    assert not captured.matching("applied again")
    await until(lambda: b.hub.rooms["#x"].key is None and relays[0].position("#x") == relays[1].position("#x"))


@on_postgres
@pytest_twisted.ensureDeferred
async def test_ban_lists_filled_at_the_same_moment_on_two_nodes_are_the_same_on_both(store_factory):
    """With ``max_bans = 3``, an operator on each node adds three bans at the same moment:
    each node refused the other's against a copy its own filled, so the lists differed and
    a user banned on B got in through A. The bound is checked where a change is asked; the
    other node applies what that node let pass: both hold the six."""
    a, b, gate, (alice, bob, dave), relays = await two_nodes(
        store_factory, Config().with_overrides(irc={"max_bans": 3}))
    try:
        await operator_on_b(a, b, alice, bob)
        gate.closed = True
        a.hub.change_room_modes(alice, "#x", [("+b", f"a{i}!*@*") for i in range(3)])
        await until(lambda: a.hub.outbox.pending == 0)
        applied, refused = b.hub.change_room_modes(bob, "#x", [("+b", m) for m in ("evil!*@*", "b2!*@*", "b3!*@*")])
        assert len(applied) == 3 and not refused  # B's copy did not have A's yet
        await until(lambda: b.hub.outbox.pending == 0)
        await caught_up(gate, relays)
        await until(lambda: a.hub.outbox.pending == 0)
        assert state(a) == state(b) and len(state(a)[5]) == 6
        evil = a.connect("evil")
        with pytest.raises(errors.Banned):
            a.hub.join(evil, "#x")
        # full on both now: one more is refused wherever it is asked
        assert b.hub.change_room_modes(bob, "#x", [("+b", "more!*@*")])[0] == []
    finally:
        await stop_nodes([a, b], relays)


@on_postgres
@pytest_twisted.ensureDeferred
async def test_a_list_entry_carries_its_modes_time_on_both_nodes(nodes):
    """Each node stamped a ban, exception or invite exception with its own clock as it
    applied it, so across a second's turn the two listed different times (346 ... 1796564319
    on one node, ...318 on the other: the random two-node driver). Both list the time of
    the MODE event that set it, the one its members were shown."""
    a, b, gate, (alice, bob, dave), relays = nodes
    a.hub.change_room_modes(alice, "#x", [("+I", "t3*!*@*"), ("+b", "evil!*@*")])
    await until(lambda: Kind.MODE in dave.participant.kinds())
    (mode,) = [e for e in dave.participant.events if e.kind == Kind.MODE]  # as b's member was shown it
    for world in (a, b):
        room = world.hub.rooms["#x"]
        assert [(e.mask, e.time) for e in room.invex] == [("t3*!*@*", mode.time)]
        assert [(e.mask, e.time) for e in room.bans] == [("evil!*@*", mode.time)]


@on_postgres
@pytest_twisted.ensureDeferred
async def test_a_registered_rooms_record_ends_as_the_state_both_nodes_reach(nodes):
    """A registered room is saved whole by the node a change is made on. A topic set on A
    while A's doorbell is late, and a mode set on B meanwhile: B saved its copy (the old
    topic, +m) after A saved its own (the new topic, no +m); each node saves its copy again
    once it applied the other's change, so the stored record ends with both (it kept B's
    stale topic, without these saves)."""
    a, b, gate, (alice, bob, dave), relays = nodes
    fay = a.connect("fay", account="fay")
    a.hub.join(fay, "#reg")  # made by an account holder: registered, founded by fay
    await until(lambda: "#reg" in b.hub.rooms)
    assert b.hub.rooms["#reg"].persistent and b.hub.rooms["#reg"].founder == "fay"
    gus = b.connect("gus", account="gus")
    b.hub.join(gus, "#reg")
    await until(lambda: "gus" in a.hub.rooms["#reg"].members)
    a.hub.change_room_modes(fay, "#reg", [("+o", "gus")])
    await until(lambda: "o" in b.hub.rooms["#reg"].members["gus"].privileges)
    gate.closed = True
    a.hub.set_topic(fay, "#reg", "set on A")
    await until(lambda: a.hub.outbox.pending == 0)
    b.hub.change_room_modes(gus, "#reg", [("+m", None)])
    await until(lambda: b.hub.outbox.pending == 0)
    gate.open()
    await until(lambda: relays[0].position("#reg") == relays[1].position("#reg"))

    async def stored():
        (record,) = [r for r in await a.hub.store.load_rooms() if r.name == "#reg"]
        return record.topic, "m" in record.modes

    for _ in range(200):
        if await stored() == ("set on A", True):
            break
        await task.deferLater(reactor, 0.02, lambda: None)
    assert await stored() == ("set on A", True)


async def stored_rooms(world) -> dict[str, str]:
    """The registered rooms ``world``'s store holds (name -> topic), once every write its
    node queued so far is done (a write queued now runs after them)."""
    await world.hub.store.save_read_marker("barrier", "#barrier", 0.0, 0.0, 1)
    return {r.name: r.topic for r in await world.hub.store.load_rooms()}


@on_postgres
@pytest_twisted.ensureDeferred
async def test_a_save_made_after_another_nodes_rename_does_not_bring_the_old_name_back(nodes):
    """A topic set on A, then the room renamed on A while A's doorbell is late: B applies
    the topic after A deleted the old name's record, and its save of its copy (still of
    the old name) must not store it again (a ghost registered room after a restart)."""
    a, b, gate, (alice, bob, dave), relays = nodes
    fay = a.connect("fay", account="fay")
    a.hub.join(fay, "#reg")
    await until(lambda: "#reg" in b.hub.rooms and b.hub.rooms["#reg"].persistent)
    gate.closed = True
    a.hub.set_topic(fay, "#reg", "set on A")
    a.hub.rename_room(fay, "#reg", "#new")
    await until(lambda: a.hub.outbox.pending == 0)
    assert await stored_rooms(a) == {"#new": "set on A"}
    gate.open()
    await until(lambda: "#new" in b.hub.rooms and relays[1].position("#new") == relays[0].position("#new"))
    assert await stored_rooms(b) == {"#new": "set on A"}


@on_postgres
@pytest_twisted.ensureDeferred
async def test_a_guest_room_registered_at_login_before_its_join_arrived_is_registered_there(nodes):
    """A guest makes a room and logs in at once: the ``founded`` item goes out before the
    JOIN that makes the room is committed, so it reached B before the room; B kept it, and
    registers the room when the JOIN makes it (B's copy was a plain room before)."""
    a, b, gate, (alice, bob, dave), relays = nodes
    carol = a.connect("carol")
    a.hub.join(carol, "#g")
    a.hub.set_account(carol, "carol")  # in the same turn: before the JOIN's commit
    assert a.hub.rooms["#g"].persistent
    await until(lambda: "#g" in b.hub.rooms)
    assert b.hub.rooms["#g"].persistent and b.hub.rooms["#g"].founder == "carol"


async def gated_both_ways(store_factory):
    """Nodes a and b, each one's messages to the other through a gate of its own:
    (a, b, (gate to b, gate to a), (a's relay, b's relay))."""
    pa, pb = LinkedBackplane("a"), LinkedBackplane("b")
    to_b, to_a = Gate(pb), Gate(pa)
    pa.link(to_b)
    pb.link(to_a)
    a, relay_a = await cluster_node(store_factory, pa)
    b, relay_b = await cluster_node(store_factory, pb)
    return a, b, (to_b, to_a), (relay_a, relay_b)


@on_postgres
@pytest_twisted.ensureDeferred
async def test_a_room_made_again_on_both_nodes_at_once_has_one_creation_time(store_factory):
    """#y's last member (alice, on A) leaves; before B hears of it, bob joins B's copy, which
    still lives (at its number that JOIN makes the room anew on every node), and before A
    hears of that, carol makes #y again on A, with a claim of the name. A's copy, made by
    carol's JOIN ahead of its number, kept that JOIN's time when bob's, numbered first, was
    applied to it, and B's took bob's (329 a second apart: a random two-node driver,
    outsider seeds 145, 168, 319, 416). Both give the time of the JOIN the numbered order
    made the room with."""
    a, b, (to_b, to_a), (relay_a, relay_b) = await gated_both_ways(store_factory)
    try:
        alice, carol, bob = a.connect("alice"), a.connect("carol"), b.connect("bob")
        await a.hub.claim_and_join(alice, "#y")
        await until(lambda: "#y" in b.hub.rooms)
        to_b.closed = to_a.closed = True
        a.hub.part(alice, "#y", "")  # the end, on A at once
        await until(lambda: a.hub.outbox.pending == 0 and "#y" not in a.hub.rooms)
        assert b.hub.join(bob, "#y") is b.hub.rooms["#y"]  # B's copy lives on
        # committed, after the PART: it waits for the PART's number (A's, held at the gate)
        await until(lambda: bool(relay_b.conversations["#y"].own_ahead))
        made = await a.hub.claim_and_join(carol, "#y")  # A holds no #y: made again, after bob's
        assert made is a.hub.rooms["#y"]
        to_b.open()
        to_a.open()
        await until(lambda: relay_a.position("#y") == relay_b.position("#y") and not a.hub.outbox.pending
                    and not b.hub.outbox.pending)
        await until(lambda: set(a.hub.rooms["#y"].members) == set(b.hub.rooms["#y"].members) == {"bob", "carol"})
        assert a.hub.rooms["#y"].created == b.hub.rooms["#y"].created
    finally:
        await stop_nodes([a, b], [relay_a, relay_b])


@on_postgres
@pytest_twisted.ensureDeferred
async def test_a_join_numbered_before_the_last_members_part_keeps_the_room_as_it_was_on_every_node(store_factory):
    """alice, #z's last member (on A), parts while bob's JOIN on B, numbered before her PART,
    is on its way: at the PART's number the room does not end (bob is in), and B keeps its
    topic, key and bans. A had ended its copy at the PART, ahead of its number, and made a
    fresh one from bob's JOIN (+nt, no topic, no key, no bans): a user of A could join past
    the key and bans every other node kept. A takes the room back as it was."""
    a, b, (to_b, to_a), (relay_a, relay_b) = await gated_both_ways(store_factory)
    try:
        alice, bob = a.connect("alice"), b.connect("bob")
        await a.hub.claim_and_join(alice, "#z")
        a.hub.set_topic(alice, "#z", "the topic")
        a.hub.change_room_modes(alice, "#z", [("+k", "sesame"), ("+b", "evil!*@*")])
        await until(lambda: "#z" in b.hub.rooms and b.hub.rooms["#z"].key == "sesame" and b.hub.rooms["#z"].bans)
        to_b.closed = to_a.closed = True
        assert b.hub.join(bob, "#z", "sesame") is b.hub.rooms["#z"]
        await until(lambda: b.hub.outbox.pending == 0)  # committed first
        a.hub.part(alice, "#z", "")
        assert "#z" not in a.hub.rooms  # ended on A at once, ahead of its number
        await until(lambda: bool(relay_a.conversations["#z"].own_ahead))  # committed after bob's JOIN
        to_b.open()
        to_a.open()
        await until(lambda: relay_a.position("#z") == relay_b.position("#z") and not a.hub.outbox.pending
                    and not b.hub.outbox.pending)
        assert state_of(a, "#z") == state_of(b, "#z") == (
            "the topic", "sesame", ["evil!*@*"], b.hub.rooms["#z"].created, {"bob": ""})
        with pytest.raises(errors.BadKey):
            a.hub.join(a.connect("carol"), "#z")
        assert a.hub.rooms["#z"].claim is not None  # the name's claim came back with it
    finally:
        await stop_nodes([a, b], [relay_a, relay_b])


def state_of(world, name: str) -> tuple:
    room = world.hub.rooms[name]
    return (room.topic, room.key, [b.mask for b in room.bans], room.created,
            {n: m.privileges for n, m in room.members.items()})
