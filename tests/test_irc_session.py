"""IrcSession units: StringTransport connections on one hub, time from task.Clock."""
from __future__ import annotations

import base64

import pytest
import pytest_twisted
from twisted.internet import task

from chathub.config import Config
from tests.support import Chat, HeldStore, irc_world


@pytest.fixture
def world():
    return irc_world()


def test_registration_without_cap_sends_welcome_isupport_lusers_motd(world):
    c = world.irc_conn()
    c.send("NICK amy", "USER al 0 * :Amy Liddell")
    msgs = c.lines()
    cmds = [m.command for m in msgs]
    for code in ("001", "002", "003", "004", "005", "251", "255", "422"):
        assert code in cmds
    welcome = msgs[cmds.index("001")]
    assert welcome.source == world.config.server.name
    assert welcome.params[-1].endswith(f"amy!~al@{world.host}")
    tokens = " ".join(" ".join(m.params[1:-1]) for m in msgs if m.command == "005")
    for token in ("CASEMAPPING=ascii", "CHANTYPES=#", "PREFIX=(ov)@+", "NICKLEN=30", "NETWORK=chathub"):
        assert token in tokens


def test_cap_negotiation_holds_registration_until_cap_end(world):
    c = world.irc_conn()
    c.send("CAP LS 302", "NICK bob", "USER b 0 * :Bob")
    ls = c.lines()
    assert {m.command for m in ls} == {"CAP"}
    # long lists are split, every line but the last marked with "*"
    assert all(m.params[2] == "*" for m in ls[:-1]) and len(ls[-1].params) == 3
    assert "sasl=PLAIN" in " ".join(m.params[-1] for m in ls).split()
    c.send("CAP REQ :server-time bogus-cap")
    nak = c.lines()[0]
    assert nak.params[1:] == ["NAK", "server-time bogus-cap"]
    c.send("CAP REQ :server-time multi-prefix", "CAP LIST")
    ack, listing = c.lines()
    assert ack.params[1] == "ACK"
    # CAP LS 302 enables cap-notify implicitly
    assert listing.params[-1] == "cap-notify multi-prefix server-time"
    c.send("CAP END")
    assert "001" in c.commands()


def test_replies_wait_only_for_a_held_room_of_their_user_and_a_new_connection_for_none(world):
    """A cluster node's outbox holds a room's events while the room waits for another
    node's earlier event (``Outbox.pause``). A reply waits only if its user is owed one of
    them (a member): it keeps hub order for that user, and everyone else's replies go on.
    A connection with no user in the hub has nothing there to wait for: its CAP answers
    and a new user's welcome are written at once."""
    carol = world.irc_conn("carol")
    erin = world.irc_conn("erin")
    carol.send("JOIN #held")
    carol.lines()
    outbox = world.hub.outbox
    outbox.pause("#held")
    outbox.hold(lambda: None, key="#held")(None)  # committed, parked behind the pause
    carol.send("PING :before")
    assert carol.lines() == []  # a member's reply keeps hub order: it waits for the room
    erin.send("PING :free", "WHOIS carol")
    assert erin.commands()[:2] == ["PONG", "311"]  # in no held room: nothing to wait for
    dan = world.irc_conn()
    dan.send("CAP LS 302")
    assert {m.command for m in dan.lines()} == {"CAP"}
    dan.send("CAP REQ :server-time", "NICK dan", "USER d 0 * :Dan", "CAP END")
    answers = dan.commands()
    assert answers[0] == "CAP" and "001" in answers and "005" in answers
    dan.send("JOIN #held", "PING :after")
    assert dan.lines() == []  # its JOIN is behind the room's parked event, and its PONG behind that
    outbox.resume("#held")
    assert [(m.command, m.params[-1]) for m in carol.lines()] == [("PONG", "before"), ("JOIN", "#held")]
    assert [m.command for m in dan.lines()][-1] == "PONG"


