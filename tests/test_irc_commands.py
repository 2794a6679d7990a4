"""Every IRC command of issue 3 with its error numerics, and the IRCv3 capabilities, on real
sockets: an in-process hub (the ``irc_hub`` fixture) with the IRC listener on 127.0.0.1
port 0 and clients from tests/support.py (``IrcClient``). Every wait is on a line (or a
PING round trip) with a timeout; nothing sleeps.
"""
from __future__ import annotations

import re
from importlib import metadata

import pytest
import pytest_twisted

from tests.support import join_irc

SERVER_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


@pytest.fixture
def server(irc_hub):
    return irc_hub


join = join_irc


def numerics(lines, code: str):
    return [l for l in lines if l.command == code]


def only(lines, code: str):
    found = numerics(lines, code)
    assert len(found) == 1, f"expected one {code}, got: " + "\n".join(l.format() for l in lines)
    return found[0]


# -- JOIN, LIST, NOTICE, TAGMSG ---------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_join_several_channels_with_keys_and_join_zero(server):
    op = await server.irc("op", rooms=["#a", "#b"])
    await op.roundtrip("MODE #a +k key1")
    await op.roundtrip("MODE #b +k key2")
    guest = await server.irc("guest")
    lines = await guest.roundtrip("JOIN #a,#b wrong,key2")
    assert only(lines, "475").params[1] == "#a"
    assert [l.params[0] for l in lines if l.command == "JOIN"] == ["#b"]
    lines = await guest.roundtrip("JOIN #a,#b,#c key1,key2")
    # #b: already there (silence); #a with its key; #c new, no key needed
    assert [l.params[0] for l in lines if l.command == "JOIN"] == ["#a", "#c"]
    assert [l.params[1] for l in lines if l.command == "366"] == ["#a", "#c"]
    assert not numerics(lines, "475")
    await op.expect(lambda l: l.command == "JOIN" and l.params[0] == "#a" and l.source.startswith("guest!"))
    lines = await guest.roundtrip("JOIN 0")
    assert sorted(l.params[0] for l in lines if l.command == "PART") == ["#a", "#b", "#c"]
    await op.expect(lambda l: l.command == "PART" and l.source.startswith("guest!"))
    lines = await guest.roundtrip("WHOIS guest")
    assert not numerics(lines, "319")  # in no channel any more


@pytest_twisted.ensureDeferred
async def test_list_with_masks_and_user_counts(server):
    a = await server.irc("la", rooms=["#apple", "#avocado", "#banana"])
    b = await server.irc("lb", rooms=["#apple"])

    async def listed(command: str) -> dict[str, int]:
        lines = await b.roundtrip(command)
        assert numerics(lines, "321") and numerics(lines, "323"), command
        return {l.params[1]: int(l.params[2]) for l in lines if l.command == "322"}

    assert await listed("LIST") == {"#apple": 2, "#avocado": 1, "#banana": 1}
    assert await listed("LIST #a*") == {"#apple": 2, "#avocado": 1}
    assert await listed("LIST #banana,#apple") == {"#apple": 2, "#banana": 1}
    assert await listed("LIST >1") == {"#apple": 2}
    assert await listed("LIST <2") == {"#avocado": 1, "#banana": 1}
    assert await listed("LIST !#a*") == {"#banana": 1}
    assert await listed("LIST #a* <2") == {"#avocado": 1}
    assert await listed("LIST #nothing*") == {}
    assert a.transport.connected


