"""The IRC server on real sockets (127.0.0.1, port 0), in-process with the telnet listener.

Clients: raw lines through the Twisted ``IrcClient`` of tests/support.py (also for the
telnet side: it matches lines as received), and the third-party ``irc`` package
(jaraco) run in a thread. Every wait has a timeout; nothing sleeps.
"""
from __future__ import annotations

import re
import threading

import pytest
import pytest_twisted
from argon2 import PasswordHasher
from twisted.cred.checkers import InMemoryUsernamePasswordDatabaseDontUse
from twisted.internet import defer
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.threads import deferToThread

from chathub.auth.portal import account_directory, build_portal
from chathub.config import Config
from chathub.hub.service import ChatHub
from chathub.protocols.irc import IrcFactory
from chathub.protocols.irc.wire import parse
from tests.support import IrcClient

TIMEOUT = 10.0
#: argon2 hash of "opersecret" (cheap parameters: tests need no strength)
OPER_HASH = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1).hash("opersecret")


class Server:
    def __init__(self, **irc) -> None:
        from twisted.internet import reactor

        irc.setdefault("flood_exempt", ["127.0.0.0/8"])
        irc.setdefault("operators", [{"name": "boss", "password_hash": OPER_HASH, "privileges": ["kill", "wallops"]}])
        self.config = Config().with_overrides(irc=irc, server={"name": "irc.test"})
        checker = InMemoryUsernamePasswordDatabaseDontUse(alice=b"sesame")
        self.hub = ChatHub(self.config, accounts=account_directory([checker]))
        self.portal = build_portal(self.hub, self.config, [checker])
        #: the host everyone else sees for a client of 127.0.0.1 (its cloak), as a regex
        self.host_re = re.escape(self.portal.realm.cloak.host_for("127.0.0.1"))
        self.irc = reactor.listenTCP(0, IrcFactory.for_hub(self.hub, self.portal, self.config), interface="127.0.0.1")
        self.line = None
        try:
            from chathub.protocols.line import LineFactory
        except ImportError:  # the telnet protocol is not there yet
            LineFactory = None
        if LineFactory is not None:
            self.line = reactor.listenTCP(
                0, LineFactory(self.hub, self.portal, self.config), interface="127.0.0.1"
            )
        self.clients: list[IrcClient] = []

    @property
    def irc_port(self) -> int:
        return self.irc.getHost().port

    @defer.inlineCallbacks
    def connect(self, port: int | None = None):
        from twisted.internet import reactor

        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", port or self.irc_port)
        client = yield connectProtocol(endpoint, IrcClient())
        self.clients.append(client)
        return client

    @defer.inlineCallbacks
    def register(self, nick: str, *caps: str):
        c = yield self.connect()
        if caps:
            c.send("CAP LS 302", "CAP REQ :" + " ".join(caps), f"NICK {nick}", "USER u 0 * :R", "CAP END")
        else:
            c.send(f"NICK {nick}", "USER u 0 * :R")
        yield c.expect_re(r" 376 | 422 ")
        return c

    @defer.inlineCallbacks
    def stop(self):
        for c in self.clients:
            if c.transport.connected:
                c.transport.loseConnection()
        yield defer.gatherResults([c.closed for c in self.clients])
        yield self.irc.stopListening()
        if self.line is not None:
            yield self.line.stopListening()


@pytest.fixture
def server():
    s = Server()
    yield s
    pytest_twisted.blockon(s.stop())


@pytest_twisted.inlineCallbacks
def test_registration_with_and_without_cap(server):
    plain = yield server.register("plain")
    modern = yield server.connect()
    modern.send("CAP LS 302", "NICK modern", "USER m 0 * :M")
    yield modern.expect_re(r"CAP \* LS (\* )?:.*sasl=PLAIN")
    modern.send("CAP REQ :message-tags server-time", "CAP END")
    yield modern.expect_re(r"CAP modern ACK :message-tags server-time")
    yield modern.expect_re(r" 001 modern :Welcome")
    plain.send("PRIVMSG modern :hello")
    line = yield modern.expect_re(r"PRIVMSG modern :hello")
    tags = parse(line.encode()).tags
    assert tags["msgid"] and tags["time"].endswith("Z")


