"""Account registration for IRC clients over real sockets, on a real SQLite store:
IRCv3 draft/account-registration (REGISTER, VERIFY, before-connect) and NickServ."""
from __future__ import annotations

import base64

import pytest
import pytest_twisted

from chathub.hub import errors
from tests.support import ALL_CAPS, LogCapture, history_server, irc_user, join_irc, offered_caps

REG = "draft/account-registration"


def fail_params(lines, command="REGISTER"):
    found = [l.params for l in lines if l.command == "FAIL" and l.params[0] == command]
    assert len(found) == 1, "\n".join(l.format() for l in lines)
    return found[0]


@pytest.fixture
def server(history_hub):
    return history_hub


@pytest_twisted.ensureDeferred
async def test_register_after_connect_logs_in_and_sasl_works_later(server):
    with LogCapture() as watch:
        friend = await irc_user(server, "friend", caps=["account-notify"], rooms=["#chat"])
        dave = await irc_user(server, "dave", caps=ALL_CAPS + [REG], rooms=["#chat"])
        lines = await dave.roundtrip("REGISTER * dave@example.org correct-horse")
        assert [l.command for l in lines] == ["REGISTER", "900"], dave.dump()
        assert lines[0].params == ["SUCCESS", "dave", "Account successfully registered"]
        assert lines[1].params[:3] == ["dave", f"dave!~dave@{server.host}", "dave"]
        assert server.hub.find_user("dave").account == "dave"
        notify = await friend.expect("ACCOUNT")
        assert notify.hostmask.nickname == "dave" and notify.params == ["dave"]
        stored = await server.store.get_account("dave")
        assert stored.name == "dave" and stored.password_hash.startswith("$argon2")
        # registering again: already logged in
        params = fail_params(await dave.roundtrip("REGISTER dave * another-password"))
        assert params[:3] == ["REGISTER", "ALREADY_AUTHENTICATED", "dave"]
        dave.send("QUIT :bye")
        await dave.closed
        # the nick is now reserved: a guest is refused it, the password logs in with SASL
        guest = await server.connect("irc")
        guest.send("NICK dave")
        guest.send("USER dave 0 * :not dave")
        assert (await guest.expect(lambda l: l.command in ("433", "432", "001"))).command == "433"
        again = await irc_user(server, "dave", caps=["server-time"], password="correct-horse")
        assert server.hub.find_user("dave").account == "dave"
        await again.roundtrip()
    watch.assert_no_secret("correct-horse")


@pytest_twisted.ensureDeferred
async def test_register_refusals(server):
    erin = await irc_user(server, "erin", caps=[REG, "labeled-response", "batch"])

    async def refused(command):
        return fail_params(await erin.roundtrip(command))[1:]

    assert await refused("REGISTER someoneelse * longpassword") == [
        "ACCOUNT_NAME_MUST_BE_NICK", "someoneelse", "Your account name must be your current nick"
    ]
    assert (await refused("REGISTER * * abc"))[:2] == ["WEAK_PASSWORD", "erin"]
    assert (await refused("REGISTER * * :" + "p" * 301))[:2] == ["UNACCEPTABLE_PASSWORD", "erin"]
    assert (await refused("REGISTER * not-an-email longpassword"))[:2] == ["INVALID_EMAIL", "erin"]
    assert " 461 " in (await erin.roundtrip("REGISTER * *"))[0].format()
    # nothing was created by the refusals
    assert await server.store.get_account("erin") is None and server.hub.find_user("erin").account is None
    # VERIFY: no registration here ever waits for a code
    assert fail_params(await erin.roundtrip("VERIFY erin 123456"), "VERIFY")[1:3] == ["INVALID_CODE", "erin"]
    # the account was registered elsewhere meanwhile (another protocol, an operator)
    await server.accounts.create_account("erin", "elsewhere-pass")
    assert (await refused("REGISTER erin * longpassword"))[:2] == ["ACCOUNT_EXISTS", "erin"]
    # a server that cannot create accounts says so
    server.hub.account_creator = None
    frank = await irc_user(server, "frank", caps=[REG])
    assert fail_params(await frank.roundtrip("REGISTER * * longpassword"))[1:3] == ["TEMPORARILY_UNAVAILABLE", "frank"]
    # a labeled REGISTER gets one labeled answer
    server.hub.account_creator = server.accounts
    (answer,) = await erin.labeled("REGISTER * * abc")
    assert answer.command == "FAIL" and answer.params[1] == "WEAK_PASSWORD"


