"""RENAME (IRCv3 draft/channel-rename) over real sockets: one room with an IRC client that
has the capability, one without it, a telnet user and a chathub.v1 user. The room keeps its
members, modes, topic, bans, founder and history under the new name; each protocol is told
in its own terms, and its users' references to the room follow it."""
from __future__ import annotations

import pytest_twisted
from twisted.python.failure import Failure

from chathub.config import Config
from chathub.events import Kind
from chathub.store.interfaces import StorageError
from tests.support import ALL_CAPS, LOOPBACK, HeldStore, HubServer, RecorderWorld, batch_of, join_irc, ws_config

RENAME_CAP = "draft/channel-rename"


def replies(lines) -> list[str]:
    """The numerics and FAILs among ``lines`` (not what others did meanwhile)."""
    return [l.command for l in lines if l.command.isdigit() or l.command == "FAIL"]


@pytest_twisted.async_yield_fixture
async def server(tmp_path):
    hub_server = await HubServer.stored(tmp_path, ws_config().with_overrides(limits={"flood_exempt": LOOPBACK}), protocols=["http", "line", "irc"])
    await hub_server.accounts.create_account("owner", "owner-pass")
    yield hub_server
    await hub_server.stop()


@pytest_twisted.ensureDeferred
async def test_a_rename_keeps_the_room_and_every_protocol_follows_it(server):
    owner = await server.irc("owner", RENAME_CAP, "draft/event-playback", *ALL_CAPS, password="owner-pass",
                             rooms=["#old"])
    plain = await server.irc("plain", rooms=["#old"])
    tel = await server.telnet("tel", rooms=["#old"])
    web = await server.ws("web", rooms=["#old"])
    await owner.roundtrip("TOPIC #old :the topic")
    await owner.roundtrip("MODE #old +b *!*@banned.example")
    await owner.roundtrip("MODE #old +v plain")
    said = await owner.labeled("PRIVMSG #old :said before the rename")
    await plain.expect_re(r"PRIVMSG #old :said before the rename")

    lines = await owner.labeled("RENAME #old #new :tidier")
    (renamed,) = [l for l in lines if l.command == "RENAME"]
    assert renamed.params == ["#old", "#new", "tidier"]
    assert renamed.source.startswith("owner!")

    # without the capability: its own PART and JOIN, then what a join shows
    part = await plain.expect("PART")
    assert part.params == ["#old", "tidier"] and part.source.startswith("plain!")
    join = await plain.expect("JOIN")
    assert join.params == ["#new"] and join.source.startswith("plain!")
    assert (await plain.expect("332")).params[1:] == ["#new", "the topic"]
    names = await plain.expect("353")
    assert names.params[2] == "#new" and sorted(names.params[3].split()) == ["+plain", "@owner", "tel", "web"]
    assert (await plain.expect("366")).params[1] == "#new"
    # telnet: a line, and its current room is the new name (a plain line goes there)
    await tel.expect_re(r"^\* owner renamed #old to #new \(tidier\)$")
    # chathub.v1: a rename event
    event = await web.expect({"type": "rename"})
    assert (event["room"], event["new"], event["reason"], event["from"]["nick"]) == ("#old", "#new", "tidier", "owner")

    tel.send("typed in the current room")
    for client in (owner, plain):
        await client.expect_re(r":tel!\S+ PRIVMSG #new :typed in the current room")
    message = await web.expect({"type": "message", "text": "typed in the current room"})
    assert message["target"] == "#new"

    # the room kept its state; the old name is free
    hub = server.hub
    assert hub.find_room("#old") is None
    room = hub.find_room("#NEW")
    assert room.name == "#new" and room.topic == "the topic"
    assert [b.mask for b in room.bans] == ["*!*@banned.example"]
    assert room.persistent and room.founder == "owner"
    assert {m.user.nick: m.privileges for m in room.members.values()} == {"owner": "o", "plain": "v", "tel": "",
                                                                            "web": ""}
    # the stored room moved with it
    assert [r.name for r in await server.store.load_rooms()] == ["#new"]
    # history said in #old is #new's, shown as said there (IRC and chathub.v1)
    _, inner = batch_of(await owner.roundtrip("CHATHISTORY LATEST #new * 10"))
    texts = [(l.command, l.params[0], l.params[-1]) for l in inner]
    assert ("PRIVMSG", "#new", "said before the rename") in texts
    assert ("RENAME", "#old", "tidier") in texts  # with draft/event-playback
    assert [l.tags["msgid"] for l in inner if l.params[-1] == "said before the rename"] == [said[0].tags["msgid"]]
    web.send_json({"type": "history", "target": "#new", "ref": "h"})
    page = await web.expect({"type": "history", "ref": "h"})
    shown = [(e["type"], e.get("target")) for e in page["events"] if e.get("text") == "said before the rename"]
    assert shown == [("message", "#new")]
    # a new #old is a new room: its first member is its operator, and it has no history
    await join_irc(plain, "#old")
    assert hub.find_room("#old").members["plain"].privileges == "o"
    assert await hub.recent_history(hub.find_user("plain"), "#old", 10) == []


