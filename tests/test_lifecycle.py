"""The hub's life as an operator sees it, on real ``twistd`` processes: the start-up block that
says where to go, SIGHUP and REHASH re-reading the config while clients stay connected (a
broken file changes nothing), SIGTERM telling a user of every protocol before the close, and
JSON log lines with stable event names."""
from __future__ import annotations

import json
import re
import signal
import socket
import ssl
import urllib.request

import pytest
import pytest_twisted

from chathub.lifecycle.shutdown import Deadline
from tests.browser_helpers import close_clients, connect
from tests.support import (
    OPER_HASH,
    OPER_PASSWORD,
    LineClient,
    connect_irc,
    quit_irc_clients,
    register_irc,
    server_config,
    ws_login,
)

#: what the start-up block's lines look like after twistd's prefix (a tab, then ours)
READY = r"chathub is ready; connect with:"


def ready_block(server) -> list[str]:
    """The start-up block's lines (the first line and one per listener), once it is logged."""
    server.expect_log(READY)
    start = max(i for i, line in enumerate(server.log) if READY in line)
    block = [server.log[start]]
    while len(block) < 1 + server._listener_count():
        block.append(server.expect_log(r"^\t"))
    return block


def test_startup_block_lists_each_listener_with_its_real_port(tmp_path, twistd_server):
    server = twistd_server(server_config(tmp_path / "var", line=True, irc=True, http=True))
    line, irc, http = server.port("line"), server.port("irc"), server.port("http")
    block = "\n".join(ready_block(server))
    assert f"telnet 127.0.0.1 {line}" in block
    assert f"irc://127.0.0.1:{irc}" in block
    assert f"http://127.0.0.1:{http}/ (WebSocket: ws://127.0.0.1:{http}/ws)" in block
    assert not [entry for entry in server.log if "Starting factory" in entry]
    # the ports in the block are the ones really bound
    client = LineClient(line)
    client.expect("Welcome")
    client.close()
    # a static file is not logged (no access log by default); the next connection's line
    # comes after where its line would have been
    with urllib.request.urlopen(f"http://127.0.0.1:{http}/", timeout=10) as response:
        assert response.status == 200
    LineClient(line).close()
    server.expect_log(r"line connection from 127\.0\.0\.1")
    server.expect_log(r"line connection from 127\.0\.0\.1")
    assert not [entry for entry in server.log if '"GET / HTTP/1.1" 200' in entry]


def test_access_log_is_a_setting(tmp_path, twistd_server):
    server = twistd_server(server_config(tmp_path / "var", "[logging]\naccess_log = true\n", line=False, http=True))
    with urllib.request.urlopen(f"http://127.0.0.1:{server.port('http')}/", timeout=10) as response:
        assert response.status == 200
    server.expect_log(r'"GET / HTTP/1\.1" 200')


def test_tls_listeners_are_named_as_such(tmp_path, twistd_server, certificate):
    _, key, chain = certificate
    tls = f"ssl:0:privateKey={key}:certKey={chain}:interface=127.0.0.1"
    server = twistd_server(server_config(tmp_path / "var", line=tls, irc=tls, http=tls))
    block = "\n".join(ready_block(server))
    assert f"openssl s_client -quiet -connect 127.0.0.1:{server.port('line')}" in block
    assert f"ircs://127.0.0.1:{server.port('irc')}" in block
    assert f"https://127.0.0.1:{server.port('http')}/ (WebSocket: wss://" in block


# -- SIGHUP and REHASH --------------------------------------------------------------------

OPERATOR = f'[[irc.operators]]\nname = "boss"\npassword_hash = "{OPER_HASH}"\n'


def hub_config(tmp_path, topic_length: int, operator: bool, extra: str = "") -> str:
    """An IRC hub whose MOTD is ``motd.txt`` in its data directory."""
    return server_config(
        tmp_path / "var",
        f"[limits]\ntopic_length = {topic_length}\n[irc]\nmotd_file = \"motd.txt\"\nflood_exempt = [\"127.0.0.0/8\"]\n"
        + (OPERATOR if operator else "") + extra,
        line=False,
        irc=True,
    )