@pytest_twisted.ensureDeferred
async def test_register_before_connect(server):
    client = await server.connect("irc")
    offered = await offered_caps(client)
    assert offered[REG] == "before-connect"  # not custom-account-name: an account is a nick
    client.send(f"CAP REQ :{REG} server-time")
    await client.expect(lambda l: l.command == "CAP" and l.params[1] == "ACK")
    lines = await client.roundtrip("REGISTER * * early-bird-pw")
    assert fail_params(lines)[1:3] == ["NEED_NICK", "*"]
    client.send("NICK ivy")
    lines = await client.roundtrip("REGISTER ivy * early-bird-pw")
    assert [l.command for l in lines] == ["REGISTER", "900"], client.dump()
    assert lines[0].params[:2] == ["SUCCESS", "ivy"]
    assert lines[1].params[1:3] == ["ivy!~*@127.0.0.1", "ivy"]
    assert "001" not in [l.command for l in client.lines]  # still negotiating
    client.send("USER ivy 0 * :Ivy")
    client.send("CAP END")
    await client.expect("001")
    assert server.hub.find_user("ivy").account == "ivy"

    # two connections racing for the same nick before connecting: one account
    first, second = await server.connect("irc"), await server.connect("irc")
    for c in (first, second):
        c.send("NICK jude")
    a = await first.roundtrip("REGISTER * * jude-password")
    b = await second.roundtrip("REGISTER * * jude-password")
    assert [l.command for l in a] == ["REGISTER", "900"]
    assert fail_params(b)[1:3] == ["ACCOUNT_EXISTS", "jude"]
    # and no land grab of a nick someone else is using
    early = await server.connect("irc")
    early.send("NICK lee")
    await early.roundtrip()
    await irc_user(server, "lee", caps=[])  # completes registration first and holds the nick
    assert fail_params(await early.roundtrip("REGISTER * * whatever-pw"))[1:3] == ["ACCOUNT_EXISTS", "lee"]
    assert await server.store.get_account("lee") is None


@pytest_twisted.ensureDeferred
async def test_nickserv_register_and_identify(server):
    with LogCapture() as watch:
        kim = await irc_user(server, "kim", caps=[])
        lines = await kim.roundtrip("PRIVMSG NickServ :HELP")
        assert lines and all(l.command == "NOTICE" and l.hostmask.nickname == "NickServ" for l in lines)
        assert any("IDENTIFY" in l.params[-1] for l in lines)
        lines = await kim.roundtrip("PRIVMSG NickServ :REGISTER ab")
        assert [l.command for l in lines] == ["NOTICE"] and "too short" in lines[0].params[-1]
        lines = await kim.roundtrip("PRIVMSG nickserv :REGISTER kims-secret kim@example.org")
        assert [l.command for l in lines] == ["NOTICE", "900"], kim.dump()
        assert lines[0].params == ["kim", "Account kim registered; you are now logged in to it"]
        assert server.hub.find_user("kim").account == "kim"
        lines = await kim.roundtrip("PRIVMSG NickServ :IDENTIFY kims-secret")
        assert "already logged in" in lines[0].params[-1]
        kim.send("QUIT")
        await kim.closed

        # a guest under another nick identifies to the account
        guest = await irc_user(server, "kimmy", caps=["echo-message", "message-tags"])
        lines = await guest.roundtrip("PRIVMSG NickServ :IDENTIFY kim wrong-password")
        commands = [l.command for l in lines]
        assert commands == ["PRIVMSG", "NOTICE"], guest.dump()  # the echo, to the sender only
        assert lines[1].params[-1] == "Invalid account or password"
        assert server.hub.find_user("kimmy").account is None
        lines = await guest.roundtrip("PRIVMSG NickServ :IDENTIFY kim kims-secret")
        assert [l.command for l in lines] == ["PRIVMSG", "NOTICE", "900"]
        assert lines[1].params[-1] == "You are now identified for kim"
        assert server.hub.find_user("kimmy").account == "kim"
        lines = await guest.roundtrip("PRIVMSG NickServ :FROBNICATE")
        assert "Unknown command FROBNICATE" in lines[-1].params[-1]
        # NOTICE to NickServ is never answered, and nobody can be NickServ
        assert await guest.roundtrip("NOTICE NickServ :hello") == []
        lines = await guest.roundtrip("NICK NickServ")
        assert lines[0].command == "432"
        assert server.hub.find_user("NickServ") is None
        try:
            server.hub.check_nick("NICKSERV")
        except errors.ErroneousNick:
            pass
        else:
            raise AssertionError("NickServ is not reserved")
    watch.assert_no_secret("kims-secret", "wrong-password")
    # nothing sent to NickServ is history
    rows = await server.store.latest("kimmy", "NickServ", None, 10)
    assert rows == []


