"""Issue 10, item 3 over real sockets: nobody can make the hub hold rooms without bound.

One account made 20,000 persistent rooms in 5 s, and 40 guests left 1,000 rooms behind by
joining after their chathub.v1 ``quit`` (a member that had quit could never leave again).
Here attackers of each protocol try to pass each bound ([limits] max_owned_rooms,
room_creations_per_minute, max_rooms) and are refused in their protocol's terms, while an
honest user of each protocol keeps talking, and the rooms the attackers made go with them.
"""
from __future__ import annotations

import re

import pytest
import pytest_twisted
from twisted.cred.checkers import InMemoryUsernamePasswordDatabaseDontUse

from chathub.config import Config
from tests.support import HubServer

ACCOUNTS = {"irc_att": b"pw-irc", "tel_att": b"pw-tel", "ws_att": b"pw-ws"}


def limits_config(**limits) -> Config:
    return Config().with_overrides(
        websocket={"ping_interval": 0}, limits={"flood_exempt": ["127.0.0.0/8"], **limits}
    )


@pytest_twisted.async_yield_fixture
async def server(request):
    """A ``HubServer`` with the [limits] the test is parametrised with (indirectly)."""
    checker = InMemoryUsernamePasswordDatabaseDontUse(**ACCOUNTS)
    hub_server = HubServer(limits_config(**getattr(request, "param", {})), [checker])
    yield hub_server
    await hub_server.stop()


async def telnet_account(server: HubServer, nick: str, password: str):
    """A telnet user logged in to an account (``/nick name password``)."""
    client = await server.connect("line")
    client.send(f"/nick {nick} {password}")
    await client.expect_re(rf"^\* you are {nick}, logged in to account {nick}")
    return client


async def guests(server: HubServer, prefix: str):
    """A guest of each protocol: IRC, telnet and chathub.v1, named ``prefix`` and the protocol."""
    return await server.irc(f"{prefix}_irc"), await server.telnet(f"{prefix}_tel"), await server.ws(f"{prefix}_ws")


async def irc_join_outcome(client, room: str):
    """JOIN ``room``; the JOIN echo or the numeric that refused it."""
    client.send(f"JOIN {room}")
    return await client.expect(
        lambda l: (l.command == "JOIN" and l.params[0] == room)
        or (l.command.isdigit() and len(l.params) > 1 and l.params[1] == room)
    )


async def telnet_join_outcome(client, room: str) -> str:
    client.send(f"/join {room}")
    return await client.expect_re(rf"^(\* you joined {re.escape(room)}$|! {re.escape(room)}: )")


async def ws_join_outcome(client, room: str) -> dict:
    client.send_json({"type": "join", "room": room})
    return await client.expect(
        lambda m: (m.get("type") == "room" and m.get("room") == room)
        or (m.get("type") == "error" and m.get("target") == room)
    )


async def all_join(irc, tel, ws, irc_room: str, tel_room: str, ws_room: str) -> None:
    """An IRC, a telnet and a chathub.v1 client each join a room, and none is refused."""
    assert (await irc_join_outcome(irc, irc_room)).command == "JOIN"
    assert (await telnet_join_outcome(tel, tel_room)).startswith("* you joined")
    assert (await ws_join_outcome(ws, ws_room))["type"] == "room"


async def honest_users_create_and_talk(server: HubServer, watchers, tag: str) -> None:
    """Each bystander makes a room of its own and is heard in it; all still talk together."""
    await all_join(watchers.irc, watchers.telnet, watchers.ws, f"#{tag}-irc", f"#{tag}-tel", f"#{tag}-ws")
    watchers.ws.send_json({"type": "join", "room": f"#{tag}-irc"})
    await watchers.ws.expect({"type": "room", "room": f"#{tag}-irc"})
    watchers.irc.send(f"PRIVMSG #{tag}-irc :hello in my own room")
    await watchers.ws.expect({"type": "message", "text": "hello in my own room"})
    await watchers.still_served()


@pytest.mark.parametrize("server", [{"max_owned_rooms": 3}], indirect=True)
@pytest_twisted.ensureDeferred
async def test_an_account_owns_at_most_max_owned_rooms_on_every_protocol(server):
    watchers = await server.bystanders()
    irc = await server.irc("irc_att", password="pw-irc")
    tel = await telnet_account(server, "tel_att", "pw-tel")
    ws = await server.ws("ws_att", password="pw-ws")
    for n in range(3):
        await all_join(irc, tel, ws, f"#irc{n}", f"#tel{n}", f"#ws{n}")
    for n in (3, 4):
        refused = await irc_join_outcome(irc, f"#irc{n}")
        assert refused.command == "405", refused.text
        assert refused.params[-1] == "Cannot create a room: your account already owns 3 rooms, the most one may"
        line = await telnet_join_outcome(tel, f"#tel{n}")
        assert line == f"! #tel{n}: Cannot create a room: your account already owns 3 rooms, the most one may"
        error = await ws_join_outcome(ws, f"#ws{n}")
        assert error["code"] == "too_many_owned_rooms" and error["request"] == "join", error
    owned = {name for name, room in server.hub.rooms.items() if room.persistent}
    assert owned == {f"#{p}{n}" for p in ("irc", "tel", "ws") for n in range(3)}
    # the attackers can still join rooms that exist, and the honest users are unhurt
    assert (await irc_join_outcome(irc, watchers.room)).command == "JOIN"
    await honest_users_create_and_talk(server, watchers, "owned")