async def motd(client) -> list[str]:
    client.send("MOTD")
    lines = []
    while True:
        line = await client.expect(lambda reply: reply.command in ("372", "376", "422"))
        if line.command != "372":
            return lines
        lines.append(line.params[-1])


async def topic_set(client, room: str, text: str) -> str:
    client.send(f"TOPIC {room} :{text}")
    return (await client.expect("TOPIC")).params[-1]


@pytest_twisted.ensureDeferred
async def test_sighup_applies_motd_limit_and_operator_while_a_client_stays(tmp_path, twistd_server):
    (tmp_path / "var").mkdir()
    (tmp_path / "var" / "motd.txt").write_text("old news\n")
    server = twistd_server(hub_config(tmp_path, topic_length=10, operator=False))
    clients: list = []
    try:
        amy = await register_irc(await connect_irc(server.port("irc"), clients), "amy", rooms=["#ops"])
        assert await motd(amy) == ["- old news"]
        assert await topic_set(amy, "#ops", "a" * 30) == "a" * 10
        amy.send(f"OPER boss {OPER_PASSWORD}")
        await amy.expect("464")  # no such operator yet

        (tmp_path / "var" / "motd.txt").write_text("fresh news\n")
        server.config_path.write_text(hub_config(tmp_path, topic_length=20, operator=True))
        server.process.send_signal(signal.SIGHUP)
        applied = server.expect_log(r"config reload: applied: ")
        assert "limits.topic_length" in applied and "irc.operators" in applied

        # the same connection, never dropped, sees every change
        assert await motd(amy) == ["- fresh news"]
        assert await topic_set(amy, "#ops", "b" * 30) == "b" * 20
        amy.send(f"OPER boss {OPER_PASSWORD}")
        await amy.expect("381")

        # REHASH does the same, and names what only a restart changes
        server.config_path.write_text(
            hub_config(tmp_path, topic_length=25, operator=True, extra='[storage]\nsqlite_path = "other.sqlite3"\n')
        )
        amy.send("REHASH")
        await amy.expect("382")
        notices = [(await amy.expect("NOTICE")).params[-1] for _ in range(3)]
        assert any("applied: limits.topic_length" in n for n in notices), notices
        assert any("need a restart: storage.sqlite_path" in n for n in notices), notices
        assert await topic_set(amy, "#ops", "c" * 30) == "c" * 25

        # a broken file changes nothing and says why, on IRC and in the log
        server.config_path.write_text(hub_config(tmp_path, topic_length=5, operator=True, extra="[irc]\nbogus = 1\n"))
        amy.send("REHASH")
        failed = await amy.expect("FAIL")
        assert failed.params[:2] == ["REHASH", "INVALID_CONFIG"]
        why = (await amy.expect("NOTICE")).params[-1]
        assert "nothing changed" in why and "not valid TOML" in why  # [irc] twice is bad TOML
        server.expect_log(r"config reload refused, nothing changed: .*not valid TOML")
        broken = hub_config(tmp_path, topic_length=5, operator=True, extra="[history]\nbogus = 1\n")
        server.config_path.write_text(broken)
        server.process.send_signal(signal.SIGHUP)
        server.expect_log(r"config reload refused, nothing changed: .*unknown setting 'history.bogus'")
        assert await topic_set(amy, "#ops", "d" * 30) == "d" * 25
        assert server.process.poll() is None
        assert server.exceptions == []
    finally:
        await quit_irc_clients(clients)


@pytest_twisted.ensureDeferred
async def test_sighup_puts_open_connections_under_new_flood_settings(tmp_path, twistd_server):
    from twisted.internet import reactor

    exempt = '[limits]\nflood_exempt = ["127.0.0.0/8"]\n'
    tight = "flood_rate = 0.1\nflood_burst = 1\nflood_max_lines = 2\n"
    server = twistd_server(server_config(tmp_path / "var", exempt, line=True, irc=True))
    clients: list = []
    try:
        irc = await register_irc(await connect_irc(server.port("irc"), clients), "ircflood")
        telnet = await connect_irc(server.port("line"))
        await telnet.expect_re("Welcome")
        telnet.send("/nick lineflood")
        await telnet.expect_re("lineflood")
        # loopback is exempt: a burst goes through
        irc.send(*[f"PING :burst{i}" for i in range(20)])
        await irc.expect_re("PONG .*burst19")

        server.config_path.write_text(
            server_config(tmp_path / "var", f"[line]\n{tight}[irc]\n{tight}", line=True, irc=True)
        )
        server.process.send_signal(signal.SIGHUP)
        server.expect_log(r"config reload: applied: .*limits\.flood_exempt")
        irc.send(*[f"PING :again{i}" for i in range(20)])
        assert (await irc.expect("ERROR")).params[-1] == "Excess Flood"
        await irc.closed.addTimeout(10, reactor)
        telnet.send(*[f"/who #r{i}" for i in range(20)])
        await telnet.expect_re(r"^! excess flood: more than 2 lines waiting")
        await telnet.closed.addTimeout(10, reactor)
    finally:
        await quit_irc_clients(clients)


