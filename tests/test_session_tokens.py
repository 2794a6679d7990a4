"""Session tokens over real sockets: a chathub.v1 password login gets a token that logs the
same account in again; it expires, it is revoked by logout, and "log out everywhere" revokes
them all and ends the web and IRC connections that hold one; the store keeps only digests,
at most [auth] max_tokens per account."""
from __future__ import annotations

import base64
import hashlib
import sqlite3

import pytest_twisted
from twisted.internet import task

from chathub.store.schema import LATEST_VERSION, POSTGRES, SQLITE
from tests.browser_helpers import connect
from tests.store_fixtures import *  # noqa: F401,F403 (fixtures)
from tests.support import V1, HubServer, irc_user, until, ws_config, ws_login
from tests.test_store_sequence import _connect, create_schema


async def token_login(port: int, nick: str, token: str) -> tuple[object, dict]:
    """A new chathub.v1 connection offering ``token``; the client and the answer."""
    client = await connect(port, protocols=V1)
    await client.expect({"type": "hello"})
    client.send_json({"type": "login", "nick": nick, "token": token, "ref": "t"})
    answer = await client.expect(lambda m: m.get("type") in ("welcome", "error"))
    return client, answer


async def password_login(port: int, nick: str) -> tuple[object, dict]:
    """A new chathub.v1 connection logged in to account alice as ``nick``; the welcome."""
    client = await connect(port, protocols=V1)
    await client.expect({"type": "hello"})
    client.send_json({"type": "login", "nick": nick, "account": "alice", "password": "correct horse"})
    welcome = await client.expect({"type": "welcome"})
    return client, welcome


async def quit_all(clients) -> None:
    """Each chathub.v1 client quits; returns once every connection closed."""
    for client in clients:
        client.send_json({"type": "quit"})
        await client.wait_closed()


async def registered(tmp_path, **auth):
    config = ws_config()
    if auth:
        config = config.with_overrides(auth=auth)
    server = await HubServer.stored(tmp_path, config, protocols=["http", "irc"])
    await server.accounts.create_account("alice", "correct horse")
    return server


@pytest_twisted.ensureDeferred
async def test_token_logs_in_again_expires_and_is_revoked(tmp_path):
    server = await registered(tmp_path, token_lifetime=100.0)
    try:
        port = server.http_port
        clock = task.Clock()
        clock.advance(1_000_000)
        server.hub.session_tokens.clock = clock  # expiry measured on a clock the test moves
        first = await ws_login(port, "alice", password="correct horse")
        welcome = first.received[-1]
        token = welcome["token"]
        assert token.startswith("cht_") and welcome["token_expires"] == 1_000_100
        # stored as its sha256 digest only
        rows = sqlite3.connect(server.config.data_path(server.config.storage.sqlite_path)).execute(
            "SELECT digest, account FROM session_tokens").fetchall()
        assert rows == [(hashlib.sha256(token.encode()).hexdigest(), "alice")]

        again, answer = await token_login(port, "alice2", token)
        assert answer["type"] == "welcome" and answer["account"] == "alice" and "token" not in answer
        again.send_json({"type": "quit"})
        await again.wait_closed()
        _, wrong = await token_login(port, "mallory", token + "x")
        assert wrong["type"] == "error" and wrong["code"] == "login_failed"

        clock.advance(100)  # expired
        _, late = await token_login(port, "alice3", token)
        assert late["code"] == "login_failed" and "expired" in late["message"]

        # a fresh token, revoked by this session's logout; another one survives it
        clock.advance(1)
        second, welcome = await password_login(port, "alice4")
        kept = welcome["token"]
        third, answer = await token_login(port, "alice5", kept)
        assert answer["type"] == "welcome"
        other, welcome = await password_login(port, "alice6")
        revoked = welcome["token"]
        other.send_json({"type": "logout", "ref": "o"})
        assert (await other.expect({"type": "logged_out"}))["revoked"] == 1
        await other.wait_closed()
        _, refused = await token_login(port, "alice7", revoked)
        assert refused["code"] == "login_failed"
        fourth, answer = await token_login(port, "alice8", kept)
        assert answer["type"] == "welcome"
        # log out everywhere: every token of the account goes, and every live session that
        # logged in with one or was given one is told, then closed (4000); this one quits itself
        guest_before = await ws_login(port, "carol")
        fourth.send_json({"type": "logout", "everywhere": True})
        assert (await fourth.expect({"type": "logged_out"}))["revoked"] >= 2
        assert "reason" not in fourth.received[-1]
        assert (await fourth.wait_closed())[1] == 1000
        for ended in (first, second, third):
            told = await ended.expect({"type": "logged_out"})
            assert "another device" in told["reason"], told
            assert (await ended.wait_closed())[1] == 4000
        assert not [nick for nick in ("alice", "alice4", "alice5") if server.hub.find_user(nick)]
        _, refused = await token_login(port, "alice9", kept)
        assert refused["code"] == "login_failed"
        # guests get no token and revoke nothing
        guest = await ws_login(port, "bob")
        assert "token" not in guest.received[-1]
        guest.send_json({"type": "logout", "everywhere": "yes"})
        assert (await guest.expect({"type": "error"}))["code"] == "invalid_field"
        guest.send_json({"type": "logout"})
        assert (await guest.expect({"type": "logged_out"}))["revoked"] == 0
        assert guest_before.close_info is None  # a guest holds no token: nothing ended it
        await quit_all([guest_before])
    finally:
        await server.stop()