@pytest.mark.parametrize("server", [{"room_creations_per_minute": 4}], indirect=True)
@pytest_twisted.ensureDeferred
async def test_room_creation_rate_is_bounded_per_connection_on_every_protocol(server):
    watchers = await server.bystanders()
    irc, tel, ws = await guests(server, "fast")
    for n in range(4):
        # create and leave at once: a loop that never holds many rooms, only makes them
        await all_join(irc, tel, ws, f"#ri{n}", f"#rt{n}", f"#rw{n}")
        irc.send(f"PART #ri{n}")
        tel.send(f"/part #rt{n}")
        ws.send_json({"type": "part", "room": f"#rw{n}"})
    refused = await irc_join_outcome(irc, "#ri4")
    assert refused.command == "437", refused.text
    assert re.fullmatch(r"Cannot create a room: you created 4 in the last minute; try again in \d+ s", refused.params[-1])
    line = await telnet_join_outcome(tel, "#rt4")
    assert line.startswith("! #rt4: Cannot create a room: you created 4 in the last minute")
    error = await ws_join_outcome(ws, "#rw4")
    assert error["code"] == "room_creation_throttled", error
    # throttled creating, not joining: a room that exists still takes them
    assert (await irc_join_outcome(irc, watchers.room)).command == "JOIN"
    assert (await telnet_join_outcome(tel, watchers.room)).startswith("* you joined")
    await honest_users_create_and_talk(server, watchers, "rate")


@pytest.mark.parametrize("server", [{"max_rooms": 8}], indirect=True)
@pytest_twisted.ensureDeferred
async def test_total_rooms_bounded_and_guests_rooms_go_with_them(server):
    hub = server.hub
    watchers = await server.bystanders()
    baseline = set(hub.rooms)
    assert baseline == {watchers.room}
    irc, tel, ws = await guests(server, "att")
    watchers.irc.send("MONITOR + att_irc,att_tel,att_ws")
    await watchers.irc.expect_count(r" 730 b_irc ", 1)
    for n in range(3):
        assert (await irc_join_outcome(irc, f"#ti{n}")).command == "JOIN"
        assert (await telnet_join_outcome(tel, f"#tt{n}")).startswith("* you joined")
    assert (await ws_join_outcome(ws, "#tw0"))["type"] == "room"
    assert len(hub.rooms) == 8
    refused = await irc_join_outcome(irc, "#ti3")
    assert refused.command == "403", refused.text
    assert refused.params[-1] == "Cannot create a room: the server already holds its maximum of 8 rooms"
    assert (await telnet_join_outcome(tel, "#tt3")).startswith("! #tt3: Cannot create a room: the server")
    assert (await ws_join_outcome(ws, "#tw1"))["code"] == "room_limit_reached"
    # rooms that exist still take everyone: the honest users keep talking
    assert (await ws_join_outcome(ws, watchers.room))["type"] == "room"
    await watchers.still_served()

    # the attackers leave, each with requests sent after its quit (item 3's guests left
    # their rooms behind that way: a member that had quit could never leave again)
    ws.send_json({"type": "quit", "reason": "gone"})
    for n in range(5):
        ws.send_json({"type": "join", "room": f"#ghost-ws{n}"})
    tel.send("/quit")
    tel.send("/join #ghost-tel")
    irc.send("QUIT :gone", "JOIN #ghost-irc")
    await watchers.irc.expect_count(r" 731 b_irc :?att_(irc|tel|ws)$", 3)
    await ws.wait_closed()
    await tel.closed
    await irc.closed
    assert set(hub.rooms) == baseline, sorted(hub.rooms)
    assert all(m.user is hub.users.get(f) for room in hub.rooms.values() for f, m in room.members.items())
    # the places they held are free again
    await honest_users_create_and_talk(server, watchers, "after")


@pytest_twisted.ensureDeferred
async def test_many_guests_leave_no_room_behind(server):
    """40 guests of every protocol, 25 rooms each, some requests after their quit: the room
    count returns to what it was."""
    hub = server.hub
    watchers = await server.bystanders()
    baseline = set(hub.rooms)
    leaving = []
    for i in range(40):
        kind = ("irc", "tel", "ws")[i % 3]
        nick = f"g{kind}{i}"
        rooms = [f"#{nick}-{n}" for n in range(25)]
        if kind == "irc":
            client = await server.irc(nick)
            client.send(*(f"JOIN {r}" for r in rooms))
            await client.expect(lambda l, last=rooms[-1]: l.command == "366" and l.params[1] == last)
        elif kind == "tel":
            client = await server.telnet(nick)
            for room in rooms:
                client.send(f"/join {room}")
            await client.expect_re(rf"^\* you joined {re.escape(rooms[-1])}$")
        else:
            client = await server.ws(nick)
            for room in rooms:
                client.send_json({"type": "join", "room": room})
            await client.expect({"type": "room", "room": rooms[-1]})
        leaving.append((kind, nick, client))
    assert len(hub.rooms) == len(baseline) + 1000
    watchers.irc.send("MONITOR + " + ",".join(nick for _, nick, _ in leaving))
    await watchers.irc.expect_count(r" 730 b_irc ", 1)
    for kind, nick, client in leaving:
        if kind == "irc":
            client.send("QUIT :bye", f"JOIN #{nick}-late")
        elif kind == "tel":
            client.send("/quit")
            client.send(f"/join #{nick}-late")
        else:
            client.send_json({"type": "quit"})
            client.send_json({"type": "join", "room": f"#{nick}-late"})
    await watchers.irc.expect_count(r" 731 b_irc :?g", 40, timeout=30)
    for kind, _, client in leaving:
        await (client.wait_closed() if kind == "ws" else client.closed)
    assert set(hub.rooms) == baseline, len(hub.rooms)
    await watchers.still_served()