def server_certificate(port: int, ca) -> bytes:
    """The DER certificate a TLS listener on 127.0.0.1:``port`` presents now."""
    context = ssl.create_default_context()
    ca.configure_trust(context)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with context.wrap_socket(raw, server_hostname="localhost") as tls:
            return tls.getpeercert(binary_form=True)


@pytest_twisted.ensureDeferred
async def test_sighup_renews_tls_certificates_and_adds_and_removes_listeners(tmp_path, twistd_server):
    import trustme
    from twisted.internet import ssl as tssl

    ca = trustme.CA()
    first, second = ca.issue_cert("localhost"), ca.issue_cert("localhost")
    key, chain = tmp_path / "key.pem", tmp_path / "cert.pem"
    first.private_key_pem.write_to_path(str(key))
    first.cert_chain_pems[0].write_to_path(str(chain))
    tls = f"ssl:0:privateKey={key}:certKey={chain}:interface=127.0.0.1"
    server = twistd_server(server_config(tmp_path / "var", line=True, irc=tls))
    port, line_port = server.port("irc"), server.port("line")
    before = server_certificate(port, ca)
    options = tssl.optionsForClientTLS("localhost", trustRoot=tssl.Certificate.loadPEM(ca.cert_pem.bytes()))
    clients: list = []
    try:
        kept = await register_irc(await connect_irc(port, clients, tls=options), "kept")
        second.private_key_pem.write_to_path(str(key))
        second.cert_chain_pems[0].write_to_path(str(chain))
        # the telnet listener goes, an HTTP one comes
        server.config_path.write_text(server_config(tmp_path / "var", line=False, irc=tls, http=True))
        server.process.send_signal(signal.SIGHUP)
        server.expect_log(r"config reload: certificates re-read for 1 TLS listener")
        (http,) = server.ports("http")  # the report comes once the new listener listens
        closed = f"(TCP Port {line_port} Closed)"
        if not any(closed in entry for entry in server.log):
            server.expect_log(re.escape(closed))
        after = server_certificate(port, ca)
        assert before != after
        assert ssl.DER_cert_to_PEM_cert(after).strip() == second.cert_chain_pems[0].bytes().decode().strip()
        kept.send("PING :still-here")
        await kept.expect_re(r"PONG .*still-here")
        with urllib.request.urlopen(f"http://127.0.0.1:{http}/", timeout=10) as response:
            assert response.status == 200
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", line_port), timeout=10).close()
    finally:
        await quit_irc_clients(clients)


