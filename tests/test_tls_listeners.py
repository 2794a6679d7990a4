"""Every listener over TLS (``ssl:`` endpoints, a certificate made by trustme): the web
client's protocol (chathub.v1) and IRC over ``wss://``, IRC over TLS and the telnet line
protocol over TLS, all chatting in one room through one twistd."""
from __future__ import annotations

import pytest_twisted

from chathub.protocols.connlimit import ConnectionLimits, LimitingReactor
from tests.browser_helpers import close_clients, connect
from tests.support import ANY_PORT, connect_irc, quit_irc_clients, recording_irc_factory, register_irc, server_config


def tls_listener(key, chain) -> str:
    """A TLS listener on a port the system picks, on 127.0.0.1."""
    return f"ssl:0:privateKey={key}:certKey={chain}:interface=127.0.0.1"


@pytest_twisted.ensureDeferred
async def test_every_protocol_chats_over_tls(tmp_path, twistd_server, certificate):
    from twisted.internet import reactor

    options, key, chain = certificate
    tls = tls_listener(key, chain)
    server = twistd_server(server_config(tmp_path / "var", line=tls, irc=tls, http=tls))
    ports = {kind: server.port(kind) for kind in ("line", "irc", "http")}
    clients: list = []
    try:
        irc = await register_irc(await connect_irc(ports["irc"], clients, tls=options), "overtls", rooms=["#tls"])
        telnet = await connect_irc(ports["line"], tls=options)
        await telnet.expect_re("Welcome")
        telnet.send("/nick telnetter", "/join #tls")
        await telnet.expect_re(r"^\* in #tls ")

        # the bundled web client's protocol over wss://
        web = await connect(ports["http"], protocols=["chathub.v1"], tls=options)
        await web.expect({"type": "hello"})
        web.send_json({"type": "login", "nick": "webber", "ref": 1})
        welcome = await web.expect(lambda m: m.get("type") in ("welcome", "error"))
        assert welcome["type"] == "welcome", welcome
        web.send_json({"type": "join", "room": "#tls"})
        await web.expect({"type": "room", "room": "#tls"})

        # IRC over wss://
        wsirc = await connect(ports["http"], protocols=["text.ircv3.net"], json_messages=False, tls=options)
        wsirc.send_text("NICK wsirc")
        wsirc.send_text("USER wsirc 0 * :IRC over wss")
        assert " 001 " in await wsirc.expect(" 001 ")
        wsirc.send_text("JOIN #tls")
        await wsirc.expect(" 366 ")

        irc.send("PRIVMSG #tls :from IRC over TLS")
        assert "from IRC over TLS" in await wsirc.expect("from IRC over TLS")
        await web.expect({"type": "message", "text": "from IRC over TLS"})
        await telnet.expect_re(r"^\[#tls\] <overtls> from IRC over TLS$")

        web.send_json({"type": "message", "target": "#tls", "text": "from the web over wss"})
        await irc.expect_re(r"^:webber!\S+ PRIVMSG #tls :from the web over wss$")
        await telnet.expect_re(r"<webber> from the web over wss$")
        await wsirc.expect("from the web over wss")

        wsirc.send_text("PRIVMSG #tls :from IRC over wss")
        await irc.expect_re("from IRC over wss")
        await web.expect({"type": "message", "text": "from IRC over wss"})

        telnet.send("from telnet over TLS")
        await irc.expect_re(r"^:telnetter!\S+ PRIVMSG #tls :from telnet over TLS$")
        await web.expect({"type": "message", "text": "from telnet over TLS"})

        # each one hangs up in its own protocol, and the TLS connection closes
        telnet.send("/quit")
        await telnet.closed.addTimeout(10, reactor)
        await irc.expect_re(r"^:telnetter!\S+ QUIT ")
        wsirc.send_text("QUIT :bye")
        assert (await wsirc.wait_closed())[1] == 1000
        web.send_json({"type": "quit"})
        assert (await web.wait_closed())[1] == 1000
        irc.send("QUIT :bye")
        await irc.closed.addTimeout(10, reactor)
    finally:
        await close_clients()
        await quit_irc_clients(clients)
    assert server.exceptions == [], "\n".join(server.log)


@pytest_twisted.ensureDeferred
async def test_tls_connections_never_take_the_plain_tcp_fast_path(certificate):
    """The send queue writes straight to the socket only on plain TCP: on TLS that would put
    cleartext on the wire (and break the TLS stream)."""
    from twisted.internet import endpoints, reactor

    options, key, chain = certificate
    factory = recording_irc_factory()
    limiting = LimitingReactor(reactor, ConnectionLimits(10, 100.0, 100))
    plain = await endpoints.serverFromString(limiting, ANY_PORT).listen(factory)
    secure = await endpoints.serverFromString(limiting, tls_listener(key, chain)).listen(factory)
    clients: list = []
    try:
        for port, tls, nick in ((plain, None, "plain"), (secure, options, "secure")):
            await register_irc(await connect_irc(port.getHost().port, clients, tls=tls), nick)
        over_tcp, over_tls = factory.built
        assert over_tcp.queue._socket is not None
        assert over_tls.queue._socket is None
    finally:
        await quit_irc_clients(clients)
        await plain.stopListening()
        await secure.stopListening()