@pytest_twisted.ensureDeferred
async def test_token_as_irc_sasl_plain_password(tmp_path):
    server = await registered(tmp_path)
    try:
        await server.accounts.create_account("bob", "bob-password")
        web, welcome = await password_login(server.http_port, "alice_web")
        token = welcome["token"]
        irc = await irc_user(server, "alice", caps=[], password=token)
        assert server.hub.find_user("alice").account == "alice"
        # another account's name with alice's token: refused (904), nothing logged in
        other = await server.connect("irc")
        other.send("CAP LS 302", "CAP REQ :sasl", "AUTHENTICATE PLAIN")
        await other.expect("AUTHENTICATE")
        other.send("AUTHENTICATE " + base64.b64encode(f"bob\0bob\0{token}".encode()).decode())
        assert (await other.expect(lambda line: line.command in ("903", "904"))).command == "904"
        # log out everywhere from the web: the IRC connection that logged in with the token ends
        watcher = await irc_user(server, "watcher", caps=[], rooms=["#r"])
        irc.send("JOIN #r")
        await watcher.expect_re(r":alice!\S+ JOIN #r")
        web.send_json({"type": "logout", "everywhere": True})
        await web.expect({"type": "logged_out"})
        await irc.expect_re(r"^ERROR :Logged out: the session token this connection logged in with was revoked")
        await irc.closed
        await watcher.expect_re(r":alice!\S+ QUIT :Logged out: the session token")
        assert server.hub.find_user("alice") is None
        watcher.send("QUIT")
        await watcher.closed
    finally:
        await server.stop()


@pytest_twisted.ensureDeferred
async def test_tokens_per_account_are_bounded(tmp_path):
    server = await registered(tmp_path, max_tokens=2)
    try:
        port = server.http_port
        clients, tokens = [], []
        for i in range(3):
            client, welcome = await password_login(port, f"alice{i}")
            clients.append(client)
            tokens.append(welcome["token"])
        _, oldest = await token_login(port, "x1", tokens[0])
        assert oldest["code"] == "login_failed"  # the oldest went when the third was issued
        for i, token in enumerate(tokens[1:]):
            client, answer = await token_login(port, f"y{i}", token)
            assert answer["type"] == "welcome"
            clients.append(client)
        await quit_all(clients)
    finally:
        await server.stop()