def test_a_reply_goes_ahead_of_what_only_others_are_shown():
    """Under load a commit takes a while (thousands of messages a transaction): a reply
    waits only for what concerns its user (its own messages, its rooms' events, what else
    is shown to it), not for another room's messages, which it cannot tell from later ones.
    What concerns it keeps hub order: a member's PING still follows the room's message
    (irctest's WebSocket tests send a message and at once PING the recipient)."""
    store = HeldStore()
    world = Chat(Config().with_overrides(history={"enabled": True}), store=store)
    amy, bob = world.irc_conn("amy", caps="draft/metadata-3"), world.irc_conn("bob", caps="echo-message")
    erin = world.irc_conn("erin")
    for conn, room in ((amy, "#r"), (bob, "#r"), (erin, "#quiet")):
        conn.send(f"JOIN {room}")
        conn.lines()
    amy.lines()
    bob.send("PRIVMSG #r :hi", "PING :bob")
    amy.send("PING :amy")
    fay = world.irc_conn("fay")
    fay.send("JOIN #elsewhere")  # queued behind bob's message: shown to fay only
    erin.send("PING :erin", "NAMES #quiet")
    assert bob.lines() == [] and amy.lines() == []  # its own message, her room's: not committed yet
    assert erin.commands() == ["PONG", "353", "366"]  # at once
    cat = world.irc_conn("cat")
    cat.send("PRIVMSG amy :psst", "JOIN #quiet")  # the join follows the message, for erin too
    erin.send("PING :again")
    assert cat.lines() == [] and erin.lines() == []
    store.commit()
    assert [(m.command, m.params[-1]) for m in amy.lines()] == [("PRIVMSG", "hi"), ("PONG", "amy"), ("PRIVMSG", "psst")]
    assert [(m.command, m.params[-1]) for m in bob.lines()] == [("PRIVMSG", "hi"), ("PONG", "bob")]
    assert [(m.command, m.params[-1]) for m in erin.lines()] == [("JOIN", "#quiet"), ("PONG", "again")]
    assert cat.commands()[:3] == ["JOIN", "353", "366"]
    # a watcher is told of a quit after the quitter's earlier message to it
    dan = world.irc_conn("dan")
    dan.send("MONITOR + bob")
    assert dan.commands() == ["730"]
    amy.send("METADATA * SUB display-name")
    cat.send("JOIN #r")
    amy.lines()
    cat.send("PRIVMSG #r :about to rename", "METADATA * SET display-name :Cat")
    bob.send("PRIVMSG dan :bye", "QUIT :gone")
    assert dan.lines() == [] and amy.lines() == []
    store.commit()
    assert [m.command for m in dan.lines()] == ["PRIVMSG", "731"]
    assert [m.command for m in amy.lines()] == ["PRIVMSG", "761", "QUIT"]
    # a message from outside the room (-n): its sender's reply follows it too
    amy.send("MODE #r -n")
    amy.lines()
    erin.send("PRIVMSG #r :from outside", "PING :outside")
    assert erin.lines() == []
    store.commit()
    assert [(m.command, m.params[-1]) for m in amy.lines()] == [("PRIVMSG", "from outside")]
    assert [(m.command, m.params[-1]) for m in erin.lines()] == [("PONG", "outside")]


def test_ping_echoes_token_exactly(world):
    c = world.irc_conn("carol")
    c.send("PING :a token with spaces", "PING")
    pong, noorigin = c.lines()
    assert pong.command == "PONG" and pong.params == [world.config.server.name, "a token with spaces"]
    assert noorigin.command == "409"


def test_dead_client_is_dropped_after_ping_timeout(world):
    c = world.irc_conn("dave")
    irc = world.config.irc
    world.clock.advance(irc.ping_interval)
    ping = c.lines()[-1]
    assert ping.command == "PING"
    world.clock.advance(irc.ping_timeout - 1)
    assert not c.closed
    world.clock.advance(1)
    last = c.lines()[-1]
    assert last.command == "ERROR" and "Ping timeout" in last.params[0]
    assert c.closed
    assert world.hub.find_user("dave") is None


def test_answering_ping_keeps_the_client(world):
    c = world.irc_conn("erin")
    for _ in range(3):
        world.clock.advance(world.config.irc.ping_interval)
        assert c.lines()[-1].command == "PING"
        c.send("PONG :x")
    world.clock.advance(world.config.irc.ping_timeout)
    assert not c.closed