@pytest_twisted.ensureDeferred
async def test_a_failing_store_makes_registration_temporarily_unavailable(server, tmp_path):
    import sqlite3

    with LogCapture() as watch:
        nell = await irc_user(server, "nell", caps=[REG])
        with sqlite3.connect(tmp_path / "chathub.sqlite3") as db:
            db.execute("DROP TABLE accounts")
        params = fail_params(await nell.roundtrip("REGISTER * * nells-password"))
        assert params[1:3] == ["TEMPORARILY_UNAVAILABLE", "nell"]
        lines = await nell.roundtrip("PRIVMSG NickServ :REGISTER nells-password")
        assert "could not be registered" in lines[0].params[-1]
        assert server.hub.find_user("nell").account is None
    assert watch.matching("account registration failed")
    server.take_tracebacks("no such table: accounts")
    watch.assert_no_secret("nells-password")


@pytest_twisted.ensureDeferred
async def test_min_password_length_is_a_setting(tmp_path):
    """[auth] min_password_length: irctest registers accounts with three-letter passwords."""
    server = await history_server(tmp_path, ("irc",), auth={"min_password_length": 3})
    try:
        una = await irc_user(server, "una", caps=[REG])
        assert fail_params(await una.roundtrip("REGISTER * * ab"))[1:] == [
            "WEAK_PASSWORD", "una", "Password too short (at least 3 characters)"
        ]
        lines = await una.roundtrip("PRIVMSG NickServ :REGISTER ab")
        assert lines[0].params[-1] == "Password too short (at least 3 characters)"
        assert [l.command for l in await una.roundtrip("REGISTER * * bar")] == ["REGISTER", "900"]
        una.send("QUIT")
        await una.closed
        again = await irc_user(server, "una", caps=[], password="bar")
        assert server.hub.find_user("una").account == "una"
        await again.roundtrip()
    finally:
        await server.stop()


@pytest_twisted.ensureDeferred
async def test_account_keeps_its_registered_case(server):
    """An account registered as coolAcct is coolAcct in 900, WHOX %a and the account tag,
    whatever case the client logs in with (irctest's WhoServicesTestCase)."""
    await server.accounts.create_account("coolAcct", "sesame-pw")
    other = await irc_user(server, "otherNick", caps=["account-tag"], rooms=["#case"])
    cool = await server.connect("irc")
    cool.send("CAP LS 302")
    cool.send("CAP REQ :sasl")
    cool.send("AUTHENTICATE PLAIN")
    await cool.expect("AUTHENTICATE")
    cool.send("AUTHENTICATE " + base64.b64encode(b"coolacct\0coolacct\0sesame-pw").decode())
    logged_in = await cool.expect("900")
    assert logged_in.params[2:] == ["coolAcct", "You are now logged in as coolAcct"]
    cool.send("NICK coolAcct")
    cool.send("USER cool 0 * :cool")
    cool.send("CAP END")
    await cool.expect("001")
    await join_irc(cool, "#case")
    lines = await other.roundtrip("WHO coolAcct %na")
    assert [l.params for l in lines if l.command == "354"] == [["otherNick", "coolAcct", "coolAcct"]]
    cool.send("PRIVMSG #case :hello")
    said = await other.expect("PRIVMSG")
    assert said.tags["account"] == "coolAcct"


@pytest_twisted.ensureDeferred
async def test_register_of_a_nick_refused_as_in_use_is_account_exists(server):
    """NICK refused (433) as someone else's, then REGISTER: ACCOUNT_EXISTS naming that nick,
    not NEED_NICK (irctest RegisterNoLandGrabsTestCase)."""
    await irc_user(server, "root", caps=[])
    grabber = await server.connect("irc")
    grabber.send("NICK root")
    lines = await grabber.roundtrip("REGISTER * * shivarampassphrase")
    assert [l.command for l in lines] == ["433", "FAIL"]
    assert fail_params(lines)[1:3] == ["ACCOUNT_EXISTS", "root"]
    assert await server.store.get_account("root") is None


@pytest_twisted.ensureDeferred
async def test_register_before_connect_can_be_switched_off(tmp_path):
    server = await history_server(tmp_path, ("irc",), irc={"register_before_connect": False})
    try:
        client = await server.connect("irc")
        assert (await offered_caps(client))[REG] == ""  # not before-connect
        client.send("NICK bar")
        lines = await client.roundtrip("REGISTER * * shivarampassphrase")
        assert fail_params(lines)[1:3] == ["COMPLETE_CONNECTION_REQUIRED", "*"]
        client.send("USER bar 0 * :bar")
        client.send("CAP END")
        await client.expect("001")
        await client.roundtrip()  # the rest of the welcome
        assert [l.command for l in await client.roundtrip("REGISTER * * shivarampassphrase")] == ["REGISTER", "900"]
    finally:
        await server.stop()
