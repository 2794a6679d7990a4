"""An account's rooms follow it over real sockets: joined from one chathub.v1 connection,
they are joined again when the account logs in on a second WebSocket connection, over
telnet and over IRC ([irc] autojoin, on by default); a part or kick takes a room off."""
from __future__ import annotations

import sqlite3
import time

import pytest

import pytest_twisted

from chathub.events import EventIds
from tests.browser_helpers import connect
from tests.support import V1, HubServer, irc_user, ws_config


async def account_ws(port: int, nick: str) -> tuple[object, dict]:
    client = await connect(port, protocols=V1)
    await client.expect({"type": "hello"})
    client.send_json({"type": "login", "nick": nick, "account": "alice", "password": "correct-horse"})
    return client, await client.expect({"type": "welcome"})


async def rejoined_over_telnet_and_irc(server, rooms: list[str]):
    """alice logs in over telnet (joined to ``rooms``, in order; then quits) and over IRC
    with SASL PLAIN (the same JOINs); the IRC client, still connected."""
    tel = await server.connect("line")
    tel.send("/nick alice correct-horse")
    await tel.expect_re(r"you are alice, logged in to account alice")
    for room in rooms:
        await tel.expect_re(rf"^\* you joined {room}$")
    tel.send("/quit")
    await tel.closed
    irc = await irc_user(server, "alice", caps=[], password="correct-horse")
    await irc.expect_count(r" JOIN ", len(rooms))
    assert [line.params[0] for line in irc.lines if line.command == "JOIN"] == rooms, irc.dump()
    return irc


async def stored(tmp_path, **irc):
    config = ws_config()
    if irc:
        config = config.with_overrides(irc=irc)
    server = await HubServer.stored(tmp_path, config, protocols=["http", "line", "irc"])
    await server.accounts.create_account("alice", "correct-horse")
    return server


@pytest_twisted.ensureDeferred
async def test_rooms_follow_the_account_to_websocket_telnet_and_irc(tmp_path):
    server = await stored(tmp_path)
    try:
        port = server.http_port
        first, _ = await account_ws(port, "alice_web")
        for room in ("#one", "#two", "#three"):
            first.send_json({"type": "join", "room": room, "ref": room})
            await first.expect({"type": "ok", "ref": room})
        first.send_json({"type": "part", "room": "#two", "ref": "p"})
        await first.expect({"type": "ok", "ref": "p"})

        # a second browser: the rooms come back, each with its snapshot, in joining order
        second, welcome = await account_ws(port, "alice_phone")
        assert welcome["account"] == "alice"
        assert (await second.expect({"type": "room", "room": "#one"}))["room"] == "#one"
        await second.expect({"type": "room", "room": "#three"})
        assert not [m for m in second.received if m.get("room") == "#two"]
        # a token login is the same account: it gets them too
        token = await connect(port, protocols=V1)
        await token.expect({"type": "hello"})
        token.send_json({"type": "login", "nick": "alice_tab", "token": welcome["token"]})
        await token.expect({"type": "welcome"})
        await token.expect({"type": "room", "room": "#three"})

        # telnet, then IRC (autojoin on by default): SASL PLAIN logs in as the nick's account
        irc = await rejoined_over_telnet_and_irc(server, ["#one", "#three"])

        # a kick takes the room off the list: the next login is not in it
        server.hub.kick(server.hub.find_user("alice_web"), "#three", "alice", "out")
        await irc.expect_re(r" KICK #three alice ")
        again, _ = await account_ws(port, "alice_again")
        await again.expect({"type": "room", "room": "#one"})
        again.send_json({"type": "ping", "token": "after"})
        await again.expect({"type": "pong"})
        assert not [m for m in again.received if m.get("type") == "room" and m.get("room") == "#three"]
        # guests get nothing back
        guest = await server.connect("line")
        guest.send("/nick bob")
        await guest.expect_re(r"you are bob, a guest")
    finally:
        await server.stop()


@pytest_twisted.ensureDeferred
async def test_irc_autojoin_off(tmp_path):
    server = await stored(tmp_path, autojoin=False)
    try:
        first, _ = await account_ws(server.http_port, "alice_web")
        first.send_json({"type": "join", "room": "#one", "ref": 1})
        await first.expect({"type": "ok", "ref": 1})
        irc = await irc_user(server, "alice", caps=[], password="correct-horse")
        lines = await irc.roundtrip("WHOIS alice")
        assert not [line for line in irc.lines if line.command == "JOIN"] and lines
        assert server.hub.find_user("alice").rooms == {}
    finally:
        await server.stop()