def test_registration_timeout(world):
    c = world.irc_conn()
    c.send("NICK slow")
    world.clock.advance(world.config.limits.registration_timeout)
    assert c.lines()[-1].command == "ERROR"
    assert c.closed


def test_over_long_and_undecodable_lines_get_errors_not_crashes(world):
    c = world.irc_conn("frank", caps="labeled-response batch")
    c.send(b"PRIVMSG #x :" + b"y" * 600)
    assert c.commands() == ["417"]
    c.protocol.dataReceived(b"z" * 20000)  # no newline at all
    assert c.commands() == ["417"]
    c.send(b"tail of that line", b"@label=l1 PRIVMSG #x :hi\xff")
    fail = c.lines()[0]
    assert fail.command == "FAIL" and fail.params[1] == "INVALID_UTF8" and fail.tags["label"] == "l1"
    c.send("PING ok")
    assert c.commands() == ["PONG"]


def test_commands_before_registration_and_unknown_commands(world):
    c = world.irc_conn()
    c.send("JOIN #a")
    assert c.commands() == ["451"]
    c = world.irc_conn("gina")
    c.send("FROB", "USER a b c d", "JOIN", "NICK", "NICK 9bad", "PRIVMSG", "PRIVMSG gina", "PRIVMSG nobody :x")
    assert c.commands() == ["421", "462", "461", "431", "432", "411", "412", "401"]


def test_nick_in_use_and_nick_change_seen_by_channel(world):
    a = world.irc_conn("hank")
    b = world.irc_conn("ivy")
    a.send("JOIN #r")
    b.send("JOIN #r", "NICK hank")
    assert b.commands()[-1] == "433"
    a.lines()
    b.send("NICK ivy2")
    (own,) = b.lines()
    (seen,) = a.lines()
    assert own.command == seen.command == "NICK" and seen.source.startswith("ivy!")


def test_labeled_response_ack_single_and_batch(world):
    c = world.irc_conn("jack", caps="labeled-response batch echo-message")
    c.send("@label=a PONG :x")
    (ack,) = c.lines()
    assert ack.command == "ACK" and ack.tags["label"] == "a"
    c.send("@label=b PING x")
    (pong,) = c.lines()
    assert pong.tags["label"] == "b"
    c.send("@label=c JOIN #lab")
    msgs = c.lines()
    assert msgs[0].command == "BATCH" and msgs[0].tags["label"] == "c"
    ref = msgs[0].params[0][1:]
    assert all(m.tags.get("batch") == ref for m in msgs[1:-1])
    assert msgs[-1].params == ["-" + ref]


def test_channel_modes_are_enforced_by_the_hub(world):
    op = world.irc_conn("kim", caps="multi-prefix")
    guest = world.irc_conn("lee")
    op.send("JOIN #m", "MODE #m +m")
    guest.send("JOIN #m")
    guest.lines()
    guest.send("PRIVMSG #m :hello")
    assert guest.commands() == ["404"]
    guest.send("MODE #m -m")
    assert guest.commands() == ["482"]
    op.send("MODE #m +v lee")
    guest.lines()
    guest.send("PRIVMSG #m :now I may")
    assert [m.params for m in op.lines() if m.command == "PRIVMSG"] == [["#m", "now I may"]]
    op.send(f"MODE #m +bk *!*@{world.host} sekrit", "MODE #m b")
    guest.lines()
    msgs = op.lines()
    assert [m.command for m in msgs] == ["MODE", "367", "368"]
    guest.send("PART #m", "JOIN #m", "JOIN #m sekrit")
    assert [m.command for m in guest.lines()] == ["PART", "475", "474"]
    op.lines()
    op.send("MODE #m +l 1", "MODE #m", "KICK #m nobody", "INVITE nobody #m", "NAMES #m")
    cmds = [(m.command, m.params[1:]) for m in op.lines()]
    assert [c for c, _ in cmds] == ["MODE", "324", "329", "401", "401", "353", "366"]
    assert cmds[1] == ("324", ["#m", "+mntkl", "sekrit", "1"])
    assert cmds[5][1][-1] == "@kim"


