"""The telnet line protocol as a unit: StringTransport for the wire, task.Clock for time."""
from __future__ import annotations

from types import SimpleNamespace

import pytest
from twisted.conch import telnet

from chathub.config import Config
from chathub.protocols.line import LineBuffer, render
from tests.support import Chat, line_world


@pytest.fixture
def env() -> Chat:
    return line_world()


def test_greeting_with_one_line_help(env):
    conn = env.line_conn()
    greeting = conn.expect("Welcome to chathub.local")
    assert "/nick NAME" in greeting and "/help" in greeting


def test_lf_and_crlf_and_split_lines(env):
    conn = env.line_conn()
    conn.send(b"/nick ali")
    conn.send(b"ce\n")  # bare LF, split over two reads
    conn.expect("you are alice")
    conn.send(b"/help\r\n")  # CRLF
    assert conn.expect("Commands:").startswith("Commands: /nick NAME")
    conn.send(b"/join #a\r\n/join #b\n")  # two lines in one read
    conn.expect("you joined #a")
    # the previous expect consumed the output for #b too; check the hub instead
    assert sorted(env.hub.find_user("alice").rooms) == ["#a", "#b"]
    raw = conn.raw()
    assert raw.endswith(b"\r\n") and b"\r\r" not in raw
    assert raw.count(b"\n") == raw.count(b"\r\n")


def test_output_held_while_paused_is_flushed_unchanged(env):
    alice = env.line_conn("alice", "#r")
    bob = env.line_conn("bob", "#r")
    bob.new_lines()
    bob.transport.producer.pauseProducing()
    for i in range(3):
        alice.send(f"queued {i}")
    assert bob.new_lines() == [] and bob.session.queue.pending_bytes > 0
    bob.transport.producer.resumeProducing()
    assert bob.new_lines() == [f"[#r] <alice> queued {i}" for i in range(3)]
    assert b"\r\r" not in bob.raw()


def test_registration_timeout_closes_with_error(env):
    conn = env.line_conn()
    timeout = env.config.limits.registration_timeout
    env.clock.advance(timeout - 1)
    assert not conn.closed
    conn.send("/help")  # activity without a nick does not count
    env.clock.advance(1)
    line = conn.expect("! ")
    assert line.startswith("! no nick given within 60 seconds")
    assert conn.closed


def test_registration_timeout_is_configurable_and_stops_after_nick():
    env = line_world(registration_timeout=5.0)
    conn = env.line_conn("alice")
    env.clock.advance(5.0)
    assert not conn.closed
    slow = env.line_conn()
    env.clock.advance(5.0)
    assert slow.closed and "within 5 seconds" in slow.expect("! ")
    assert not env.clock.getDelayedCalls()


def test_over_long_line_gets_an_error_and_is_dropped():
    env = line_world(max_line_bytes=100)
    alice = env.line_conn("alice", "#r")
    bob = env.line_conn("bob", "#r")
    bob.new_lines()
    alice.send(b"y" * 150 + b"\r\n")  # in one read, newline included
    assert alice.expect("! line too long").startswith("! line too long (at most 100 bytes)")
    alice.send(b"x" * 60)
    alice.send(b"x" * 60)  # no newline yet, past the limit
    alice.expect("! line too long")
    alice.send(b"x" * 500 + b" tail\r\nafter\r\n")
    assert alice.new_lines() == []  # one error per long line, the rest of it dropped
    assert bob.new_lines() == ["[#r] <alice> after"]
    assert not alice.closed


def test_commands_need_a_nick_first(env):
    conn = env.line_conn()
    conn.send("/join #r")
    assert conn.expect("! ") == "! pick a nick first: /nick NAME"
    conn.send("hello")
    assert conn.expect("! ") == "! pick a nick first: /nick NAME"


def test_unknown_command_and_usage_errors(env):
    conn = env.line_conn("alice")
    conn.send("/frobnicate now")
    assert conn.expect("! ") == "! unknown command /frobnicate; /help lists commands"
    for command in ("/join", "/msg bob", "/nick", "/me hi", "/topic x"):
        conn.send(command)
        assert conn.expect("! ").startswith("! ")
    conn.send("no room yet")
    assert "no room" in conn.expect("! ")


