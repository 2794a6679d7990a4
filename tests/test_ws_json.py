"""chathub.v1 over a real /ws listener on 127.0.0.1, driven by Autobahn's Twisted client."""
from __future__ import annotations

import pytest
import pytest_twisted

from tests.browser_helpers import connect, connect_failure
from tests.support import V1, HubServer, ws_config, ws_join, ws_login


@pytest.fixture
def server(ws_hub):
    return ws_hub


async def two_in_a_room(port, room="#chat"):
    """alice and bob, logged in as guests, both in ``room``."""
    alice = await ws_login(port, "alice")
    bob = await ws_login(port, "bob")
    await ws_join(alice, room, "alice")
    await ws_join(bob, room, "bob")
    return alice, bob


@pytest_twisted.ensureDeferred
async def test_login_join_and_messages_both_ways(server):
    hub, port = server.hub, server.http_port
    alice = await ws_login(port, "alice")
    bob = await ws_login(port, "bob")
    await ws_join(alice, "#chat", "alice")
    snapshot = await ws_join(bob, "#chat", "bob")
    members = {m["nick"]: m for m in snapshot["members"]}
    assert members["alice"] == {
        "nick": "alice", "account": None, "protocol": "ws", "presence": "online",
        "away": None, "op": True, "voice": False,
    }
    assert members["bob"]["op"] is False
    seen_join = await alice.expect({"type": "join", "room": "#chat"})
    assert seen_join["from"]["nick"] == "bob"

    alice.send_json({"type": "message", "target": "#chat", "text": "hello bob", "ref": "m1"})
    got = await bob.expect({"type": "message", "text": "hello bob"})
    assert got["from"] == {"nick": "alice", "account": None, "protocol": "ws"}
    assert got["target"] == "#chat" and got["id"] and got["time"].endswith("Z")
    own = await alice.expect({"type": "message", "text": "hello bob"})
    assert own["id"] == got["id"]  # the sender sees the same event, server id and time
    ok = await alice.expect({"type": "ok", "ref": "m1"})
    assert ok["id"] == got["id"]

    bob.send_json({"type": "action", "target": "#chat", "text": "waves"})
    act = await alice.expect({"type": "action"})
    assert act["text"] == "waves" and act["from"]["nick"] == "bob"

    bob.send_json({"type": "message", "target": "alice", "text": "psst"})
    private = await alice.expect({"type": "message", "text": "psst"})
    assert private["target"] == "alice"

    bob.send_json({"type": "typing", "target": "#chat", "state": "active"})
    typing = await alice.expect({"type": "typing"})
    assert typing["from"]["nick"] == "bob" and typing["state"] == "active" and typing["target"] == "#chat"

    alice.send_json({"type": "topic", "room": "#chat", "text": "welcome all"})
    topic = await bob.expect({"type": "topic"})
    assert topic["text"] == "welcome all" and topic["room"] == "#chat"

    bob.send_json({"type": "away", "text": "lunch"})
    away = await alice.expect({"type": "away"})
    assert away["from"]["nick"] == "bob" and away["presence"] == "away"
    alice.send_json({"type": "members", "room": "#chat"})
    snap = await alice.expect({"type": "room"})
    assert {m["nick"]: m["presence"] for m in snap["members"]} == {"alice": "online", "bob": "away"}

    alice.send_json({"type": "rooms"})
    rooms = await alice.expect({"type": "rooms"})
    assert rooms["rooms"] == [{"room": "#chat", "topic": "welcome all", "members": 2, "joined": True}]

    bob.send_json({"type": "nick", "nick": "robert"})
    renamed = await alice.expect({"type": "nick"})
    assert renamed["from"]["nick"] == "bob" and renamed["nick"] == "robert"

    bob.send_json({"type": "part", "room": "#chat", "reason": "bye"})
    parted = await alice.expect({"type": "part"})
    assert parted["from"]["nick"] == "robert" and parted["reason"] == "bye"

    bob.send_json({"type": "quit", "reason": "done"})
    closed = await bob.wait_closed()
    assert closed[1] == 1000
    assert hub.find_user("robert") is None