def test_away_gives_301_and_away_notify(world):
    a = world.irc_conn("mia", caps="away-notify")
    b = world.irc_conn("ned")
    a.send("JOIN #w")
    a.lines()
    b.send("JOIN #w", "AWAY :lunch")
    assert b.commands()[-1] == "306"
    assert [m.command for m in a.lines()] == ["JOIN", "AWAY"]
    a.send("PRIVMSG ned :hi?")
    away = a.lines()[0]
    assert away.command == "301" and away.params[1:] == ["ned", "lunch"]


def test_server_time_msgid_and_echo_share_ids(world):
    a = world.irc_conn("olga", caps="message-tags server-time echo-message")
    b = world.irc_conn("pete", caps="message-tags server-time")
    a.send("JOIN #t")
    b.send("JOIN #t")
    a.lines()
    b.lines()
    a.send("@+draft/reply=abc PRIVMSG #t :tagged")
    (echo,) = a.lines()
    (got,) = b.lines()
    assert echo.tags["msgid"] == got.tags["msgid"]
    assert got.tags["+draft/reply"] == "abc" and got.tags["time"].endswith("Z")


def _sasl(c, payload: bytes) -> list:
    c.send("AUTHENTICATE PLAIN")
    assert c.lines()[0].params == ["+"]
    c.send("AUTHENTICATE " + base64.b64encode(payload).decode())
    return c.lines()


def test_sasl_plain_success_and_failure(world):
    c = world.irc_conn()
    c.send("CAP LS 302", "CAP REQ sasl", "NICK alice", "USER a 0 * :A")
    c.lines()
    assert [m.command for m in _sasl(c, b"\0alice\0wrong")] == ["904"]
    # the next attempt waits out the failed one's delay (the limiter's clock is the world's)
    assert _sasl(c, b"alice\0alice\0sesame") == []
    world.clock.advance(world.config.auth.login_delay)
    msgs = c.lines()
    assert [m.command for m in msgs] == ["900", "903"]
    c.send("CAP END")
    assert "001" in c.commands()
    assert world.hub.find_user("alice").account == "alice"


def test_sasl_during_registration_nick_user_go_on_cap_end_aborts(world):
    # NICK and USER while the exchange waits for data do not end it
    c = world.irc_conn()
    c.send("CAP LS 302", "CAP REQ sasl", "AUTHENTICATE PLAIN")
    assert c.lines()[-1].params == ["+"]
    c.send("NICK alice", "USER a 0 * :A", "AUTHENTICATE " + base64.b64encode(b"\0alice\0sesame").decode())
    assert [m.command for m in c.lines()] == ["900", "903"]
    # CAP END does: 906, then the client registers without an account
    c = world.irc_conn()
    c.send("CAP LS 302", "CAP REQ sasl", "AUTHENTICATE PLAIN")
    c.lines()
    c.send("NICK bert", "USER b 0 * :B", "CAP END")
    commands = c.commands()
    assert commands[0] == "906" and "001" in commands
    assert world.hub.find_user("bert").account is None
    # the exchange is over: data now is a mechanism nobody offers, not a login
    c.send("AUTHENTICATE " + base64.b64encode(b"\0alice\0sesame").decode())
    assert [m.command for m in c.lines()] == ["908", "904"]


def test_sasl_message_past_the_limit_gets_one_904(world):
    c = world.irc_conn()
    c.send("CAP LS 302", "CAP REQ sasl", "NICK alice", "USER a 0 * :A", "AUTHENTICATE PLAIN")
    c.lines()
    chunk = base64.b64encode(b"x" * 300).decode()
    assert len(chunk) == 400
    c.send(*["AUTHENTICATE " + chunk] * 1000)  # 400 kB
    while c.protocol.session.gate.waiting:  # handled 64 lines a reactor turn
        world.clock.advance(0)
    assert [m.command for m in c.lines()] == ["904"]
    c.send("AUTHENTICATE +")  # the end of the refused message: dropped too
    assert c.lines() == []
    # a new exchange works
    assert [m.command for m in _sasl(c, b"\0alice\0sesame")] == ["900", "903"]


