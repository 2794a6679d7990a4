"""The real participants of every protocol provide IParticipant (what the hub relies on)."""
from __future__ import annotations

import pytest_twisted
from twisted.internet.task import Clock
from zope.interface.verify import verifyObject

from chathub.interfaces import IParticipant
from chathub.protocols.irc import IrcFactory
from chathub.protocols.irc.session import IrcSession
from chathub.protocols.line import LineSession
from chathub.protocols.web.jsonsession import JsonSession
from tests.browser_helpers import close_clients
from tests.test_irc_session import Conn as IrcConn
from tests.test_visibility_protocols import LineEnv, server  # noqa: F401 (fixture)
from tests.test_ws_json import login


@pytest_twisted.ensureDeferred
async def test_line_irc_and_json_sessions_provide_iparticipant(server):  # noqa: F811
    hub, portal, config, ws_port = server
    LineEnv(hub, portal, config).connect("tel")
    irc = IrcConn(IrcFactory.for_hub(hub, portal, config, reactor=Clock()), 40010)
    irc.send("NICK ircy", "USER u 0 * :Real Name")
    assert "001" in irc.commands()
    web = await login(ws_port, "webby")
    try:
        participants = {nick: hub.find_user(nick).participant for nick in ("tel", "ircy", "webby")}
        assert isinstance(participants["tel"], LineSession)
        assert isinstance(participants["ircy"], IrcSession)
        assert isinstance(participants["webby"], JsonSession)
        for participant in participants.values():
            assert verifyObject(IParticipant, participant)
        assert {p.protocol for p in participants.values()} == {"line", "irc", "ws"}
    finally:
        web.sendClose()
        await close_clients()
