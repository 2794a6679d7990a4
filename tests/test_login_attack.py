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
from argon2 import PasswordHasher
from twisted.internet import defer

from chathub.auth.checkers import Argon2FileChecker
from chathub.auth.hashing import PasswordHashing
from chathub.auth.portal import account_directory, build_portal
from chathub.config import Config
from chathub.hub.service import ChatHub
from chathub.protocols.irc import IrcFactory
from chathub.protocols.line import LineFactory
from chathub.protocols.web import build_site
from tests.browser_helpers import close_clients, connect
from tests.support import connect_irc, until
from tests.test_logging import captured  # noqa: F401 (the fixture)

ATTACKER = "127.0.0.1"
RIGHT = {"alice": "alice-Right-1", "bob": "bob-Right-2", "carol": "carol-Right-3"}
GUESS = "guess-Wr0ng-"
OPER_HASH = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1).hash("oper-Right-4")


class Server:
    """IRC, telnet and WebSocket listeners on 127.0.0.1 over one hub; accounts in a password file."""

    def __init__(self, tmp_path) -> None:
        from twisted.internet import reactor

        cheap = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
        passwd = tmp_path / "passwd"
        passwd.write_text("".join(f"{name}:{cheap.hash(pw)}\n" for name, pw in RIGHT.items()))
        self.config = Config().with_overrides(
            auth={"checkers": [], "login_delay": 4.0, "login_checks_per_ip": 3, "login_checks_per_account": 2},
            irc={"flood_exempt": ["127.0.0.0/8"], "operators": [{"name": "boss", "password_hash": OPER_HASH}]},
            websocket={"ping_interval": 0.0},
        )
        self.checker = Argon2FileChecker(str(passwd), hashing=PasswordHashing(cheap), reload_interval=0)
        self.hub = ChatHub(self.config, accounts=account_directory([self.checker]))
        self.portal = build_portal(self.hub, self.config, [self.checker])
        listen = lambda factory: reactor.listenTCP(0, factory, interface="127.0.0.1")  # noqa: E731
        self.ports = {
            "irc": listen(IrcFactory.for_hub(self.hub, self.portal, self.config)),
            "line": listen(LineFactory(self.hub, self.portal, self.config)),
            "http": listen(build_site(self.hub, self.portal, self.config)),
        }
        self.clients: list = []

    def port(self, kind: str) -> int:
        return self.ports[kind].getHost().port

    async def irc(self, source: str):
        return await connect_irc(self.port("irc"), self.clients, source=source)

    async def telnet(self, source: str):
        return await connect_irc(self.port("line"), self.clients, source=source)

    async def web(self, source: str):
        client = await connect(self.port("http"), protocols=["chathub.v1"], source=source)
        await client.expect({"type": "hello"})
        return client

    async def stop(self) -> None:
        for client in self.clients:  # IRC and telnet: hang up, then wait for the close
            client.transport.abortConnection()
            await client.closed
        await close_clients()
        for port in self.ports.values():
            await defer.maybeDeferred(port.stopListening)


@pytest_twisted.async_yield_fixture
async def server(tmp_path):
    s = Server(tmp_path)
    yield s
    await s.stop()


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
    a1 = await server.irc(ATTACKER)
    await sasl_ready(a1)
    a1.send(f"AUTHENTICATE {sasl_blob('alice', GUESS + '1')}")
    await a1.expect("904")
    # from now on its attempts wait: two at alice over the web, waiting in their delay ...
    w1, w2, w3, w4 = [await server.web(ATTACKER) for _ in range(4)]
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
    pass_guess = await server.irc(ATTACKER)
    pass_guess.send(f"PASS carol:{GUESS}7", "NICK carol", "USER c 0 * :C")
    await pass_guess.expect("464")
    await pass_guess.expect("ERROR")
    t1 = await server.telnet(ATTACKER)
    t1.send(f"/nick carol {GUESS}8")
    assert "too many logins from your address" in await t1.expect_re(r"^! login as carol refused")
    oper = await server.irc(ATTACKER)
    oper.send("NICK mallory", "USER m 0 * :M")
    await oper.expect("001")
    oper.send(f"OPER boss {GUESS}9")
    assert "too many logins" in (await oper.expect("491")).params[-1]
    irc_ws = await connect(server.port("http"), protocols=["text.ircv3.net"], json_messages=False, source=ATTACKER)
    irc_ws.send_text("CAP LS 302")
    irc_ws.send_text("CAP REQ :sasl")
    await irc_ws.expect("ACK")
    irc_ws.send_text("AUTHENTICATE PLAIN")
    await irc_ws.expect("AUTHENTICATE +")
    irc_ws.send_text(f"AUTHENTICATE {sasl_blob('carol', GUESS + '10')}")
    await irc_ws.expect(" 904 ")
    # the honest users, each from an address of their own, are served while the attacker's
    # attempts still wait: alice over IRC SASL (the very account being guessed) ...
    honest = await server.irc("127.0.0.2")
    await sasl_ready(honest)
    honest.send(f"AUTHENTICATE {sasl_blob('alice', RIGHT['alice'])}")
    await honest.expect("903")
    honest.send("NICK alice", "USER a 0 * :A", "CAP END")
    await honest.expect("001")
    # ... bob over telnet, carol over the web
    bob = await server.telnet("127.0.0.3")
    bob.send(f"/nick bob {RIGHT['bob']}")
    assert "logged in to account bob" in await bob.expect_re(r"^\* you are bob")
    carol = await server.web("127.0.0.4")
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
