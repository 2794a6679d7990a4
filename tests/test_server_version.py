"""No response names the server software or its version: pages, errors, ``/ws`` without an
upgrade, the WebSocket handshake (Twisted's web server sends ``Server: TwistedWeb/x`` and
Autobahn a status page with its version unless told otherwise)."""
from __future__ import annotations

import base64
import os
import re
import socket

import pytest

from tests.support import server_config

WS_KEY = base64.b64encode(os.urandom(16)).decode()

REQUESTS = {
    "page": "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
    "missing": "GET /no/such/file HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
    "ws-without-upgrade": "GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
    "ws-bad-version": (
        "GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {WS_KEY}\r\nSec-WebSocket-Version: 99\r\n\r\n"
    ),
    "ws-upgrade": (
        "GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {WS_KEY}\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: chathub.v1\r\n\r\n"
    ),
    "other-host": "GET / HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n",
    "bad-request": "NONSENSE\r\n\r\n",
}

EXPECTED_STATUS = {
    "page": 200, "missing": 404, "ws-without-upgrade": 426, "ws-bad-version": 400,
    "ws-upgrade": 101, "other-host": 421, "bad-request": 400,
}


def exchange(port: int, request: str) -> bytes:
    """Send ``request``; everything until the server closes, or the head of a 101."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request.encode())
        data = b""
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                return data
            data += chunk
            if data.startswith(b"HTTP/1.1 101 ") and b"\r\n\r\n" in data:
                return data.split(b"\r\n\r\n", 1)[0]


@pytest.fixture(scope="module")
def http_port(tmp_path_factory):
    from tests.support import TwistdServer

    folder = tmp_path_factory.mktemp("version")
    server = TwistdServer(folder, server_config(folder / "var", line=False, http=True)).start()
    yield server.port("http")
    server.stop()
    assert server.exceptions == []


@pytest.mark.parametrize("name", sorted(REQUESTS))
def test_no_response_names_the_server_software(http_port, name):
    response = exchange(http_port, REQUESTS[name])
    status = int(response.split(b" ", 2)[1])
    assert status == EXPECTED_STATUS[name], response[:300]
    head = response.split(b"\r\n\r\n", 1)[0]
    assert not re.search(rb"(?im)^server:", head), head
    lowered = response.lower()
    for word in (b"twisted", b"autobahn"):
        assert word not in lowered, response[:600]
