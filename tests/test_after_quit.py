"""Nothing runs for a session once it has quit or its connection is gone, on any protocol.

An attacker sent ``quit`` and then, in the same packet, ``join`` and ``nick``: the join
left a ghost member holding operator status (NAMES showed ``@ghosty``, WHOIS said no such
nick) and the nick change raised KeyError. Here each protocol pipelines requests after
its quit, and an honest IRC user checks with NAMES, WHOIS and LIST that no ghost remains;
then the same for requests that wait behind a password check when the connection goes.
"""
from __future__ import annotations

import pytest
import pytest_twisted
from argon2 import PasswordHasher
from twisted.internet.error import ConnectionDone
from twisted.python.failure import Failure

from chathub.auth.checkers import Argon2FileChecker
from chathub.hub import errors
from tests.support import Chat, LogCapture, RecorderWorld, history_server

#: what every ghost sends after its quit, in its own protocol's words
AFTER_QUIT = {
    "json": [
        {"type": "join", "room": "#lobby"},
        {"type": "join", "room": "#haunt"},
        {"type": "nick", "nick": "{nick}2"},
        {"type": "message", "target": "#lobby", "text": "boo"},
        {"type": "message", "target": "honest", "text": "boo"},
    ],
    "irc": ["JOIN #lobby", "JOIN #haunt", "NICK {nick}2", "PRIVMSG #lobby :boo", "PRIVMSG honest :boo"],
    "line": ["/join #lobby", "/join #haunt", "/nick {nick}2", "/msg #lobby boo", "/msg honest boo"],
}


def _for(nick: str, requests: list) -> list:
    out = []
    for r in requests:
        if isinstance(r, dict):
            out.append({k: (v.format(nick=nick) if isinstance(v, str) else v) for k, v in r.items()})
        else:
            out.append(r.format(nick=nick))
    return out


async def quit_over_json(server, nick: str) -> None:
    client = await server.ws(nick)
    client.send_together({"type": "quit", "reason": "bye"}, *_for(nick, AFTER_QUIT["json"]))
    await client.wait_closed()


async def quit_over_irc(server, nick: str) -> None:
    client = await server.irc(nick)
    client.send("QUIT :bye", *_for(nick, AFTER_QUIT["irc"]))  # one write: one packet
    await client.closed


async def quit_over_irc_websocket(server, nick: str) -> None:
    client = await server.ws_connect(["text.ircv3.net"], json_messages=False)
    client.send_text(f"NICK {nick}")
    client.send_text(f"USER {nick} 0 * :ghost")
    await client.expect(" 001 ")
    client.send_together("QUIT :bye", *_for(nick, AFTER_QUIT["irc"]))
    await client.wait_closed()


async def quit_over_telnet(server, nick: str) -> None:
    client = await server.connect("line")
    client.send(f"/nick {nick}")
    await client.expect_re(rf"you are {nick}, a guest")
    client.send("/quit bye", *_for(nick, AFTER_QUIT["line"]))
    await client.closed


async def assert_no_ghost(server, honest, nicks: list[str]) -> None:
    """What an honest IRC user sees: only itself in #lobby, no #haunt, no such nicks."""
    names = [l for l in await honest.roundtrip("NAMES #lobby") if l.command == "353"]
    assert [l.params[-1] for l in names] == ["@honest"]
    listing = await honest.roundtrip("LIST")
    assert [l.params[1] for l in listing if l.command == "322"] == ["#lobby"]
    for nick in nicks + [n + "2" for n in nicks]:
        whois = await honest.roundtrip(f"WHOIS {nick}")
        assert [l.command for l in whois][:1] == ["401"], [l.format() for l in whois]
    assert not any("boo" in line for line in honest.texts)
    assert set(server.hub.users) == {"honest"}
    assert server.hub.find_room("#haunt") is None
    assert list(server.hub.find_room("#lobby").members) == ["honest"]


@pytest_twisted.ensureDeferred
async def test_requests_pipelined_after_quit_never_run_on_any_protocol(tmp_path):
    server = await history_server(tmp_path)
    try:
        with LogCapture() as log:
            honest = await server.irc("honest", rooms=["#lobby"], username="honest")
            await quit_over_json(server, "ghostj")
            await quit_over_irc(server, "ghosti")
            await quit_over_irc_websocket(server, "ghostw")
            await quit_over_telnet(server, "ghostt")
            await assert_no_ghost(server, honest, ["ghostj", "ghosti", "ghostw", "ghostt"])
        assert log.failures == []  # no KeyError, nor any other traceback
    finally:
        await server.stop()