@pytest_twisted.ensureDeferred
async def test_notice_to_channel_and_nick_never_answered(server):
    a = await server.irc("na", rooms=["#n"])
    b = await server.irc("nb", rooms=["#n"])
    b.send("AWAY :gone fishing")
    await b.expect("306")
    await a.roundtrip()  # nb's JOIN
    lines = await a.roundtrip("NOTICE #n :to the channel")
    assert lines == []
    line = await b.expect("NOTICE")
    assert line.params == ["#n", "to the channel"] and line.source.startswith("na!")
    lines = await a.roundtrip("NOTICE nb :to you")
    assert lines == [], "a NOTICE gets no 301 even to an away user"
    line = await b.expect("NOTICE")
    assert line.params == ["nb", "to you"]
    # errors are never answered either: no such nick, no such channel, no text, no target
    for bad in ("NOTICE nobody :x", "NOTICE #nowhere :x", "NOTICE nb", "NOTICE", "NOTICE nb :"):
        assert await a.roundtrip(bad) == [], bad
    # while PRIVMSG to the away user does get 301
    lines = await a.roundtrip("PRIVMSG nb :hello")
    assert only(lines, "301").params[1:] == ["nb", "gone fishing"]


@pytest_twisted.ensureDeferred
async def test_tagmsg_relays_client_tags_to_message_tags_clients_only(server):
    a = await server.irc("ta", "message-tags", "echo-message", rooms=["#t"])
    b = await server.irc("tb", "message-tags", rooms=["#t"])
    plain = await server.irc("tp", rooms=["#t"])
    a.send("@+typing=active;+draft/reply=abc TAGMSG #t")
    echo = await a.expect("TAGMSG")
    got = await b.expect("TAGMSG")
    assert got.params == ["#t"] and got.source.startswith("ta!")
    assert got.tags["+typing"] == "active" and got.tags["+draft/reply"] == "abc"
    assert got.tags["msgid"] == echo.tags["msgid"]
    a.send("@+typing=paused TAGMSG tb")
    got = await b.expect("TAGMSG")
    assert got.params == ["tb"] and got.tags["+typing"] == "paused"
    # a client without message-tags never sees TAGMSG
    assert [l for l in await plain.roundtrip() if l.command == "TAGMSG"] == []
    # its own client tags are dropped: it cannot send them
    plain.send("@+typing=active PRIVMSG #t :typed")
    got = await b.expect("PRIVMSG")
    assert "+typing" not in got.tags
    lines = await a.roundtrip("@+typing=active TAGMSG nobody")
    assert only(lines, "401").params[1] == "nobody"


# -- server queries ----------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_info_admin_help_time_version(server):
    c = await server.irc("asker")
    lines = await c.roundtrip("INFO")
    assert numerics(lines, "371") and only(lines, "374")
    lines = await c.roundtrip("ADMIN")
    assert only(lines, "256").params[1] == "irc.test"
    assert {"257", "258", "259"} <= {l.command for l in lines}
    lines = await c.roundtrip("TIME")
    reply = only(lines, "391")
    assert reply.params[1] == "irc.test" and reply.params[-1]
    lines = await c.roundtrip("VERSION")
    assert only(lines, "351").params[2] == "irc.test"
    # the installed distribution's version (setup.py's), not a constant in the code
    assert only(lines, "351").params[1] == f"chathub-{metadata.version('chathub')}"
    assert numerics(lines, "005")
    lines = await c.roundtrip("HELP")
    assert numerics(lines, "704") and numerics(lines, "706")
    lines = await c.roundtrip("HELP PRIVMSG")
    assert numerics(lines, "704")[0].params[1].upper() == "PRIVMSG" and numerics(lines, "706")
    lines = await c.roundtrip("HELP NOSUCHTHING")
    assert only(lines, "524")
    for command in ("VERSION other.server", "TIME other.server", "INFO other.server", "ADMIN other.server"):
        lines = await c.roundtrip(command)
        assert only(lines, "402").params[1] == "other.server", command
    for command in ("VERSION irc.test", "TIME irc.test"):
        assert not numerics(await c.roundtrip(command), "402")


