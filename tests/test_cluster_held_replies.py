"""While a cluster node holds a room (its own event got a number above another node's still
on its way: ``Outbox.pause``), only what that room owes a user waits for it: the replies
and private messages of users in no held room go on, a member's and a leaver's wait and
keep hub order (docs/cluster.md, "One order for everyone"). Two hubs with their relays on
one PostgreSQL database, the doorbell between them a gate the test closes."""
from __future__ import annotations

import pytest_twisted
from twisted.internet import task

from chathub.events import Kind
from tests.store_fixtures import *  # noqa: F401,F403 (fixtures)
from tests.support import until
from tests.test_cluster_admission import nodes  # noqa: F401 (fixture)
from tests.test_cluster_relay import on_postgres


def said(user) -> list[str]:
    return [e.text for e in user.participant.events if e.kind == Kind.MESSAGE]


@on_postgres
@pytest_twisted.ensureDeferred
async def test_a_held_room_holds_only_what_it_owes_its_members_and_leavers(nodes):  # noqa: F811
    a, b, gate, (alice, bob, dave), (relay_a, relay_b) = nodes
    cal = b.connect("cal", echo_own=True)  # shown its own PART, as an IRC client is
    b.hub.join(cal, "#x")
    a.hub.change_room_modes(alice, "#x", [("+o", "bob")])
    await until(lambda: "cal" in a.hub.rooms["#x"].members and b.hub.rooms["#x"].members["bob"].is_operator)
    zed, yan = b.connect("zed"), b.connect("yan")
    relay_b.clock = task.Clock()  # B waits for the missing number, and never reads it itself
    gate.closed = True  # A's message is late to reach B
    a.hub.send(alice, "#x", "from a")
    await until(lambda: a.hub.outbox.pending == 0)
    b.hub.send(dave, "#x", "from b")  # numbered after A's: B holds #x until A's comes
    b.hub.part(cal, "#x")  # numbered after it too; cal is out of B's copy of #x at once
    b.hub.kick(bob, "#x", "dave")  # and dave, kicked
    await b.hub.store.writer.idle()
    assert b.hub.outbox.pending == 3 and said(bob) == []  # all committed, parked in #x
    replies: list[str] = []
    seen: dict[str, list] = {}  # what each user had been shown when its reply went

    def reply(user) -> None:
        replies.append(user.nick)
        seen[user.nick] = [(e.kind, e.source.nick) for e in user.participant.events]

    for user in (zed, bob, cal, dave):
        b.hub.after_delivery(lambda user=user: reply(user), user)
    b.hub.send(zed, "yan", "to yan")
    b.hub.send(zed, "bob", "to bob")
    await b.hub.store.writer.idle()
    # zed and yan are in no room: their reply and private message went on, where every
    # reply and private message of the node waited for #x before
    assert replies == ["zed"] and said(yan) == ["to yan"]
    assert said(bob) == [] and b.hub.outbox.pending == 7
    gate.open()
    await until(lambda: b.hub.outbox.pending == 0)
    assert said(bob) == ["from a", "from b", "to bob"]  # hub order for the room's member
    assert replies == ["zed", "bob", "cal", "dave"]
    # each reply came after what the room owed its user: bob's after the room's last event
    # it is shown (its own KICK is not echoed to it here), cal's and dave's (out of the room
    # already when they asked) after their PART and KICK
    assert seen["bob"][-1] == (Kind.PART, "cal") and seen["cal"][-1] == (Kind.PART, "cal")
    assert seen["dave"][-1] == (Kind.KICK, "bob")


