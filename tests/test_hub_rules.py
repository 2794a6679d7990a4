"""Rules the hub enforces whatever protocol asks (issue 13, "hub rules in one place"): an
invite is delivered in hub order, the mask lists and the KICK/PART/QUIT reasons are
bounded in the hub with one error code each, and a telnet user taken out of a room by
someone else never makes a command fail with a traceback."""
from __future__ import annotations

import pytest_twisted

from chathub.config import Config
from chathub.events import Kind
from chathub.hub import errors
from tests.support import HubServer, RecorderWorld, irc_world, line_world, ws_config, ws_join, ws_login
from tests.test_hub import PendingStore, p


def test_invite_waits_behind_an_earlier_message_still_committing():
    store = PendingStore()
    world = RecorderWorld(store=store)
    alice, bob = world.connect("alice"), world.connect("bob")
    world.hub.join(alice, "#r")
    for _, d in store.pending:  # the join is stored without being waited for
        d.callback(None)
    store.pending.clear()
    message = world.hub.send(alice, "bob", "come to #r, the invite follows")
    invite = world.hub.invite(alice, "#r", "bob")
    assert p(bob).events == []  # the invite does not overtake the message
    (stored, d), = store.pending
    assert stored == message
    d.callback(None)
    assert p(bob).events == [message, invite]


def test_invite_to_an_idle_hub_is_delivered_at_once():
    world = RecorderWorld()
    alice, bob = world.connect("alice"), world.connect("bob")
    world.hub.join(alice, "#r")
    invite = world.hub.invite(alice, "#r", "bob")
    assert p(bob).events == [invite] and invite.kind == Kind.INVITE


def test_reason_bounds_are_hub_rules():
    config = Config().with_overrides(limits={"reason_length": 10}, irc={"kick_length": 8})
    world = RecorderWorld(config)
    alice, bob = world.connect("alice"), world.connect("bob")
    world.hub.join(alice, "#r")
    world.hub.join(bob, "#r")
    try:
        world.hub.kick(alice, "#r", "bob", "x" * 9)
    except errors.ReasonTooLong as e:
        assert e.code == "reason_too_long" and "at most 8" in e.message
    else:
        raise AssertionError("a kick reason over [irc] kick_length was accepted")
    assert bob in world.hub.find_room("#r")
    assert world.hub.kick(alice, "#r", "bob", "x" * 8).text == "x" * 8
    try:
        world.hub.part(alice, "#r", "y" * 11)
    except errors.ReasonTooLong as e:
        assert e.code == "reason_too_long" and "at most 10" in e.message
    else:
        raise AssertionError("a part reason over [limits] reason_length was accepted")
    assert world.hub.part(alice, "#r", "y" * 10).text == "y" * 10
    quit_event = world.hub.quit(bob, "z" * 50)  # a quit happens anyway, its reason cut
    assert quit_event is not None and quit_event.text == "z" * 10


def test_150_telnet_bans_leave_max_bans_and_an_error_for_each_refused():
    # the client's address is exempt from flood control: the 150 lines are all handled
    chat = line_world(Config().with_overrides(irc={"max_bans": 100}), flood_exempt=["192.0.2.7"])
    conn = chat.line_conn("alice", "#r")
    conn.new_lines()
    for i in range(150):
        conn.send(f"/mode #r +b ban{i}!*@*")
    for _ in range(3):  # the flood gate handles 64 lines a reactor turn (flood.PER_ROUND)
        chat.clock.advance(0)
    lines = conn.new_lines()
    assert len(chat.hub.find_room("#r").bans) == 100
    refused = [line for line in lines if line.startswith("! ")]
    assert len(refused) == 50 and all("list is full" in line for line in refused)
    assert sum("you set mode +b" in line for line in lines) == 100


def test_telnet_reason_too_long_is_an_error_line():
    chat = line_world(Config().with_overrides(limits={"reason_length": 5}))
    conn = chat.line_conn("alice", "#r")
    conn.send("/part #r far too long a reason")
    assert conn.expect("! ").endswith("Part reason too long (at most 5 characters)")
    assert chat.hub.find_user("alice") in chat.hub.find_room("#r")


def test_irc_kick_reason_over_kicklen_gets_417():
    chat = irc_world(kick_length=5, flood_exempt=["127.0.0.0/8"])
    dan = chat.irc_conn("dan")  # alice is a registered account of irc_world
    bob = chat.irc_conn("bob")
    dan.send("JOIN #r")
    bob.send("JOIN #r")
    dan.lines()
    dan.send("KICK #r bob :longer than five")
    (reply,) = [m for m in dan.lines() if m.command != "PING"]
    assert reply.command == "417" and reply.params[-1] == "Kick reason too long (at most 5 characters)"
    assert chat.hub.find_user("bob") in chat.hub.find_room("#r")


@pytest_twisted.ensureDeferred
async def test_json_part_reason_too_long_is_an_error_object():
    server = HubServer(ws_config().with_overrides(limits={"reason_length": 5}), protocols=["http"])
    try:
        alice = await ws_login(server.http_port, "alice")
        await ws_join(alice, "#r", "alice")
        alice.send_json({"type": "part", "room": "#r", "reason": "longer than five", "ref": "p1"})
        error = await alice.expect({"type": "error", "ref": "p1"})
        assert error["code"] == "reason_too_long" and "at most 5" in error["message"]
    finally:
        await server.stop()


# -- telnet after a kick ---------------------------------------------------------------


def kicked():
    """A telnet world where alice kicked bob out of #r (bob's current room)."""
    chat = line_world()
    alice = chat.line_conn("alice", "#r")
    bob = chat.line_conn("bob", "#r")
    alice.send("/kick bob bye")
    bob.expect("bob was kicked from #r by alice")
    return chat, alice, bob


def test_telnet_after_a_kick_the_current_room_is_cleared():
    chat, _, bob = kicked()
    for command in ("hello", "/me waves", "/topic", "/topic new topic", "/kick alice", "/invite alice", "/part"):
        bob.send(command)
        assert bob.expect("! ").startswith(("! you are no longer in #r", "! you are in no room")), command
    assert bob.session.current_room is None
    assert chat.hub.find_room("#r").topic == ""


def test_telnet_topic_after_the_room_is_gone_is_an_error_not_a_traceback():
    chat, alice, bob = kicked()
    alice.send("/part")
    assert chat.hub.find_room("#r") is None  # the room ended with its last member
    bob.new_lines()
    bob.send("/topic")
    (line,) = bob.new_lines()
    assert line.startswith("! you are no longer in #r")
    bob.send("/join #s")
    bob.expect("you joined #s")
    bob.send("/topic hello")
    bob.expect("you set the topic of #s: hello")