# -- modes --------------------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_secret_channel_hidden_from_non_members(server):
    op = await server.irc("sop", rooms=["#secret", "#open"])
    member = await server.irc("smem", rooms=["#secret"])
    await op.roundtrip("MODE #secret +s")
    outsider = await server.irc("sout")
    lines = await outsider.roundtrip("LIST")
    assert [l.params[1] for l in lines if l.command == "322"] == ["#open"]
    lines = await outsider.roundtrip("NAMES #secret")
    assert not numerics(lines, "353") and only(lines, "366")
    lines = await outsider.roundtrip("WHOIS smem")
    assert not numerics(lines, "319")
    lines = await outsider.roundtrip("WHO #secret")
    assert not numerics(lines, "352") and only(lines, "315")
    lines = await outsider.roundtrip("LIST #secret")
    assert not numerics(lines, "322")
    lines = await outsider.roundtrip("TOPIC #secret")
    assert only(lines, "442")
    # +p hides it the same way
    await op.roundtrip("MODE #open +p")
    lines = await outsider.roundtrip("LIST")
    assert not numerics(lines, "322")
    # members see it all, NAMES marking it secret with @
    lines = await member.roundtrip("LIST")
    assert [l.params[1] for l in lines if l.command == "322"] == ["#secret"]
    lines = await op.roundtrip("LIST")
    assert sorted(l.params[1] for l in lines if l.command == "322") == ["#open", "#secret"]
    lines = await member.roundtrip("NAMES #secret")
    assert only(lines, "353").params[1:3] == ["@", "#secret"]
    lines = await member.roundtrip("WHOIS sop")
    assert "#secret" in only(lines, "319").params[-1]


@pytest_twisted.ensureDeferred
async def test_op_and_voice_on_a_non_member_is_441(server):
    op = await server.irc("mop", rooms=["#m"])
    await server.irc("away1")
    for change in ("+o away1", "+v away1"):
        lines = await op.roundtrip(f"MODE #m {change}")
        reply = only(lines, "441")
        assert reply.params[1:3] == ["away1", "#m"], change
    lines = await op.roundtrip("KICK #m away1")
    assert only(lines, "441")


@pytest_twisted.ensureDeferred
async def test_invisible_user_hidden_from_who_of_those_sharing_no_channel(server):
    ghost = await server.irc("ghost", rooms=["#g"])
    lines = await ghost.roundtrip("MODE ghost +i")
    assert [l.params for l in lines if l.command == "MODE"] == [["ghost", "+i"]]
    lines = await ghost.roundtrip("MODE ghost")
    assert "i" in only(lines, "221").params[1]
    stranger = await server.irc("stranger")
    friend = await server.irc("friend", rooms=["#g"])
    lines = await stranger.roundtrip("WHO gh*")
    assert not numerics(lines, "352") and only(lines, "315")
    lines = await stranger.roundtrip("WHO *")
    assert "ghost" not in [l.params[5] for l in numerics(lines, "352")]
    lines = await stranger.roundtrip("NAMES #g")
    assert "ghost" not in " ".join(l.params[-1] for l in numerics(lines, "353"))
    lines = await friend.roundtrip("WHO gh*")
    assert [l.params[5] for l in numerics(lines, "352")] == ["ghost"]
    lines = await ghost.roundtrip("MODE ghost -i")
    lines = await stranger.roundtrip("WHO gh*")
    assert [l.params[5] for l in numerics(lines, "352")] == ["ghost"]


# -- error numerics -----------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_error_numerics_before_registration(server):
    c = await server.connect("irc")
    lines = await c.roundtrip("JOIN #early")
    assert only(lines, "451")
    lines = await c.roundtrip("PRIVMSG x :y")
    assert only(lines, "451")
    lines = await c.roundtrip("NICK")
    assert only(lines, "431")
    lines = await c.roundtrip("NICK 1bad")
    assert only(lines, "432").params[1] == "1bad"
    lines = await c.roundtrip("USER onlyone")
    assert only(lines, "461").params[1] == "USER"


