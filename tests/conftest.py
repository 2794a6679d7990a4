"""Suite-wide fixtures. Twisted's reactor is installed by pytest-twisted: never import
``twisted.internet.reactor`` at module level in tests."""
from __future__ import annotations

import pytest

from tests.support import LineClient, TwistdServer, server_config


@pytest.fixture
def twistd_server(tmp_path):
    """Factory: start ``twistd -n chathub`` with a config text; stopped after the test."""
    servers: list[TwistdServer] = []

    def start(config_text: str, *args: str, **kw) -> TwistdServer:
        server = TwistdServer(tmp_path / f"server{len(servers)}", config_text, args)
        servers.append(server)
        return server.start(**kw)

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def line_server(tmp_path, twistd_server):
    """A twistd chathub serving only the line protocol; yields (server, port)."""
    server = twistd_server(server_config(tmp_path / "var"))
    return server, server.port("line")


@pytest.fixture
def line_client_factory():
    """Factory for blocking line clients; all closed after the test."""
    clients: list[LineClient] = []

    def connect(port: int) -> LineClient:
        client = LineClient(port)
        clients.append(client)
        return client

    yield connect
    for client in clients:
        client.close()