def test_the_hub_refuses_a_user_that_has_left():
    """Defence in depth: a ``User`` that quit can no longer join, talk, rename or watch."""
    world = RecorderWorld()
    hub = world.hub
    honest, ghost = world.connect("honest"), world.connect("ghosty")
    hub.join(honest, "#lobby")
    hub.quit(ghost, "bye")
    for call in (
        lambda: hub.join(ghost, "#lobby"),
        lambda: hub.join(ghost, "#haunt"),
        lambda: hub.change_nick(ghost, "ghosty2"),
        lambda: hub.send(ghost, "#lobby", "boo"),
        lambda: hub.send(ghost, "honest", "boo"),
        lambda: hub.invite(ghost, "#haunt", "honest"),
        lambda: hub.monitor(ghost, ["honest"]),
    ):
        with pytest.raises(errors.NotLoggedIn):
            call()
    assert hub.find_room("#haunt") is None and list(hub.find_room("#lobby").members) == ["honest"]
    assert set(hub.users) == {"honest"} and hub.watchers == {}


# -- requests waiting behind a password check when the connection goes ---------------------


@pytest.fixture
def passwd(tmp_path):
    """An argon2 password file with the account ``slowpoke`` (password ``letmein``), hashed
    with the default (real) cost: every check runs in threads and takes a while, so a
    login is still under way when the test acts."""
    path = tmp_path / "passwd"
    path.write_text(f"slowpoke:{PasswordHasher().hash('letmein')}\n")
    return str(path)


def _slow_logins(passwd) -> Chat:
    """A hub and portal whose only checker is the argon2 file: every check is in a thread
    (the portal's clock is the reactor: a check answers when its thread is done)."""
    from chathub.config import Config

    config = Config().with_overrides(auth={"checkers": []})
    return Chat(config, [Argon2FileChecker(passwd, reload_interval=0)])


@pytest_twisted.ensureDeferred
async def test_telnet_lines_behind_a_login_never_run_once_the_connection_is_gone(passwd):
    world = _slow_logins(passwd)
    hub = world.hub
    with LogCapture() as log:
        conn = world.line_conn()
        conn.send(b"/nick slowpoke letmein\r\n/join #haunt\r\nboo\r\n/nick other\r\n")
        assert conn.session.gate.waiting == 3  # behind the login, with reading paused
        assert conn.transport.producerState == "paused"
        conn.disconnect()
        await log.wait_for("completed after the connection closed")
        world.clock.advance(100)
    assert hub.users == {} and hub.rooms == {}
    assert log.failures == []


@pytest_twisted.ensureDeferred
async def test_irc_lines_behind_a_login_never_run_once_the_connection_is_gone(passwd):
    world = _slow_logins(passwd)
    hub = world.hub
    with LogCapture() as log:
        conn = world.irc_conn()
        conn.send("PASS letmein", "NICK slowpoke", "USER u 0 * :x", "JOIN #haunt", "PRIVMSG #haunt :boo")
        assert conn.protocol.session.gate.waiting == 2
        conn.protocol.connectionLost(Failure(ConnectionDone()))
        await log.wait_for("completed after the connection closed")
    assert hub.users == {} and hub.rooms == {}
    assert log.failures == []


@pytest_twisted.ensureDeferred
async def test_json_requests_behind_a_login_never_run_once_the_connection_is_gone(tmp_path, passwd):
    from chathub.auth.portal import account_directory, build_portal

    server = await history_server(tmp_path)
    try:
        # a real-strength hash: the login is still under way when the connection goes
        checker = Argon2FileChecker(passwd, reload_interval=0)
        factory = server.site.websocket_factory
        factory.portal = build_portal(server.hub, server.config, [checker])
        server.hub.accounts = account_directory([checker])
        honest = await server.irc("honest", rooms=["#lobby"], username="honest")
        with LogCapture() as log:
            client = await server.ws_connect()
            await client.expect({"type": "hello"})
            client.send_together(
                {"type": "ping", "token": "read"},
                {"type": "login", "nick": "slowpoke", "password": "letmein"},
                {"type": "join", "room": "#lobby"},
                {"type": "join", "room": "#haunt"},
                {"type": "message", "target": "#lobby", "text": "boo"},
            )
            await client.expect({"type": "pong", "token": "read"})  # the packet was read
            (ws,) = factory.connections
            assert ws.session._logging_in and ws.session.gate.waiting == 3
            ws.real_transport.abortConnection()  # the connection goes (as a failed write finds)
            await log.wait_for("completed after the connection closed")
        await assert_no_ghost(server, honest, ["slowpoke"])
        assert log.failures == []
    finally:
        await server.stop()