@pytest_twisted.ensureDeferred
async def test_refusals_in_each_protocols_terms(server):
    op = await server.irc("op", RENAME_CAP, rooms=["#a", "#b"])
    other = await server.irc("other", rooms=["#a"])
    tel = await server.telnet("tel", rooms=["#a"])
    web = await server.ws("web", rooms=["#a"])

    lines = await op.roundtrip("RENAME #a #b :taken")
    assert [l.params for l in lines if l.command == "FAIL"] == [["RENAME", "CHANNEL_NAME_IN_USE", "#a", "#b",
                                                                  "The room name is already taken"]]
    lines = await op.roundtrip("RENAME #a nohash")
    assert [l.params[:4] for l in lines if l.command == "FAIL"] == [["RENAME", "CANNOT_RENAME", "#a", "nohash"]]
    lines = await op.roundtrip("RENAME #a #a")
    assert [l.params[:4] for l in lines if l.command == "FAIL"] == [["RENAME", "CANNOT_RENAME", "#a", "#a"]]
    assert replies(await other.roundtrip("RENAME #a #c")) == ["482"]
    assert replies(await other.roundtrip("RENAME #b #c")) == ["442"]
    assert replies(await other.roundtrip("RENAME #nowhere #c")) == ["403"]
    assert replies(await other.roundtrip("RENAME #a")) == ["461"]
    tel.send("/rename #c")
    await tel.expect_re(r"^! #a: You're not a room operator$")
    web.send_json({"type": "rename", "room": "#a", "new": "#c", "ref": "r"})
    error = await web.expect({"type": "error", "ref": "r"})
    assert error["code"] == "not_room_operator"
    web.send_json({"type": "rename", "room": "#a", "ref": "r2"})
    assert (await web.expect({"type": "error", "ref": "r2"}))["code"] == "missing_field"
    # nothing changed
    assert server.hub.find_room("#a") is not None and server.hub.find_room("#c") is None


@pytest_twisted.ensureDeferred
async def test_telnet_and_web_operators_rename_too_and_a_change_of_case_is_quiet(server):
    tel = await server.telnet("tel", rooms=["#room"])  # the first in: its operator
    capped = await server.irc("capped", RENAME_CAP, "draft/read-marker", rooms=["#room"])
    plain = await server.irc("plain", rooms=["#room"])
    web = await server.ws("web", rooms=["#room"])
    await plain.expect_re(r":web!\S+ JOIN #room")

    marked = await capped.roundtrip("MARKREAD #room timestamp=2026-01-02T03:04:05.000Z")
    assert [l.params for l in marked if l.command == "MARKREAD"] == [["#room", "timestamp=2026-01-02T03:04:05.000Z"]]
    tel.send("/rename #Room just the case")
    await tel.expect_re(r"^\* you renamed #room to #Room$")
    assert (await capped.expect("RENAME")).params == ["#room", "#Room", "just the case"]
    assert (await web.expect({"type": "rename"}))["new"] == "#Room"
    # no PART and JOIN for a change of case
    assert [l.command for l in await plain.roundtrip() if l.command != "PONG"] == []
    assert server.hub.find_room("#room").name == "#Room"

    # a web operator renames; the telnet user's current room follows
    tel.send("/mode #Room +o web")
    await tel.expect_re(r"you set mode \+o web on #Room")
    web.send_json({"type": "rename", "room": "#Room", "new": "#lounge", "ref": "w"})
    await web.expect({"type": "ok", "ref": "w"})
    assert (await web.expect({"type": "rename"}))["new"] == "#lounge"  # its own, with the id
    await tel.expect_re(r"^\* web renamed #Room to #lounge$")
    assert (await capped.expect("RENAME")).params == ["#Room", "#lounge", ""]
    assert (await plain.expect("JOIN")).params == ["#lounge"]
    assert (await plain.expect("366")).params[1] == "#lounge"
    # the read marker followed the room
    marked = await capped.roundtrip("MARKREAD #lounge")
    assert [l.params for l in marked if l.command == "MARKREAD"] == [
        ["#lounge", "timestamp=2026-01-02T03:04:05.000Z"]
    ]
    tel.send("/topic")
    await tel.expect_re(r"^\* #lounge has no topic$")

    # an IRC operator without the capability gets the fallback for its own rename too
    tel.send("/mode #lounge +o plain")
    await tel.expect_re(r"you set mode \+o plain on #lounge")
    lines = await plain.roundtrip("RENAME #lounge #den")
    assert [(l.command, l.params[:2]) for l in lines if l.command in ("PART", "JOIN", "366")] == [
        ("PART", ["#lounge"]), ("JOIN", ["#den"]), ("366", ["plain", "#den"]),
    ]
    assert (await capped.expect("RENAME")).params == ["#lounge", "#den", ""]


def test_a_rename_the_store_refuses_is_still_shown_each_member_in_its_own_terms():
    """The room is renamed already when its commit fails: history lacks the RENAME, but every
    member is still told (each rendering it for itself), and only once the commit is over."""
    store = HeldStore()
    world = RecorderWorld(Config().with_overrides(history={"enabled": True}), store=store)
    hub = world.hub
    owner, member = world.connect("owner"), world.connect("member")
    hub.join(owner, "#old")
    hub.join(member, "#old")
    world.clear()
    hub.rename_room(owner, "#old", "#new", "tidier")
    assert member.participant.events == []  # waits for the commit
    store.commit(Failure(StorageError("disk full")))
    assert [(e.kind, e.target, e.data.get("new")) for e in member.participant.events] == [(Kind.RENAME, "#old", "#new")]
    assert hub.find_room("#new") is not None
