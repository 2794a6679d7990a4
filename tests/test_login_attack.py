"""Password guessing over real sockets (issue 10, item 9): an attacker at 127.0.0.1 guesses
with several connections on every protocol while honest users at 127.0.0.2-4 log in.

The attacker's first failure makes its next attempts wait ``[auth] login_delay`` seconds;
beyond ``login_checks_per_ip`` waiting attempts (and ``login_checks_per_account`` for one
account) it is refused at once, in each protocol's terms. The honest users are served while
the attacker's attempts still wait: every assertion is on the order of events, none on time.
"""
from __future__ import annotations

import base64

import pytest_twisted

from chathub.auth.checkers import Argon2FileChecker
from chathub.auth.hashing import PasswordHashing
from chathub.config import Config
from tests.support import CHEAP_HASHER, LOOPBACK, OPER_HASH, HubServer, until

ATTACKER = "127.0.0.1"
RIGHT = {"alice": "alice-Right-1", "bob": "bob-Right-2", "carol": "carol-Right-3"}
GUESS = "guess-Wr0ng-"


@pytest_twisted.async_yield_fixture
async def server(tmp_path):
    """IRC, telnet and WebSocket listeners on 127.0.0.1 over one hub; accounts in a password file."""
    passwd = tmp_path / "passwd"
    passwd.write_text("".join(f"{name}:{CHEAP_HASHER.hash(pw)}\n" for name, pw in RIGHT.items()))
    config = Config().with_overrides(
        auth={"checkers": [], "login_delay": 4.0, "login_checks_per_ip": 3, "login_checks_per_account": 2},
        irc={"flood_exempt": LOOPBACK, "operators": [{"name": "boss", "password_hash": OPER_HASH}]},
        websocket={"ping_interval": 0.0},
    )
    checker = Argon2FileChecker(str(passwd), hashing=PasswordHashing(CHEAP_HASHER), reload_interval=0)
    s = HubServer(config, [checker])
    yield s
    await s.stop()


async def web(server: HubServer, source: str):
    """A chathub.v1 client from ``source`` that has its hello and sent nothing."""
    client = await server.ws_connect(source=source)
    await client.expect({"type": "hello"})
    return client


def sasl_blob(name: str, password: str) -> str:
    return base64.b64encode(f"{name}\0{name}\0{password}".encode()).decode()


async def sasl_ready(client) -> None:
    """CAP REQ sasl and AUTHENTICATE PLAIN, up to the server's ``AUTHENTICATE +``."""
    client.send("CAP LS 302", "CAP REQ :sasl")
    await client.expect(lambda l: l.command == "CAP" and l.params[1] == "ACK")
    client.send("AUTHENTICATE PLAIN")
    await client.expect("AUTHENTICATE")


async def web_guess(limiter, client, name: str, password: str, token: str) -> None:
    """Send a login and wait until the limiter holds it or it was answered. (A ping sent
    after it would not tell: the session runs nothing else while its login is pending.)"""
    held = limiter.pending
    client.send_json({"type": "login", "nick": name, "password": password, "ref": token})
    await until(lambda: limiter.pending > held or answered(client, token))


def answered(client, token: str) -> list:
    """The replies to the web login ``token`` received so far."""
    return [m for m in client.received if isinstance(m, dict) and m.get("ref") == token]