@pytest_twisted.ensureDeferred
async def test_bad_input_gets_error_objects_and_connection_stays_usable(server):
    port = server.http_port
    alice, bob = await two_in_a_room(port)

    alice.send_text("{not json")
    err = await alice.expect({"type": "error"})
    assert err["code"] == "bad_json"
    alice.send_text("[1, 2]")
    assert (await alice.expect({"type": "error"}))["code"] == "bad_request"
    alice.send_json({"text": "no type"})
    assert (await alice.expect({"type": "error"}))["code"] == "missing_field"
    alice.send_json({"type": "dance", "ref": 7})
    err = await alice.expect({"type": "error"})
    assert err == {"type": "error", "code": "unknown_type", "message": "unknown request type 'dance'", "request": "dance", "ref": 7}
    alice.send_json({"type": "message", "target": "#chat"})
    err = await alice.expect({"type": "error"})
    assert (err["code"], err["field"]) == ("missing_field", "text")
    alice.send_json({"type": "message", "target": "#chat", "text": 5})
    assert (await alice.expect({"type": "error"}))["code"] == "invalid_field"
    alice.send_json({"type": "message", "target": "#nowhere", "text": "x"})
    err = await alice.expect({"type": "error"})
    assert (err["code"], err["target"]) == ("no_such_room", "#nowhere")
    alice.send_json({"type": "message", "target": "nobody", "text": "x"})
    assert (await alice.expect({"type": "error"}))["code"] == "no_such_nick"
    alice.send_json({"type": "join", "room": "bad room"})
    assert (await alice.expect({"type": "error"}))["code"] == "bad_room_name"
    alice.send_json({"type": "nick", "nick": "bob"})
    assert (await alice.expect({"type": "error"}))["code"] == "nick_in_use"
    alice.send_json({"type": "login", "nick": "again"})
    assert (await alice.expect({"type": "error"}))["code"] == "already_logged_in"
    alice.send_text(b"\x00\xff binary", binary=True)
    assert (await alice.expect({"type": "error"}))["code"] == "bad_json"

    # still usable, and bob never noticed
    alice.send_json({"type": "message", "target": "#chat", "text": "still here"})
    assert (await bob.expect({"type": "message"}))["text"] == "still here"
    assert not [m for m in bob.received if m.get("type") == "error"]


@pytest_twisted.ensureDeferred
async def test_requests_before_login_and_bad_logins(server):
    hub, port = server.hub, server.http_port
    bob = await ws_login(port, "bob")
    client = await connect(port, protocols=V1)
    await client.expect({"type": "hello"})
    client.send_json({"type": "join", "room": "#chat"})
    assert (await client.expect({"type": "error"}))["code"] == "not_logged_in"
    client.send_json({"type": "login", "nick": "9bad"})
    assert (await client.expect({"type": "error"}))["code"] == "erroneous_nick"
    client.send_json({"type": "login", "nick": "bob"})
    assert (await client.expect({"type": "error"}))["code"] == "nick_in_use"
    # carol is a registered account: no guest login, and the wrong password is refused
    client.send_json({"type": "login", "nick": "carol"})
    err = await client.expect({"type": "error"})
    assert err["code"] == "login_failed" and err["request"] == "login"
    client.send_json({"type": "login", "nick": "carol", "password": "wrong"})
    assert (await client.expect({"type": "error"}))["code"] == "login_failed"
    client.send_json({"type": "login", "nick": "carol", "password": "s3cret"})
    welcome = await client.expect({"type": "welcome"})
    assert welcome["account"] == "carol"
    assert hub.find_user("carol").account == "carol"
    client.send_json({"type": "ping", "token": "t1"})
    assert (await client.expect({"type": "pong"}))["token"] == "t1"
    bob.send_json({"type": "message", "target": "carol", "text": "hi carol"})
    got = await client.expect({"type": "message"})
    assert got["text"] == "hi carol"


@pytest_twisted.ensureDeferred
async def test_oversize_message_closes_with_1009_and_others_unaffected(server):
    port = server.http_port
    alice, bob = await two_in_a_room(port)
    big = {"type": "message", "target": "#chat", "text": "x" * 5000}
    alice.send_json(big)
    closed = await alice.wait_closed()
    assert closed[1] == 1009
    quit_event = await bob.expect({"type": "quit"})
    assert quit_event["from"]["nick"] == "alice" and quit_event["reason"] == "Message too big"
    bob.send_json({"type": "message", "target": "#chat", "text": "alone"})
    assert (await bob.expect({"type": "message"}))["text"] == "alone"


@pytest_twisted.ensureDeferred
async def test_origin_allow_list():
    server = HubServer(ws_config(allowed_origins=["https://chat.example.org"]), protocols=["http"])
    port = server.http_port
    try:
        why = await connect_failure(port, protocols=V1, origin="http://evil.example.com")
        assert "403" in why
        # the page's own origin, an allowed origin, and no Origin header at all
        for origin in (f"http://127.0.0.1:{port}", "https://chat.example.org", None):
            client = await connect(port, protocols=V1, origin=origin)
            await client.expect({"type": "hello"})
            client.sendClose()
        why = await connect_failure(port, protocols=["foo.example"])
        assert "400" in why
    finally:
        await server.stop()


@pytest_twisted.ensureDeferred
async def test_subprotocol_preference_order(server):
    port = server.http_port
    client = await connect(port, protocols=["nonsense", "chathub.v1", "text.ircv3.net"])
    assert client.websocket_protocol_in_use == "chathub.v1"
    await client.expect({"type": "hello"})


