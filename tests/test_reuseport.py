"""``reuseport:`` and ``reuseport-ssl:`` listeners (SO_REUSEPORT): several sockets, in one
process or in several ``twistd chathub`` processes, listen on one port and the kernel spreads
the connections over them; each such port admits connections through chathub's limits and,
for ``reuseport-ssl:``, speaks TLS.

Linux picks a socket of the group by a hash of each connection's addresses and ports: 40
connections from 40 source ports all landing on one of two sockets has a chance of 2 in 2**40.
"""
from __future__ import annotations

import re

import pytest
import pytest_twisted
from twisted.internet import defer, endpoints, protocol
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import ISSLTransport

from chathub.protocols.connlimit import ConnectionLimits, LimitedPort, LimitingReactor
from chathub.protocols.reuseport import ReusePortServerEndpoint
from tests.support import (
    IrcClient,
    LineClient,
    TwistdServer,
    connect_irc,
    recording_irc_factory,
    register_irc,
    server_config,
)

WAIT = 10.0
CONNECTIONS = 40


def _reactor():
    from twisted.internet import reactor

    return reactor


class _Greeter(protocol.Protocol):
    def connectionMade(self) -> None:
        self.transport.write(b"listener " + self.factory.name + b"\r\n")


class Named(protocol.ServerFactory):
    """A listener that tells each client its name, so the client knows which socket of the
    group accepted it."""

    protocol = _Greeter

    def __init__(self, name: bytes) -> None:
        self.name = name


async def which_listener(endpoint) -> str:
    """Connect through ``endpoint``; the name of the listener that accepted."""
    client = await endpoints.connectProtocol(endpoint, IrcClient())
    greeting = await client.expect_re(r"^listener ", WAIT)
    client.transport.loseConnection()
    await client.closed.addTimeout(WAIT, _reactor())
    return greeting.split()[1]


async def spread(client_endpoint, count: int = CONNECTIONS) -> dict[str, int]:
    """How many of ``count`` connections each listener accepted."""
    counts: dict[str, int] = {}
    for _ in range(count):
        name = await which_listener(client_endpoint())
        counts[name] = counts.get(name, 0) + 1
    return counts


def test_descriptions_parse_as_tcp_and_ssl_ones_do(certificate):
    reactor = _reactor()
    endpoint = endpoints.serverFromString(reactor, "reuseport:6667:interface=127.0.0.1:backlog=7")
    assert isinstance(endpoint, ReusePortServerEndpoint)
    assert (endpoint._port, endpoint._interface, endpoint._backlog) == (6667, "127.0.0.1", 7)
    assert endpoint._context_factory is None
    default = endpoints.serverFromString(reactor, "reuseport:2323")
    assert (default._port, default._interface, default._backlog) == (2323, "", 50)  # as tcp:
    six = endpoints.serverFromString(reactor, r"reuseport:6667:interface=\:\:1")
    assert six._interface == "::1"

    _options, key, chain = certificate
    secure = endpoints.serverFromString(reactor, f"reuseport-ssl:6697:privateKey={key}:certKey={chain}:interface=127.0.0.1")
    assert (secure._port, secure._interface, secure._backlog) == (6697, "127.0.0.1", 50)
    assert secure._context_factory is not None
    with pytest.raises(TypeError):  # an argument tcp: does not take
        endpoints.serverFromString(reactor, "reuseport:6667:nosuchoption=1")
    with pytest.raises(ValueError):
        endpoints.serverFromString(reactor, "reuseport:sixsixsixseven")