@pytest_twisted.ensureDeferred
async def test_guessing_is_throttled_on_every_protocol_while_honest_users_log_in(server, captured):
    limiter = server.portal
    # the attacker's first guess is checked at once (nothing is known against it yet)
    a1 = await server.connect("irc", ATTACKER)
    await sasl_ready(a1)
    a1.send(f"AUTHENTICATE {sasl_blob('alice', GUESS + '1')}")
    await a1.expect("904")
    # from now on its attempts wait: two at alice over the web, waiting in their delay ...
    w1, w2, w3, w4 = [await web(server, ATTACKER) for _ in range(4)]
    await web_guess(limiter, w1, "alice", GUESS + "2", "w1")
    await web_guess(limiter, w2, "alice", GUESS + "3", "w2")
    assert answered(w1, "w1") == answered(w2, "w2") == []
    # ... a third at alice is one too many for one account: refused at once
    await web_guess(limiter, w3, "alice", GUESS + "4", "w3")
    (refusal,) = answered(w3, "w3")
    assert refusal["type"] == "error" and refusal["code"] == "login_throttled", refusal
    # a third attempt from the address (at bob) waits too; past that every protocol refuses at once
    await web_guess(limiter, w4, "bob", GUESS + "5", "w4")
    assert answered(w4, "w4") == [] and limiter.in_flight[ATTACKER] == 3
    a1.send("AUTHENTICATE PLAIN")
    await a1.expect("AUTHENTICATE")
    a1.send(f"AUTHENTICATE {sasl_blob('carol', GUESS + '6')}")
    await a1.expect("904")
    pass_guess = await server.connect("irc", ATTACKER)
    pass_guess.send(f"PASS carol:{GUESS}7", "NICK carol", "USER c 0 * :C")
    await pass_guess.expect("464")
    await pass_guess.expect("ERROR")
    t1 = await server.connect("line", ATTACKER)
    t1.send(f"/nick carol {GUESS}8")
    assert "too many logins from your address" in await t1.expect_re(r"^! login as carol refused")
    oper = await server.connect("irc", ATTACKER)
    oper.send("NICK mallory", "USER m 0 * :M")
    await oper.expect("001")
    oper.send(f"OPER boss {GUESS}9")
    assert "too many logins" in (await oper.expect("491")).params[-1]
    irc_ws = await server.ws_connect(["text.ircv3.net"], source=ATTACKER, json_messages=False)
    irc_ws.send_text("CAP LS 302")
    irc_ws.send_text("CAP REQ :sasl")
    await irc_ws.expect("ACK")
    irc_ws.send_text("AUTHENTICATE PLAIN")
    await irc_ws.expect("AUTHENTICATE +")
    irc_ws.send_text(f"AUTHENTICATE {sasl_blob('carol', GUESS + '10')}")
    await irc_ws.expect(" 904 ")
    # the honest users, each from an address of their own, are served while the attacker's
    # attempts still wait: alice over IRC SASL (the very account being guessed) ...
    honest = await server.connect("irc", "127.0.0.2")
    await sasl_ready(honest)
    honest.send(f"AUTHENTICATE {sasl_blob('alice', RIGHT['alice'])}")
    await honest.expect("903")
    honest.send("NICK alice", "USER a 0 * :A", "CAP END")
    await honest.expect("001")
    # ... bob over telnet, carol over the web
    bob = await server.connect("line", "127.0.0.3")
    bob.send(f"/nick bob {RIGHT['bob']}")
    assert "logged in to account bob" in await bob.expect_re(r"^\* you are bob")
    carol = await web(server, "127.0.0.4")
    carol.send_json({"type": "login", "nick": "carol", "password": RIGHT["carol"], "ref": "c"})
    welcome = await carol.expect(lambda m: m.get("ref") == "c")
    assert welcome["type"] == "welcome" and welcome["account"] == "carol", welcome
    assert answered(w1, "w1") == answered(w2, "w2") == answered(w4, "w4") == []
    assert limiter.in_flight == {ATTACKER: 3}
    # the waiting guesses are answered once their delay is over: refused, like any wrong one
    for client, token in ((w1, "w1"), (w2, "w2"), (w4, "w4")):
        reply = await client.expect(lambda m, token=token: m.get("ref") == token)
        assert reply["type"] == "error" and reply["code"] == "login_failed", reply
    assert limiter.in_flight == {} and limiter.pending == 0
    # only the four guesses that were checked count as failures; the refusals were not checks
    assert limiter.addresses.get(ATTACKER, limiter.clock.seconds()).count == 4
    # refusals are logged, never with a password
    captured.find("WebSocket login as alice (alice) from 127.0.0.1 refused")
    captured.assert_no_secret(GUESS, *RIGHT.values())
