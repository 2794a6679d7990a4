"""A third-party IRC client library (the ``irc`` package, jaraco) against our server on a
real socket: registration with CAP (driven through its ``cap()`` and events), SASL PLAIN
through its own ``sasl_login`` support, success and failure.

The library is blocking: each session runs in a thread (``deferToThread``) with a bounded
``process_once`` loop that ends on an event; our side is the in-process server of the
``irc_hub`` fixture (tests/conftest.py) with a Twisted ``IrcClient`` to watch what the
library sent.
"""
from __future__ import annotations

import socket
import threading
import time
from typing import Callable

import pytest
import pytest_twisted
from twisted.internet.threads import deferToThread

TIMEOUT = 10.0


@pytest.fixture
def server(irc_hub):
    return irc_hub


def run_library_client(port: int, nick: str, setup: Callable, done: Callable, **connect) -> list:
    """Connect with ``irc.client``, call ``setup(conn, events)``, pump until ``done(events)``.

    Returns every event as ``(type, source, target, arguments, tags)``; raises on timeout."""
    import irc.client

    reactor = irc.client.Reactor()
    events: list = []
    finished = threading.Event()

    def record(conn, event) -> None:
        if event.type == "all_raw_messages":
            return
        events.append((event.type, str(event.source or ""), event.target, list(event.arguments), event.tags))
        if done(events, conn):
            finished.set()

    reactor.add_global_handler("all_events", record, -50)
    conn = reactor.server().connect("127.0.0.1", port, nick, username="lib", ircname="Library User", **connect)
    setup(conn, events)
    deadline = time.monotonic() + TIMEOUT
    try:
        while not finished.is_set():
            if time.monotonic() > deadline:
                raise AssertionError(f"library client timed out; events: {events!r}")
            reactor.process_once(0.05)
    finally:
        if conn.is_connected():
            conn.quit("done")
            conn.close()
    return events


def types(events) -> list[str]:
    return [e[0] for e in events]


@pytest_twisted.ensureDeferred
async def test_library_negotiates_caps_and_receives_tagged_messages(server):
    watcher = await server.irc("watcher", rooms=["#lib"])
    port = server.irc_port

    def open_with_cap_ls(address):
        # the library sends NICK and USER as soon as it connects: CAP LS must come first
        # for the negotiation to hold registration back, so it goes out on the new socket
        sock = socket.create_connection(address)
        sock.sendall(b"CAP LS 302\r\n")
        return sock

    def setup(conn, events):
        conn.cap("REQ", "message-tags", "server-time")
        conn.cap("END")

    def done(events, conn):
        kind = events[-1][0]
        if kind == "welcome":
            conn.join("#lib")
        elif kind == "join":
            conn.privmsg("#lib", "hello from the library")
        return kind == "pubmsg"

    thread = deferToThread(run_library_client, port, "libcap", setup, done, connect_factory=open_with_cap_ls)
    await watcher.expect(lambda l: l.command == "JOIN" and l.source.startswith("libcap!~lib@"))
    line = await watcher.expect("PRIVMSG")
    assert line.params == ["#lib", "hello from the library"]
    watcher.send("PRIVMSG #lib :answer")
    events = await thread
    caps = [e for e in events if e[0] == "cap"]
    # CAP LS 302 comes in two lines (the first ends with "*"): the caps are in one or the other
    listed = [e[3] for e in caps if e[3][0] == "LS"]
    assert caps[0][3][0] == "LS" and listed[0][1] == "*"
    assert "sasl=PLAIN" in " ".join(" ".join(ls) for ls in listed)
    acks = [e[3] for e in caps if e[3][0] == "ACK"]
    assert acks == [["ACK", "message-tags server-time"]]
    (pubmsg,) = [e for e in events if e[0] == "pubmsg"]
    assert pubmsg[1].startswith("watcher!") and pubmsg[2] == "#lib" and pubmsg[3] == ["answer"]
    tags = {t["key"]: t["value"] for t in pubmsg[4]}
    assert tags["msgid"] and tags["time"].endswith("Z")
    assert types(events).index("welcome") > types(events).index("cap")


@pytest_twisted.ensureDeferred
async def test_library_sasl_plain_success(server):
    watcher = await server.irc("watcher", "account-tag", rooms=["#sasl"])
    port = server.irc_port

    def done(events, conn):
        kind = events[-1][0]
        if kind == "welcome":
            conn.join("#sasl")
        elif kind == "join":
            conn.privmsg("#sasl", "logged in")
            return True
        return kind == "login_failed"

    events = await deferToThread(
        run_library_client, port, "alice", lambda c, e: None, done, password="sesame", sasl_login="alice"
    )
    assert "login_failed" not in types(events), events
    success = [e for e in events if e[0] == "saslsuccess"]
    assert len(success) == 1
    assert [e for e in events if e[0] == "loggedin"][0][3][0:2] == ["alice!~lib@127.0.0.1", "alice"]
    assert types(events).index("saslsuccess") < types(events).index("welcome")
    line = await watcher.expect("PRIVMSG")
    assert line.source.startswith("alice!") and line.tags["account"] == "alice"


@pytest_twisted.ensureDeferred
async def test_library_sasl_plain_failure(server):
    port = server.irc_port

    def done(events, conn):
        kind = events[-1][0]
        if kind == "nicknameinuse":
            conn.nick("alice_")
        return kind == "welcome"

    events = await deferToThread(
        run_library_client, port, "alice", lambda c, e: None, done, password="wrong", sasl_login="alice"
    )
    kinds = types(events)
    assert "saslfail" in kinds and "login_failed" in kinds and "nicknameinuse" in kinds, events
    assert "saslsuccess" not in kinds and "loggedin" not in kinds
    # the library ends CAP; the registered nick is then refused to the guest, who picks another
    assert kinds.index("saslfail") < kinds.index("nicknameinuse") < kinds.index("welcome"), events
    (welcome,) = [e for e in events if e[0] == "welcome"]
    assert welcome[2] == "alice_"
