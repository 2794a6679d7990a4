"""An open WebSocket connection keeps only what it uses (issue: an idle browser cost five IRC
clients). The opening handshake's request and answer are dropped once the connection is
open, the factory's options live on a class of the factory's, values still at Autobahn's
defaults are the class's, the last frame's unmasker and an empty send deque are not kept,
the keepalive is the factory's sweeper (no timer per connection), a logged-in session holds
no login timer, and Autobahn's traffic counters live in slots; the connection then works as
before, on both subprotocols, to a clean close. The memory itself is measured by the
benchmark (``bench/run.py --scenarios idle-ws``), not here."""
from __future__ import annotations

import gc
import sys

import pytest_twisted
from twisted.internet import task

from chathub.config import Config
from chathub.protocols.web.websocket import (
    HANDSHAKE_LEFTOVERS,
    IDLE_DEFAULTS,
    ChatWebSocketProtocol,
    TrafficCounters,
)
from tests.support import HubServer

#: a dict of up to this many keys takes 832 bytes in CPython 3.11; one more, 1,584
SMALL_DICT_KEYS = 42
#: a dict of up to 21 keys built from its items, in CPython 3.11 (22 to 42: 832)
TRANSPORT_DICT_BYTES = 464


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
            assert not [name for name in protocol.CONFIG_ATTRS if name in state]
            # (Autobahn sets the per-frame ones again with every message)
            for name in ("wasClean", "closedByMe", "localCloseCode", "openHandshakeTimeoutCall",
                         "quit_reason", "autoPingPending", "websocket_version"):
                assert name in IDLE_DEFAULTS and name not in state
            for name in ("send_queue", "current_frame_masker", "_results", "websocket_extensions_in_use"):
                assert name not in state
            assert protocol.autoPingPendingCall is None  # no timer of its own
            assert protocol in protocol.factory.sweeper.sessions
            assert isinstance(protocol.trafficStats, TrafficCounters)
            assert len(state) <= SMALL_DICT_KEYS, sorted(state)
            # the TCP connection's dict, rebuilt at its size with its write attributes in it
            transport_state = vars(protocol.real_transport)
            assert {"dataBuffer", "offset"} <= set(transport_state)
            assert sys.getsizeof(transport_state) <= TRANSPORT_DICT_BYTES, sorted(transport_state)
        json_session = next(p.session for p in protocols if p.subprotocol == "chathub.v1")
        assert json_session._login_timer is None
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


def test_the_sweeper_pings_a_quiet_peer_and_drops_one_that_stays_silent():
    """The keepalive without a timer per connection: a peer heard from recently is left
    alone, a quiet one gets a ping, anything it sends answers, and one that sends nothing
    for ``ping_timeout`` after the ping is dropped with Autobahn's ping-timeout reason."""
    clock = task.Clock()
    config = Config().with_overrides(websocket={"ping_interval": 30.0, "ping_timeout": 10.0})

    class Probe(ChatWebSocketProtocol):
        def __init__(self) -> None:
            super().__init__()
            self.pings = 0
            self.dropped = False

        def sendPing(self, payload=None) -> None:
            self.pings += 1

        def dropConnection(self, abort: bool = False) -> None:
            self.dropped = True

    class Factory:
        pass

    probe = Probe()
    factory = Factory()
    factory.config = config
    factory.clock = clock
    probe.factory = factory  # type: ignore[assignment]
    probe.state = probe.STATE_OPEN
    probe.last_heard = clock.seconds()
    probe.check_timers(29.0)
    assert probe.pings == 0
    probe.check_timers(30.0)
    assert probe.pings == 1 and probe.ping_sent == 30.0
    probe.check_timers(39.0)  # waiting for the answer: no second ping, not dropped yet
    assert probe.pings == 1 and not probe.dropped
    # an answer (any data counts) clears the ping; Autobahn parses what follows
    probe.last_heard, probe.ping_sent = 39.5, None
    probe.check_timers(60.0)
    assert probe.pings == 1 and not probe.dropped
    probe.check_timers(69.5)
    assert probe.pings == 2
    probe.check_timers(79.5)
    assert probe.dropped and "ping timeout" in (probe.wasNotCleanReason or "")


@pytest_twisted.ensureDeferred
async def test_an_opened_connection_leaves_no_cycle_for_the_collector():
    """The HTTP channel and request a WebSocket opened through are freed when the
    connection is taken over, not left in a cycle until the collector's next pass (which a
    busy server makes rare: ``GC_THRESHOLDS``)."""
    server = HubServer()
    try:
        await server.ws("warm", rooms=["#r"])  # first-use caches, imports
        gc.collect()
        gc.set_debug(gc.DEBUG_SAVEALL)
        try:
            for i in range(5):
                await server.ws(f"u{i}", rooms=["#r"])
                irc_ws = await server.ws_connect(["text.ircv3.net"], json_messages=False)
                irc_ws.send_text(f"NICK w{i}")
                irc_ws.send_text(f"USER w{i} 0 * :w")
                await irc_ws.expect(" 001 ")
            gc.collect()
            left = sorted({type(o).__qualname__ for o in gc.garbage})
            assert not [name for name in left if name in ("ChathubChannel", "Request", "Headers")], left
        finally:
            gc.set_debug(0)
            gc.garbage.clear()
    finally:
        await server.stop()