@pytest_twisted.ensureDeferred
async def test_version_3_database_gains_session_tokens(store_factory):
    """A database chathub with schema version 3 wrote is upgraded in place: its accounts
    stay, tokens can be stored, looked up (only while live) and revoked, and account rooms
    kept, with their keys."""
    dialect = SQLITE if store_factory.backend == "sqlite" else POSTGRES
    conn, p = _connect(store_factory)
    try:
        create_schema(conn, dialect, 3)
        conn.execute(
            f"INSERT INTO accounts (name_folded, name, password_hash, created) VALUES ({p}, {p}, {p}, {p})",
            ("alice", "Alice", "h", 1.0),
        )
    finally:
        conn.close()
    store = await store_factory()
    assert LATEST_VERSION >= 4 and (await store.get_account("ALICE")).name == "Alice"
    # version 6: the account has no SCRAM keys until they are made from its password
    assert (await store.get_account("alice")).scram is None
    assert await store.set_scram_keys("alice", "SCRAM-SHA-256$keys", "other-hash") is False
    assert await store.set_scram_keys("ALICE", "SCRAM-SHA-256$keys", "h") is True
    assert (await store.get_account("alice")).scram == "SCRAM-SHA-256$keys"
    await store.add_token("d1", "Alice", 10.0, 20.0, 2)
    await store.add_token("d2", "alice", 11.0, 21.0, 2)
    assert await store.token_account("d1", 19.0) == "Alice"  # the name as registered
    assert await store.token_account("d1", 20.0) is None  # expired
    await store.add_token("d3", "alice", 12.0, 22.0, 2)  # d1, the oldest, goes
    assert await store.token_account("d1", 0.0) is None and await store.token_account("d3", 0.0) == "Alice"
    assert await store.revoke_token("d2") is True and await store.revoke_token("d2") is False
    assert await store.revoke_tokens("ALICE") == 1 and await store.token_account("d3", 0.0) is None
    # version 5: the account's rooms, the oldest beyond ``keep`` forgotten
    for at, room in enumerate(["#One", "#two", "#three"]):
        await store.add_account_room("ALICE", room, float(at), 2)
    assert await store.account_rooms("alice") == [("#two", None), ("#three", None)]
    # joined again (with the room's key, version 6): keeps its place, takes the key
    await store.add_account_room("alice", "#TWO", 9.0, 2, "k1")
    assert await store.account_rooms("alice") == [("#two", "k1"), ("#three", None)]
    assert await store.remove_account_room("alice", "#three") is True
    assert await store.remove_account_room("alice", "#three") is False
    assert await store.account_rooms("alice") == [("#two", "k1")]