@on_postgres
@pytest_twisted.ensureDeferred
async def test_a_quit_or_nick_change_waits_only_for_the_held_rooms_of_those_shown_it(nodes):  # noqa: F811
    """A quit and a nick change belong to every room of their user: they waited behind
    every held room of the node, and everything queued after them with them. Now they wait
    only for what a held room owes one of the users shown them, and so do a watcher's
    MONITOR notice, an invitation and a history read (of a room not held)."""
    a, b, gate, (alice, bob, dave), (relay_a, relay_b) = nodes
    yan, quin, zed = b.connect("yan"), b.connect("quin"), b.connect("zed")
    b.hub.join(yan, "#y")
    b.hub.join(quin, "#y")
    b.hub.monitor(zed, ["quin"])  # in no room: told of quin's quit as a watcher
    a.hub.change_room_modes(alice, "#x", [("+o", "bob")])
    await until(lambda: "#y" in a.hub.rooms and {"yan", "quin"} <= set(a.hub.rooms["#y"].members)
                and b.hub.rooms["#x"].members["bob"].is_operator)
    relay_b.clock = task.Clock()  # B waits for the missing number, and never reads it itself
    gate.closed = True
    a.hub.send(alice, "#x", "from a")
    await until(lambda: a.hub.outbox.pending == 0)
    b.hub.send(dave, "#x", "from b")  # numbered after A's: B holds #x
    await b.hub.store.writer.idle()
    assert b.hub.outbox.pending == 1
    b.hub.quit(quin, "bye")  # shown to yan, in #y only
    b.hub.change_nick(dave, "dave2")  # shown to bob, in #x
    b.hub.invite(bob, "#x", "zed")  # an operator of #x invites zed, in no room
    await b.hub.store.writer.idle()
    assert [(e.kind, e.source.nick) for e in yan.participant.events][-1] == (Kind.QUIT, "quin")
    assert [e.kind for e in zed.participant.events] == [Kind.PRESENCE, Kind.INVITE]
    read = b.hub.history(yan, "latest", "#y", None, limit=10)  # a room not held: read at once
    await until(lambda: read.called)
    assert [e.kind for e in bob.participant.events if e.kind in (Kind.MESSAGE, Kind.NICK)] == []
    # still held: the message, the nick change bob is shown, and the invite's notice to the
    # room's operators
    assert b.hub.outbox.pending == 3
    gate.open()
    await until(lambda: b.hub.outbox.pending == 0)
    assert [(e.kind, e.source.nick) for e in bob.participant.events if e.kind in (Kind.MESSAGE, Kind.NICK)] == [
        (Kind.MESSAGE, "alice"), (Kind.MESSAGE, "dave"), (Kind.NICK, "dave")]


@on_postgres
@pytest_twisted.ensureDeferred
async def test_a_reply_follows_its_user_s_own_entries_parked_in_a_held_room(nodes):  # noqa: F811
    """A user's message to a held room it is not in (the room without +n), and another's
    private message to a member of that room, are parked behind the room though their
    senders are not members: each sender's reply waits for its own (it went first before:
    only members and leavers were owed the room)."""
    a, b, gate, (alice, bob, dave), (relay_a, relay_b) = nodes
    zed, yan = b.connect("zed"), b.connect("yan")
    a.hub.change_room_modes(alice, "#x", [("-n", None)])
    await until(lambda: "n" not in b.hub.rooms["#x"].modes)
    relay_b.clock = task.Clock()  # B waits for the missing number, and never reads it itself
    gate.closed = True
    a.hub.send(alice, "#x", "from a")
    await until(lambda: a.hub.outbox.pending == 0)
    b.hub.send(dave, "#x", "from b")  # numbered after A's: B holds #x
    b.hub.send(zed, "#x", "from outside")
    b.hub.send(yan, "bob", "to bob")  # owed to bob, a member of #x: parked behind it
    await b.hub.store.writer.idle()
    assert b.hub.outbox.pending == 3
    replies: list[str] = []
    for user in (zed, yan):
        b.hub.after_delivery(lambda user=user: replies.append(user.nick), user)
    assert replies == [] and said(bob) == []
    gate.open()
    await until(lambda: b.hub.outbox.pending == 0)
    assert said(bob) == ["from a", "from b", "from outside", "to bob"] and replies == ["zed", "yan"]