# -- SIGTERM ------------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_sigterm_tells_a_user_of_every_protocol_before_the_close(tmp_path, twistd_server):
    from twisted.internet import reactor

    server = twistd_server(server_config(tmp_path / "var", line=True, irc=True, http=True))
    clients: list = []
    try:
        irc = await register_irc(await connect_irc(server.port("irc"), clients), "ircuser", rooms=["#all"])
        telnet = await connect_irc(server.port("line"))
        await telnet.expect_re("Welcome")
        telnet.send("/nick telnetuser", "/join #all")
        await telnet.expect_re(r"^\* in #all ")
        newcomer = await connect_irc(server.port("irc"))  # not registered yet
        newcomer.send("CAP LS 302")
        await newcomer.expect("CAP")
        web = await ws_login(server.port("http"), "webuser")
        wsirc = await connect(server.port("http"), protocols=["text.ircv3.net"], json_messages=False)
        wsirc.send_text("NICK wsirc")
        wsirc.send_text("USER wsirc 0 * :IRC over WebSocket")
        await wsirc.expect(" 001 ")

        server.process.send_signal(signal.SIGTERM)
        assert (await irc.expect("ERROR")).params == ["Server shutting down"]
        await irc.closed.addTimeout(10, reactor)
        assert (await newcomer.expect("ERROR")).params == ["Server shutting down"]
        await telnet.expect_re(r"^! Server shutting down$")
        await telnet.closed.addTimeout(10, reactor)
        assert (await web.expect({"type": "closing"}))["reason"] == "Server shutting down"
        assert (await web.wait_closed())[1] == 1001
        assert "ERROR :Server shutting down" in await wsirc.expect("ERROR")
        assert (await wsirc.wait_closed())[1] == 1001
        # twistd ends by the signal it stopped for, as systemd expects of a SIGTERM
        assert server.wait_exit() == -signal.SIGTERM
        server.expect_log(r"shutting down: telling every connection")
        assert server.exceptions == []
    finally:
        await close_clients()
        await quit_irc_clients(clients)


def test_shutdown_deadline_fires_when_the_time_is_up():
    import threading

    expired = threading.Event()
    Deadline(0.01, on_expiry=expired.set).start()
    assert expired.wait(10)


# -- JSON logs ----------------------------------------------------------------------------


def test_json_logs_carry_stable_event_names(tmp_path, twistd_server):
    config = server_config(tmp_path / "var", '[logging]\nformat = "json"\nlevel = "debug"\n')
    server = twistd_server(config, wait_for=r'"event": "ready"')
    ready = json.loads(next(line for line in server.log if '"event": "ready"' in line))
    (listener,) = ready["listeners"]
    assert listener["kind"] == "line" and listener["connect"].startswith("telnet 127.0.0.1 ")
    port = int(listener["connect"].rsplit(" ", 1)[1])
    client = LineClient(port)
    client.expect("Welcome")
    client.send("/nick jay\r\n")
    client.expect("jay")
    client.send("/quit\r\n")
    client.expect_closed()
    login = json.loads(server.expect_log(r'"event": "login"'))
    assert login["nick"] == "jay" and login["protocol"] == "line"
    logout = json.loads(server.expect_log(r'"event": "logout"'))
    assert logout["nick"] == "jay"
    disconnect = json.loads(server.expect_log(r'"event": "disconnect"'))
    assert disconnect["nick"] == "jay" and disconnect["peer"] == "127.0.0.1"
    # every line is one JSON object with its text
    for line in server.log:
        assert "text" in json.loads(line), line


def test_a_reload_keeps_what_needs_a_restart_as_it_started():
    from chathub.config import Config
    from chathub.lifecycle.reload import changed_settings, is_live, keep_settings

    old = Config()
    new = old.with_overrides(server={"name": "renamed.example"}, limits={"topic_length": 99},
                             storage={"sqlite_path": "elsewhere.sqlite3"})
    names = list(changed_settings(old, new))
    assert names == ["server.name", "limits.topic_length", "storage.sqlite_path"]
    restart = [n for n in names if not is_live(n)]
    assert restart == ["server.name", "storage.sqlite_path"]
    kept = keep_settings(old, new, restart)
    assert kept.server.name == "chathub.local" and kept.storage.sqlite_path == "chathub.sqlite3"
    assert kept.limits.topic_length == 99


def topic_limit_config(tmp_path, topic_length: int) -> str:
    """A hub with no listeners whose topic length is ``topic_length``; no password file (its
    checker re-reads it every 5 s from the moment it is made, and a service that is never
    started is never stopped: the loop would run on into other tests)."""
    return server_config(
        tmp_path / "var", f'[auth]\ncheckers = ["store"]\n[limits]\ntopic_length = {topic_length}\n', line=False
    )


def hub_of(tmp_path, topic_length: int):
    """A ``ChathubService`` (not started) of ``chathub.toml`` in ``tmp_path``."""
    from chathub.app import ChathubService
    from chathub.config import load_config

    path = tmp_path / "chathub.toml"
    path.write_text(topic_limit_config(tmp_path, topic_length))
    return path, ChathubService(load_config(str(path)))


