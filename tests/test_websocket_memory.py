"""An open WebSocket connection keeps only what it uses (issue: an idle browser cost five IRC
clients). The opening handshake's request, answer and handshake-only options are dropped
once the connection is open, and Autobahn's traffic counters live in slots; the connection
then works as before, on both subprotocols, to a clean close. The memory itself is measured
by the benchmark (``bench/run.py --scenarios idle-ws``), not here."""
from __future__ import annotations

import gc

import pytest_twisted

from chathub.protocols.web.websocket import HANDSHAKE_LEFTOVERS, ChatWebSocketProtocol, TrafficCounters
from tests.support import HubServer

#: a dict of up to this many keys takes 1,584 bytes in CPython 3.11; one more, 3,328
SMALL_DICT_KEYS = 85


def open_protocols() -> list[ChatWebSocketProtocol]:
    return [o for o in gc.get_objects() if isinstance(o, ChatWebSocketProtocol) and o.state == o.STATE_OPEN]


@pytest_twisted.ensureDeferred
async def test_an_open_connection_sheds_the_handshake_and_still_works_to_a_clean_close():
    server = HubServer()
    try:
        alice = await server.ws("alice", rooms=["#r"])
        irc_ws = await server.ws_connect(["text.ircv3.net"], json_messages=False)
        irc_ws.send_text("NICK bob")
        irc_ws.send_text("USER bob 0 * :bob")
        await irc_ws.expect(" 001 ")
        irc_ws.send_text("JOIN #r")
        await irc_ws.expect(" 366 ")
        protocols = open_protocols()
        assert len(protocols) == 2
        for protocol in protocols:
            state = vars(protocol)
            assert not [name for name in HANDSHAKE_LEFTOVERS if name in state]
            assert isinstance(protocol.trafficStats, TrafficCounters)
            assert len(state) <= SMALL_DICT_KEYS, sorted(state)
        # both ways, on both subprotocols, after the shedding
        alice.send_json({"type": "message", "target": "#r", "text": "hello from json"})
        await irc_ws.expect("PRIVMSG #r :hello from json")
        irc_ws.send_text("PRIVMSG #r :hello from irc")
        await alice.expect(lambda m: isinstance(m, dict) and m.get("text") == "hello from irc")
        # the counters count what went through
        assert all(p.trafficStats.incomingWebSocketMessages >= 1 for p in protocols)
        # and the closing handshake completes cleanly
        alice.sendClose(1000)
        was_clean, code, _reason = await alice.wait_closed()
        assert was_clean and code == 1000
    finally:
        await server.stop()