@pytest_twisted.ensureDeferred
async def test_two_listeners_share_a_port_and_both_accept():
    reactor = _reactor()
    first = await endpoints.serverFromString(reactor, "reuseport:0:interface=127.0.0.1").listen(Named(b"a"))
    port = first.getHost().port  # port 0: the kernel chose; the second joins that one
    assert port != 0 and first.getHost().host == "127.0.0.1"
    second = await endpoints.serverFromString(reactor, f"reuseport:{port}:interface=127.0.0.1").listen(Named(b"b"))
    try:
        assert second.getHost().port == port
        counts = await spread(lambda: endpoints.TCP4ClientEndpoint(reactor, "127.0.0.1", port))
        assert sum(counts.values()) == CONNECTIONS
        assert counts.get("a", 0) > 0 and counts.get("b", 0) > 0, counts

        # one stops (a node restarting): the port stays open and the other takes everyone
        await first.stopListening()
        first = None
        assert await spread(lambda: endpoints.TCP4ClientEndpoint(reactor, "127.0.0.1", port), 10) == {"b": 10}
    finally:
        if first is not None:
            await first.stopListening()
        await second.stopListening()


@pytest_twisted.ensureDeferred
async def test_ipv6_listeners_share_a_port():
    # the suite needs IPv6 loopback (tests/test_cloak.py listens on ::1 too): without it this fails
    reactor = _reactor()
    first = await endpoints.serverFromString(reactor, r"reuseport:0:interface=\:\:1").listen(Named(b"a"))
    address = first.getHost()
    assert (address.type, address.host) == ("TCP", "::1") and address.port != 0
    second = await endpoints.serverFromString(reactor, rf"reuseport:{address.port}:interface=\:\:1").listen(Named(b"b"))
    try:
        counts = await spread(lambda: endpoints.TCP6ClientEndpoint(reactor, "::1", address.port))
        assert counts.get("a", 0) > 0 and counts.get("b", 0) > 0, counts
    finally:
        await first.stopListening()
        await second.stopListening()


@pytest_twisted.ensureDeferred
async def test_a_port_held_without_reuseport_cannot_be_shared():
    """SO_REUSEPORT joins only sockets that all asked for it: a ``tcp:`` listener is never
    silently split (either way round), the endpoint fails as ``tcp:`` does."""
    reactor = _reactor()
    plain = await endpoints.serverFromString(reactor, "tcp:0:interface=127.0.0.1").listen(Named(b"plain"))
    port = plain.getHost().port
    try:
        with pytest.raises(CannotListenError, match="Address already in use"):
            await endpoints.serverFromString(reactor, f"reuseport:{port}:interface=127.0.0.1").listen(Named(b"x"))
    finally:
        await plain.stopListening()
    shared = await endpoints.serverFromString(reactor, "reuseport:0:interface=127.0.0.1").listen(Named(b"shared"))
    try:
        with pytest.raises(CannotListenError, match="Address already in use"):
            await endpoints.serverFromString(reactor, f"tcp:{shared.getHost().port}:interface=127.0.0.1").listen(Named(b"x"))
    finally:
        await shared.stopListening()


@pytest_twisted.ensureDeferred
async def test_reuseport_listeners_admit_through_chathubs_limits():
    """Through ``LimitingReactor`` (as chathub listens) the port counts each address's
    connections: a second one from 127.0.0.1 is refused in IRC's words."""
    reactor = _reactor()
    limiting = LimitingReactor(reactor, ConnectionLimits(1, 1000.0, 1000))
    port = await endpoints.serverFromString(limiting, "reuseport:0:interface=127.0.0.1").listen(recording_irc_factory())
    assert isinstance(port, LimitedPort)
    number = port.getHost().port
    try:
        first = await connect_irc(number)
        first.send("PING :admitted")
        await first.expect("PONG")
        second = await connect_irc(number)
        await second.closed.addTimeout(WAIT, reactor)
        assert second.texts == ["ERROR :Too many connections from your IP"]
        first.transport.loseConnection()
        await first.closed.addTimeout(WAIT, reactor)
        third = await connect_irc(number)  # the first one's count was given back
        third.send("PING :admitted again")
        await third.expect("PONG")
        third.transport.loseConnection()
        await third.closed.addTimeout(WAIT, reactor)
    finally:
        await port.stopListening()