@pytest_twisted.ensureDeferred
async def test_error_numerics_after_registration(server):
    op = await server.irc("eop", rooms=["#e"])
    other = await server.irc("eother")
    checks = [
        (other, "PRIVMSG nobody :hi", "401", "nobody"),
        (other, "PART #nowhere", "403", "#nowhere"),
        (other, "PRIVMSG #e :outside", "404", "#e"),  # +n
        (other, "PRIVMSG", "411", None),
        (other, "PRIVMSG eop", "412", None),
        (other, "PRIVMSG eop :", "412", None),
        (other, "FROBNICATE now", "421", "FROBNICATE"),
        (other, "NICK", "431", None),
        (other, "NICK 9lives", "432", "9lives"),
        (other, "NICK #chan", "432", "#chan"),
        (other, "NICK eop", "433", "eop"),
        (other, "NICK EOP", "433", "EOP"),
        (other, "PART #e", "442", "#e"),
        (other, "TOPIC #e :x", "442", "#e"),
        (op, "KICK #e eother", "441", "eother"),
        (op, "INVITE eop #e", "443", "eop"),
        (other, "JOIN", "461", "JOIN"),
        (other, "MODE", "461", "MODE"),
        (other, "USER again 0 * :R", "462", None),
        (other, "PASS secret", "462", None),
        (op, "MODE #e +Z", "472", "Z"),
        (other, "KILL eop :bye", "481", None),
        (other, "WALLOPS :hey", "481", None),
    ]
    for client, command, code, first_param in checks:
        lines = await client.roundtrip(command)
        reply = only(lines, code)
        if first_param is not None:
            assert reply.params[1] == first_param, (command, reply.format())
    other.send("JOIN #e")
    await op.expect("JOIN")
    await other.expect("366")
    for command in ("MODE #e +o eother", "MODE #e +m", "TOPIC #e :mine", "KICK #e eop", "INVITE eop #e"):
        lines = await other.roundtrip(command)
        if command.startswith("INVITE"):
            assert only(lines, "443")  # already there, before any privilege question
            continue
        assert only(lines, "482").params[1] == "#e", command
    await op.roundtrip("MODE #e +m")
    lines = await other.roundtrip("PRIVMSG #e :muted")
    assert only(lines, "404").params[1] == "#e"


@pytest_twisted.ensureDeferred
async def test_join_refusals_471_to_475(server):
    op = await server.irc("jop", rooms=["#full", "#invite", "#banned", "#keyed"])
    await server.irc("filler", rooms=["#full"])
    for command in ("MODE #full +l 2", "MODE #invite +i", "MODE #banned +b jo*!*@*", "MODE #keyed +k sesame"):
        await op.roundtrip(command)
    joe = await server.irc("joe")
    for room, code in (("#full", "471"), ("#invite", "473"), ("#banned", "474"), ("#keyed", "475")):
        lines = await joe.roundtrip(f"JOIN {room}")
        assert only(lines, code).params[1] == room
        assert not [l for l in lines if l.command == "JOIN"]
    # and the way in: a key, an invite, a lifted ban, a raised limit
    await join(joe, "#keyed", "sesame")
    await op.roundtrip("INVITE joe #invite")
    await join(joe, "#invite")
    await op.roundtrip("MODE #banned -b jo*!*@*")
    await join(joe, "#banned")
    await op.roundtrip("MODE #full +l 3")
    await join(joe, "#full")


# -- capabilities -------------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_echo_message_msgid_and_server_time(server):
    a = await server.irc("ea", "echo-message", "message-tags", "server-time", rooms=["#x"])
    b = await server.irc("eb", "message-tags", "server-time", rooms=["#x"])
    plain = await server.irc("ep", rooms=["#x"])
    a.send("PRIVMSG #x :echoed")
    echo = await a.expect("PRIVMSG")
    seen = await b.expect("PRIVMSG")
    assert echo.params == seen.params == ["#x", "echoed"]
    assert echo.tags["msgid"] and echo.tags["msgid"] == seen.tags["msgid"]
    assert SERVER_TIME.match(seen.tags["time"]) and echo.tags["time"] == seen.tags["time"]
    bare = await plain.expect("PRIVMSG")
    assert not bare.tags
    # a NOTICE is echoed too; without echo-message there is no echo
    a.send("NOTICE #x :noted")
    assert (await a.expect("NOTICE")).tags["msgid"]
    assert [l for l in await b.roundtrip("PRIVMSG #x :no echo") if l.command == "PRIVMSG"] == []


