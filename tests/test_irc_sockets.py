"""The IRC server on real sockets (127.0.0.1, port 0), in-process with the telnet listener.

Clients: raw lines through a small Twisted client, and the third-party ``irc`` package
(jaraco) run in a thread. Every wait has a timeout; nothing sleeps.
"""
from __future__ import annotations

import re
import threading

import pytest
import pytest_twisted
from argon2 import PasswordHasher
from twisted.cred.checkers import InMemoryUsernamePasswordDatabaseDontUse
from twisted.internet import defer, protocol
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.threads import deferToThread

from chathub.auth.portal import account_directory, build_portal
from chathub.config import Config
from chathub.hub.service import ChatHub
from chathub.protocols.irc import IrcFactory
from chathub.protocols.irc.wire import parse

TIMEOUT = 10.0
#: argon2 hash of "opersecret" (cheap parameters: tests need no strength)
OPER_HASH = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1).hash("opersecret")


class LineClient(protocol.Protocol):
    """Collects received lines; ``expect(regex)`` waits (with a timeout) for one to match."""

    def __init__(self) -> None:
        self.buffer = b""
        self.lines: list[str] = []
        self.waiters: list = []
        self.closed = defer.Deferred()

    def dataReceived(self, data: bytes) -> None:
        self.buffer += data
        while b"\n" in self.buffer:
            line, self.buffer = self.buffer.split(b"\n", 1)
            self.lines.append(line.rstrip(b"\r").decode("utf-8", "replace"))
        self._check()

    def connectionLost(self, reason=None) -> None:
        self.closed.callback(None)
        self._check()

    def _check(self) -> None:
        for waiter in list(self.waiters):
            pattern, d, call = waiter
            for i, line in enumerate(self.lines):
                if pattern.search(line):
                    del self.lines[: i + 1]
                    self.waiters.remove(waiter)
                    call.cancel()
                    d.callback(line)
                    break

    def send(self, *lines: str | bytes) -> None:
        self.transport.write(b"".join((l if isinstance(l, bytes) else l.encode()) + b"\r\n" for l in lines))

    def expect(self, regex: str) -> defer.Deferred:
        from twisted.internet import reactor

        d = defer.Deferred()
        pattern = re.compile(regex)

        def timeout():
            self.waiters.remove(waiter)
            d.errback(AssertionError(f"no line matching {regex!r}; got {self.lines!r}"))

        waiter = (pattern, d, reactor.callLater(TIMEOUT, timeout))
        self.waiters.append(waiter)
        self._check()
        return d


class Server:
    def __init__(self, **irc) -> None:
        from twisted.internet import reactor

        irc.setdefault("flood_exempt", ["127.0.0.0/8"])
        irc.setdefault("operators", [{"name": "boss", "password_hash": OPER_HASH, "privileges": ["kill", "wallops"]}])
        self.config = Config().with_overrides(irc=irc, server={"name": "irc.test"})
        checker = InMemoryUsernamePasswordDatabaseDontUse(alice=b"sesame")
        self.hub = ChatHub(self.config, accounts=account_directory([checker]))
        self.portal = build_portal(self.hub, self.config, [checker])
        self.irc = reactor.listenTCP(0, IrcFactory(self.hub, self.portal, self.config), interface="127.0.0.1")
        self.line = None
        try:
            from chathub.protocols.line import LineFactory
        except ImportError:  # the telnet protocol is not there yet
            LineFactory = None
        if LineFactory is not None:
            self.line = reactor.listenTCP(
                0, LineFactory(self.hub, self.portal, self.config), interface="127.0.0.1"
            )
        self.clients: list[LineClient] = []

    @property
    def irc_port(self) -> int:
        return self.irc.getHost().port

    @defer.inlineCallbacks
    def connect(self, port: int | None = None):
        from twisted.internet import reactor

        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", port or self.irc_port)
        client = yield connectProtocol(endpoint, LineClient())
        self.clients.append(client)
        return client

    @defer.inlineCallbacks
    def register(self, nick: str, *caps: str):
        c = yield self.connect()
        if caps:
            c.send("CAP LS 302", "CAP REQ :" + " ".join(caps), f"NICK {nick}", "USER u 0 * :R", "CAP END")
        else:
            c.send(f"NICK {nick}", "USER u 0 * :R")
        yield c.expect(r" 376 | 422 ")
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
    yield modern.expect(r"CAP \* LS (\* )?:.*sasl=PLAIN")
    modern.send("CAP REQ :message-tags server-time", "CAP END")
    yield modern.expect(r"CAP modern ACK :message-tags server-time")
    yield modern.expect(r" 001 modern :Welcome")
    plain.send("PRIVMSG modern :hello")
    line = yield modern.expect(r"PRIVMSG modern :hello")
    tags = parse(line.encode()).tags
    assert tags["msgid"] and tags["time"].endswith("Z")


@pytest_twisted.inlineCallbacks
def test_sasl_plain_over_socket(server):
    import base64

    c = yield server.connect()
    c.send("CAP LS 302", "CAP REQ :sasl", "NICK alice", "USER a 0 * :A", "AUTHENTICATE PLAIN")
    yield c.expect(r"^AUTHENTICATE \+$")
    c.send("AUTHENTICATE " + base64.b64encode(b"\0alice\0bad").decode())
    yield c.expect(r" 904 ")
    c.send("AUTHENTICATE PLAIN")
    yield c.expect(r"^AUTHENTICATE \+$")
    c.send("AUTHENTICATE " + base64.b64encode(b"\0alice\0sesame").decode())
    yield c.expect(r" 900 alice alice!~a@127.0.0.1 alice :")
    yield c.expect(r" 903 ")
    c.send("CAP END")
    yield c.expect(r" 001 alice ")


