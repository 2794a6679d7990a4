"""Descriptor exhaustion, as an attacker tries it over loopback against a real twistd, with
honest users watching from another address (127.0.0.2) or the same one:

- HTTP request heads trickled a byte at a time end at ``[limits] http_request_timeout``
  (a deadline, not an idle timer) with 408; an unfinished ``/ws`` upgrade ends at
  ``[websocket] open_handshake_timeout``;
- one address holds at most ``max_connections_per_ip`` connections over all listeners, and
  opens them no faster than ``connect_rate_per_ip``: the rest are told so in their protocol
  (IRC ``ERROR``, telnet ``!``, HTTP 503/429) and closed, costing the server no descriptor.
"""
from __future__ import annotations

import os
import re

import pytest_twisted
from twisted.internet import task, threads

from tests.browser_helpers import close_clients, connect
from tests.support import Chat, IrcClient, connect_irc, quit_irc_clients, register_irc, server_config

HONEST = "127.0.0.2"  # another client address on loopback
WAIT = 10.0


def _reactor():
    from twisted.internet import reactor

    return reactor


def start(twistd_server, tmp_path, limits: str, websocket: str = ""):
    config = server_config(tmp_path / "var", f"[limits]\n{limits}\n[websocket]\n{websocket}\n", irc=True, http=True)
    server = twistd_server(config)
    return server, {kind: server.port(kind) for kind in ("line", "irc", "http")}


class Trickler(IrcClient):
    """Sends ``head`` and then one more header byte every ``interval`` seconds, for ever."""

    def __init__(self, head: bytes, interval: float) -> None:
        super().__init__()
        self.head = head
        self.interval = interval
        self.sent = 0
        self.loop = task.LoopingCall(self._drip)

    def connectionMade(self) -> None:
        self.transport.write(self.head)
        self.loop.start(self.interval, now=False)

    def _drip(self) -> None:
        self.transport.write(b"a")
        self.sent += 1

    def connectionLost(self, reason=None) -> None:
        if self.loop.running:
            self.loop.stop()
        super().connectionLost(reason)


async def open_client(port: int, protocol: IrcClient, source: str = "127.0.0.1") -> IrcClient:
    from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol

    await connectProtocol(TCP4ClientEndpoint(_reactor(), "127.0.0.1", port, bindAddress=(source, 0)), protocol)
    return protocol


async def closed(client: IrcClient) -> None:
    """Wait (at most WAIT seconds) for the server to close ``client``."""
    if not client.closed.called:
        await client.closed.addTimeout(WAIT, _reactor())


async def web_user(port: int, nick: str, room: str, source: str = HONEST):
    client = await connect(port, protocols=["chathub.v1"], source=source)
    await client.expect({"type": "hello"})
    client.send_json({"type": "login", "nick": nick, "ref": 1})
    welcome = await client.expect(lambda m: m.get("type") in ("welcome", "error"))
    assert welcome["type"] == "welcome", welcome
    client.send_json({"type": "join", "room": room})
    await client.expect({"type": "room", "room": room})
    return client


async def telnet_user(port: int, nick: str, room: str, source: str = HONEST) -> IrcClient:
    client = await open_client(port, IrcClient(), source)
    await client.expect_re("Welcome")
    client.send(f"/nick {nick}", f"/join {room}")
    await client.expect_re(rf"^\* in {room} ")
    return client


async def chat_all_ways(irc: IrcClient, web, telnet: IrcClient, room: str, text: str) -> None:
    """A message from each protocol reaches the other two."""
    irc.send(f"PRIVMSG {room} :{text} from irc")
    await web.expect({"type": "message", "text": f"{text} from irc"})
    await telnet.expect_re(rf"> {text} from irc$")
    web.send_json({"type": "message", "target": room, "text": f"{text} from web"})
    await irc.expect_re(rf"PRIVMSG {room} :{text} from web$")
    await telnet.expect_re(rf"> {text} from web$")
    telnet.send(f"{text} from telnet")
    await irc.expect_re(rf"PRIVMSG {room} :{text} from telnet$")
    await web.expect({"type": "message", "text": f"{text} from telnet"})


def open_descriptors(server) -> int:
    return len(os.listdir(f"/proc/{server.process.pid}/fd"))


