"""IRC over WebSocket (text.ircv3.net, binary.ircv3.net, no subprotocol) on a real /ws listener."""
from __future__ import annotations

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.web.client import Agent, readBody

from tests.browser_helpers import close_clients, connect, connect_failure
from tests.support import ws_join, ws_login


@pytest.fixture
def server(ws_hub):
    return ws_hub


async def irc_register(port, nick, protocols, password=None, path="/ws"):
    client = await connect(port, protocols=protocols, json_messages=False, path=path)
    if password is not None:
        client.send_text(f"PASS {password}\r\n")  # a trailing CRLF is tolerated
    client.send_text(f"NICK {nick}")
    client.send_text(f"USER {nick} 0 * :{nick} over WebSocket")
    welcome = await client.expect(lambda line: " 001 " in line or " 464 " in line or "ERROR" in line)
    assert " 001 " in welcome, welcome
    return client


@pytest.mark.parametrize(
    "protocols, expected, binary",
    [
        (["binary.ircv3.net", "text.ircv3.net"], "binary.ircv3.net", True),
        (["text.ircv3.net", "binary.ircv3.net"], "text.ircv3.net", False),
        (["x-unknown", "text.ircv3.net"], "text.ircv3.net", False),
        ([], None, False),
    ],
)
@pytest_twisted.ensureDeferred
async def test_irc_client_chats_with_json_client(server, protocols, expected, binary):
    port = server.http_port
    irc = await irc_register(port, "ircuser", protocols)
    assert irc.websocket_protocol_in_use == expected
    assert set(irc.binary_flags) == {binary}
    assert not any(line.endswith(("\r", "\n")) for line in irc.received)
    web = await ws_login(port, "webuser")
    await ws_join(web, "#chat", "webuser")
    irc.send_text("JOIN #chat")
    await irc.expect(lambda line: "JOIN" in line and "#chat" in line and line.startswith(":ircuser!"))
    joined = await web.expect({"type": "join", "room": "#chat"})
    assert joined["from"] == {"nick": "ircuser", "account": None, "protocol": "irc"}

    web.send_json({"type": "message", "target": "#chat", "text": "hello from the web"})
    line = await irc.expect("hello from the web")
    assert line.startswith(":webuser!") and "PRIVMSG #chat :hello from the web" in line
    irc.send_text("PRIVMSG #chat :hello from IRC\r\n")
    got = await web.expect({"type": "message", "text": "hello from IRC"})
    assert got["from"]["nick"] == "ircuser" and got["target"] == "#chat"
    web.send_json({"type": "action", "target": "#chat", "text": "waves"})
    assert "\x01ACTION waves\x01" in await irc.expect("ACTION")
    irc.send_text("PRIVMSG webuser :private hello")
    private = await web.expect({"type": "message", "text": "private hello"})
    assert private["target"] == "webuser"

    # garbage and unknown commands get numerics; the connection stays usable
    irc.send_text("FROBNICATE now")
    assert " 421 " in await irc.expect(" 421 ")
    irc.send_text(b"PRIVMSG #chat :\xff\xfe latin junk", binary=True)
    irc.send_text("PING :still-there")
    assert "still-there" in await irc.expect("PONG")
    irc.send_text("QUIT :bye")
    await irc.expect("ERROR")
    closed = await irc.wait_closed()
    assert closed[1] == 1000
    quit_event = await web.expect({"type": "quit"})
    assert quit_event["from"]["nick"] == "ircuser"


@pytest_twisted.ensureDeferred
async def test_a_websocket_opened_at_the_root_is_served_as_at_ws(server):
    # IRC clients given ws://host:port (irctest's WebSocket tests, web IRC clients) open the
    # root: the upgrade is served as at /ws, a plain GET of / is still the page
    port = server.http_port
    irc = await irc_register(port, "rootuser", ["text.ircv3.net"], path="/")
    assert irc.websocket_protocol_in_use == "text.ircv3.net"
    irc.send_text("PING :at-root")
    assert "at-root" in await irc.expect("PONG")
    response = await Agent(reactor).request(b"GET", f"http://127.0.0.1:{port}/".encode())
    assert response.code == 200 and b"<title>" in await readBody(response)


@pytest_twisted.ensureDeferred
async def test_typing_notice_reaches_irc_clients_with_message_tags(server):
    port = server.http_port
    irc = await connect(port, protocols=["text.ircv3.net"], json_messages=False)
    irc.send_text("CAP LS 302")
    await irc.expect("CAP * LS")
    irc.send_text("CAP REQ :message-tags")
    await irc.expect("ACK")
    irc.send_text("NICK tagged")
    irc.send_text("USER tagged 0 * :tags")
    irc.send_text("CAP END")
    await irc.expect(" 001 ")
    irc.send_text("JOIN #chat")
    await irc.expect("JOIN")
    web = await ws_login(port, "webuser")
    await ws_join(web, "#chat", "webuser")
    web.send_json({"type": "typing", "target": "#chat", "state": "active"})
    line = await irc.expect("TAGMSG")
    assert line.startswith("@") and "+typing=active" in line and "TAGMSG #chat" in line
    irc.send_text("@+typing=paused TAGMSG #chat")
    typing = await web.expect(lambda m: m.get("type") == "typing" and m["from"]["nick"] == "tagged")
    assert typing["state"] == "paused" and typing["target"] == "#chat"


@pytest_twisted.ensureDeferred
async def test_oversize_wrong_password_and_origin(server):
    port = server.http_port
    web = await ws_login(port, "webuser")
    await ws_join(web, "#chat", "webuser")
    irc = await irc_register(port, "big", ["binary.ircv3.net"])
    irc.send_text("JOIN #chat")
    await web.expect({"type": "join", "room": "#chat"})
    irc.send_text("PRIVMSG #chat :" + "x" * 5000, binary=True)
    closed = await irc.wait_closed()
    assert closed[1] == 1009
    assert (await web.expect({"type": "quit"}))["from"]["nick"] == "big"

    # a registered nick with a wrong password is refused the IRC way
    bad = await connect(port, protocols=["text.ircv3.net"], json_messages=False)
    bad.send_text("PASS wrong")
    bad.send_text("NICK carol")
    bad.send_text("USER carol 0 * :carol")
    refused = await bad.expect(lambda line: " 464 " in line or " 904 " in line or "ERROR" in line or " 433 " in line)
    assert " 001 " not in "".join(bad.received)
    assert refused

    why = await connect_failure(port, protocols=["text.ircv3.net"], origin="https://evil.example.net")
    assert "403" in why
    # the others carry on
    web.send_json({"type": "ping", "token": "alive"})
    assert (await web.expect({"type": "pong"}))["token"] == "alive"
    await close_clients()