class HeldReads:
    """A ``Reloader``'s ``in_thread`` that runs each read when asked (so it reads the file
    as it is then) but hands the result back only when the test says, newest first: the
    order in which two overlapping reads of a reloader that did not wait would finish
    worst."""

    def __init__(self) -> None:
        self.held: list = []  # (the Deferred handed out, the read's result or Failure)
        self.reads = 0

    def __call__(self, read, *args):
        from twisted.internet import defer
        from twisted.python.failure import Failure

        self.reads += 1
        try:
            result = read(*args)
        except Exception:
            result = Failure()
        d = defer.Deferred()
        self.held.append((d, result))
        return d

    def finish_newest_first(self) -> None:
        while self.held:
            d, result = self.held.pop()
            d.callback(result)  # a Failure fires the errback


def test_reloads_in_a_row_apply_the_last_file_one_reload_at_a_time(tmp_path):
    from chathub.lifecycle.reload import Reloader

    path, service = hub_of(tmp_path, topic_length=10)
    reads = HeldReads()
    service.reloader = Reloader(service, in_thread=reads)
    reports: list = []
    path.write_text(topic_limit_config(tmp_path, 20))
    service.reload().addCallback(reports.append)
    path.write_text(topic_limit_config(tmp_path, 30))
    # two more while the first is reading: they wait, and share one reload after it
    service.reload().addCallback(reports.append)
    service.reload().addCallback(reports.append)
    assert len(reads.held) == 1 and reports == []
    reads.finish_newest_first()
    assert reads.reads == 2
    assert service.config.limits.topic_length == 30 and service.hub.config.limits.topic_length == 30
    first, second, third = reports
    assert first[0] and "applied: limits.topic_length" in first[1]
    assert second == third and "applied: limits.topic_length" in second[1]
    # a broken file read while nothing runs changes nothing, and the next reload runs again
    path.write_text(topic_limit_config(tmp_path, 40) + "[limits]\n")
    service.reload().addCallback(reports.append)
    reads.finish_newest_first()
    assert not reports[-1][0] and "not valid TOML" in reports[-1][1][0]
    assert service.config.limits.topic_length == 30
    path.write_text(topic_limit_config(tmp_path, 50))
    service.reload().addCallback(reports.append)
    reads.finish_newest_first()
    assert reports[-1][0] and service.config.limits.topic_length == 50


@pytest_twisted.ensureDeferred
async def test_a_reload_reads_the_file_off_the_reactor_thread(tmp_path):
    from twisted.python import threadable

    from chathub.lifecycle.reload import Reloader, read_plan

    path, service = hub_of(tmp_path, topic_length=10)
    on_reactor_thread: list[bool] = []

    def reader(request):
        on_reactor_thread.append(threadable.isInIOThread())
        return read_plan(request)

    service.reloader = Reloader(service, read=reader)  # the real deferToThread
    path.write_text(topic_limit_config(tmp_path, 20))
    assert threadable.isInIOThread()  # the test itself runs on the reactor thread
    ok, lines = await service.reload()
    assert on_reactor_thread == [False]
    assert ok and service.config.limits.topic_length == 20, lines


@pytest.mark.parametrize(
    "kind, description, address, how",
    [
        ("irc", "tcp6:0:interface=\\:\\:1", ("TCP", "::1", 6667), "irc://[::1]:6667"),
        ("line", "tcp:2323", ("TCP", "0.0.0.0", 2323), "telnet 127.0.0.1 2323"),
        ("http", "ssl:443:privateKey=k.pem", ("TCP", "::", 443), "https://[::1]:443/ (WebSocket: wss://[::1]:443/ws)"),
        ("line", "unix:/run/line.sock", "/run/line.sock", "socat - UNIX-CONNECT:/run/line.sock"),
    ],
)
def test_each_kind_of_address_is_said_as_a_user_types_it(kind, description, address, how):
    from twisted.internet.address import IPv4Address, IPv6Address, UNIXAddress

    from chathub.lifecycle.announce import reachable

    if isinstance(address, str):
        bound = UNIXAddress(address.encode())
    else:
        bound = (IPv6Address if ":" in address[1] else IPv4Address)(*address)
    assert reachable(kind, description, bound).how == how
