"""Suite-wide fixtures. Twisted's reactor is installed by pytest-twisted: never import
``twisted.internet.reactor`` at module level in tests."""
from __future__ import annotations

import os
import socket

import pytest
import pytest_twisted

from tests.browser_helpers import CHROMIUM, CHROMIUM_ARGS
from tests.redis_support import RedisServer
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


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory):
    """One redis-server for the session (tests keep apart by key prefix); never killed."""
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    yield server
    server.stop()


@pytest.fixture
def own_redis(tmp_path):
    """A redis-server of this test alone, for tests that kill and restart it."""
    server = RedisServer(tmp_path / "redis").start()
    yield server
    server.stop()


@pytest.fixture
def taken_port():
    """A port another program listens on (bound as Twisted binds: SO_REUSEADDR)."""
    with socket.socket() as holder:
        holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        yield holder.getsockname()[1]


@pytest.fixture(scope="module")
def certificate(tmp_path_factory):
    """(client TLS options trusting the test CA, key file, certificate file) for localhost."""
    import trustme
    from twisted.internet import ssl

    ca = trustme.CA()
    cert = ca.issue_cert("localhost", "127.0.0.1")
    folder = tmp_path_factory.mktemp("tls")
    key, chain = folder / "key.pem", folder / "cert.pem"
    cert.private_key_pem.write_to_path(str(key))
    cert.cert_chain_pems[0].write_to_path(str(chain))
    options = ssl.optionsForClientTLS("localhost", trustRoot=ssl.Certificate.loadPEM(ca.cert_pem.bytes()))
    return options, key, chain


@pytest.fixture(scope="module")
def browser():
    """Debian's Chromium through Playwright (``executable_path``, never a download)."""
    if not os.path.exists(CHROMIUM):
        pytest.fail(f"{CHROMIUM} is missing: apt-get install -y chromium (the browser tests need it)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def hub_ports(tmp_path, twistd_server):
    """A server with telnet, IRC and HTTP listeners; yields (server, ports, start-again).

    The first start takes ports the system picks; starting again takes the same ones, for
    the pages to reconnect to (freed by the stop just before: nobody else asked for them)."""
    server = twistd_server(server_config(tmp_path / "var", irc=True, http=True))
    ports = {kind: server.port(kind) for kind in ("line", "irc", "http")}
    same = {kind: f"tcp:{port}:interface=127.0.0.1" for kind, port in ports.items()}

    def start():
        return twistd_server(server_config(tmp_path / "var", **same))

    return server, ports, start