@pytest_twisted.inlineCallbacks
def test_sasl_plain_over_socket(server):
    import base64

    c = yield server.connect()
    c.send("CAP LS 302", "CAP REQ :sasl", "NICK alice", "USER a 0 * :A", "AUTHENTICATE PLAIN")
    yield c.expect_re(r"^AUTHENTICATE \+$")
    c.send("AUTHENTICATE " + base64.b64encode(b"\0alice\0bad").decode())
    yield c.expect_re(r" 904 ")
    c.send("AUTHENTICATE PLAIN")
    yield c.expect_re(r"^AUTHENTICATE \+$")
    c.send("AUTHENTICATE " + base64.b64encode(b"\0alice\0sesame").decode())
    yield c.expect_re(r" 900 alice alice!~a@127.0.0.1 alice :")
    yield c.expect_re(r" 903 ")
    c.send("CAP END")
    yield c.expect_re(r" 001 alice ")


@pytest_twisted.inlineCallbacks
def test_channel_commands_and_errors(server):
    a = yield server.register("ann", "multi-prefix", "userhost-in-names")
    b = yield server.register("ben")
    a.send("JOIN #c,#d", "TOPIC #c :the topic")
    yield a.expect_re(r" 366 ann #d ")
    yield a.expect_re(rf":ann!~u@{server.host_re} TOPIC #c :the topic")
    b.send("JOIN #c")
    yield b.expect_re(r" 332 ben #c :the topic")
    yield b.expect_re(rf" 333 ben #c ann!~u@{server.host_re} :?\d+")
    yield b.expect_re(r" 353 ben = #c :(@ann ben|ben @ann)")
    b.send("TOPIC #c :mine now")
    yield b.expect_re(r" 482 ben #c ")
    b.send("KICK #c ann")
    yield b.expect_re(r" 482 ben #c ")
    a.send("NAMES #c")
    yield a.expect_re(rf" 353 ann = #c :.*@ann!~u@{server.host_re}")
    a.send("LIST #c")
    yield a.expect_re(r" 322 ann #c 2 :\[\+nt\] the topic")
    a.send("WHO #c %tcnfa,42")
    yield a.expect_re(r" 354 ann 42 #c ben H :?0")
    a.send("WHOIS ben")
    yield a.expect_re(rf" 311 ann ben ~u {server.host_re} \* :?R")
    yield a.expect_re(r" 318 ann ben ")
    a.send("ISON ben nobody", "USERHOST ben")
    yield a.expect_re(r" 303 ann :?ben$")
    yield a.expect_re(rf" 302 ann :?ben=\+~u@{server.host_re}")
    a.send("INVITE ben #d")
    yield a.expect_re(r" 341 ann ben #d")
    yield b.expect_re(rf":ann!~u@{server.host_re} INVITE ben #d")
    a.send("KICK #c ben :out")
    yield b.expect_re(r"KICK #c ben :out")
    a.send("PART #d", "PART #nowhere", "JOIN nochan")
    yield a.expect_re(r"PART #d")
    yield a.expect_re(r" 403 ann #nowhere ")
    yield a.expect_re(r" 403 ann nochan ")
    b.send("QUIT :bye")
    yield b.closed
    a.send("WHOWAS ben")
    yield a.expect_re(rf" 314 ann ben ~u {server.host_re} \* :?R")
    yield a.expect_re(r" 369 ann ben ")


@pytest_twisted.inlineCallbacks
def test_monitor_reports_presence(server):
    a = yield server.register("watcher")
    a.send("MONITOR + later")
    yield a.expect_re(r" 731 watcher :?later")
    b = yield server.register("later")
    yield a.expect_re(rf" 730 watcher :?later!~u@{server.host_re}")
    b.send("QUIT")
    yield a.expect_re(r" 731 watcher :?later")


