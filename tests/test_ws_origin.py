"""The HTTP listener: the page title, the Host names it answers to, and the Origin rule of /ws."""
from __future__ import annotations

import pytest
import pytest_twisted
from twisted.internet import defer, reactor
from twisted.web.client import Agent, readBody
from twisted.web.http_headers import Headers

from chathub.config import Config
from tests.browser_helpers import close_clients
from tests.support import HubServer


@pytest_twisted.async_yield_fixture
async def listening():
    """Factory: an HTTP listener with these ``[websocket]`` settings; its port."""
    servers: list[HubServer] = []

    def start(**websocket) -> int:
        config = Config().with_overrides(
            server={"description": "Our <little> chat"}, websocket=websocket, history={"enabled": False}
        )
        servers.append(HubServer(config, protocols=["http"]))
        return servers[-1].http_port

    yield start
    for server in servers:
        await server.stop()


async def get(port: int, path: str = "/", host: str | None = None):
    """(status, body) of a GET to 127.0.0.1:port, with the given Host header."""
    headers = Headers({b"Host": [(host or f"127.0.0.1:{port}").encode()]})
    response = await Agent(reactor).request(b"GET", f"http://127.0.0.1:{port}{path}".encode(), headers)
    body = await readBody(response)
    return response.code, body


@pytest_twisted.ensureDeferred
async def test_page_title_is_the_server_description(listening):
    port = listening()
    for path in ("/", "/index.html"):
        code, body = await get(port, path)
        assert code == 200
        assert b"<title>Our &lt;little&gt; chat</title>" in body
        assert b'<script type="module" src="js/app.js">' in body
    code, body = await get(port, "/js/app.js")
    assert code == 200 and b"pageTitle" in body


async def ws_connect(port: int, host: str, origin: str | None, protocols=("chathub.v1",)):
    """Open /ws on 127.0.0.1:port as a browser would for a page at ``origin`` that reached us
    by the name ``host`` (so a rebound DNS name is just a URL with that name)."""
    from twisted.internet.endpoints import TCP4ClientEndpoint

    from tests.browser_helpers import OPEN_CLIENTS, WsClientFactory

    factory = WsClientFactory(f"ws://{host}/ws", protocols=list(protocols), origin=origin)
    factory.json = True
    factory.opened = defer.Deferred()
    factory.closed = defer.Deferred()
    factory.setProtocolOptions(autoPingInterval=0)
    proto = await TCP4ClientEndpoint(reactor, "127.0.0.1", port).connect(factory)
    factory.client = proto
    OPEN_CLIENTS.append(proto)
    return await factory.opened.addTimeout(10, reactor)


async def ws_refused(port: int, host: str, origin: str | None) -> str:
    try:
        await ws_connect(port, host, origin)
    except ConnectionError as e:
        return str(e)
    raise AssertionError(f"handshake for Host {host} Origin {origin} unexpectedly succeeded")


@pytest_twisted.ensureDeferred
async def test_dns_rebinding_is_refused(listening):
    port = listening()
    try:
        # a page at http://evil.example:PORT whose name now resolves to 127.0.0.1: its Origin
        # matches its Host, which is how it passed before
        why = await ws_refused(port, f"evil.example:{port}", f"http://evil.example:{port}")
        assert "403" in why
        why = await ws_refused(port, f"evil.example:{port}", None)  # even without an Origin
        assert "403" in why
        # and the pages are not served to it either
        code, _ = await get(port, "/", host=f"evil.example:{port}")
        assert code == 421
        code, _ = await get(port, "/js/app.js", host="evil.example")
        assert code == 421
        # the names of the loopback listener still work, with their own origin or none
        for name in ("127.0.0.1", "localhost", "LOCALHOST"):
            client = await ws_connect(port, f"{name}:{port}", f"http://{name.lower()}:{port}")
            await client.expect({"type": "hello"})
            code, _ = await get(port, "/", host=f"{name}:{port}")
            assert code == 200
        client = await ws_connect(port, f"127.0.0.1:{port}", None)
        await client.expect({"type": "hello"})
        # an allowed hostname with another page's origin is still a cross-origin page
        why = await ws_refused(port, f"localhost:{port}", "http://localhost:3000")
        assert "403" in why
    finally:
        await close_clients()


@pytest_twisted.ensureDeferred
async def test_configured_hostnames_and_origins(listening):
    port = listening(hostnames=["chat.example.org", "*.chat.example.org"], allowed_origins=["https://app.example.net"])
    try:
        client = await ws_connect(port, f"chat.example.org:{port}", f"http://chat.example.org:{port}")
        await client.expect({"type": "hello"})
        client = await ws_connect(port, f"eu.chat.example.org:{port}", "https://app.example.net")
        await client.expect({"type": "hello"})
        # loopback names are no longer in the list
        assert "403" in await ws_refused(port, f"127.0.0.1:{port}", f"http://127.0.0.1:{port}")
        # an allowed origin does not make an unknown Host acceptable
        assert "403" in await ws_refused(port, f"evil.example:{port}", "https://app.example.net")
        code, _ = await get(port, "/", host="chat.example.org")
        assert code == 200
    finally:
        await close_clients()


def test_hostnames_setting_is_validated():
    from chathub.config.schema import ConfigError

    assert Config().websocket.hostnames == ["localhost", "127.0.0.1", "[::1]"]
    for bad in ([], [""], ["has space"], ["http://x"]):
        with pytest.raises(ConfigError, match="websocket.hostnames"):
            Config().with_overrides(websocket={"hostnames": bad})