@pytest_twisted.ensureDeferred
async def test_multi_prefix_and_userhost_in_names(server):
    op = await server.irc("mp", "multi-prefix", "userhost-in-names", rooms=["#p"])
    plain = await server.irc("mq", rooms=["#p"])
    await op.roundtrip("MODE #p +v mp")
    lines = await op.roundtrip("NAMES #p")
    names = only(lines, "353").params[-1].split()
    assert f"@+mp!~u@{server.host}" in names and f"mq!~u@{server.host}" in names
    lines = await op.roundtrip("WHO #p")
    flags = {l.params[5]: l.params[6] for l in numerics(lines, "352")}
    assert flags["mp"] == "H@+"
    lines = await plain.roundtrip("NAMES #p")
    assert sorted(only(lines, "353").params[-1].split()) == ["@mp", "mq"]


@pytest_twisted.ensureDeferred
async def test_extended_join_account_tag_and_account_notify(server):
    watcher = await server.irc("watcher", "extended-join", "account-tag", "account-notify", rooms=["#acc"])
    alice = await server.irc("alice", password="sesame", rooms=["#acc"])
    line = await watcher.expect("JOIN")
    assert line.params == ["#acc", "alice", "alice real"]
    guest = await server.irc("gus", rooms=["#acc"])
    line = await watcher.expect("JOIN")
    assert line.params == ["#acc", "*", "gus real"]
    alice.send("PRIVMSG #acc :from an account")
    assert (await watcher.expect("PRIVMSG")).tags["account"] == "alice"
    guest.send("PRIVMSG #acc :from a guest")
    assert "account" not in ((await watcher.expect("PRIVMSG")).tags or {})
    # a guest logging in (NickServ IDENTIFY) is announced to account-notify clients
    guest.send("PRIVMSG NickServ :IDENTIFY alice sesame")
    await guest.expect("900")
    line = await watcher.expect("ACCOUNT")
    assert line.source.startswith("gus!") and line.params == ["alice"]


@pytest_twisted.ensureDeferred
async def test_away_notify_setname_and_chghost(server):
    watcher = await server.irc("aw", "away-notify", "setname", "chghost", rooms=["#w"])
    plain = await server.irc("ap", rooms=["#w"])
    mover = await server.irc("am", "setname", rooms=["#w"])
    mover.send("AWAY :lunch")
    line = await watcher.expect("AWAY")
    assert line.source.startswith("am!") and line.params == ["lunch"]
    mover.send("AWAY")
    line = await watcher.expect("AWAY")
    assert line.params == []
    mover.send("SETNAME :New Name")
    assert (await mover.expect("SETNAME")).params == ["New Name"]
    assert (await watcher.expect("SETNAME")).params == ["New Name"]
    lines = await plain.roundtrip("WHOIS am")
    assert only(lines, "311").params[-1] == "New Name"
    lines = await mover.roundtrip("SETNAME :")
    assert [l.params[:2] for l in lines if l.command == "FAIL"] == [["SETNAME", "INVALID_REALNAME"]]
    # no IRC command changes a host; the hub's API does (as an operator tool or cloak would)
    server.hub.set_host(server.hub.find_user("am"), "newuser", "cloaked.host")
    line = await watcher.expect("CHGHOST")
    assert line.source.startswith("am!~u@") and line.params == ["newuser", "cloaked.host"]
    lines = await plain.roundtrip("WHOIS am")
    assert only(lines, "311").params[2:4] == ["newuser", "cloaked.host"]
    # the client without those capabilities got none of those lines
    assert not [l for l in plain.lines if l.command in ("AWAY", "SETNAME", "CHGHOST")]


