"""Session tokens and several sessions of one account across ``twistd chathub`` nodes
(docs/cluster.md, "Session tokens" and Limits): "log out everywhere" on one node ends the
sessions holding the account's tokens on the other, promptly, and a node that missed the
doorbell (Redis down) refuses the revoked token and ends those sessions once Redis is back;
a second login of an account already signed on at another node is refused, saying why.

Real nodes, one PostgreSQL database, one redis-server (tests/cluster_support.py).
"""
from __future__ import annotations

import base64
import time

import pytest_twisted
from twisted.internet import threads

from tests.browser_helpers import close_clients, connect
from tests.cluster_support import (  # noqa: F401 (fixtures)
    cluster,
    irc_user,
    postgres_database,
    postgres_dsn,
    until,
)

PASSWORD = "correct-horse"
#: seconds a session on another node may take to be ended after the revocation (the
#: doorbell takes milliseconds; the bound leaves room for a busy machine)
BOUND = 5.0


def register_alice(cluster, irc_port: int):
    """alice signs on at ``irc_port``'s node and registers the account alice there."""
    alice = irc_user(cluster, irc_port, "alice", join=False)
    alice.send(f"REGISTER * alice@example.org {PASSWORD}\r\n")
    alice.expect(r" 900 ")
    return alice


def alice_on_a(cluster, redis_url: str = "") -> tuple[int, int, int, int]:
    """Nodes a and b, alice registered and signed on at a: the line and IRC ports of a, then b."""
    a_line, a_irc = cluster("a", redis_url)
    b_line, b_irc = cluster("b", redis_url)
    register_alice(cluster, a_irc)
    return a_line, a_irc, b_line, b_irc


async def web_login(port: int, nick: str, password: str = PASSWORD):
    """A chathub.v1 connection logging in to account alice as ``nick``: the client and
    its answer (``welcome`` or ``error``)."""
    client = await connect(port, protocols=["chathub.v1"])
    await client.expect({"type": "hello"})
    client.send_json({"type": "login", "nick": nick, "account": "alice", "password": password})
    answer = await client.expect(lambda m: m.get("type") in ("welcome", "error"))
    return client, answer


async def token_login(port: int, nick: str, token: str) -> dict:
    """A chathub.v1 login with ``token``: its answer."""
    client = await connect(port, protocols=["chathub.v1"])
    await client.expect({"type": "hello"})
    client.send_json({"type": "login", "nick": nick, "token": token})
    return await client.expect(lambda m: m.get("type") in ("welcome", "error"))


def sasl_user(cluster, port: int, nick: str, secret: str, answer: str = r" 001 "):
    """An IRC connection logging in to account alice with SASL PLAIN (``secret``: a session
    token or the password) as ``nick``; returns it once ``answer`` came."""
    client = cluster.connect(port)
    client.send(f"CAP REQ :sasl\r\nNICK {nick}\r\nUSER u 0 * :u\r\n")
    client.expect(r" ACK ")
    client.send("AUTHENTICATE PLAIN\r\n")
    client.expect(r"^AUTHENTICATE \+")
    client.send("AUTHENTICATE " + base64.b64encode(f"alice\0alice\0{secret}".encode()).decode() + "\r\n")
    if " 904 " in client.expect(r" 90[0-9] ") and answer == r" 904 ":
        return client  # refused, as expected
    client.send("CAP END\r\n")
    client.expect(answer)
    return client


