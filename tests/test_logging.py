"""One line per connection (when it closes) and refused logins are logged at info level, never
with a secret; ``[logging] level = "debug"`` adds the steps of a connection at debug level."""
from __future__ import annotations

import base64

import pytest
import pytest_twisted
from twisted.cred.checkers import InMemoryUsernamePasswordDatabaseDontUse
from twisted.internet import error, task
from twisted.logger import LogLevel, formatEvent
from twisted.python.failure import Failure

from chathub.config import Config
from tests.browser_helpers import connect
from tests.support import LOOPBACK, OPER_HASH, OPER_PASSWORD, Chat, HubServer

PASSWORD = "sesame-Pa55word"
WRONG = "guessed-Wr0ng"


def logged_world(level: str = "info") -> Chat:
    """IRC units on a ``task.Clock``: the account alice (``PASSWORD``), the operator boss."""
    config = Config().with_overrides(
        irc={"flood_exempt": LOOPBACK, "operators": [{"name": "boss", "password_hash": OPER_HASH}]},
        logging={"level": level},
    )
    return Chat(config, [InMemoryUsernamePasswordDatabaseDontUse(alice=PASSWORD.encode())], clock=task.Clock())


def about(captured, host: str, level: LogLevel) -> list[str]:
    """The lines at ``level`` that mention ``host``."""
    return [formatEvent(e) for e in captured.events if e["log_level"] == level and host in formatEvent(e)]


@pytest.mark.parametrize("level", ["info", "debug"])
def test_one_info_line_per_connection(captured, level):
    """A connection that registers, joins, talks and quits is one line at info level,
    when it closes; with ``level = "debug"`` its opening, sign-on and quit are lines at
    debug level too (each with its stable ``event`` name), and nothing more at info."""
    world = logged_world(level)
    for host, opened in (("192.0.2.1", world.irc_conn), ("192.0.2.2", world.line_conn)):
        c = opened(host=host)
        if host == "192.0.2.1":
            c.send("NICK erin", "USER e 0 * :Erin", "JOIN #tea", "PRIVMSG #tea :hello")
            assert "001" in c.commands()
            c.send("QUIT :bye")
            c.protocol.connectionLost(Failure(error.ConnectionDone()))
            closed = "IRC connection from 192.0.2.1 closed (erin): by the server"
        else:
            for line in ("/nick fred", "/join #tea", "hello"):
                c.send(line)
            c.expect("you joined #tea")
            c.disconnect()
            closed = "line connection from 192.0.2.2 closed (fred)"
        assert about(captured, host, LogLevel.info) == [closed]
        (event,) = [e for e in captured.events if e["log_level"] == LogLevel.info and host in formatEvent(e)]
        assert event["event"] == "disconnect"
        debug = [e for e in captured.events if e["log_level"] == LogLevel.debug and host in formatEvent(e)]
        if level == "info":
            assert debug == []
        else:
            assert [e["event"] for e in debug] == ["connect", "login"]
    steps = [e["event"] for e in captured.events if e["log_level"] == LogLevel.debug and "event" in e]
    assert steps == (["connect", "login", "logout"] * 2 if level == "debug" else [])


def test_irc_connect_pass_refused_and_disconnect(captured):
    world = logged_world()
    c = world.irc_conn()
    assert about(captured, "127.0.0.1", LogLevel.info) == []  # said when it closes
    c.send(f"PASS {WRONG}", "NICK alice", "USER u 0 * :Real")
    assert "464" in c.commands()
    event = captured.find("IRC PASS login as alice", "refused", "127.0.0.1")
    assert event["nick"] == "alice" and event["host"] == "127.0.0.1"
    c.protocol.connectionLost(Failure(error.ConnectionDone()))
    captured.find("IRC connection from 127.0.0.1 closed (alice)")
    # a client that leaves by itself: the transport's reason
    d = world.irc_conn()
    d.send("NICK dora", "USER d 0 * :Dora")
    d.protocol.connectionLost(Failure(error.ConnectionLost()))
    captured.find("IRC connection from 127.0.0.1 closed (dora)", "Connection to the other side was lost")
    captured.assert_no_secret(WRONG, PASSWORD)


def test_irc_sasl_refused_is_logged_without_the_payload(captured):
    world = logged_world()
    factory = world.irc_conn_factory
    c = world.irc_conn()
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
    world = logged_world()
    factory = world.irc_conn_factory
    c = world.irc_conn()
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
    server = HubServer(config, [checker], protocols=["http"])
    port = server.http_port
    try:
        client = await connect(port, protocols=["chathub.v1"])
        await client.expect({"type": "hello"})
        assert about(captured, "127.0.0.1", LogLevel.info) == []  # said when it closes
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
        captured.assert_no_secret(WRONG, PASSWORD, payload)
    finally:
        await server.stop()
