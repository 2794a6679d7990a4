"""The real participants of every protocol provide IParticipant (what the hub relies on)."""
from __future__ import annotations

from zope.interface.verify import verifyObject

import pytest_twisted

from chathub.interfaces import IParticipant
from chathub.protocols.irc.session import IrcSession
from chathub.protocols.line import LineSession
from chathub.protocols.web.jsonsession import JsonSession
from tests.support import HubServer


@pytest_twisted.ensureDeferred
async def test_line_irc_and_json_sessions_provide_iparticipant():
    server = HubServer(protocols=["http"])
    try:
        server.line_conn("tel")
        server.irc_conn("ircy")
        await server.ws("webby")
        hub = server.hub
        participants = {nick: hub.find_user(nick).participant for nick in ("tel", "ircy", "webby")}
        assert isinstance(participants["tel"], LineSession)
        assert isinstance(participants["ircy"], IrcSession)
        assert isinstance(participants["webby"], JsonSession)
        for participant in participants.values():
            assert verifyObject(IParticipant, participant)
        assert {p.protocol for p in participants.values()} == {"line", "irc", "ws"}
    finally:
        await server.stop()