@pytest_twisted.ensureDeferred
async def test_flood_is_delayed_then_disconnected():
    config = ws_config(flood_rate=1.0, flood_burst=3, flood_max_queued=5)
    server = HubServer(config, protocols=["http"])
    port = server.http_port
    try:
        bob = await ws_login(port, "bob")
        alice = await connect(port, protocols=V1)
        await alice.expect({"type": "hello"})
        for i in range(12):
            alice.send_json({"type": "ping", "token": str(i)})
        err = await alice.expect({"type": "error"})
        assert err["code"] == "flood"
        closed = await alice.wait_closed()
        assert closed[1] == 4008
        # the burst was answered at once, the rest held back, then dropped with the connection
        tokens = [m["token"] for m in alice.received if m["type"] == "pong"]
        assert 3 <= len(tokens) < 12 and tokens == [str(i) for i in range(len(tokens))]
        bob.send_json({"type": "ping", "token": "ok"})
        assert (await bob.expect({"type": "pong"}))["token"] == "ok"
    finally:
        await server.stop()


@pytest_twisted.ensureDeferred
async def test_history_unavailable_without_store(server):
    port = server.http_port
    alice = await ws_login(port, "alice")
    await ws_join(alice, "#chat", "alice")
    alice.send_json({"type": "history", "target": "#chat", "limit": 10})
    assert (await alice.expect({"type": "error"}))["code"] == "history_unavailable"
    alice.send_json({"type": "register", "password": "long enough"})
    assert (await alice.expect({"type": "error"}))["code"] == "registration_unavailable"


@pytest_twisted.async_yield_fixture
async def stored_server(tmp_path):
    server = await HubServer.stored(tmp_path, ws_config(), protocols=["http"])
    yield server.hub, server.http_port
    await server.stop()


@pytest_twisted.ensureDeferred
async def test_history_paging_and_account_registration(stored_server):
    hub, port = stored_server
    alice = await ws_login(port, "alice")
    hello = alice.received[0]
    assert hello["features"] == {"guests": True, "history": True, "register": True}
    await ws_join(alice, "#chat", "alice")
    for i in range(7):
        alice.send_json({"type": "message", "target": "#chat", "text": f"line {i}", "ref": i})
    await alice.expect({"type": "ok", "ref": 6})

    alice.send_json({"type": "history", "target": "#chat", "limit": 3, "ref": "h1"})
    page = await alice.expect({"type": "history", "ref": "h1"})
    assert [e["text"] for e in page["events"]] == ["line 4", "line 5", "line 6"]
    assert page["more"] is True and page["target"] == "#chat"
    assert all(e["id"] and e["time"] and e["from"]["nick"] == "alice" for e in page["events"])
    alice.send_json({"type": "history", "target": "#chat", "limit": 3, "before": page["events"][0]["id"], "ref": "h2"})
    older = await alice.expect({"type": "history", "ref": "h2"})
    assert [e["text"] for e in older["events"]] == ["line 1", "line 2", "line 3"] and older["more"] is True
    alice.send_json({"type": "history", "target": "#chat", "limit": 3, "before": older["events"][0]["id"], "ref": "h3"})
    oldest = await alice.expect({"type": "history", "ref": "h3"})
    assert [e["text"] for e in oldest["events"]] == ["line 0"] and oldest["more"] is False
    # catch-up after a reconnect: everything after the last id seen
    alice.send_json({"type": "history", "target": "#chat", "after": older["events"][-1]["id"], "ref": "h4"})
    newer = await alice.expect({"type": "history", "ref": "h4"})
    assert [e["text"] for e in newer["events"]] == ["line 4", "line 5", "line 6"] and newer["more"] is False
    alice.send_json({"type": "history", "target": "#elsewhere"})
    assert (await alice.expect({"type": "error"}))["code"] == "not_on_room"
    alice.send_json({"type": "history", "target": "#chat", "limit": 0})
    assert (await alice.expect({"type": "error"}))["code"] == "invalid_field"

    # register the guest nick as an account, then log in with it from a new connection
    alice.send_json({"type": "register", "password": "correct horse", "ref": "r"})
    registered = await alice.expect({"type": "registered"})
    assert registered["account"] == "alice"
    alice.send_json({"type": "quit"})
    await alice.wait_closed()
    guest = await connect(port, protocols=V1)
    await guest.expect({"type": "hello"})
    guest.send_json({"type": "login", "nick": "alice"})
    assert (await guest.expect({"type": "error"}))["code"] == "login_failed"
    again = await ws_login(port, "alice", password="correct horse")
    assert again.received[-1]["account"] == "alice"


@pytest_twisted.ensureDeferred
async def test_server_shutdown_closes_with_1001():
    server = HubServer(ws_config(), protocols=["http"])
    hub, site, port = server.hub, server.site, server.http_port
    try:
        alice = await ws_login(port, "alice")
        bob = await ws_login(port, "bob")
        await site.websocket_factory.going_away()
        assert (await alice.wait_closed())[1] == 1001
        assert (await bob.wait_closed())[1] == 1001
        assert hub.users == {}
    finally:
        await server.stop()
