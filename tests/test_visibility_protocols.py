"""The same visibility rules through telnet, IRC and chathub.v1 on one hub.

ivy (+i, via IRC) shares #pub with pat (telnet); bob (JSON), carol (IRC) and dave
(telnet) share no room with ivy, so none of them may see her: not in the member list,
not in the room list's count, not in a listing of everyone online.
"""
from __future__ import annotations

import pytest
import pytest_twisted
from twisted.internet.task import Clock

from chathub.protocols.irc import IrcFactory
from chathub.protocols.line import LineFactory
from tests.browser_helpers import close_clients
from tests.test_irc_session import Conn as IrcConn
from tests.test_line_protocol import Conn as LineConn
from tests.test_ws_json import login, make_config
from tests.browser_helpers import start_server


class LineEnv:
    """What ``tests.test_line_protocol.Conn`` needs: a factory on a fake clock."""

    def __init__(self, hub, portal, config) -> None:
        self.factory = LineFactory(hub, portal, config, Clock())

    def connect(self, nick: str) -> LineConn:
        conn = LineConn(self, "192.0.2.7")
        conn.send(f"/nick {nick}")
        conn.expect(f"you are {nick}")
        return conn


@pytest.fixture
def server():
    config = make_config().with_overrides(auth={"checkers": []}, irc={"flood_exempt": ["127.0.0.0/8"]})
    hub, portal, site, port = start_server(config)
    yield hub, portal, config, port.getHost().port
    port.stopListening()


def irc_client(factory, nick: str, port: int) -> IrcConn:
    conn = IrcConn(factory, port)
    conn.send(f"NICK {nick}", "USER u 0 * :Real Name")
    assert "001" in conn.commands()
    return conn


@pytest_twisted.ensureDeferred
async def test_every_protocol_hides_an_invisible_user_from_outsiders(server):
    hub, portal, config, ws_port = server
    lines = LineEnv(hub, portal, config)
    irc = IrcFactory.for_hub(hub, portal, config, reactor=Clock())
    pat = lines.connect("pat")
    pat.send("/join #pub")
    pat.expect("you joined #pub")
    ivy = irc_client(irc, "ivy", 40001)
    ivy.send("MODE ivy +i", "JOIN #pub")
    assert "JOIN" in ivy.commands()

    # the hub's answer, and what a member sees
    room = hub.find_room("#pub")
    assert sorted(m.user.nick for m in hub.visible_members(hub.find_user("pat"), room)) == ["ivy", "pat"]
    pat.send("/names #pub")
    assert pat.expect("* in #pub").endswith("(2): @pat ivy")

    # telnet outsider
    dave = lines.connect("dave")
    dave.send("/names #pub")
    assert dave.expect("* in #pub").endswith("(1): @pat")
    dave.send("/list")
    dave.expect("#pub (1)")
    dave.send("/who")
    listed = [line for line in dave.new_lines() if line.startswith("*   ")]
    assert sorted(line.split()[1] for line in listed) == ["dave", "pat"]

    # IRC outsider
    carol = irc_client(irc, "carol", 40002)
    carol.send("NAMES #pub", "LIST", "WHO *")
    replies = carol.lines()
    names = [m.params[-1] for m in replies if m.command == "353"]
    assert names == ["@pat"]
    assert [m.params[2] for m in replies if m.command == "322"] == ["1"]
    assert sorted(m.params[5] for m in replies if m.command == "352") == ["carol", "dave", "pat"]

    # chathub.v1 outsider
    bob = await login(ws_port, "bob")
    try:
        bob.send_json({"type": "members", "room": "#pub", "ref": 2})
        members = await bob.expect({"type": "room", "ref": 2})
        assert [m["nick"] for m in members["members"]] == ["pat"]
        bob.send_json({"type": "rooms", "ref": 3})
        rooms = await bob.expect({"type": "rooms", "ref": 3})
        assert [(r["room"], r["members"]) for r in rooms["rooms"]] == [("#pub", 1)]
    finally:
        await close_clients()