@pytest_twisted.inlineCallbacks
def test_channel_commands_and_errors(server):
    a = yield server.register("ann", "multi-prefix", "userhost-in-names")
    b = yield server.register("ben")
    a.send("JOIN #c,#d", "TOPIC #c :the topic")
    yield a.expect(r" 366 ann #d ")
    yield a.expect(r":ann!~u@127.0.0.1 TOPIC #c :the topic")
    b.send("JOIN #c")
    yield b.expect(r" 332 ben #c :the topic")
    yield b.expect(r" 333 ben #c ann!~u@127.0.0.1 :?\d+")
    yield b.expect(r" 353 ben = #c :(@ann ben|ben @ann)")
    b.send("TOPIC #c :mine now")
    yield b.expect(r" 482 ben #c ")
    b.send("KICK #c ann")
    yield b.expect(r" 482 ben #c ")
    a.send("NAMES #c")
    yield a.expect(r" 353 ann = #c :.*@ann!~u@127\.0\.0\.1")
    a.send("LIST #c")
    yield a.expect(r" 322 ann #c 2 :\[\+nt\] the topic")
    a.send("WHO #c %tcnfa,42")
    yield a.expect(r" 354 ann 42 #c ben H :?0")
    a.send("WHOIS ben")
    yield a.expect(r" 311 ann ben ~u 127.0.0.1 \* :?R")
    yield a.expect(r" 318 ann ben ")
    a.send("ISON ben nobody", "USERHOST ben")
    yield a.expect(r" 303 ann :?ben$")
    yield a.expect(r" 302 ann :?ben=\+~u@127.0.0.1")
    a.send("INVITE ben #d")
    yield a.expect(r" 341 ann ben #d")
    yield b.expect(r":ann!~u@127.0.0.1 INVITE ben #d")
    a.send("KICK #c ben :out")
    yield b.expect(r"KICK #c ben :out")
    a.send("PART #d", "PART #nowhere", "JOIN nochan")
    yield a.expect(r"PART #d")
    yield a.expect(r" 403 ann #nowhere ")
    yield a.expect(r" 403 ann nochan ")
    b.send("QUIT :bye")
    yield b.closed
    a.send("WHOWAS ben")
    yield a.expect(r" 314 ann ben ~u 127.0.0.1 \* :?R")
    yield a.expect(r" 369 ann ben ")


@pytest_twisted.inlineCallbacks
def test_monitor_reports_presence(server):
    a = yield server.register("watcher")
    a.send("MONITOR + later")
    yield a.expect(r" 731 watcher :?later")
    b = yield server.register("later")
    yield a.expect(r" 730 watcher :?later!~u@127.0.0.1")
    b.send("QUIT")
    yield a.expect(r" 731 watcher :?later")


@pytest_twisted.inlineCallbacks
def test_cross_protocol_with_telnet_and_moderation(server):
    if server.line is None:
        pytest.skip("the telnet line protocol is not available")
    irc = yield server.register("ircer", "server-time", "message-tags")
    irc.send("JOIN #mix")
    yield irc.expect(r" 366 ")
    tel = yield server.connect(server.line.getHost().port)
    tel.send("/nick telly", "/join #mix")
    yield irc.expect(r":telly!\S+ JOIN #mix")
    tel.send("hello from telnet")
    line = yield irc.expect(r":telly!\S+@\S+ PRIVMSG #mix :hello from telnet")
    tags = parse(line.encode()).tags
    assert tags["msgid"] and tags["time"]
    irc.send("PRIVMSG #mix :hello from irc")
    yield tel.expect(r"ircer.*hello from irc")
    # +m: the unvoiced telnet user is refused by the hub, then allowed with +v
    irc.send("MODE #mix +m")
    yield tel.expect(r"\+m")
    tel.send("muted?")
    yield tel.expect(r"^! #mix: Cannot send to room \(moderated, \+v needed\)$")
    irc.send("MODE #mix +v telly")
    yield tel.expect(r"\+v")
    tel.send("voiced now")
    line = yield irc.expect(r"PRIVMSG #mix :(muted\?|voiced now)$")
    assert line.endswith(":voiced now"), "the refused line must never reach the channel"
    tel.send("/quit bye")
    yield irc.expect(r":telly!\S+ QUIT :")


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
    yield ours.expect(r" 366 ")
    done = threading.Event()
    seen: list = []
    thread = deferToThread(_jaraco_session, server.irc_port, done, seen)
    yield ours.expect(r":libuser!~lib@127.0.0.1 JOIN #lib")
    yield ours.expect(r":libuser!\S+ PRIVMSG #lib :hi from jaraco")
    ours.send("PRIVMSG #lib :hello library")
    yield thread
    assert seen == [("ircer", "#lib", "hello library")]


@pytest_twisted.inlineCallbacks
def test_oper_kill_and_wallops(server):
    boss = yield server.register("boss")
    fan = yield server.register("fan")
    victim = yield server.register("victim")
    fan.send("MODE fan +w")
    yield fan.expect(r"MODE fan :?\+w")
    boss.send("OPER boss wrong")
    yield boss.expect(r" 464 boss ")
    boss.send("OPER boss opersecret")
    yield boss.expect(r" 381 boss ")
    yield boss.expect(r"MODE boss :?\+o")
    boss.send("WALLOPS :maintenance soon")
    yield fan.expect(r":boss!\S+ WALLOPS :maintenance soon")
    fan.send("WHOIS boss")
    yield fan.expect(r" 313 fan boss ")
    boss.send("KILL victim :enough")
    yield victim.expect(r"^ERROR :Killed by boss \(enough\)")
    yield victim.closed
    boss.send("WHOIS victim")
    yield boss.expect(r" 401 boss victim ")
