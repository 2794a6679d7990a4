"""Connection, disconnection and refused logins are logged at info level, never with a secret."""
from __future__ import annotations

import base64

import pytest
import pytest_twisted
from argon2 import PasswordHasher
from twisted.cred.checkers import InMemoryUsernamePasswordDatabaseDontUse
from twisted.internet import defer, error, reactor, task
from twisted.logger import LogLevel, formatEvent, globalLogPublisher
from twisted.python.failure import Failure

from chathub.auth.portal import build_portal
from chathub.config import Config
from chathub.hub.service import ChatHub
from chathub.protocols.irc import IrcFactory
from tests.browser_helpers import close_clients, connect, start_server
from tests.test_irc_session import Conn

PASSWORD = "sesame-Pa55word"
WRONG = "guessed-Wr0ng"
OPER_PASSWORD = "0per-secret"


class CapturedLog:
    """Every log event while installed, with its text and its fields, to search."""

    def __init__(self) -> None:
        self.events: list[dict] = []
        self.waiters: list[tuple[str, defer.Deferred]] = []

    def __call__(self, event: dict) -> None:
        self.events.append(event)
        text = formatEvent(event)
        for item in list(self.waiters):
            if item[0] in text:
                self.waiters.remove(item)
                item[1].callback(event)

    def texts(self) -> list[str]:
        return [formatEvent(e) for e in self.events]

    def find(self, *parts: str) -> dict:
        """The one info event whose text contains every part (fails the test otherwise)."""
        found = [e for e in self.events if all(p in formatEvent(e) for p in parts)]
        assert found, f"no log line with {parts}; lines: {self.texts()[-20:]}"
        assert found[-1]["log_level"] == LogLevel.info
        return found[-1]

    def wait_for(self, text: str, timeout: float = 10.0) -> defer.Deferred:
        for e in self.events:
            if text in formatEvent(e):
                return defer.succeed(e)
        d = defer.Deferred()
        self.waiters.append((text, d))
        return d.addTimeout(timeout, reactor)

    def assert_no_secret(self, *secrets: str) -> None:
        for event in self.events:
            blob = formatEvent(event) + " " + " ".join(
                repr(v) for k, v in event.items() if k not in ("log_logger", "log_source", "log_observer")
            )
            for secret in secrets:
                assert secret not in blob, f"{secret!r} logged: {formatEvent(event)}"


@pytest.fixture
def captured():
    log = CapturedLog()
    globalLogPublisher.addObserver(log)
    yield log
    globalLogPublisher.removeObserver(log)


def irc_world():
    oper_hash = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1).hash(OPER_PASSWORD)
    config = Config().with_overrides(
        irc={"flood_exempt": ["127.0.0.0/8"], "operators": [{"name": "boss", "password_hash": oper_hash}]}
    )
    hub = ChatHub(config)
    clock = task.Clock()
    portal = build_portal(hub, config, [InMemoryUsernamePasswordDatabaseDontUse(alice=PASSWORD.encode())], clock=clock)
    return IrcFactory.for_hub(hub, portal, config, reactor=clock)


def test_irc_connect_pass_refused_and_disconnect(captured):
    factory = irc_world()
    c = Conn(factory, 40001)
    captured.find("IRC connection from 127.0.0.1")
    c.send(f"PASS {WRONG}", "NICK alice", "USER u 0 * :Real")
    assert "464" in c.commands()
    event = captured.find("IRC PASS login as alice", "refused", "127.0.0.1")
    assert event["nick"] == "alice" and event["host"] == "127.0.0.1"
    c.protocol.connectionLost(Failure(error.ConnectionDone()))
    captured.find("IRC connection from 127.0.0.1 closed (alice)")
    # a client that leaves by itself: the transport's reason
    d = Conn(factory, 40002)
    d.send("NICK dora", "USER d 0 * :Dora")
    d.protocol.connectionLost(Failure(error.ConnectionLost()))
    captured.find("IRC connection from 127.0.0.1 closed (dora)", "Connection to the other side was lost")
    captured.assert_no_secret(WRONG, PASSWORD)