@pytest_twisted.ensureDeferred
async def test_invite_notify_tells_channel_operators(server):
    op = await server.irc("iop", "invite-notify", rooms=["#inv"])
    co = await server.irc("ico", "invite-notify", rooms=["#inv"])
    member = await server.irc("imem", "invite-notify", rooms=["#inv"])
    await op.roundtrip("MODE #inv +io ico")
    await server.irc("target")
    lines = await co.roundtrip("INVITE target #inv")
    assert only(lines, "341").params[1:] == ["target", "#inv"]
    line = await op.expect("INVITE")
    assert line.source.startswith("ico!") and line.params == ["target", "#inv"]
    assert not [l for l in await member.roundtrip() if l.command == "INVITE"]


@pytest_twisted.ensureDeferred
async def test_cap_ls_before_302_is_one_line_that_fits(server):
    # a client before CAP 302 knows no "*" continuation: it reads the first CAP LS line as
    # the whole list (irctest testNoMultiline301Response, testReqOne...)
    c = await server.connect("irc")
    lines = [l for l in await c.roundtrip("CAP LS") if l.command == "CAP"]
    assert len(lines) == 1 and lines[0].params[:2] == ["*", "LS"]
    assert len(f":{lines[0].source} CAP * LS :{lines[0].params[-1]}\r\n".encode()) <= 512
    words = lines[0].params[-1].split()
    assert "=" not in " ".join(words)  # no values before 302
    for cap in ("multi-prefix", "userhost-in-names", "sasl", "server-time", "message-tags"):
        assert cap in words, cap
    c.send("CAP REQ :multi-prefix userhost-in-names")
    assert (await c.expect("CAP")).params[1:] == ["ACK", "multi-prefix userhost-in-names"]


@pytest_twisted.ensureDeferred
async def test_cap_notify_and_cap_list(server):
    c = await server.connect("irc")
    offered = {}
    for line in await c.roundtrip("CAP LS 302"):  # several lines: CAP * LS * :...
        assert line.command == "CAP" and line.params[1] == "LS"
        offered.update(w.partition("=")[::2] for w in line.params[-1].split())
    assert "cap-notify" in offered
    for cap in ("chghost", "setname", "extended-join", "invite-notify", "account-tag", "away-notify",
                "account-notify", "multi-prefix", "userhost-in-names", "echo-message", "server-time",
                "labeled-response", "batch", "message-tags"):
        assert cap in offered, cap
    c.send("CAP REQ :cap-notify multi-prefix")
    assert (await c.expect("CAP")).params[1:] == ["ACK", "cap-notify multi-prefix"]
    c.send("CAP REQ :multi-prefix no-such-cap")
    assert (await c.expect("CAP")).params[1] == "NAK"
    c.send("CAP LIST")
    listed = (await c.expect("CAP")).params[-1].split()
    assert "multi-prefix" in listed and "no-such-cap" not in listed
    c.send("CAP REQ :-multi-prefix")
    assert (await c.expect("CAP")).params[1:] == ["ACK", "-multi-prefix"]
    c.send("CAP BOGUS")
    assert (await c.expect("410"))


