"""IRC over TCP and IRC over WebSocket are one IRC server under twistd: the same MOTD, the
same LUSERS count of connections still registering, the same METADATA (chathub/app.py
hands one ``IrcServer`` to both listeners)."""
from __future__ import annotations

import pytest_twisted

from tests.browser_helpers import close_clients, connect
from tests.support import connect_irc, quit_irc_clients, register_irc, server_config


@pytest_twisted.ensureDeferred
async def test_tcp_and_websocket_clients_share_motd_lusers_and_metadata(tmp_path, twistd_server):
    data = tmp_path / "var"
    data.mkdir()
    (data / "motd.txt").write_text("one server\n")
    config = server_config(data, '[irc]\nmotd_file = "motd.txt"\n', line=False, irc=True, http=True)
    server = twistd_server(config)
    ports = {kind: server.port(kind) for kind in ("irc", "http")}
    clients: list = []
    try:
        tcp = await register_irc(await connect_irc(ports["irc"], clients), "tcpuser", ["draft/metadata-3"])
        tcp.send("JOIN #both", "METADATA #both SET topic-url :https://example.org/both")
        await tcp.expect("761")

        # a WebSocket IRC connection that has not registered is one unknown connection
        ws = await connect(ports["http"], protocols=["text.ircv3.net"], json_messages=False)
        lusers = await tcp.roundtrip("LUSERS")
        assert [l.params[1] for l in lusers if l.command == "253"] == ["1"]

        ws.send_text("NICK wsuser")
        ws.send_text("USER wsuser 0 * :over WebSocket")
        assert " 001 " in await ws.expect(" 001 ")
        assert "- one server" in await ws.expect(" 372 ")
        ws.send_text("METADATA #both GET topic-url")
        assert (await ws.expect(" 761 ")).endswith(" 761 wsuser #both topic-url * https://example.org/both")
        lusers = await tcp.roundtrip("LUSERS")
        assert [l.params[1] for l in lusers if l.command == "253"] == ["0"]
        motd = await tcp.roundtrip("MOTD")
        assert [l.params[-1] for l in motd if l.command == "372"] == ["- one server"]
    finally:
        await close_clients()
        await quit_irc_clients(clients)