def test_sasl_without_password_checkers_is_904():
    from chathub.config import Config
    from tests.support import Chat

    bare = Chat(Config(), [], clock=task.Clock())
    c = bare.irc_conn()
    c.send("CAP LS 302", "CAP REQ sasl", "NICK alice", "USER a 0 * :A")
    c.lines()
    assert [(m.command, m.params[-1]) for m in _sasl(c, b"\0alice\0sesame")] == [
        ("904", "SASL authentication failed")
    ]
    c.send("CAP END")
    assert "001" in c.commands()
    # PASS on such a server: refused as a wrong password, not an internal error
    d = bare.irc_conn()
    d.send("PASS alice:sesame", "NICK alice2", "USER a 0 * :A")
    assert [m.command for m in d.lines()] == ["464", "ERROR"]


def test_registered_nick_needs_its_password(world):
    c = world.irc_conn()
    c.send("NICK alice", "USER a 0 * :A")
    assert c.commands() == ["433"]
    c.send("NICK alicia")
    assert "001" in c.commands()


def test_pass_logs_in_clients_without_sasl(world):
    c = world.irc_conn()
    c.send("PASS alice:sesame", "NICK alice", "USER a 0 * :A")
    assert "001" in c.commands()
    c = world.irc_conn()
    c.send("PASS nope", "NICK bad", "USER a 0 * :A")
    assert [m.command for m in c.lines()] == ["464", "ERROR"]


@pytest_twisted.ensureDeferred
async def test_oper_kill_and_wallops_need_privileges(world):
    c = world.irc_conn("quinn")
    c.send("KILL quinn :x", "WALLOPS :hi", "OPER nobody pw")
    # OPER checks a hash in a thread even for a name that is no operator
    assert [m.command for m in await c.written("464")] == ["481", "481", "464"]


@pytest_twisted.ensureDeferred
async def test_a_registered_connection_keeps_no_logins_until_it_logs_in_again(world):
    """The login limiter's view of a connection is dropped once it is registered, unless it
    counts a failure; a later login (OPER here) makes a new one, throttled as before."""
    c = world.irc_conn("quinn")
    session = c.protocol.session
    assert session._logins is None
    c.send("OPER nobody pw")
    assert [m.command for m in await c.written("464")] == ["464"]
    assert session._logins is not None and session._logins.failures == 1
    # a failure counted before registration keeps them
    d = world.irc_conn(host="192.0.2.50")  # another address: quinn's failure delays not its logins
    d.send("CAP LS 302", "CAP REQ sasl", "NICK dora", "USER d 0 * :D")
    d.lines()
    assert [m.command for m in _sasl(d, b"\0alice\0wrong")] == ["904"]
    d.send("CAP END")
    assert "001" in d.commands()
    assert d.protocol.session._logins is not None and d.protocol.session._logins.failures == 1


def test_flood_is_throttled_then_disconnected_while_others_flow():
    world = irc_world(flood_rate=2.0, flood_burst=5, flood_max_lines=20)
    flooder = world.irc_conn("flood")
    calm = world.irc_conn("calm")
    watcher = world.irc_conn("watch")
    for c in (flooder, calm, watcher):
        c.send("JOIN #f")
        world.clock.advance(5)
        c.lines()
    watcher.lines()
    flooder.send(*[f"PRIVMSG #f :spam {i}" for i in range(10)])
    # the burst goes through at once, the rest waits (fake lag)
    assert len([m for m in watcher.lines() if m.command == "PRIVMSG"]) < 10
    calm.send("PRIVMSG #f :still here")
    assert [m.params[1] for m in watcher.lines()] == ["still here"]
    world.clock.advance(5)
    assert len([m for m in watcher.lines() if m.command == "PRIVMSG"]) > 0
    flooder.send(*[f"PRIVMSG #f :more {i}" for i in range(40)])
    assert flooder.lines()[-1].params == ["Excess Flood"]
    assert flooder.closed
    calm.send("PRIVMSG #f :and still")
    assert "and still" in [m.params[-1] for m in watcher.lines()]


def test_flood_exempt_addresses_are_not_throttled():
    world = irc_world(flood_rate=1.0, flood_burst=2, flood_max_lines=5, flood_exempt=["127.0.0.0/8"])
    c = world.irc_conn("fast")
    c.send(*["PING x"] * 200)
    # never delayed nor disconnected: handled a round at a time, not read from meanwhile
    assert c.transport.producerState == "paused" and not c.closed
    world.clock.advance(0)
    assert c.commands() == ["PONG"] * 200
    assert c.transport.producerState == "producing" and not c.closed