@pytest_twisted.ensureDeferred
async def test_labeled_response_ack_single_line_and_batch(server):
    c = await server.irc("lab", "labeled-response", "batch", "message-tags", rooms=["#l"])
    await server.irc("other", rooms=["#l"])
    # no reply at all: an ACK with the label
    (ack,) = await c.labeled("PRIVMSG #l :quiet")
    assert ack.command == "ACK"
    # one line: that line, labeled
    (pong,) = await c.labeled("PING :tok")
    assert pong.command == "PONG" and pong.params[-1] == "tok"
    # several lines: one labeled-response batch, every line in it tagged with the batch
    lines = await c.labeled("WHOIS other")
    start, *inner, end = lines
    assert start.command == "BATCH" and start.params[1] == "labeled-response"
    ref = start.params[0][1:]
    assert end.command == "BATCH" and end.params == [f"-{ref}"]
    assert {l.command for l in inner} >= {"311", "318"}
    assert all(l.tags.get("batch") == ref for l in inner)
    assert "label" not in (end.tags or {})


@pytest_twisted.ensureDeferred
async def test_batch_without_labeled_response_is_not_used(server):
    """``batch`` alone: ordinary replies come unbatched (only labeled or history replies batch)."""
    c = await server.irc("bo", "batch", rooms=["#bo"])
    lines = await c.roundtrip("WHOIS bo")
    assert not [l for l in lines if l.command == "BATCH"]
    assert numerics(lines, "311") and numerics(lines, "318")


@pytest_twisted.ensureDeferred
async def test_privmsg_and_notice_to_several_targets(server):
    a = await server.irc("ma", rooms=["#m1", "#m2"])
    b = await server.irc("mb", rooms=["#m1"])
    c = await server.irc("mc", rooms=["#m2"])
    d = await server.irc("md")
    await a.roundtrip()
    lines = await a.roundtrip("PRIVMSG #m1,md,#m2,nobody :to many")
    assert only(lines, "401").params[1] == "nobody"  # the others still get it
    assert (await b.expect("PRIVMSG")).params == ["#m1", "to many"]
    assert (await c.expect("PRIVMSG")).params == ["#m2", "to many"]
    assert (await d.expect("PRIVMSG")).params == ["md", "to many"]
    assert await a.roundtrip("NOTICE #m1,md :noticed") == []
    assert (await b.expect("NOTICE")).params == ["#m1", "noticed"]
    assert (await d.expect("NOTICE")).params == ["md", "noticed"]
    # more than TARGMAX (max_targets = 4): 407, and nobody gets it
    lines = await a.roundtrip("PRIVMSG #m1,#m2,md,mb,mc :too many")
    assert only(lines, "407")
    for client in (b, c, d):
        assert not [l for l in await client.roundtrip() if l.command == "PRIVMSG"]


@pytest_twisted.ensureDeferred
async def test_more_numerics_user_modes_whowas_ping_lusers_motd_links(server):
    c = await server.irc("nm")
    await server.irc("other2")
    lines = await c.roundtrip("MODE nm +Q")
    assert only(lines, "501")
    lines = await c.roundtrip("MODE other2")
    assert only(lines, "502")
    lines = await c.roundtrip("MODE other2 +i")
    assert only(lines, "502")
    lines = await c.roundtrip("MODE nm +o")  # only OPER gives +o
    assert not [l for l in lines if l.command == "MODE"]
    lines = await c.roundtrip("WHOWAS neverseen")
    assert only(lines, "406").params[1] == "neverseen" and only(lines, "369")
    lines = await c.roundtrip("PING")
    assert only(lines, "409")  # ERR_NOORIGIN
    lines = await c.roundtrip("LUSERS")
    assert {"251", "252", "253", "254", "255", "265", "266"} <= {l.command for l in lines}
    lines = await c.roundtrip("MOTD")
    assert only(lines, "422")  # no motd_file configured
    lines = await c.roundtrip("LINKS")
    assert only(lines, "364").params[1:3] == ["irc.test", "irc.test"] and only(lines, "365")


