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
from twisted.internet import defer
from twisted.internet.threads import deferToThread

from chathub.protocols.irc.wire import parse
from tests.support import OPER_PASSWORD

TIMEOUT = 10.0


@pytest.fixture
def server(irc_hub):
    return irc_hub


@defer.inlineCallbacks
def register(server, nick: str, *caps: str):
    """An IRC client of ``server`` registered as ``nick`` (user u, real name R), its MOTD read."""
    c = yield server.connect("irc")
    if caps:
        c.send("CAP LS 302", "CAP REQ :" + " ".join(caps), f"NICK {nick}", "USER u 0 * :R", "CAP END")
    else:
        c.send(f"NICK {nick}", "USER u 0 * :R")
    yield c.expect_re(r" 376 | 422 ")
    return c


def host_re(server) -> str:
    """The host everyone else sees for a client of 127.0.0.1 (its cloak), as a regex."""
    return re.escape(server.host)


@pytest_twisted.inlineCallbacks
def test_registration_with_and_without_cap(server):
    plain = yield register(server, "plain")
    modern = yield server.connect("irc")
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

    c = yield server.connect("irc")
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
    a = yield register(server, "ann", "multi-prefix", "userhost-in-names")
    b = yield register(server, "ben")
    a.send("JOIN #c,#d", "TOPIC #c :the topic")
    yield a.expect_re(r" 366 ann #d ")
    yield a.expect_re(rf":ann!~u@{host_re(server)} TOPIC #c :the topic")
    b.send("JOIN #c")
    yield b.expect_re(r" 332 ben #c :the topic")
    yield b.expect_re(rf" 333 ben #c ann!~u@{host_re(server)} :?\d+")
    yield b.expect_re(r" 353 ben = #c :(@ann ben|ben @ann)")
    b.send("TOPIC #c :mine now")
    yield b.expect_re(r" 482 ben #c ")
    b.send("KICK #c ann")
    yield b.expect_re(r" 482 ben #c ")
    a.send("NAMES #c")
    yield a.expect_re(rf" 353 ann = #c :.*@ann!~u@{host_re(server)}")
    a.send("LIST #c")
    yield a.expect_re(r" 322 ann #c 2 :\[\+nt\] the topic")
    a.send("WHO #c %tcnfa,42")
    yield a.expect_re(r" 354 ann 42 #c ben H :?0")
    a.send("WHOIS ben")
    yield a.expect_re(rf" 311 ann ben ~u {host_re(server)} \* :?R")
    yield a.expect_re(r" 318 ann ben ")
    a.send("ISON ben nobody", "USERHOST ben")
    yield a.expect_re(r" 303 ann :?ben$")
    yield a.expect_re(rf" 302 ann :?ben=\+~u@{host_re(server)}")
    a.send("INVITE ben #d")
    yield a.expect_re(r" 341 ann ben #d")
    yield b.expect_re(rf":ann!~u@{host_re(server)} INVITE ben #d")
    a.send("KICK #c ben :out")
    yield b.expect_re(r"KICK #c ben :out")
    a.send("PART #d", "PART #nowhere", "JOIN nochan")
    yield a.expect_re(r"PART #d")
    yield a.expect_re(r" 403 ann #nowhere ")
    yield a.expect_re(r" 403 ann nochan ")
    b.send("QUIT :bye")
    yield b.closed
    a.send("WHOWAS ben")
    yield a.expect_re(rf" 314 ann ben ~u {host_re(server)} \* :?R")
    yield a.expect_re(r" 369 ann ben ")


@pytest_twisted.inlineCallbacks
def test_monitor_reports_presence(server):
    a = yield register(server, "watcher")
    a.send("MONITOR + later")
    yield a.expect_re(r" 731 watcher :?later")
    b = yield register(server, "later")
    yield a.expect_re(rf" 730 watcher :?later!~u@{host_re(server)}")
    b.send("QUIT")
    yield a.expect_re(r" 731 watcher :?later")


@pytest_twisted.inlineCallbacks
def test_cross_protocol_with_telnet_and_moderation(server):
    irc = yield register(server, "ircer", "server-time", "message-tags")
    irc.send("JOIN #mix")
    yield irc.expect_re(r" 366 ")
    tel = yield server.connect("line")
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
    ours = yield register(server, "ircer")
    ours.send("JOIN #lib")
    yield ours.expect_re(r" 366 ")
    done = threading.Event()
    seen: list = []
    thread = deferToThread(_jaraco_session, server.irc_port, done, seen)
    yield ours.expect_re(rf":libuser!~lib@{host_re(server)} JOIN #lib")
    yield ours.expect_re(r":libuser!\S+ PRIVMSG #lib :hi from jaraco")
    ours.send("PRIVMSG #lib :hello library")
    yield thread
    assert seen == [("ircer", "#lib", "hello library")]


@pytest_twisted.inlineCallbacks
def test_oper_kill_and_wallops(server):
    boss = yield register(server, "boss")
    fan = yield register(server, "fan")
    victim = yield register(server, "victim")
    fan.send("MODE fan +w")
    yield fan.expect_re(r"MODE fan :?\+w")
    boss.send("OPER boss wrong")
    yield boss.expect_re(r" 464 boss ")
    boss.send(f"OPER boss {OPER_PASSWORD}")
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