def test_ban_and_invite_exceptions(world):
    op = world.irc_conn("rita")
    other = world.irc_conn("sam")
    op.send("JOIN #x", f"MODE #x +b *!*@{world.host}", "MODE #x +e sam!*@*", "MODE #x e")
    assert [m.command for m in op.lines()][-3:] == ["MODE", "348", "349"]
    other.send("JOIN #x")
    assert other.commands()[0] == "JOIN"  # the exception beats the ban
    other.send("PART #x")
    other.lines()
    op.send(f"MODE #x -be *!*@{world.host} sam!*@*", "MODE #x +i")
    other.send("JOIN #x")
    assert other.commands() == ["473"]
    op.send("MODE #x +I sam!*@*")
    other.send("JOIN #x")
    assert other.commands()[0] == "JOIN"


def test_no_ctcp_mode(world):
    op = world.irc_conn("tom")
    op.send("JOIN #c", "MODE #c +C", "PRIVMSG #c :\x01VERSION\x01", "PRIVMSG #c :\x01ACTION ok\x01")
    assert op.commands()[-1] == "404"


def test_bot_mode_tags_messages_and_shows_in_whois(world):
    bot = world.irc_conn("bot")
    user = world.irc_conn("human", caps="message-tags")
    bot.send("MODE bot +B")
    assert [m.params for m in bot.lines()] == [["bot", "+B"]]
    bot.send("PRIVMSG human :beep")
    (msg,) = user.lines()
    assert "bot" in msg.tags
    user.send("WHOIS bot")
    assert "335" in [m.command for m in user.lines()]


def test_extended_monitor_reports_away_without_shared_channel(world):
    watcher = world.irc_conn("eye", caps="extended-monitor away-notify")
    plain = world.irc_conn("plain", caps="away-notify")
    target = world.irc_conn("seen")
    watcher.send("MONITOR + seen")
    plain.send("MONITOR + seen")
    assert watcher.commands() == ["730"]
    plain.lines()
    target.send("AWAY :gone")
    assert [(m.command, m.params) for m in watcher.lines()] == [("AWAY", ["gone"])]
    assert plain.lines() == []


def test_metadata_set_get_and_subscribers(world):
    a = world.irc_conn("meta", caps="draft/metadata-3 batch")
    b = world.irc_conn("sub", caps="draft/metadata-3 batch")
    b.send("METADATA * SUB display-name")
    assert [m.command for m in b.lines()] == ["770"]
    a.send("JOIN #md")
    b.send("JOIN #md")
    a.lines()
    b.lines()
    a.send("METADATA * SET display-name :Meta Person")
    (reply,) = a.lines()
    assert reply.command == "761" and reply.params[1:] == ["meta", "display-name", "*", "Meta Person"]
    (note,) = b.lines()
    assert note.command == "761" and note.params[1] == "meta"
    b.send("METADATA meta GET display-name", "METADATA meta SET x :y", "METADATA #nope LIST")
    msgs = b.lines()
    assert [m.command for m in msgs] == ["BATCH", "761", "BATCH", "FAIL", "FAIL"]
    assert msgs[3].params[1] == "KEY_NO_PERMISSION" and msgs[4].params[1] == "INVALID_TARGET"
    b.send("WHOIS meta")
    assert "760" in [m.command for m in b.lines()]


def test_read_marker(world):
    c = world.irc_conn("reader", caps="draft/read-marker")
    c.send("JOIN #rm")
    cmds = c.commands()
    assert cmds.index("MARKREAD") < cmds.index("366")
    c.send("MARKREAD #rm timestamp=2020-01-01T00:00:00.000Z", "MARKREAD #rm timestamp=2019-01-01T00:00:00.000Z")
    assert [m.params[1] for m in c.lines()] == ["timestamp=2020-01-01T00:00:00.000Z"] * 2
    c.send("MARKREAD #rm bogus", "MARKREAD")
    assert [m.params[1] for m in c.lines()] == ["INVALID_PARAMS", "NEED_MORE_PARAMS"]
