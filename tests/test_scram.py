"""SASL SCRAM-SHA-256 (RFC 5802/7677): the keys an account keeps, the server's exchange, and
IRC logins with it over real sockets, checked against an independent client (scramp)."""
from __future__ import annotations

import base64

import pytest
import pytest_twisted
import scramp

from chathub.auth.scram import ScramError, ScramExchange, ScramKeys, derive_keys, saslprep
from tests.support import irc_world


def _exchange(password_given: str, keys: ScramKeys, name: str = "Alice"):
    """One exchange between scramp's client and ours; (client, proof, accepted)."""
    client = scramp.ScramClient(["SCRAM-SHA-256"], name, password_given)
    server = ScramExchange()
    assert server.first(client.get_client_first().encode()) == name
    client.set_server_first(server.server_first(keys.salt, keys.iterations).decode())
    proof = server.final(client.get_client_final().encode())
    return client, proof, proof.check(keys)


def test_keys_match_an_independent_implementation():
    salt = b"0123456789abcdef"
    ours = derive_keys("pässword", salt, 4096)
    theirs = scramp.ScramMechanism("SCRAM-SHA-256").make_auth_info("pässword", iteration_count=4096, salt=salt)
    assert (ours.salt, ours.stored_key, ours.server_key, ours.iterations) == tuple(theirs)
    assert ScramKeys.decode(ours.encode()) == ours
    assert ours.encode().startswith("SCRAM-SHA-256$4096:")
    assert "pässword" not in ours.encode()
    for damaged in ("", "SCRAM-SHA-256$x", ours.encode()[:-8], "SCRAM-SHA-1$" + ours.encode()[14:]):
        assert ScramKeys.decode(damaged) is None


def test_exchange_with_an_independent_client():
    keys = derive_keys("correct horse")
    client, proof, accepted = _exchange("correct horse", keys)
    assert accepted
    client.set_server_final(ScramExchange.server_final(proof).decode())  # scramp checks our signature
    _client, _proof, accepted = _exchange("wrong horse", keys)
    assert not accepted


def test_exchange_refuses_what_rfc_5802_does_not_allow():
    keys = derive_keys("pw")
    for first in (b"p=tls-unique,,n=a,r=x", b"n,,r=x", b"n,,n=a", b"n,a=bob,n=alice,r=x", b"n,,n=a=,r=x",
                  b"n,,n=a,r=x,m=ext", b"\xff", b"n,,n=a,r=" + b"x" * 129):
        with pytest.raises(ScramError):
            ScramExchange().first(first)
    server = ScramExchange()
    server.first(b"n,,n=alice,r=abc")
    server.server_first(keys.salt, keys.iterations)
    nonce = server.nonce
    for final in (f"c=biws,r={nonce}".encode(), f"c=eSws,r={nonce},p=AAAA".encode(),
                  b"c=biws,r=abc,p=AAAA", f"c=biws,r={nonce},p=!!".encode()):
        with pytest.raises(ScramError):
            server.final(final)
    # "=2C" and "=3D" stand for "," and "=" in names; an authzid equal to the name is allowed
    assert ScramExchange().first(b"n,a=a=2Cb,n=a=2Cb,r=x") == "a,b"


def test_saslprep():
    assert saslprep("I\u00adX") == "IX"  # soft hyphen: mapped to nothing
    assert saslprep("user") == "user" and saslprep("\u2168") == "IX"  # NFKC
    assert saslprep("a\u00a0b") == "a b"  # non-ASCII space
    for refused in ("\x07", "a\u0627", "\ufdd0"):
        with pytest.raises(ScramError):
            saslprep(refused)


# -- over IRC ---------------------------------------------------------------------------------


async def _scram_login(server, name: str, password: str, nick: str = "scrammer"):
    """SASL SCRAM-SHA-256 as ``name`` before registration; (client, the lines after the
    client's proof, scramp's client)."""
    client = await server.connect("irc")
    client.send("CAP LS 302")
    client.send("CAP REQ :sasl")
    await client.expect(lambda l: l.command == "CAP" and l.params[1] == "ACK")
    client.send("AUTHENTICATE SCRAM-SHA-256")
    assert (await client.expect("AUTHENTICATE")).params == ["+"]
    scram = scramp.ScramClient(["SCRAM-SHA-256"], name, password)
    client.send("AUTHENTICATE " + base64.b64encode(scram.get_client_first().encode()).decode())
    first = await client.expect("AUTHENTICATE")
    scram.set_server_first(base64.b64decode(first.params[0]).decode())
    client.send("AUTHENTICATE " + base64.b64encode(scram.get_client_final().encode()).decode())
    answer = await client.expect(lambda l: l.command in ("AUTHENTICATE", "904"))
    return client, answer, scram


