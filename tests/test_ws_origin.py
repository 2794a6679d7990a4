"""The HTTP listener: the page title, the Host names it answers to, and the Origin rule of /ws."""
from __future__ import annotations

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.web.client import Agent, readBody
from twisted.web.http_headers import Headers

from chathub.config import Config
from tests.browser_helpers import close_clients, start_server


@pytest.fixture
def listening():
    started = []

    def start(**websocket):
        config = Config().with_overrides(
            server={"description": "Our <little> chat"}, websocket=websocket, history={"enabled": False}
        )
        hub, portal, site, port = start_server(config)
        started.append(port)
        return port.getHost().port

    yield start
    for port in started:
        port.stopListening()


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