@pytest_twisted.inlineCallbacks
def test_cross_protocol_with_telnet_and_moderation(server):
    if server.line is None:
        pytest.skip("the telnet line protocol is not available")
    irc = yield server.register("ircer", "server-time", "message-tags")
    irc.send("JOIN #mix")
    yield irc.expect_re(r" 366 ")
    tel = yield server.connect(server.line.getHost().port)
    tel.send("/nick telly", "/join #mix")
    yield irc.expect_re(r":telly!\S+ JOIN #mix")
    tel.send("hello from telnet")
    line = yield irc.expect_re(r":telly!\S+@\S+ PRIVMSG #mix :hello from telnet")
    tags = parse(line.encode()).tags
    assert tags["msgid"] and tags["time"]
    irc.send("PRIVMSG #mix :hello from irc")
    yield tel.expect_re(r"ircer.*hello from irc")
    # +m: the unvoiced telnet user is refused by the hub, then allowed with +v
    irc.send("MODE #mix +m")
    yield tel.expect_re(r"\+m")
    tel.send("muted?")
    yield tel.expect_re(r"^! #mix: Cannot send to room \(moderated, \+v needed\)$")
    irc.send("MODE #mix +v telly")
    yield tel.expect_re(r"\+v")
    tel.send("voiced now")
    line = yield irc.expect_re(r"PRIVMSG #mix :(muted\?|voiced now)$")
    assert line.endswith(":voiced now"), "the refused line must never reach the channel"
    tel.send("/quit bye")
    yield irc.expect_re(r":telly!\S+ QUIT :")


def _jaraco_session(port: int, done: threading.Event, seen: list) -> None:
    """Run an ``irc`` package client: register, join #lib, wait for a message from ircer."""
    import irc.client

    reactor = irc.client.Reactor()
    conn = reactor.server().connect("127.0.0.1", port, "libuser", username="lib", ircname="Lib User")
    joined = threading.Event()

    def on_welcome(c, e):
        c.join("#lib")

    def on_join(c, e):
        if e.source.nick == "libuser":
            joined.set()
            c.privmsg("#lib", "hi from jaraco")

    def on_pubmsg(c, e):
        seen.append((e.source.nick, e.target, e.arguments[0]))
        c.quit("done")
        done.set()

    conn.add_global_handler("welcome", on_welcome)
    conn.add_global_handler("join", on_join)
    conn.add_global_handler("pubmsg", on_pubmsg)
    deadline = TIMEOUT
    while not done.is_set() and deadline > 0:
        reactor.process_once(0.1)
        deadline -= 0.1
    conn.close()


@pytest_twisted.inlineCallbacks
def test_third_party_irc_client(server):
    ours = yield server.register("ircer")
    ours.send("JOIN #lib")
    yield ours.expect_re(r" 366 ")
    done = threading.Event()
    seen: list = []
    thread = deferToThread(_jaraco_session, server.irc_port, done, seen)
    yield ours.expect_re(rf":libuser!~lib@{server.host_re} JOIN #lib")
    yield ours.expect_re(r":libuser!\S+ PRIVMSG #lib :hi from jaraco")
    ours.send("PRIVMSG #lib :hello library")
    yield thread
    assert seen == [("ircer", "#lib", "hello library")]


@pytest_twisted.inlineCallbacks
def test_oper_kill_and_wallops(server):
    boss = yield server.register("boss")
    fan = yield server.register("fan")
    victim = yield server.register("victim")
    fan.send("MODE fan +w")
    yield fan.expect_re(r"MODE fan :?\+w")
    boss.send("OPER boss wrong")
    yield boss.expect_re(r" 464 boss ")
    boss.send("OPER boss opersecret")
    yield boss.expect_re(r" 381 boss ")
    yield boss.expect_re(r"MODE boss :?\+o")
    boss.send("WALLOPS :maintenance soon")
    yield fan.expect_re(r":boss!\S+ WALLOPS :maintenance soon")
    fan.send("WHOIS boss")
    yield fan.expect_re(r" 313 fan boss ")
    boss.send("KILL victim :enough")
    yield victim.expect_re(r"^ERROR :Killed by boss \(enough\)")
    yield victim.closed
    boss.send("WHOIS victim")
    yield boss.expect_re(r" 401 boss victim ")