@pytest_twisted.ensureDeferred
async def test_reuseport_ssl_speaks_tls_and_plain_reuseport_keeps_the_fast_path(certificate):
    """IRC over ``reuseport-ssl:`` is TLS end to end on every socket of the group (the send
    queue never writes cleartext to the socket); over ``reuseport:`` the send queue writes
    straight to the socket, as on ``tcp:``."""
    reactor = _reactor()
    options, key, chain = certificate
    plain_factory, factory, other = recording_irc_factory(), recording_irc_factory(), recording_irc_factory()
    limiting = LimitingReactor(reactor, ConnectionLimits(100, 1000.0, 1000))
    plain = await endpoints.serverFromString(limiting, "reuseport:0:interface=127.0.0.1").listen(plain_factory)
    description = "reuseport-ssl:{}:privateKey=%s:certKey=%s:interface=127.0.0.1" % (key, chain)
    secure = await endpoints.serverFromString(limiting, description.format(0)).listen(factory)
    number = secure.getHost().port
    again = await endpoints.serverFromString(limiting, description.format(number)).listen(other)
    clients: list = []
    try:
        await register_irc(await connect_irc(plain.getHost().port, clients), "plain")
        (over_tcp,) = plain_factory.built
        assert not ISSLTransport.providedBy(over_tcp.transport) and over_tcp.queue._socket is not None
        await register_irc(await connect_irc(number, clients, tls=options), "secure")
        for _ in range(CONNECTIONS - 1):  # a PONG only comes back through a finished handshake
            client = await connect_irc(number, clients, tls=options)
            client.send("PING :tls")
            await client.expect("PONG")
        over_tls = factory.built + other.built
        assert len(over_tls) == CONNECTIONS
        assert factory.built and other.built, (len(factory.built), len(other.built))
        assert all(ISSLTransport.providedBy(p.transport) and p.queue._socket is None for p in over_tls)
    finally:
        for client in clients:
            client.transport.abortConnection()
        await defer.DeferredList([c.closed for c in clients]).addTimeout(WAIT, reactor)
        for port in (plain, secure, again):
            await port.stopListening()


# -- two twistd chathub processes on one port ---------------------------------------------------


def _node_config(data_dir, port: int, name: str) -> str:
    return (
        f'[server]\nname = "{name}"\ndata_dir = "{data_dir}"\n'
        f'[listeners]\nline = ["reuseport:{port}:interface=127.0.0.1"]\nirc = []\nhttp = []\n'
        # every test connection comes from 127.0.0.1, faster than the default connect rate
        '[limits]\nconnection_limits_exempt = ["127.0.0.1"]\n'
    )


def test_two_twistd_processes_share_one_line_port(tmp_path, twistd_server):
    # the first node takes a port the system picks, the second joins it
    first = twistd_server(_node_config(tmp_path / "node-a", 0, "node-a.example"))
    port = first.port("line")
    nodes = [first, twistd_server(_node_config(tmp_path / "node-b", port, "node-b.example"))]
    clients: list[LineClient] = []
    try:
        counts: dict[str, int] = {}
        for _ in range(CONNECTIONS):  # all held at once: each node serves its share together
            client = LineClient(port)
            clients.append(client)
            node = re.search(r"Welcome to (node-[ab])\.example\.", client.expect(r"Welcome to ")).group(1)
            counts[node] = counts.get(node, 0) + 1
        assert sum(counts.values()) == CONNECTIONS
        assert counts.get("node-a", 0) > 0 and counts.get("node-b", 0) > 0, counts

        # not a cluster: each process has its own hub, so one nick is free on both
        first_of = {}
        for client in clients:
            first_of.setdefault(re.search(r"node-[ab]", client.seen[-1]).group(0), client)
        for client in first_of.values():
            client.send("/nick samenick")
            client.expect(r"^\* you are samenick")
        assert [n.exceptions for n in nodes] == [[], []]
    finally:
        for client in clients:
            client.close()


def test_a_port_held_without_reuseport_stops_startup_naming_the_endpoint(tmp_path, taken_port):
    taken = f"reuseport:{taken_port}:interface=127.0.0.1"
    server = TwistdServer(tmp_path / "server", server_config(tmp_path / "var", line=taken)).refused()
    (line,) = [l for l in server.log if "chathub cannot start" in l]
    assert f"the line listener {taken} cannot listen" in line and "Address already in use" in line, line