@pytest_twisted.ensureDeferred
async def test_log_out_everywhere_on_one_node_ends_token_sessions_on_the_other(cluster):
    a_line, a_irc, b_line, b_irc = await threads.deferToThread(alice_on_a, cluster)
    try:
        web_b, welcome = await web_login(cluster.http["b"], "alice_web")
        token = welcome["token"]
        irc_b = await threads.deferToThread(sasl_user, cluster, b_irc, "alice_irc", token)
        web_a, _ = await web_login(cluster.http["a"], "alice_a")

        web_a.send_json({"type": "logout", "everywhere": True, "ref": 1})
        assert (await web_a.expect({"ref": 1}))["revoked"] == 2  # alice_a's and alice_web's
        started = time.monotonic()
        # on B: the web session is told and closed 4000, the IRC connection gets ERROR
        ended = await web_b.expect({"type": "logged_out"}, timeout=BOUND)
        assert "another device" in ended["reason"]
        assert (await web_b.wait_closed())[1] == 4000
        lines = await threads.deferToThread(irc_b.expect_closed, BOUND)
        assert any(line.startswith("ERROR :Logged out") for line in lines), lines
        assert time.monotonic() - started < BOUND
        # the revoked token logs nobody in, on either node, over either protocol
        for port in (cluster.http["b"], cluster.http["a"]):
            refused = await token_login(port, "alice_again", token)
            assert refused["type"] == "error" and refused["code"] == "login_failed"
        await threads.deferToThread(sasl_user, cluster, b_irc, "alice_irc2", token, r" 904 ")
    finally:
        await close_clients()


@pytest_twisted.ensureDeferred
async def test_a_revocation_while_redis_is_down_is_refused_there_and_ends_sessions_once_it_is_back(
    cluster, own_redis
):
    a_line, a_irc, b_line, b_irc = await threads.deferToThread(alice_on_a, cluster, own_redis.url)
    try:
        web_b, welcome = await web_login(cluster.http["b"], "alice_web")
        token = welcome["token"]
        web_a, _ = await web_login(cluster.http["a"], "alice_a")
        own_redis.kill()  # no doorbell: B cannot hear of what A does now
        web_a.send_json({"type": "password", "password": PASSWORD, "new_password": "new horse", "ref": 1})
        changed = await web_a.expect({"ref": 1})
        assert changed["type"] == "password_changed" and changed["revoked"] == 2
        # B heard nothing, but the database is the truth: the token is refused there
        refused = await token_login(cluster.http["b"], "alice_again", token)
        assert refused["type"] == "error" and refused["code"] == "login_failed"
        assert web_b.close_info is None  # still open: nothing told B yet
        own_redis.restart()
        # Redis is back: B's session holding the revoked token is ended (reconnects back off
        # up to 2 s, then the node checks its tokens against the store)
        ended = await web_b.expect({"type": "logged_out"}, timeout=15.0)
        assert "another device" in ended["reason"]
        assert (await web_b.wait_closed())[1] == 4000
        assert web_a.close_info is None  # the session that changed it keeps its new token
    finally:
        await close_clients()


@pytest_twisted.ensureDeferred
async def test_a_second_session_of_an_account_on_another_node_is_refused_saying_why(cluster):
    a_line, a_irc, b_line, b_irc = await threads.deferToThread(alice_on_a, cluster)
    try:
        bob = await threads.deferToThread(irc_user, cluster, b_irc, "bob", "", False)
        # until B's directory knows alice (her presence crossed)
        assert await threads.deferToThread(until, bob, "ISON alice", r" 303 ", r" 303 bob :?alice$")
        # chathub.v1: a code of its own
        web, answer = await web_login(cluster.http["b"], "alice")
        assert answer["type"] == "error" and answer["code"] == "nick_on_other_server", answer
        assert "another server" in answer["message"]
        # IRC: 433 naming the reason
        irc = await threads.deferToThread(sasl_user, cluster, b_irc, "alice", PASSWORD, r" 433 ")
        assert "another server of this network" in irc.seen[-1]
        # telnet: a ! line naming it
        telnet = cluster.connect(b_line)
        await threads.deferToThread(telnet.send, f"/nick alice {PASSWORD}\r\n")
        line = await threads.deferToThread(telnet.expect, r"^! ")
        assert "another server of this network" in line
        # the same login on alice's own node joins her user, as on a lone node
        same, answer = await web_login(cluster.http["a"], "alice")
        assert answer["type"] == "welcome" and answer["nick"] == "alice"
        # someone else's nick is still just "in use"
        other = cluster.connect(b_irc)
        await threads.deferToThread(other.send, "NICK alice\r\nUSER u 0 * :u\r\n")
        taken = await threads.deferToThread(other.expect, r" 433 ")
        assert "another server" not in taken
    finally:
        await close_clients()