@pytest_twisted.ensureDeferred
async def test_a_password_change_revokes_every_token_and_logs_their_sessions_out(tmp_path, captured):
    server = await registered(tmp_path)
    try:
        port = server.http_port
        changer, welcome = await password_login(port, "alice_web")
        other, other_welcome = await password_login(port, "alice_phone")
        irc = await irc_user(server, "alice", caps=[], password=other_welcome["token"])  # SASL as alice
        guest = await ws_login(port, "bob")
        guest.send_json({"type": "password", "password": "x", "new_password": "yyyy", "ref": "g"})
        assert (await guest.expect({"ref": "g"}))["code"] == "registration_unavailable"
        changer.send_json({"type": "password", "password": "wrong horse", "new_password": "new horse", "ref": 1})
        refused = await changer.expect({"ref": 1})
        assert refused["code"] == "login_failed" and refused["field"] == "password"
        changer.send_json({"type": "password", "password": "correct horse", "new_password": "abc", "ref": 2})
        assert (await changer.expect({"ref": 2}))["code"] == "weak_password"
        assert other.close_info is None  # nothing changed yet

        changer.send_json({"type": "password", "password": "correct horse", "new_password": "new horse", "ref": 3})
        changed = await changer.expect({"ref": 3})
        assert changed["type"] == "password_changed" and changed["revoked"] == 2
        assert changed["token"].startswith("cht_") and changed["token"] != welcome["token"]
        # the other web session and the IRC connection that held a token are logged out
        assert "another device" in (await other.expect({"type": "logged_out"}))["reason"]
        assert (await other.wait_closed())[1] == 4000
        await irc.expect_re(r"^ERROR :Logged out")
        await irc.closed
        # the old password and the old tokens are refused; the new password and token work
        for token in (welcome["token"], other_welcome["token"]):
            _, answer = await token_login(port, "alice_old", token)
            assert answer["code"] == "login_failed"
        again = await connect(port, protocols=V1)
        await again.expect({"type": "hello"})
        again.send_json({"type": "login", "nick": "alice2", "account": "alice", "password": "correct horse"})
        assert (await again.expect({"type": "error"}))["code"] == "login_failed"
        kept, answer = await token_login(port, "alice3", changed["token"])
        assert answer["type"] == "welcome"
        fresh = await connect(port, protocols=V1)
        await fresh.expect({"type": "hello"})
        fresh.send_json({"type": "login", "nick": "alice4", "account": "alice", "password": "new horse"})
        assert (await fresh.expect(lambda m: m.get("type") in ("welcome", "error")))["type"] == "welcome"
        assert changer.close_info is None  # the session that changed it stays, with its new token
        assert not captured.matching("new horse") and not captured.matching(changed["token"])
        captured.find("password of account alice changed via ws")
        await quit_all([changer, kept, fresh, guest])
    finally:
        await server.stop()


@pytest_twisted.ensureDeferred
async def test_check_ends_only_the_sessions_whose_token_left_the_store(store):
    """Two nodes' ``SessionTokens`` on one store: what one revokes, the other's ``check``
    finds gone (the store is the truth) and ends only those sessions: a token issued after
    the revocation and an expired one stay, and a session that starts watching a token
    just after a revocation of its account has it checked too (its login may have read the
    token before the revocation committed)."""
    from chathub.auth.tokens import RECENT_REVOCATION, SessionTokens

    await store.create_account("Alice", "$argon2id$fake")
    clock = task.Clock()
    clock.advance(1000)
    here, there = SessionTokens(store, 100.0, 10, clock), SessionTokens(store, 100.0, 10, clock)
    told: list[str] = []
    here.announce = told.append
    ended: list[str] = []
    old, _ = await here.issue("alice")
    old_too, _ = await here.issue("alice")
    there.watch(old, "Alice", lambda: ended.append("old"))
    there.watch(old_too, "alice", lambda: ended.append("old_too"))
    assert await there.check(None) == 0 and ended == []  # both in the store

    assert await here.revoke_all("ALICE") == 2
    assert told == ["alice"] and ended == []  # this node's doorbell, not yet heard there
    fresh, _ = await here.issue("alice")  # issued after the revocation
    there.watch(fresh, "alice", lambda: ended.append("fresh"))
    assert await there.check("alice") == 2
    assert sorted(ended) == ["old", "old_too"]

    clock.advance(200)  # fresh has expired: expired is not revoked, its session stays
    assert await there.check(None) == 0
    assert sorted(ended) == ["old", "old_too"]

    # a login that read its token just before a revocation elsewhere starts watching after
    # the check that revocation caused: watching checks it again
    late, _ = await here.issue("alice")
    await here.revoke(late, "alice")
    assert told == ["alice", "alice"]
    checked = there.check("alice")  # the doorbell, before the late session watches
    await checked
    there.watch(late, "alice", lambda: ended.append("late"))
    await until(lambda: "late" in ended)
    # long after a revocation, a live token's session stays
    clock.advance(RECENT_REVOCATION + 1)
    kept, _ = await here.issue("alice")
    there.watch(kept, "alice", lambda: ended.append("kept"))
    assert await there.check(None) == 0 and "kept" not in ended