@pytest_twisted.ensureDeferred
async def test_trickled_http_heads_end_at_the_deadline_while_everyone_chats(tmp_path, twistd_server):
    # the limits are out of the way here (this address is exempt): the deadline alone ends them
    server, ports = start(
        twistd_server, tmp_path, 'http_request_timeout = 1.0\nconnection_limits_exempt = ["127.0.0.1"]'
    )
    clients: list = []
    try:
        irc = await register_irc(await connect_irc(ports["irc"], clients), "watcher", rooms=["#calm"])
        web = await web_user(ports["http"], "webwatcher", "#calm", source="127.0.0.1")
        telnet = await telnet_user(ports["line"], "telwatcher", "#calm", source="127.0.0.1")
        head = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: "
        # a byte every 0.25 s: an idle timer (Twisted's, restarted by every byte) never fires
        tricklers = [await open_client(ports["http"], Trickler(head, 0.25)) for _ in range(40)]
        await chat_all_ways(irc, web, telnet, "#calm", "during the trickle")
        for trickler in tricklers:
            await closed(trickler)
            assert trickler.texts[:1] == ["HTTP/1.1 408 Request Timeout"], trickler.texts
        await chat_all_ways(irc, web, telnet, "#calm", "after the trickle")
        telnet.send("/quit")
        await closed(telnet)
    finally:
        await close_clients()
        await quit_irc_clients(clients)
    assert server.exceptions == []


@pytest_twisted.ensureDeferred
async def test_unfinished_websocket_upgrade_ends_at_the_opening_handshake_timeout(tmp_path, twistd_server):
    # a long request deadline: what ends the upgrade is open_handshake_timeout
    server, ports = start(
        twistd_server, tmp_path, "http_request_timeout = 600.0", websocket="open_handshake_timeout = 1.0"
    )
    head = b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nX-Slow: "
    slow = await open_client(ports["http"], Trickler(head, 0.25))
    silent = await open_client(ports["http"], IrcClient())
    silent.transport.write(b"GET /ws HTTP/1.1\r\n")
    web = await web_user(ports["http"], "honest", "#ws")  # upgrades in time, while they hang
    try:
        for client in (slow, silent):
            await closed(client)
            assert client.texts[:1] == ["HTTP/1.1 408 Request Timeout"], client.texts
        web.send_json({"type": "ping", "ref": "still"})
        await web.expect({"type": "pong"})
    finally:
        await close_clients()
    assert server.exceptions == []


@pytest_twisted.ensureDeferred
async def test_one_address_holds_at_most_the_cap_on_every_protocol(tmp_path, twistd_server):
    server, ports = start(
        twistd_server, tmp_path,
        "max_connections_per_ip = 6\nconnect_rate_per_ip = 1000.0\nconnect_burst_per_ip = 1000\n"
        "http_request_timeout = 600.0",
    )
    clients: list = []
    held: list = []
    try:
        # honest users on every protocol, from another address
        irc = await register_irc(await connect_irc(ports["irc"], clients, source=HONEST), "honest", rooms=["#room"])
        web = await web_user(ports["http"], "webhonest", "#room")
        telnet = await telnet_user(ports["line"], "telhonest", "#room")
        before = open_descriptors(server)

        # the attacker fills its quota, two connections on each protocol (the HTTP ones trickling
        # a second request), each seen served, so the server has counted it before what follows
        for kind in ("line", "irc", "http"):
            for _ in range(2):
                if kind == "http":
                    page = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
                    client = await open_client(ports[kind], Trickler(page + b"GET / HTTP/1.1\r\n", 0.5))
                    await client.expect_re("^HTTP/1.1 200 ")
                else:
                    client = await open_client(ports[kind], IrcClient())
                    if kind == "irc":
                        client.send("PING :counted")
                    await client.expect_re("PONG|Welcome")
                held.append(client)
        # then every further connection is told why and closed: a real client's first
        # words are on their way before it reads the answer
        refusals = {
            "irc": ("NICK x\r\nUSER x 0 * :x\r\n", "ERROR :Too many connections from your IP"),
            "line": ("/nick x\r\n", "! Too many connections from your IP"),
            "http": ("GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", "HTTP/1.1 503 Service Unavailable"),
        }
        for _ in range(30):
            for kind, (words, answer) in refusals.items():
                refused = await open_client(ports[kind], IrcClient())
                refused.transport.write(words.encode())
                await closed(refused)
                assert refused.texts[:1] == [answer], (kind, refused.texts)
        await chat_all_ways(irc, web, telnet, "#room", "under attack")
        # 90 refused, 6 held: the server holds no more than the quota for this address
        assert open_descriptors(server) <= before + 6

        # a closed connection gives its place back
        held.pop(2).transport.loseConnection()
        await threads.deferToThread(server.expect_log, r"IRC connection from 127\.0\.0\.1 closed")
        await register_irc(await connect_irc(ports["irc"], clients), "newcomer", rooms=["#room"])
        await irc.expect_re(r"^:newcomer!\S+ JOIN #room")
        telnet.send("/quit")
        await closed(telnet)
    finally:
        for client in held:
            client.transport.loseConnection()
        await close_clients()
        await quit_irc_clients(clients)
    assert [l for l in server.log if "refusing connections from 127.0.0.1: over max_connections_per_ip" in l]
    assert server.exceptions == []