@pytest_twisted.ensureDeferred
async def test_ban_masks_ban_list_and_what_a_ban_does(server):
    op = await server.irc("bop", rooms=["#bans"])
    victim = await server.irc("victim", rooms=["#bans"])
    await op.roundtrip()
    # masks match the host everyone sees: the cloak's last labels are the /24 (127.0.0.*)
    by_net = "vic*!*@*." + server.host.split(".", 1)[1]
    lines = await op.roundtrip(f"MODE #bans +b {by_net}")
    (mode,) = [l for l in lines if l.command == "MODE"]
    assert mode.params == ["#bans", "+b", by_net]
    assert (await victim.expect("MODE")).params == ["#bans", "+b", by_net]
    lines = await op.roundtrip("MODE #bans +b someone")  # a bare nick means nick!*@*
    lines = await victim.roundtrip("MODE #bans b")
    entries = [l.params[2:] for l in numerics(lines, "367")]
    assert [e[0] for e in entries] == [by_net, "someone!*@*"]
    assert all(e[1].startswith("bop!") and e[2].isdigit() for e in entries)
    assert only(lines, "368").params[1] == "#bans"
    # a banned member stays but cannot speak; after a part it cannot come back
    lines = await victim.roundtrip("PRIVMSG #bans :still here?")
    assert only(lines, "404").params[1] == "#bans"
    await victim.roundtrip("PART #bans")
    lines = await victim.roundtrip("JOIN #bans")
    assert only(lines, "474")
    # -b lifts it
    await op.roundtrip(f"MODE #bans -b {by_net}")
    await join(victim, "#bans")
    lines = await op.roundtrip("MODE #bans b")
    assert [l.params[2] for l in numerics(lines, "367")] == ["someone!*@*"]


@pytest_twisted.ensureDeferred
async def test_channel_modes_set_on_irc_bind_telnet_users(server):
    """The hub enforces modes: +k, +i, +l, +b, +m and +t refuse a telnet user as they refuse IRC ones."""
    op = await server.irc("cop", rooms=["#k", "#i", "#l", "#b", "#t"])
    for command in ("MODE #k +k sesame", "MODE #i +i", "MODE #l +l 1", "MODE #b +b tel*!*@*"):
        await op.roundtrip(command)
    tel = await server.telnet("telly")
    refusals = {
        "#k": r"Cannot join room \(incorrect key\)",
        "#i": r"Cannot join room \(invite only\)",
        "#l": r"Cannot join room \(room is full\)",
        "#b": r"Cannot join room \(you are banned\)",
    }
    for room, text in refusals.items():
        tel.send(f"/join {room}")
        await tel.expect_re(rf"^! {room}: {text}$")
    lines = await op.roundtrip("NAMES #k,#i,#l,#b")
    assert "telly" not in " ".join(l.params[-1] for l in numerics(lines, "353"))
    # the ways in work for telnet too: the key, an invite
    tel.send("/join #k sesame")
    await tel.expect_re(r"^\* you joined #k$")
    await op.roundtrip("INVITE telly #i")
    tel.send("/join #i")
    await tel.expect_re(r"^\* you joined #i$")
    # +t: only operators set the topic; the IRC op sees the telnet user's refusal nowhere
    tel.send("/join #t")
    await tel.expect_re(r"^\* you joined #t$")
    tel.send("/topic telnet topic")
    await tel.expect_re(r"^! #t: ")
    lines = await op.roundtrip("TOPIC #t")
    assert only(lines, "331")  # still no topic
    # +v from IRC lets a +m telnet user speak; -v silences it again
    await op.roundtrip("MODE #t +m")
    tel.send("muted")
    await tel.expect_re(r"^! #t: Cannot send to room \(moderated, \+v needed\)$")
    await op.roundtrip("MODE #t +v telly")
    tel.send("voiced")
    line = await op.expect("PRIVMSG")
    assert line.params == ["#t", "voiced"] and line.source.startswith("telly!")
    # a kick from IRC removes the telnet user
    await op.roundtrip("KICK #t telly :out")
    await tel.expect_re(r"kicked.*#t|#t.*kicked")
    lines = await op.roundtrip("NAMES #t")
    assert "telly" not in only(lines, "353").params[-1]