@pytest_twisted.ensureDeferred
async def test_scram_login_over_irc(history_hub):
    server = history_hub
    probe = await server.connect("irc")
    probe.send("CAP LS 302")
    await probe.expect(lambda l: l.command == "CAP" and l.params[2] != "*")  # the last LS line
    ls = " ".join(l.params[-1] for l in probe.lines if l.command == "CAP")
    assert "sasl=PLAIN,SCRAM-SHA-256" in ls.split()
    # an account registered over IRC keeps its keys beside the argon2 hash
    reg = await server.irc("Scramtest", "draft/account-registration")
    assert [l.command for l in await reg.roundtrip("REGISTER * * sesame-pw")] == ["REGISTER", "900"]
    stored = await server.store.get_account("scramtest")
    assert stored.password_hash.startswith("$argon2") and stored.scram.startswith("SCRAM-SHA-256$4096:")
    assert "sesame-pw" not in stored.scram
    reg.send("QUIT")
    await reg.closed

    client, answer, scram = await _scram_login(server, "scramtest", "sesame-pw")
    assert answer.command == "AUTHENTICATE"
    scram.set_server_final(base64.b64decode(answer.params[0]).decode())  # the server proved itself
    client.send("AUTHENTICATE +")
    logged_in = await client.expect("900")
    assert logged_in.params[2] == "Scramtest"  # the account's name as registered
    await client.expect("903")
    client.send("NICK Scramtest")
    client.send("USER s 0 * :s")
    client.send("CAP END")
    await client.expect("001")
    assert server.hub.find_user("Scramtest").account == "Scramtest"

    # a wrong password, and an unknown name, are one 904 each, after the same exchange
    for name, password in (("Scramtest", "millet"), ("nobody", "millet")):
        other, answer, _ = await _scram_login(server, name, password)
        assert answer.command == "904"
        other.send("QUIT")
        await other.closed


@pytest_twisted.ensureDeferred
async def test_accounts_without_keys_get_them_at_a_plain_login(history_hub):
    server = history_hub
    hashed = await server.accounts.hash_password("older-pw")
    await server.store.create_account("Oldie", hashed)  # as registered before SCRAM keys were kept
    client, answer, _ = await _scram_login(server, "oldie", "older-pw")
    assert answer.command == "904"  # no keys yet
    client.send("QUIT")
    await client.closed
    plain = await server.irc("Oldie", password="older-pw")
    await server.accounts.idle()  # the keys are made and stored in the background
    stored = await server.store.get_account("oldie")
    assert stored.scram is not None and stored.password_hash == hashed
    plain.send("QUIT")
    await plain.closed
    client, answer, _ = await _scram_login(server, "Oldie", "older-pw")
    assert answer.command == "AUTHENTICATE"
    client.send("AUTHENTICATE +")
    assert (await client.expect("900")).params[2] == "Oldie"


@pytest_twisted.ensureDeferred
async def test_password_change_replaces_the_keys(history_hub):
    server = history_hub
    await server.accounts.create_account("changer", "first-pw")
    before = (await server.store.get_account("changer")).scram
    await server.accounts.set_password("changer", "second-pw")
    after = (await server.store.get_account("changer")).scram
    assert after is not None and after != before
    # keys made from the old password (a login racing the change) are not stored over them
    assert await server.store.set_scram_keys("changer", before, "not-the-hash-any-more") is False
    client, answer, _ = await _scram_login(server, "changer", "first-pw")
    assert answer.command == "904"
    client, answer, _ = await _scram_login(server, "changer", "second-pw")
    assert answer.command == "AUTHENTICATE"


@pytest_twisted.ensureDeferred
async def test_abort_or_leave_during_scram(history_hub):
    server = history_hub
    await server.accounts.create_account("quitter", "quitter-pw")
    # "*" after the server's signature: the accepted login is let go, nobody is signed on
    client, answer, _ = await _scram_login(server, "quitter", "quitter-pw")
    assert answer.command == "AUTHENTICATE"
    client.send("AUTHENTICATE *")
    await client.expect("906")
    client.send("NICK guest1")
    client.send("USER g 0 * :g")
    client.send("CAP END")
    await client.expect("001")
    assert server.hub.find_user("guest1").account is None
    # a message other than "+" then: 904
    client, answer, _ = await _scram_login(server, "quitter", "quitter-pw")
    client.send("AUTHENTICATE " + base64.b64encode(b"more").decode())
    await client.expect("904")
    # hanging up then leaves nothing behind (HubServer.stop checks the hub)
    client, answer, _ = await _scram_login(server, "quitter", "quitter-pw")
    client.transport.loseConnection()
    await client.closed


def test_no_scram_without_an_account_store():
    world = irc_world()  # a memory checker: no keys to check a proof against
    c = world.irc_conn()
    c.send("CAP LS 302")
    assert "sasl=PLAIN" in " ".join(m.params[-1] for m in c.lines()).split()
    c.send("CAP REQ sasl", "AUTHENTICATE SCRAM-SHA-256")
    lines = c.lines()
    assert [(m.command, m.params[1:2]) for m in lines[1:]] == [("908", ["PLAIN"]), ("904", ["SASL authentication failed"])]
