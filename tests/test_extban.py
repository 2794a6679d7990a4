"""Extended bans (``EXTBAN=,am``) over real sockets, enforced by the hub for every protocol:
``+b a:name`` bans an account (a guest matches none), ``+b m:mask`` mutes (join and read,
not speak: IRC 404, telnet a ``!`` line, chathub.v1 a JSON error), voice and exceptions lift
a mute, and extended entries sit in the ban list under its limit."""
from __future__ import annotations

import pytest_twisted

from tests.support import LOOPBACK, HubServer, join_irc, ws_config, ws_join, ws_login


@pytest_twisted.async_yield_fixture
async def server(tmp_path):
    config = ws_config().with_overrides(irc={"max_bans": 4}, limits={"flood_exempt": LOOPBACK})
    hub_server = await HubServer.stored(tmp_path, config, protocols=["http", "line", "irc"])
    for name in ("ircacct", "telacct", "webacct"):
        await hub_server.accounts.create_account(name, f"{name}-pass")
    yield hub_server
    await hub_server.stop()


def numerics(lines) -> list[str]:
    return [l.command for l in lines if l.command.isdigit() or l.command == "FAIL"]


@pytest_twisted.ensureDeferred
async def test_isupport_advertises_the_types(server):
    client = await server.connect("irc")
    client.send("NICK chk", "USER chk 0 * :chk")
    await client.expect("001")
    tokens = [t for l in await client.roundtrip() if l.command == "005" for t in l.params[1:-1]]
    assert "EXTBAN=,am" in tokens and "ACCOUNTEXTBAN=a" in tokens


@pytest_twisted.ensureDeferred
async def test_a_mute_silences_each_protocol_and_voice_or_an_exception_lifts_it(server):
    op = await server.irc("op", rooms=["#r"])
    for mask in ("m:IRCMUTE", "m:tel", "m:web!*@*"):  # set before they join: they still may
        assert "MODE" in [l.command for l in await op.roundtrip(f"MODE #r +b {mask}")]
    irc = await server.irc("ircmute", "echo-message", rooms=["#r"])
    tel = await server.telnet("tel", rooms=["#r"])
    web = await server.ws("web", rooms=["#r"])
    bans = [l.params[2] for l in await irc.roundtrip("MODE #r +b") if l.command == "367"]
    assert bans == ["m:IRCMUTE!*@*", "m:tel!*@*", "m:web!*@*"]

    lines = await irc.roundtrip("PRIVMSG #r :hush?")
    (refused,) = [l for l in lines if l.command == "404"]
    assert refused.params[1:] == ["#r", "Cannot send to room (you are muted)"]
    assert "PRIVMSG" not in [l.command for l in lines]
    tel.send("hush?")
    await tel.expect_re(r"^! #r: Cannot send to room \(you are muted\)$")
    web.send_json({"type": "message", "target": "#r", "text": "hush?", "ref": "m"})
    error = await web.expect({"type": "error", "ref": "m"})
    assert error["code"] == "cannot_send" and "muted" in error["message"]
    # none of it reached the room
    assert not [t for t in op.texts if "hush?" in t]

    # voice lifts the mute (IRC), an m: exception (telnet), a plain exception (web)
    await op.roundtrip("MODE #r +v ircmute")
    await op.roundtrip("MODE #r +e m:tel!*@*")
    assert numerics(await op.roundtrip("MODE #r +e web")) == []
    irc.send("PRIVMSG #r :voiced")
    tel.send("excepted")
    web.send_json({"type": "message", "target": "#r", "text": "plainly excepted"})
    for text in ("voiced", "excepted", "plainly excepted"):  # three connections: in any order
        await op.expect_count(rf"PRIVMSG #r :{text}$")
    # removed in any case, the mute is gone
    await op.roundtrip("MODE #r -v ircmute")
    await op.roundtrip("MODE #r -b m:ircmute!*@*")
    irc.send("PRIVMSG #r :free again")
    await op.expect_re(r"PRIVMSG #r :free again$")


@pytest_twisted.ensureDeferred
async def test_an_account_ban_keeps_each_protocols_account_out_and_no_guest(server):
    op = await server.irc("op", rooms=["#r"])
    assert "MODE" in [l.command for l in await op.roundtrip("MODE #r +b a:*ACCT")]
    # a guest of a matching nick is no account
    guest = await server.irc("ircacct_", rooms=["#r"])
    assert guest.lines

    irc = await server.irc("ircacct", password="ircacct-pass")
    lines = await irc.roundtrip("JOIN #r")
    assert numerics(lines) == ["474"]
    tel = await server.connect("line")
    tel.send("/nick telacct telacct-pass")
    await tel.expect_re(r"logged in to account telacct")
    tel.send("/join #r")
    await tel.expect_re(r"^! #r: Cannot join room \(you are banned\)$")
    web = await ws_login(server.http_port, "webacct", "webacct-pass")
    web.send_json({"type": "join", "room": "#r", "ref": "j"})
    assert (await web.expect({"type": "error", "ref": "j"}))["code"] == "banned"

    # an account exception lets one in; lifted, and the ban with it, an account mute
    # keeps it quiet
    await op.roundtrip("MODE #r +e a:webacct")
    await ws_join(web, "#r", "webacct")
    await op.roundtrip("MODE #r -b+b-e a:*acct m:a:webACCT a:webacct")
    web.send_json({"type": "message", "target": "#r", "text": "quiet", "ref": "q"})
    assert (await web.expect({"type": "error", "ref": "q"}))["code"] == "cannot_send"
    await join_irc(irc, "#r")
    irc.send("PRIVMSG #r :in at last")
    await op.expect_re(r":ircacct!\S+ PRIVMSG #r :in at last$")
    # an account invite exception lets it into an invite-only room; no one else
    await op.roundtrip("JOIN #inv")
    await op.roundtrip("MODE #inv +iI a:telacct")
    tel.send("/join #inv")
    await tel.expect_re(r"^\* you joined #inv$")
    assert numerics(await guest.roundtrip("JOIN #inv")) == ["473"]


@pytest_twisted.ensureDeferred
async def test_extended_entries_count_against_the_list_and_bad_ones_are_refused(server):
    op = await server.irc("op", rooms=["#r"])
    lines = await op.roundtrip("MODE #r +b x:what")
    (bad,) = [l for l in lines if l.command == "696"]
    assert bad.params[1:4] == ["#r", "b", "x:what"]
    assert numerics(await op.roundtrip("MODE #r +b a:")) == ["696"]
    assert numerics(await op.roundtrip("MODE #r +b m:m:x")) == ["696"]
    for mask in ("a:one", "m:two", "three", "m:a:four"):
        assert numerics(await op.roundtrip(f"MODE #r +b {mask}")) == []
    assert numerics(await op.roundtrip("MODE #r +b a:five")) == ["478"]
    # a telnet operator meets the same bound
    tel = await server.telnet("tel", rooms=["#t"])
    tel.send("/mode #t +b x:what")
    await tel.expect_re(r"^! #t: Unknown extended ban type x:")
    tel.send("/mode #t +b m:someone")
    await tel.expect_re(r"you set mode \+b m:someone!\*@\* on #t")
    assert [b.mask for b in server.hub.find_room("#r").bans] == ["a:one", "m:two!*@*", "three!*@*", "m:a:four"]
