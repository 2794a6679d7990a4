"""The same visibility rules through telnet, IRC and chathub.v1 on one hub.

ivy (+i, via IRC) shares #pub with pat (telnet); bob (JSON), carol (IRC) and dave
(telnet) share no room with ivy, so none of them may see her: not in the member list,
not in the room list's count, not in a listing of everyone online.
"""
from __future__ import annotations

import pytest_twisted

from tests.support import LOOPBACK, HubServer, ws_config


@pytest_twisted.async_yield_fixture
async def server():
    """One hub serving chathub.v1 on a socket; its telnet and IRC users on StringTransports."""
    config = ws_config().with_overrides(auth={"checkers": []}, irc={"flood_exempt": LOOPBACK})
    hub_server = HubServer(config, protocols=["http"])
    yield hub_server
    await hub_server.stop()


@pytest_twisted.ensureDeferred
async def test_every_protocol_hides_an_invisible_user_from_outsiders(server):
    hub = server.hub
    pat = server.line_conn("pat")
    pat.send("/join #pub")
    pat.expect("you joined #pub")
    ivy = server.irc_conn("ivy")
    ivy.send("MODE ivy +i", "JOIN #pub")
    assert "JOIN" in ivy.commands()

    # the hub's answer, and what a member sees
    room = hub.find_room("#pub")
    assert sorted(m.user.nick for m in hub.visible_members(hub.find_user("pat"), room)) == ["ivy", "pat"]
    pat.send("/names #pub")
    assert pat.expect("* in #pub").endswith("(2): @pat ivy")

    # telnet outsider
    dave = server.line_conn("dave")
    dave.send("/names #pub")
    assert dave.expect("* in #pub").endswith("(1): @pat")
    dave.send("/list")
    dave.expect("#pub (1)")
    dave.send("/who")
    listed = [line for line in dave.new_lines() if line.startswith("*   ")]
    assert sorted(line.split()[1] for line in listed) == ["dave", "pat"]

    # IRC outsider
    carol = server.irc_conn("carol")
    carol.send("NAMES #pub", "LIST", "WHO *")
    replies = carol.lines()
    names = [m.params[-1] for m in replies if m.command == "353"]
    assert names == ["@pat"]
    assert [m.params[2] for m in replies if m.command == "322"] == ["1"]
    assert sorted(m.params[5] for m in replies if m.command == "352") == ["carol", "dave", "pat"]

    # chathub.v1 outsider
    bob = await server.ws("bob")
    bob.send_json({"type": "members", "room": "#pub", "ref": 2})
    members = await bob.expect({"type": "room", "ref": 2})
    assert [m["nick"] for m in members["members"]] == ["pat"]
    bob.send_json({"type": "rooms", "ref": 3})
    rooms = await bob.expect({"type": "rooms", "ref": 3})
    assert [(r["room"], r["members"]) for r in rooms["rooms"]] == [("#pub", 1)]