def test_room_chat_rendering(env):
    alice = env.line_conn("alice", "#r")
    bob = env.line_conn("bob", "#r")
    assert alice.expect("bob joined") == "* bob joined #r"
    bob.send("hello alice")
    assert alice.new_lines() == ["[#r] <bob> hello alice"]
    assert bob.new_lines() == []  # no echo of one's own line
    bob.send("/me waves")
    assert alice.new_lines() == ["[#r] * bob waves"]
    bob.send("//slash at start")
    assert alice.new_lines() == ["[#r] <bob> /slash at start"]
    bob.send("\x1b[31mred\x1b[0m and \x03colour")  # terminal escapes are not passed on
    assert alice.new_lines() == ["[#r] <bob> red and colour"]  # escapes whole, formatting stripped


def test_private_message(env):
    alice = env.line_conn("alice", "#r")
    bob = env.line_conn("bob", "#r")
    carol = env.line_conn("carol", "#r")
    for c in (alice, bob, carol):
        c.new_lines()
    alice.send("/msg BOB just for you")
    assert alice.new_lines() == ["-> bob: just for you"]
    assert bob.new_lines() == ["<- alice: just for you"]
    assert carol.new_lines() == []
    alice.send("/msg nobody hello")
    assert alice.expect("! ") == "! nobody: No such nick"


def test_nick_collision_is_case_insensitive(env):
    env.line_conn("alice")
    other = env.line_conn()
    other.send("/nick ALICE")
    assert other.expect("! ") == "! ALICE: Nickname is already in use"
    assert env.hub.find_user("alice").participant is not other.session


def test_registered_nick_needs_its_password(env):
    conn = env.line_conn()
    conn.send("/nick owner")
    assert "registered" in conn.expect("! ")
    conn.send("/nick owner wrong")
    assert conn.expect("! ").startswith("! login as owner refused")
    conn.send("/nick owner secret")
    assert conn.new_lines() == []  # the failure's delay first
    env.clock.advance(env.config.auth.login_delay)
    assert "logged in to account owner" in conn.expect("you are owner")


def test_guests_disabled():
    env = line_world(Config().with_overrides(auth={"allow_guests": False}))
    conn = env.line_conn()
    conn.send("/nick guest")
    assert "guests are not allowed" in conn.expect("! ")
    assert env.hub.find_user("guest") is None
    conn.send("/nick owner secret")
    conn.expect("you are owner")


def test_topic_who_list_names_away(env):
    alice = env.line_conn("alice", "#r")
    bob = env.line_conn("bob", "#r")
    alice.new_lines()
    alice.send("/topic all about r")
    assert alice.new_lines() == ["* you set the topic of #r: all about r"]
    assert bob.new_lines() == ["* alice set the topic of #r: all about r"]
    bob.send("/topic")
    assert bob.new_lines() == ["* topic of #r: all about r"]
    bob.send("/topic mine")
    assert "operator" in bob.expect("! ")
    bob.send("/away lunch")
    assert bob.new_lines() == ["* you are marked away: lunch"]
    alice.send("/who #r")
    assert alice.new_lines() == ["* 2 in #r:", "*   @alice (line) here", "*   bob (line) away: lunch"]
    alice.send("/names")
    assert alice.new_lines() == ["* in #r (2): @alice bob"]
    alice.send("/list")
    assert alice.new_lines() == ["* 1 room:", "*   #r (2): all about r"]
    bob.send("/away")
    assert bob.new_lines() == ["* you are back"]
    alice.send("/who")
    assert alice.new_lines() == ["* 2 users online:", "*   alice (line) here", "*   bob (line) here"]


