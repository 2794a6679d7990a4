"""Suite-wide fixtures. Twisted's reactor is installed by pytest-twisted: never import
``twisted.internet.reactor`` at module level in tests."""
from __future__ import annotations

import pytest
import pytest_twisted

from tests.support import (
    HubServer,
    LineClient,
    LogCapture,
    TwistdServer,
    history_server,
    irc_config,
    server_config,
    ws_config,
)


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


@pytest.fixture
def captured():
    """Every log event while the test runs (``LogCapture``)."""
    with LogCapture() as log:
        yield log


@pytest_twisted.async_yield_fixture
async def history_hub(tmp_path):
    """``history_server``: every protocol over a hub keeping history and accounts in
    SQLite under ``tmp_path``; stopped (and checked) after the test."""
    server = await history_server(tmp_path)
    yield server
    await server.stop()


@pytest_twisted.async_yield_fixture
async def irc_hub():
    """The IRC tests' server (``irc_config``, the account alice/sesame) serving IRC and
    telnet; stopped (and checked) after the test."""
    from twisted.cred.checkers import InMemoryUsernamePasswordDatabaseDontUse

    checker = InMemoryUsernamePasswordDatabaseDontUse(alice=b"sesame")
    server = HubServer(irc_config(), [checker], protocols=("irc", "line"))
    yield server
    await server.stop()


@pytest_twisted.async_yield_fixture
async def ws_hub():
    """The WebSocket tests' server (``ws_config``, the account carol/s3cret) serving HTTP;
    stopped (and checked) after the test."""
    from twisted.cred.checkers import InMemoryUsernamePasswordDatabaseDontUse

    server = HubServer(ws_config(), [InMemoryUsernamePasswordDatabaseDontUse(carol=b"s3cret")], protocols=["http"])
    yield server
    await server.stop()