@pytest_twisted.ensureDeferred
async def test_connecting_too_fast_is_refused_per_address_and_exempt_addresses_are_not(tmp_path, twistd_server):
    server, ports = start(
        twistd_server, tmp_path,
        'max_connections_per_ip = 100\nconnect_rate_per_ip = 0.01\nconnect_burst_per_ip = 3\n'
        'connection_limits_exempt = ["127.0.0.3"]',
    )
    clients: list = []
    try:
        first = [await open_client(ports["irc"], IrcClient()) for _ in range(3)]
        for client in first:
            client.transport.loseConnection()  # closing does not give back the rate
        too_fast = await open_client(ports["irc"], IrcClient())
        await closed(too_fast)
        assert too_fast.texts == ["ERROR :Connecting too fast from your IP; try again in a few seconds"]
        page = await open_client(ports["http"], IrcClient())
        page.transport.write(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        await closed(page)
        assert page.texts[0] == "HTTP/1.1 429 Too Many Requests"
        assert "Retry-After: 10" in page.texts

        # another address is not slowed down, and an exempt one never is
        await register_irc(await connect_irc(ports["irc"], clients, source=HONEST), "other", rooms=["#r"])
        for i in range(8):
            await register_irc(await connect_irc(ports["irc"], clients, source="127.0.0.3"), f"bridge{i}", rooms=["#r"])
    finally:
        await quit_irc_clients(clients)
    assert server.exceptions == []


def test_startup_logs_the_open_files_limit(tmp_path, twistd_server):
    import resource

    server, ports = start(twistd_server, tmp_path, "")
    (line,) = [l for l in server.log if "open files limit" in l]
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    assert re.search(rf"open files limit {hard} \(was \d+, hard limit {hard}\)", line), line
    # and the descriptor table is made for as many as that allows, up to 65,536, at once
    assert f"descriptor table made for {min(hard, 65536)}" in line, line
    status = open(f"/proc/{server.process.pid}/status").read()
    (fdsize,) = [int(l.split()[1]) for l in status.splitlines() if l.startswith("FDSize")]
    assert fdsize >= min(hard, 65536)


@pytest_twisted.ensureDeferred
async def test_ipv6_and_systemd_adopted_listeners_are_limited_too():
    """``tcp6:`` and ``systemd:`` (an adopted socket) endpoints go through the same admission."""
    import socket

    from twisted.internet import endpoints

    from chathub.protocols.connlimit import ConnectionLimits, LimitingReactor
    from chathub.protocols.irc import IrcFactory

    reactor = _reactor()
    chat = Chat()
    factory = IrcFactory.for_hub(chat.hub, chat.portal, chat.config, reactor)
    limiting = LimitingReactor(reactor, ConnectionLimits(1, 1000.0, 1000))
    adopted = socket.socket()
    adopted.bind(("127.0.0.1", 0))
    adopted.listen()
    adopted.setblocking(False)
    ports = [limiting.adoptStreamPort(adopted.fileno(), socket.AF_INET, factory)]
    adopted.close()  # the port has its own copy of the descriptor
    ports.append(await endpoints.serverFromString(limiting, r"tcp6:0:interface=\:\:1").listen(factory))
    try:
        for port in ports:
            address = port.getHost()
            endpoint = endpoints.TCP6ClientEndpoint if address.type == "TCP6" else endpoints.TCP4ClientEndpoint
            first = await endpoints.connectProtocol(endpoint(reactor, address.host, address.port), IrcClient())
            first.send("PING :admitted")
            await first.expect("PONG")
            second = await endpoints.connectProtocol(endpoint(reactor, address.host, address.port), IrcClient())
            await closed(second)
            assert second.texts == ["ERROR :Too many connections from your IP"]
            first.transport.loseConnection()
            await closed(first)
    finally:
        for port in ports:
            await port.stopListening()