def test_part_and_quit(env):
    alice = env.line_conn("alice", "#r")
    bob = env.line_conn("bob", "#r")
    alice.new_lines()
    bob.send("/part see you")
    assert bob.new_lines() == ["* you left #r"]
    assert alice.new_lines() == ["* bob left #r (see you)"]
    bob.send("/join #r")
    alice.new_lines()
    bob.new_lines()
    bob.send("/quit gone home")
    assert bob.new_lines() == ["* bye"] and bob.closed
    assert alice.new_lines() == ["* bob quit (gone home)"]
    bob.disconnect()  # the transport then reports the close
    assert env.hub.find_user("bob") is None
    assert alice.new_lines() == []


def test_disconnect_quits_the_user(env):
    alice = env.line_conn("alice", "#r")
    bob = env.line_conn("bob", "#r")
    alice.new_lines()
    bob.send(b"half a li")
    bob.disconnect()
    assert alice.new_lines() == ["* bob quit (Connection closed)"]
    assert env.hub.find_user("bob") is None


def test_telnet_negotiation_is_refused_and_never_shown(env):
    alice = env.line_conn("alice", "#r")
    bob = env.line_conn("bob", "#r")
    bob.new_lines()
    before = len(alice.raw())
    alice.send(telnet.IAC + telnet.DO + telnet.ECHO)
    alice.send(telnet.IAC + telnet.WILL + telnet.NAWS)
    alice.send(b"hel" + telnet.IAC + telnet.SB + telnet.NAWS + b"\x00\x50\x00\x18" + telnet.IAC + telnet.SE + b"lo\r\n")
    answer = alice.raw()[before:]
    assert telnet.IAC + telnet.WONT + telnet.ECHO in answer
    assert telnet.IAC + telnet.DONT + telnet.NAWS in answer
    assert bob.new_lines() == ["[#r] <alice> hello"]


def test_invalid_telnet_command_is_not_fatal(env):
    alice = env.line_conn("alice", "#r")
    bob = env.line_conn("bob", "#r")
    bob.new_lines()
    # IAC followed by a byte that is no telnet command: conch raises ValueError on it
    alice.send(b"one" + telnet.IAC + b"\x01two\r\n")
    alice.send(b"three\r\n")
    lines = bob.new_lines()
    assert lines[-1] == "[#r] <alice> three"
    assert not alice.closed


def test_iac_iac_is_a_literal_byte(env):
    alice = env.line_conn("alice", "#r")
    bob = env.line_conn("bob", "#r")
    bob.new_lines()
    alice.send(b"caf\xc3" + b"\xa9 " + telnet.IAC + telnet.IAC + b"!\r\n")  # 0xFF is invalid UTF-8
    assert bob.new_lines() == ["[#r] <alice> café \ufffd!"]


def test_invalid_utf8_is_replaced_and_nul_refused(env):
    alice = env.line_conn("alice", "#r")
    bob = env.line_conn("bob", "#r")
    bob.new_lines()
    alice.send(b"bad \xc3\x28 bytes\r\n")
    assert bob.new_lines() == ["[#r] <alice> bad \ufffd( bytes"]
    alice.send(b"nul\x00inside\r\n")
    assert alice.expect("! ") == "! line contains NUL bytes; dropped"
    assert bob.new_lines() == []
    alice.send(b"still fine\r\n")
    assert bob.new_lines() == ["[#r] <alice> still fine"]


def test_binary_garbage_is_survived():
    import random

    # exempt from flood control: the garbage holds a few hundred "lines", which would
    # otherwise (rightly) count as a flood
    env = line_world(flood_exempt=["192.0.2.0/24"])
    rng = random.Random(1234)  # fixed, so a failure can be replayed
    alice = env.line_conn("alice", "#r")
    bob = env.line_conn("bob", "#r")
    for _ in range(50):
        alice.send(bytes(rng.getrandbits(8) for _ in range(1000)))
    alice.send(b"\r\n")  # end whatever line (or subnegotiation) is open
    alice.send(telnet.IAC + telnet.SE + b"\r\n")
    env.clock.advance(0)  # every round of 32 lines waits for the next turn
    bob.new_lines()
    alice.send(b"after garbage\r\n")
    env.clock.advance(0)
    assert bob.new_lines()[-1:] == ["[#r] <alice> after garbage"]
    bob.send("reply")
    assert alice.new_lines()[-1] == "[#r] <bob> reply"