@pytest.mark.parametrize("one_instant", [False, True], ids=["clock", "one-millisecond"])
@pytest_twisted.ensureDeferred
async def test_private_conversations_are_listed_on_a_second_connection(tmp_path, one_instant):
    """Latest first, also when both messages fall in one millisecond (a fast machine: the
    list came back in the store's oldest-first order once, the tie kept by a stable sort)."""
    server = await stored(tmp_path)
    if one_instant:
        instant = time.time() - 60
        server.hub.ids = EventIds(clock=lambda: instant)
    try:
        port = server.http_port
        first, _ = await account_ws(port, "alice")
        bob = await server.irc("bob")
        carol = await server.irc("carol")
        first.send_json({"type": "message", "target": "bob", "text": "hi bob", "ref": 1})
        await first.expect({"type": "ok", "ref": 1})
        await bob.expect_re("hi bob")
        carol.send("PRIVMSG alice :hi alice")
        await first.expect({"type": "message", "text": "hi alice"})
        first.send_json({"type": "quit"})
        await first.wait_closed()

        second, _ = await account_ws(port, "alice")
        second.send_json({"type": "conversations", "ref": "c"})
        listed = await second.expect({"type": "conversations"})
        assert [c["target"] for c in listed["conversations"]] == ["carol", "bob"]  # latest first
        second.send_json({"type": "conversations", "limit": 1, "ref": "c1"})
        one = await second.expect({"type": "conversations", "ref": "c1"})
        assert [c["target"] for c in one["conversations"]] == ["carol"]
        second.send_json({"type": "conversations", "limit": 0})
        assert (await second.expect({"type": "error"}))["code"] == "invalid_field"
    finally:
        await server.stop()


@pytest_twisted.ensureDeferred
async def test_a_keyed_room_is_rejoined_with_its_key_on_every_protocol(tmp_path, captured):
    """A +k room is kept with the key (in the store, never logged), and a key changed while
    the account is in the room replaces it: the rejoin works over chathub.v1, telnet and IRC."""
    server = await stored(tmp_path)
    try:
        port = server.http_port
        bob = await irc_user(server, "bob", caps=[], rooms=["#vault", "#plain"])
        bob.send("MODE #vault +k sesame-1")
        await bob.expect_re(r" MODE #vault \+k sesame-1")
        first, _ = await account_ws(port, "alice_web")
        first.send_json({"type": "join", "room": "#vault", "ref": "bad"})
        assert (await first.expect({"ref": "bad"}))["code"] == "bad_key"
        first.send_json({"type": "join", "room": "#vault", "key": "sesame-1", "ref": "v"})
        await first.expect({"type": "ok", "ref": "v"})
        first.send_json({"type": "join", "room": "#plain", "ref": "p"})
        await first.expect({"type": "ok", "ref": "p"})
        # the key changes while alice is in the room: the new one is kept
        bob.send("MODE #vault +k sesame-2")
        await first.expect({"type": "mode", "room": "#vault"})
        first.send_json({"type": "quit"})
        await first.wait_closed()
        await server.store.check_writable()  # a write in turn after the key's: it is committed
        db = sqlite3.connect(server.config.data_path(server.config.storage.sqlite_path))
        rows = db.execute("SELECT room, room_key FROM account_rooms ORDER BY joined").fetchall()
        db.close()
        assert rows == [("#vault", "sesame-2"), ("#plain", None)]

        # chathub.v1: both rooms come back, no error
        second, _ = await account_ws(port, "alice_phone")
        await second.expect({"type": "room", "room": "#vault"})
        await second.expect({"type": "room", "room": "#plain"})
        assert not [m for m in second.received if m.get("type") == "error"], second.received
        assert "key" not in str([m for m in second.received if m.get("type") == "room"])  # never sent back
        second.send_json({"type": "quit"})
        await second.wait_closed()

        irc = await rejoined_over_telnet_and_irc(server, ["#vault", "#plain"])
        assert not [line for line in irc.lines if line.command == "475"]

        # the key is removed (-k): the kept room forgets it too
        bob.send("MODE #vault -k *")
        await irc.expect_re(r" MODE #vault -k")
        await server.store.check_writable()
        assert await server.store.account_rooms("alice") == [("#vault", None), ("#plain", None)]
        assert not captured.matching("sesame-1") and not captured.matching("sesame-2")
    finally:
        await server.stop()
