"""``/metrics`` and ``/healthz`` of a real ``ChathubService`` (chathub/app.py), over real
sockets: the figures after a scripted conversation on IRC, telnet and WebSocket, who may
scrape, and health that fails when the store cannot write."""
from __future__ import annotations

import json
import re
from typing import Optional

import pytest
import pytest_twisted
from prometheus_client.parser import text_string_to_metric_families
from twisted.internet import reactor
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.web.client import Agent, readBody
from twisted.web.http_headers import Headers
from twisted.web.test.requesthelper import DummyRequest

from chathub.app import ChathubService
from chathub.config import Config, ConfigError, load_config, parse_config
from chathub.protocols.web.ops import is_loopback_peer
from tests.cluster_support import own_postgres  # noqa: F401 (fixture)
from tests.support import ANY_PORT, LOOPBACK, REPO, HubServer, end_clients, server_config

TOKEN = "s3cret-token-for-metrics"


class LiveServer:
    """A whole ``ChathubService`` listening on 127.0.0.1 (every protocol), with the
    clients of ``HubServer`` (``irc``, ``telnet``, ``ws``) pointed at its ports."""

    irc = HubServer.irc
    telnet = HubServer.telnet
    ws = HubServer.ws
    connect = HubServer.connect
    http_port = property(lambda self: self.port("http"))

    def __init__(self, service: ChathubService) -> None:
        self.service = service
        self.clients: list = []

    def port(self, kind: str) -> int:
        for listener in self.service.listeners:
            if listener.kind == kind:
                return listener.port.getHost().port
        raise KeyError(kind)

    async def get(self, path: str, headers: Optional[dict] = None) -> tuple[int, bytes]:
        """GET ``path`` of the HTTP listener: (status, body)."""
        sent = Headers({k.encode(): [v.encode()] for k, v in (headers or {}).items()})
        response = await Agent(reactor).request(b"GET", f"http://127.0.0.1:{self.http_port}{path}".encode(), sent)
        return response.code, await readBody(response)

    async def scrape(self, headers: Optional[dict] = None) -> dict:
        """Every sample of ``/metrics``: {(name, ((label, value), ...)): value}."""
        code, body = await self.get("/metrics", headers)
        assert code == 200, body
        return {
            (sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(body.decode())
            for sample in family.samples
        }

    async def stop(self) -> None:
        await end_clients(self.clients)
        await self.service.stopService()


async def live(tmp_path, config_file: Optional[str] = None, **sections: dict) -> LiveServer:
    base = load_config(config_file) if config_file else Config()
    config = base.with_overrides(
        server={"data_dir": str(tmp_path)},
        listeners={"line": [ANY_PORT], "irc": [ANY_PORT], "http": [ANY_PORT]},
        auth={"checkers": ["store"], "login_delay": 0.0},
        limits={"flood_exempt": LOOPBACK, "connection_limits_exempt": LOOPBACK},
        websocket={"ping_interval": 0},
        **sections,
    )
    service = ChathubService(config)
    ready = service.when_ready()
    service.startService()
    await ready
    return LiveServer(service)


def _value(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


@pytest_twisted.ensureDeferred
async def test_a_conversation_on_every_protocol_gives_the_exact_counts(tmp_path):
    server = await live(tmp_path)
    try:
        before = await server.scrape()
        assert _value(before, "chathub_delivery_latency_seconds_count") == 0
        irc = await server.irc("ia", rooms=["#m"])
        tel = await server.telnet("ta", rooms=["#m"])
        web = await server.ws("wa", rooms=["#m"])
        joined = await server.scrape()
        assert [_value(joined, "chathub_users", protocol=p) for p in ("irc", "line", "ws")] == [1, 1, 1]
        assert _value(joined, "chathub_rooms") == 1
        # one connection each; the HTTP one is the WebSocket (the scrapes' own come and go)
        assert _value(joined, "chathub_connections", listener="irc") == 1
        assert _value(joined, "chathub_connections", listener="line") == 1
        assert _value(joined, "chathub_connections", listener="http") >= 1
        # the telnet and the IRC user were replayed the room's history on join (a web client
        # asks itself)
        assert _value(joined, "chathub_history_requests_total") == 2

        irc.send("PRIVMSG #m :one from irc")
        irc.send("PRIVMSG #m :two from irc")
        tel.send("/msg #m one from telnet")  # the line protocol's way to talk to a room
        web.send_json({"type": "message", "target": "#m", "text": "one from web"})
        # three connections: the server reads them in whatever order they arrive
        for text in ("one from irc", "two from irc", "one from web"):
            await tel.expect_count(text)
        # one connection's messages keep their order
        assert [t.split("> ")[-1] for t in tel.texts if t.endswith(" from irc")] == ["one from irc", "two from irc"]
        for text in ("one from telnet", "one from web"):
            await irc.expect_count(rf"PRIVMSG #m :{text}$")
        for text in ("one from irc", "two from irc", "one from telnet", "one from web"):
            await web.expect({"type": "message", "text": text})
        after = await server.scrape()
        received = {p: _value(after, "chathub_messages_received_total", protocol=p) for p in ("irc", "line", "ws")}
        assert received == {"irc": 2, "line": 1, "ws": 1}
        # IRC (no echo-message) and telnet are not sent their own; chathub.v1 is, with its id
        delivered = {p: _value(after, "chathub_messages_delivered_total", protocol=p) for p in ("irc", "line", "ws")}
        assert delivered == {"irc": 2, "line": 3, "ws": 4}
        # the latency histogram moved: one observation per message, all within +Inf
        assert _value(after, "chathub_delivery_latency_seconds_count") == 4
        assert _value(after, "chathub_delivery_latency_seconds_bucket", le="+Inf") == 4
        assert _value(after, "chathub_delivery_latency_seconds_sum") > 0
        # four messages committed, in one batch or more
        assert _value(after, "chathub_store_batch_size_sum") - _value(joined, "chathub_store_batch_size_sum") >= 4
        commits = "chathub_store_commit_seconds_count"
        assert _value(after, commits) > _value(joined, commits)
        assert _value(after, "chathub_failed_logins_total") == 0
        assert _value(after, "chathub_history_requests_total") == 2
        web.send_json({"type": "history", "target": "#m", "ref": "h"})
        await web.expect({"type": "history", "target": "#m"})
        assert _value(await server.scrape(), "chathub_history_requests_total") == 3
        assert _value(after, "process_resident_memory_bytes") > 0
    finally:
        await server.stop()


@pytest_twisted.ensureDeferred
async def test_failed_logins_are_counted(tmp_path):
    server = await live(tmp_path)
    try:
        owner = await server.ws("owner")
        owner.send_json({"type": "register", "password": "right-password-1", "ref": "r"})
        await owner.expect({"ref": "r"})
        owner.send_json({"type": "nick", "nick": "elsewhere", "ref": "n"})  # the nick is free to log in to
        await owner.expect({"type": "ok", "ref": "n"})
        guesser = await server.connect("line")
        guesser.send("/nick owner wrong-password")
        await guesser.expect_re(r"^! login as owner refused")
        samples = await server.scrape()
        assert _value(samples, "chathub_failed_logins_total") == 1
    finally:
        await server.stop()


@pytest_twisted.ensureDeferred
async def test_metrics_are_for_loopback_only_without_a_token(tmp_path):
    server = await live(tmp_path)
    try:
        assert (await server.get("/metrics"))[0] == 200
        # a reverse proxy on this host: its clients are not local, whatever address it came from
        code, body = await server.get("/metrics", {"X-Forwarded-For": "203.0.113.9"})
        assert code == 403 and b"[metrics]" in body
        assert (await server.get("/metrics", {"Forwarded": "for=203.0.113.9"}))[0] == 403
        # /healthz answers everyone (it says only whether the server can serve)
        assert (await server.get("/healthz", {"X-Forwarded-For": "203.0.113.9"}))[0] == 200
    finally:
        await server.stop()


@pytest_twisted.ensureDeferred
async def test_with_a_token_only_its_bearer_may_scrape(tmp_path):
    server = await live(tmp_path, metrics={"token": TOKEN})
    try:
        code, _ = await server.get("/metrics")
        assert code == 401  # loopback is not enough once a token is set
        assert (await server.get("/metrics", {"Authorization": "Bearer wrong-token-wrong-token"}))[0] == 401
        assert (await server.get("/metrics", {"Authorization": f"Basic {TOKEN}"}))[0] == 401
        samples = await server.scrape({"Authorization": f"Bearer {TOKEN}", "X-Forwarded-For": "203.0.113.9"})
        assert ("chathub_rooms", ()) in samples
    finally:
        await server.stop()


@pytest_twisted.ensureDeferred
async def test_a_reload_changes_the_token(tmp_path):
    path = tmp_path / "chathub.toml"
    def text(token: str) -> str:  # the same listeners (tcp:0 kept), another token
        return server_config(tmp_path, f'[metrics]\ntoken = "{token}"\n', irc=True, http=True)

    path.write_text(text(TOKEN))
    server = await live(tmp_path, str(path))
    try:
        await server.scrape({"Authorization": f"Bearer {TOKEN}"})
        path.write_text(text("another-token-0123456789"))
        ok, lines = await server.service.reload()
        assert ok and any("metrics.token" in line for line in lines), lines
        assert (await server.get("/metrics", {"Authorization": f"Bearer {TOKEN}"}))[0] == 401
        await server.scrape({"Authorization": "Bearer another-token-0123456789"})
    finally:
        await server.stop()


@pytest_twisted.ensureDeferred
async def test_the_example_dashboard_asks_only_for_figures_the_server_has(tmp_path):
    dashboard = (REPO / "docs" / "grafana-dashboard.json").read_text()
    asked = set(re.findall(r"\b(chathub_\w+|process_\w+)", dashboard))
    server = await live(tmp_path)
    try:
        names = {name for name, _ in await server.scrape()}
    finally:
        await server.stop()
    cluster_only = {name for name in asked if name.startswith("chathub_backplane_")}  # tests/test_metrics_cluster.py
    assert asked - cluster_only and asked - cluster_only <= names, (asked - cluster_only) - names


@pytest_twisted.ensureDeferred
async def test_metrics_can_be_turned_off(tmp_path):
    server = await live(tmp_path, metrics={"enabled": False})
    try:
        assert (await server.get("/metrics"))[0] == 404
        assert (await server.get("/healthz"))[0] == 200
    finally:
        await server.stop()


def _request_from(address) -> DummyRequest:
    request = DummyRequest([b"metrics"])
    request.client = address
    return request


def test_only_loopback_peers_count_as_local():
    assert is_loopback_peer(_request_from(IPv4Address("TCP", "127.0.0.1", 5000)))
    assert is_loopback_peer(_request_from(IPv4Address("TCP", "127.0.0.2", 5000)))
    assert is_loopback_peer(_request_from(IPv6Address("TCP", "::1", 5000)))
    assert is_loopback_peer(_request_from(IPv6Address("TCP", "::ffff:127.0.0.1", 5000)))
    assert not is_loopback_peer(_request_from(IPv4Address("TCP", "10.0.0.7", 5000)))
    assert not is_loopback_peer(_request_from(IPv4Address("TCP", "203.0.113.9", 5000)))
    assert not is_loopback_peer(_request_from(IPv6Address("TCP", "2001:db8::1", 5000)))
    assert not is_loopback_peer(_request_from(IPv6Address("TCP", "::ffff:10.0.0.7", 5000)))
    assert not is_loopback_peer(_request_from(None))  # a unix socket: a proxy's, as a rule


def test_a_histogram_counts_by_bucket_and_sums_up_when_read():
    from chathub.counters import Histogram

    histogram = Histogram((0.1, 1.0, 10.0))
    histogram.observe(0.1)  # a value on a bound is in that bound's bucket
    histogram.observe(5.0)
    # ages of a batch: 100.0 - t, and a time from a clock ahead of ours counts as 0
    histogram.observe_ages(100.0, [99.5, 100.2, 50.0])
    assert histogram.counts == [2, 1, 1, 1]  # per bucket, the last one above every bound
    assert histogram.cumulative() == [("0.1", 2), ("1.0", 3), ("10.0", 4), ("+Inf", 5)]
    assert histogram.count == 5 and histogram.total == pytest.approx(0.1 + 5.0 + 0.5 + 0.0 + 50.0)


def test_a_short_token_is_refused():
    with pytest.raises(ConfigError, match="metrics.token"):
        parse_config('[metrics]\ntoken = "short"\n')
    with pytest.raises(ConfigError, match="metrics.token"):
        parse_config('[metrics]\ntoken = "has a space in it, sixteen+"\n')
    assert parse_config(f'[metrics]\ntoken = "{TOKEN}"\n').metrics.token == TOKEN


def _read_only(txn, on: bool) -> None:
    txn.execute(f"PRAGMA query_only = {'ON' if on else 'OFF'}")


@pytest_twisted.ensureDeferred
async def test_health_fails_while_the_store_cannot_write(tmp_path):
    server = await live(tmp_path)
    server.service.operations.reuse = 0.0  # every request checks again
    store = server.service.store
    try:
        code, body = await server.get("/healthz")
        report = json.loads(body)
        assert code == 200 and report["status"] == "ok"
        assert report["checks"]["store"] is True and report["checks"]["listeners"] is True
        assert "backplane" not in report["checks"]  # a lone node has none
        await store._write_pool.runInteraction(_read_only, True)  # the one write connection
        code, body = await server.get("/healthz")
        report = json.loads(body)
        assert code == 503 and report["status"] == "failing"
        assert report["checks"]["store"] is False and "readonly" in report["checks"]["store_error"]
        await store._write_pool.runInteraction(_read_only, False)
        assert (await server.get("/healthz"))[0] == 200
    finally:
        await server.stop()


def _read_only_server(dsn: str, on: bool) -> None:
    """Make the whole PostgreSQL server refuse writes (or take them again), open sessions
    included: ``default_transaction_read_only`` in its configuration, reloaded."""
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("SET default_transaction_read_only = off")  # this session may still write it
        if on:
            conn.execute("ALTER SYSTEM SET default_transaction_read_only = on")
        else:
            conn.execute("ALTER SYSTEM RESET default_transaction_read_only")
        conn.execute("SELECT pg_reload_conf()")
    # the postmaster signals every session when it reloads, before it accepts the next
    # connection: once a new session has the setting, every open one is told
    with psycopg.connect(dsn) as conn:
        (value,) = conn.execute("SHOW default_transaction_read_only").fetchone()
        assert value == ("on" if on else "off"), value


def _pause(txn) -> None:
    txn.execute("SELECT pg_sleep(0.2)")  # holds its connection while the others are handed out


async def _health(server) -> tuple[int, dict]:
    code, body = await server.get("/healthz")
    return code, json.loads(body)


@pytest_twisted.ensureDeferred
async def test_health_on_postgres_fails_while_it_is_down_or_read_only(tmp_path, own_postgres):  # noqa: F811
    from twisted.internet import defer, threads

    server = await live(tmp_path, storage={"backend": "postgres", "postgres_dsn": own_postgres.dsn})
    server.service.operations.reuse = 0.0  # every request checks again
    try:
        code, report = await _health(server)
        assert code == 200 and report["checks"]["store"] is True, report

        await threads.deferToThread(_read_only_server, own_postgres.dsn, True)
        code, report = await _health(server)
        assert code == 503 and report["status"] == "failing" and report["checks"]["store"] is False, report
        assert "PostgreSQL" in report["checks"]["store_error"], report
        assert "read-only transaction" in report["checks"]["store_error"], report
        await threads.deferToThread(_read_only_server, own_postgres.dsn, False)
        code, report = await _health(server)
        assert code == 200 and report["checks"]["store"] is True, report

        # a busy hub has every connection of its pool open: after the restart each is dead
        store = server.service.store
        await defer.gatherResults([store._read(_pause) for _ in range(2 * store.pool_size)])
        assert len(store._read_pool.connections) == store.pool_size
        await threads.deferToThread(own_postgres.stop)
        code, report = await _health(server)
        assert code == 503 and report["checks"]["store"] is False, report
        assert "PostgreSQL" in report["checks"]["store_error"], report
        assert report["checks"]["listeners"] is True  # only the store fails
        await threads.deferToThread(own_postgres.start)
        code, report = await _health(server)
        assert code == 200 and report["checks"]["store"] is True, report
    finally:
        await server.stop()