def test_send_queue_overflow_disconnects_with_reason():
    env = line_world(sendq_bytes=2000, flood_exempt=["192.0.2.0/24"])
    talker = env.line_conn("talker", "#r")
    stuck = env.line_conn("stuck", "#r")
    stuck.transport.producer.pauseProducing()  # its kernel buffer is full
    talker.new_lines()
    queue = stuck.session.queue
    for i in range(200):
        talker.send(f"message {i:03d} " + "x" * 40)
        env.clock.advance(0)
        assert queue.pending_bytes <= 2000
        if stuck.closed:
            break
    assert stuck.closed and stuck.transport.disconnected  # aborted, not a polite close
    assert 2000 - 70 < queue.peak_bytes <= 2000
    assert talker.new_lines() == ["* stuck quit (Send queue exceeded)"]
    assert env.hub.find_user("stuck") is None
    stuck.disconnect()
    talker.send("and on")


def test_render_covers_every_shown_kind(env):
    alice = env.line_conn("alice", "#r")
    bob = env.line_conn("bob", "#r")
    alice.new_lines()
    env.hub.kick(env.hub.find_user("alice"), "#r", "bob", "spam")
    assert bob.new_lines()[-1] == "* bob was kicked from #r by alice (spam)"
    bob.send("/join #r")
    alice.new_lines()
    bob.new_lines()
    bob.send("/nick robert")
    assert bob.new_lines() == ["* you are now known as robert"]
    assert alice.new_lines() == ["* bob is now known as robert"]
    env.hub.change_room_modes(env.hub.find_user("alice"), "#r", [("+m", None), ("+v", "robert")])
    assert bob.new_lines() == ["* alice sets mode +m +v robert on #r"]
    assert render(env.hub.ids.make("typing", env.hub.server_source)) is None


def test_line_buffer_bounds_memory():
    lines: list[bytes] = []
    errors: list[int] = []
    buffer = LineBuffer(10, SimpleNamespace(line_read=lines.append, line_too_long=lambda: errors.append(1)))
    for _ in range(1000):
        buffer.feed(b"z" * 100)
        assert len(buffer._buffer) <= 10
    buffer.feed(b"\nok\r\n")
    assert lines == [b"ok"] and errors == [1]


def test_endless_telnet_subnegotiation_closes_with_a_reason(env):
    alice = env.line_conn("alice", "#r")
    bob = env.line_conn("bob", "#r")
    bob.new_lines()
    alice.send(telnet.IAC + telnet.SB + telnet.NAWS + b"z" * 10_000)
    assert alice.expect("! ") == "! telnet subnegotiation too long (no IAC SE); closing"
    assert alice.closed
    assert bob.new_lines() == []  # nothing of it was said in the room


def test_a_burst_of_lines_is_handled_a_round_at_a_time():
    from chathub.protocols.flood import PER_ROUND

    env = line_world(flood_exempt=["192.0.2.0/24"])  # a bridge: never delayed, only paced
    alice = env.line_conn("alice", "#r")
    bob = env.line_conn("bob", "#r")
    bob.new_lines()
    count = PER_ROUND * 3 + 5
    alice.send(b"".join(b"burst %d\r\n" % i for i in range(count)))
    assert 0 < len(bob.new_lines()) <= PER_ROUND
    assert alice.transport.producerState == "paused"  # no more reading meanwhile
    (turn,) = env.clock.getDelayedCalls()
    assert turn.getTime() == env.clock.seconds()  # the rest waits for the next turn only
    env.clock.advance(0)  # task.Clock runs every turn that falls due now
    assert alice.transport.producerState == "producing"
    assert env.clock.getDelayedCalls() == []
    received = [line for line in bob.raw().decode().split("\r\n") if line.startswith("[#r] <alice> burst")]
    assert received == [f"[#r] <alice> burst {i}" for i in range(count)]