def test_irc_sasl_refused_is_logged_without_the_payload(captured):
    factory = irc_world()
    c = Conn(factory, 40003)
    payload = base64.b64encode(f"\0alice\0{WRONG}".encode()).decode()
    c.send("CAP LS 302", "CAP REQ :sasl", "NICK al", "USER u 0 * :Real", "AUTHENTICATE PLAIN", f"AUTHENTICATE {payload}")
    assert "904" in c.commands()
    event = captured.find("IRC SASL PLAIN login as alice by al from 127.0.0.1 refused")
    assert (event["method"], event["account"], event["nick"]) == ("SASL PLAIN", "alice", "al")
    c.send("AUTHENTICATE PLAIN", "AUTHENTICATE " + base64.b64encode(b"no-nul-bytes").decode())
    assert "904" in c.commands()
    captured.find("IRC SASL login by al from 127.0.0.1 refused: invalid PLAIN message")
    # a good login is not a refusal (once the failure's delay is over)
    good = base64.b64encode(f"\0alice\0{PASSWORD}".encode()).decode()
    c.send("AUTHENTICATE PLAIN", f"AUTHENTICATE {good}")
    factory.reactor.advance(factory.config.auth.login_delay)
    assert "903" in c.commands()
    captured.assert_no_secret(WRONG, PASSWORD, payload, good)


@pytest_twisted.inlineCallbacks
def test_irc_oper_refusals_are_logged(captured):
    factory = irc_world()
    c = Conn(factory, 40004)
    c.send("NICK carol", "USER c 0 * :Carol")
    c.lines()
    c.send("OPER nobody whatever")
    yield captured.wait_for("OPER as nobody by carol from 127.0.0.1 refused: no such operator")
    captured.find("OPER as nobody by carol from 127.0.0.1 refused: no such operator")
    # each failure makes the next attempt wait (on the factory's clock)
    c.send(f"OPER boss {WRONG}")
    factory.reactor.advance(factory.portal.delay(1))
    yield captured.wait_for("OPER as boss by carol from 127.0.0.1 refused: wrong password")
    assert "464" in [m.command for m in c.lines()]
    c.send(f"OPER boss {OPER_PASSWORD}")
    factory.reactor.advance(factory.portal.delay(2))
    yield captured.wait_for("carol is now a server operator")
    captured.assert_no_secret(WRONG, OPER_PASSWORD, "whatever")


@pytest_twisted.ensureDeferred
async def test_websocket_open_close_and_refused_logins(captured):
    config = Config().with_overrides(history={"enabled": False})
    checker = InMemoryUsernamePasswordDatabaseDontUse(alice=PASSWORD.encode())
    hub, portal, site, listening = start_server(config, checkers=[checker])
    port = listening.getHost().port
    try:
        client = await connect(port, protocols=["chathub.v1"])
        await client.expect({"type": "hello"})
        captured.find("WebSocket connection from 127.0.0.1 (chathub.v1)")
        client.send_json({"type": "login", "nick": "alice", "password": WRONG})
        await client.expect({"type": "error", "code": "login_failed"})
        event = captured.find("WebSocket login as alice (alice) from 127.0.0.1 refused")
        assert event["account"] == "alice" and event["peer"] == "127.0.0.1"
        client.send_json({"type": "login", "nick": "alice", "password": PASSWORD})
        await client.expect({"type": "welcome"})
        client.sendClose()
        await captured.wait_for("WebSocket connection from 127.0.0.1 closed (alice)")
        # IRC over WebSocket: a refused SASL login is logged like on the TCP listener
        irc = await connect(port, protocols=["text.ircv3.net"], json_messages=False)
        payload = base64.b64encode(f"\0alice\0{WRONG}".encode()).decode()
        for line in ("CAP LS 302", "CAP REQ :sasl", "NICK al", "USER u 0 * :R", "AUTHENTICATE PLAIN"):
            irc.sendMessage(line.encode())
        await irc.expect("AUTHENTICATE +")
        irc.sendMessage(f"AUTHENTICATE {payload}".encode())
        await irc.expect(" 904 ")
        captured.find("IRC SASL PLAIN login as alice by al from 127.0.0.1 refused")
        captured.find("WebSocket connection from 127.0.0.1 (text.ircv3.net)")
        captured.assert_no_secret(WRONG, PASSWORD, payload)
    finally:
        await close_clients()
        listening.stopListening()
