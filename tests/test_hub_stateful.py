"""The hub refuses what a user who is not in it asks, and invites follow their nick.

What the stateful tests of the hub found."""
from __future__ import annotations

import pytest
from twisted.internet.defer import Deferred
from twisted.python.failure import Failure

from chathub.hub import errors
from chathub.hub.service import ChatHub
from chathub.hub.users import User
from tests.test_hub import Recorder, World


def settled(d: Deferred):
    """The result of a Deferred that has fired already; its failure is raised."""
    outcome: list = []
    d.addBoth(outcome.append)
    (result,) = outcome
    if isinstance(result, Failure):
        result.raiseException()
    return result


def snapshot(hub: ChatHub) -> tuple:
    """Everything a refused call must leave as it was."""
    users = {
        k: (
            id(u), u.nick, u.folded, u.modes, u.privileges, u.away, u.account, u.realname,
            u.user, u.host, tuple(sorted(u.rooms)), frozenset(u._monitoring or ()),
        )
        for k, u in hub.users.items()
    }
    rooms = {
        k: (
            id(r), r.name, frozenset(r.modes), r.key, r.limit, r.topic, r.topic_setter, r.topic_time,
            tuple(r.bans), tuple(r.excepts), tuple(r.invex), frozenset(r.invited),
            tuple((f, id(m.user), m.privileges) for f, m in r.members.items()),
            r.registered, frozenset(r.operators),
        )
        for k, r in hub.rooms.items()
    }
    watchers = {k: frozenset(map(id, s)) for k, s in hub.watchers.items()}
    counts = {k: v for k, v in hub._user_mode_counts.items() if v}
    return users, rooms, watchers, counts, len(hub.whowas_log), hub.max_users_seen


# -- what the machine found, as regression tests ----------------------------------------


def test_nothing_runs_for_a_user_after_quit():
    """A request read after a quit (JSON ``join`` after ``quit`` left a ghost operator in
    NAMES; ``nick`` after ``quit`` raised KeyError) is refused by the hub itself, changes
    nothing, reaches nobody, and never acts as whoever holds the nick now."""
    world = World()
    hub = world.hub
    ghost = world.connect("ghosty")
    hub.join(ghost, "#r")
    hub.make_operator(ghost, ["kill", "wallops"])
    hub.quit(ghost, "bye")
    honest = world.connect("GHOSTY")  # the nick's next holder, operator of #r now
    victim = world.connect("victim")
    hub.join(honest, "#r")
    hub.join(victim, "#r")
    hub.monitor(honest, ["victim"])
    world.clear()
    state = snapshot(hub)
    requests = [
        lambda: hub.join(ghost, "#new"),
        lambda: hub.join(ghost, "#r"),
        lambda: hub.change_nick(ghost, "other"),
        lambda: hub.part(ghost, "#r"),
        lambda: hub.send(ghost, "#r", "boo"),
        lambda: hub.send(ghost, "victim", "boo"),
        lambda: hub.set_topic(ghost, "#r", "mine"),
        lambda: hub.kick(ghost, "#r", "victim"),
        lambda: hub.invite(ghost, "#r", "victim"),
        lambda: hub.change_room_modes(ghost, "#r", [("+o", "victim")]),
        lambda: hub.set_away(ghost, "away"),
        lambda: hub.set_host(ghost, "u", "elsewhere"),
        lambda: hub.set_realname(ghost, "someone"),
        lambda: hub.set_account(ghost, "ghosty"),
        lambda: hub.make_operator(ghost, ["kill"]),
        lambda: hub.change_user_modes(ghost, [("+i", None)]),
        lambda: hub.wallops(ghost, "hello"),
        lambda: hub.kill(ghost, "victim", "bye"),
        lambda: hub.monitor(ghost, ["victim"]),
        lambda: settled(hub.register_account(ghost, "password")),
    ]
    for request in requests:
        with pytest.raises(errors.NotRegistered):
            request()
        assert snapshot(hub) == state
    assert hub.quit(ghost, "again") is None and hub.unmonitor(ghost) is None
    assert snapshot(hub) == state
    assert [p.sent for p in (honest.participant, victim.participant)] == [[], []]
    assert victim.participant.closed is None
    assert [m.user for m in hub.find_room("#r").members.values()] == [honest, victim]


def test_nothing_runs_for_a_user_who_never_registered():
    world = World()
    hub = world.hub
    bystander = world.connect("bystander")
    hub.join(bystander, "#r")
    hub.change_room_modes(bystander, "#r", [("-n", None)])
    stranger = User(Recorder(world.codec), user="s", host="example.org")
    world.clear()
    for request in (
        lambda: hub.join(stranger, "#r"),
        lambda: hub.send(stranger, "#r", "hi"),
        lambda: hub.send(stranger, "bystander", "hi"),
        lambda: hub.monitor(stranger, ["bystander"]),
        lambda: hub.invite(stranger, "#r", "bystander"),
    ):
        with pytest.raises(errors.NotRegistered):
            request()
    assert bystander.participant.sent == [] and not hub.watchers
    assert list(hub.find_room("#r").members) == ["bystander"]


def test_an_invite_does_not_pass_to_the_next_holder_of_the_nick():
    """An invite named bob: once bob quits or takes another nick it is gone, so whoever
    takes "BOB" next cannot walk into the +i room (nor past its limit or bans)."""
    world = World()
    hub = world.hub
    op, bob = world.connect("op"), world.connect("bob")
    room = hub.join(op, "#r")
    hub.change_room_modes(op, "#r", [("+i", None)])
    hub.invite(op, "#r", "bob")
    hub.quit(bob, "bye")
    assert room.invited == set()
    mallory = world.connect("BOB")
    with pytest.raises(errors.InviteOnly):
        hub.join(mallory, "#r")
    hub.invite(op, "#r", "bob")  # mallory, invited herself now, renames before joining
    hub.change_nick(mallory, "mallory")
    assert room.invited == set() and mallory.invited_to is None
    carol = world.connect("bob")
    with pytest.raises(errors.InviteOnly):
        hub.join(carol, "#r")
    hub.invite(op, "#r", "BOB")  # a change of case is the same nick: the invite stays
    hub.change_nick(carol, "Bob")
    assert hub.join(carol, "#r") is room


def test_a_refused_user_mode_change_changes_nothing():
    world = World()
    amy = world.connect("amy")
    with pytest.raises(errors.UnknownMode):
        world.hub.change_user_modes(amy, [("+i", None), ("+x", None)])
    assert amy.modes == frozenset() and world.hub.users_with_mode("i") == 0
