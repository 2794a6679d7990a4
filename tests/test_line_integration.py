"""The line protocol end to end: ``twistd -n chathub`` as a subprocess, telnet-style clients
on real sockets; and, in-process, a client that never reads in a busy room."""
from __future__ import annotations

import os
import signal
import socket

import pytest
import pytest_twisted
from twisted.conch import telnet
from twisted.internet import defer

from chathub.config import Config
from chathub.passwd import set_password
from tests.support import HubServer, IrcClient, server_config


def login(client, nick: str, room: str | None = None, password: str | None = None) -> None:
    client.send(f"/nick {nick}" + (f" {password}" if password else ""))
    client.expect(rf"^\* you are {nick}, ")
    if room:
        client.send(f"/join {room}")
        client.expect(rf"^\* in {room} ")


def exchange(a, a_nick: str, b, b_nick: str, room: str, tag: str) -> None:
    """Both ways: a says something b must see, and the reverse."""
    a.send(f"{tag} from {a_nick}")
    b.expect(rf"^\[{room}\] <{a_nick}> {tag} from {a_nick}$")
    b.send(f"{tag} from {b_nick}")
    a.expect(rf"^\[{room}\] <{b_nick}> {tag} from {b_nick}$")


def assert_clean_log(server, *secrets: str) -> None:
    assert server.process.poll() is None, "server exited"
    assert server.exceptions == [], "\n".join(server.log)
    for secret in secrets:
        assert not [line for line in server.log if secret in line], f"{secret!r} appears in the log"


# -- chat ---------------------------------------------------------------------------------


def test_two_users_chat_both_ways_and_see_each_other(line_server, line_client_factory):
    server, port = line_server
    alice, bob = line_client_factory(port), line_client_factory(port)
    login(alice, "alice", "#room")
    login(bob, "bob", "#room")
    alice.expect(r"^\* bob joined #room$")
    exchange(alice, "alice", bob, "bob", "#room", "hello")
    bob.send("/part back soon")
    bob.expect(r"^\* you left #room")
    alice.expect(r"^\* bob left #room \(back soon\)$")
    bob.send("/join #ROOM")
    bob.expect(r"^\* in #room \(2\): @alice bob$")
    alice.expect(r"^\* bob joined #room$")
    alice.send("/me waves")
    bob.expect(r"^\[#room\] \* alice waves$")
    alice.send("/quit off to lunch")
    alice.expect(r"^\* bye$")
    alice.expect_closed()
    bob.expect(r"^\* alice quit \(off to lunch\)$")
    assert_clean_log(server)
    server.expect_log(r"line connection from 127\.0\.0\.1 closed \(alice\)")


def test_private_message_reaches_only_its_target(line_server, line_client_factory):
    server, port = line_server
    alice, bob, carol = (line_client_factory(port) for _ in range(3))
    login(alice, "alice", "#room")
    login(bob, "bob", "#room")
    login(carol, "carol", "#room")
    alice.send("/msg bob the secret word is xyzzy")
    alice.expect(r"^-> bob: the secret word is xyzzy$")
    bob.expect(r"^<- alice: the secret word is xyzzy$")
    alice.send("marker after the private message")
    carol.expect(r"^\[#room\] <alice> marker after the private message$")
    bob.expect(r"^\[#room\] <alice> marker after the private message$")
    assert not [line for line in carol.seen if "xyzzy" in line], carol.seen
    # and a reply goes back the same way
    bob.send("/msg ALICE got it")
    alice.expect(r"^<- bob: got it$")
    bob.send("/msg nobody hello")
    bob.expect(r"^! nobody: No such nick$")


def test_every_command(line_server, line_client_factory):
    server, port = line_server
    alice, bob = line_client_factory(port), line_client_factory(port)
    greeting = alice.expect("Welcome")
    assert "/nick NAME" in greeting and "/help" in greeting
    alice.send("/help")
    help_line = alice.expect(r"^Commands: ")
    for command in ("/nick", "/join", "/part", "/msg", "/me", "/topic", "/who", "/list", "/names", "/away", "/quit", "/help"):
        assert command in help_line
    alice.send("/join #early")
    alice.expect(r"^! pick a nick first")
    login(alice, "alice", "#room")
    login(bob, "bob", "#room")
    alice.send("/topic all about rooms")
    alice.expect(r"^\* you set the topic of #room: all about rooms$")
    bob.expect(r"^\* alice set the topic of #room: all about rooms$")
    bob.send("/topic")
    bob.expect(r"^\* topic of #room: all about rooms$")
    bob.send("/topic bob's now")
    bob.expect(r"^! #room: You're not a room operator$")
    bob.send("/away at lunch")
    bob.expect(r"^\* you are marked away: at lunch$")
    alice.send("/who #room")
    alice.expect(r"^\* 2 in #room:$")
    alice.expect(r"^\*   @alice \(line\) here$")
    alice.expect(r"^\*   bob \(line\) away: at lunch$")
    alice.send("/who")
    alice.expect(r"^\* 2 users online:$")
    alice.send("/list")
    alice.expect(r"^\* 1 room:$")
    alice.expect(r"^\*   #room \(2\): all about rooms$")
    alice.send("/names")
    alice.expect(r"^\* in #room \(2\): @alice bob$")
    bob.send("/away")
    bob.expect(r"^\* you are back$")
    bob.send("/frobnicate")
    bob.expect(r"^! unknown command /frobnicate; /help lists commands$")
    bob.send("/nick robert")
    bob.expect(r"^\* you are now known as robert$")
    alice.expect(r"^\* bob is now known as robert$")
    exchange(alice, "alice", bob, "robert", "#room", "still talking")
    bob.send("/quit")
    bob.expect_closed()
    alice.expect(r"^\* robert quit \(Quit\)$")
    assert_clean_log(server)


# -- nicks and passwords --------------------------------------------------------------------


def test_nick_collision(line_server, line_client_factory):
    server, port = line_server
    alice, other = line_client_factory(port), line_client_factory(port)
    login(alice, "Alice")
    other.expect("Welcome")
    other.send("/nick aLICE")
    other.expect(r"^! aLICE: Nickname is already in use$")
    other.send("/nick 9lives")
    other.expect(r"^! 9lives: Erroneous nickname: .9. cannot be the first character in a nick: ")
    login_line = "/nick alicia"
    other.send(login_line)
    other.expect(r"^\* you are alicia, ")


def test_argon2_password_file(tmp_path, twistd_server, line_client_factory):
    passwd = tmp_path / "accounts"
    set_password(str(passwd), "alice", "tr0ub4dor-secret")
    server = twistd_server(server_config(tmp_path / "var", f'[auth]\npasswords_file = "{passwd}"\n'))
    port = server.port("line")
    mallory = line_client_factory(port)
    mallory.expect("Welcome")
    mallory.send("/nick alice")
    mallory.expect(r"^! alice: Nickname is registered; log in with its password$")
    mallory.send("/nick ALICE guessed-wrong")
    mallory.expect(r"^! login as ALICE refused")
    server.expect_log(r"login as ALICE from 127\.0\.0\.1 refused")
    mallory.send("/nick mallory")
    mallory.expect(r"^\* you are mallory, a guest")
    alice = line_client_factory(port)
    alice.expect("Welcome")
    alice.send("/nick alice tr0ub4dor-secret")
    alice.expect(r"^\* you are alice, logged in to account alice")
    # a nick added while the server runs is protected from guests within a second (a guest
    # login checks the file when it was last checked a second ago or more), and at once
    # after a reload, which re-reads it
    set_password(str(passwd), "bob", "b0b-secret")
    server.process.send_signal(signal.SIGHUP)
    server.expect_log(r"config reload: .* re-read")
    late = line_client_factory(port)
    late.expect("Welcome")
    late.send("/nick bob")
    late.expect(r"^! (bob: Nickname is registered|login as bob refused: bob is a registered nick)")
    late.send("/nick bob b0b-secret")
    late.expect(r"^\* you are bob, logged in to account bob")
    assert_clean_log(server, "tr0ub4dor-secret", "guessed-wrong", "b0b-secret")


def test_auth_option_memory_checker(tmp_path, twistd_server, line_client_factory):
    server = twistd_server(server_config(tmp_path / "var"), "--auth", "memory:alice:s3cr3t-word")
    port = server.port("line")
    intruder = line_client_factory(port)
    intruder.expect("Welcome")
    intruder.send("/nick alice")
    intruder.expect(r"^! alice: Nickname is registered")
    intruder.send("/nick alice not-it")
    intruder.expect(r"^! login as alice refused")
    alice = line_client_factory(port)
    alice.expect("Welcome")
    alice.send("/nick alice s3cr3t-word")
    alice.expect(r"^\* you are alice, logged in to account alice")
    intruder.send("/nick guest1")
    intruder.expect(r"^\* you are guest1, a guest")
    assert_clean_log(server, "s3cr3t-word", "not-it")


def test_auth_option_file_checker(tmp_path, twistd_server, line_client_factory):
    """``--auth file:PATH``: twisted.cred's FilePasswordDB (``user:password`` lines), as strcred makes it."""
    passwords = tmp_path / "plain-passwords"
    passwords.write_text("alice:f1le-secret\nbob:b0b-file-pw\nCarol:c4rol-pw\n")
    server = twistd_server(server_config(tmp_path / "var"), "--auth", f"file:{passwords}")
    port = server.port("line")
    intruder = line_client_factory(port)
    intruder.expect("Welcome")
    intruder.send("/nick alice")
    intruder.expect(r"^! alice: Nickname is registered")
    intruder.send("/nick BOB")  # the file's names are case-sensitive, nicks are not
    intruder.expect(r"^! BOB: Nickname is registered")
    intruder.send("/nick carol")  # whichever case the file uses
    intruder.expect(r"^! carol: Nickname is registered")
    intruder.send("/nick bob f1le-secret")
    intruder.expect(r"^! login as bob refused")
    server.expect_log(r"login as bob from 127\.0\.0\.1 refused")
    alice = line_client_factory(port)
    alice.expect("Welcome")
    alice.send("/nick alice f1le-secret")
    alice.expect(r"^\* you are alice, logged in to account alice")
    bob = line_client_factory(port)
    bob.expect("Welcome")
    bob.send("/nick BOB b0b-file-pw")  # any case logs in to the account
    bob.expect(r"^\* you are BOB, logged in to account bob")
    carol = line_client_factory(port)
    carol.expect("Welcome")
    carol.send("/nick carol c4rol-pw")
    carol.expect(r"^\* you are carol, logged in to account Carol")
    intruder.send("/nick guest1")
    intruder.expect(r"^\* you are guest1, a guest")
    assert_clean_log(server, "f1le-secret", "b0b-file-pw", "c4rol-pw")


@pytest.mark.parametrize("how", ["config", "flag"])
def test_guests_disabled(tmp_path, twistd_server, line_client_factory, how):
    passwd = tmp_path / "accounts"
    set_password(str(passwd), "alice", "letmein-please")
    extra = f'[auth]\npasswords_file = "{passwd}"\n'
    if how == "config":
        server = twistd_server(server_config(tmp_path / "var", extra + "allow_guests = false\n"))
    else:
        server = twistd_server(server_config(tmp_path / "var", extra), "--no-guests")
    port = server.port("line")
    guest = line_client_factory(port)
    guest.expect("Welcome")
    guest.send("/nick visitor")
    guest.expect(r"^! login as visitor refused: guests are not allowed here")
    guest.send("/join #room")
    guest.expect(r"^! pick a nick first")
    guest.send("/nick alice letmein-please")
    guest.expect(r"^\* you are alice, logged in to account alice")
    assert_clean_log(server, "letmein-please")


# -- bad input ------------------------------------------------------------------------------


@pytest.fixture
def chatting(line_server, line_client_factory):
    """A server with alice and bob in #room, and a third connection (eve) for bad input."""
    server, port = line_server
    alice, bob, eve = (line_client_factory(port) for _ in range(3))
    login(alice, "alice", "#room")
    login(bob, "bob", "#room")
    login(eve, "eve", "#room")
    alice.expect(r"^\* eve joined #room$")
    bob.expect(r"^\* eve joined #room$")
    return server, port, alice, bob, eve


def test_100kb_without_newline(chatting):
    server, port, alice, bob, eve = chatting
    eve.send(b"A" * 100_000)
    eve.expect(r"^! line too long \(at most 4096 bytes\); dropped$")
    exchange(alice, "alice", bob, "bob", "#room", "during the flood")
    eve.send(b"B" * 100_000 + b"\r\n")  # the tail of the long line is dropped too
    eve.send("usable again")
    alice.expect(r"^\[#room\] <eve> usable again$")
    assert not [line for line in alice.seen + bob.seen if "AAAA" in line or "BBBB" in line]
    exchange(alice, "alice", bob, "bob", "#room", "after the flood")
    assert_clean_log(server)


def test_invalid_utf8_and_nul(chatting):
    server, port, alice, bob, eve = chatting
    bad = b"caf\xe9 \xc0\xaf \xed\xa0\x80 \xc3\x28 ok"  # latin-1, overlong, surrogate, truncated
    eve.send(bad + b"\r\n")
    line = alice.expect(r"^\[#room\] <eve> caf")
    assert line == "[#room] <eve> " + bad.decode("utf-8", "replace")
    assert "\ufffd( ok" in line
    eve.send(b"nul\x00byte\r\n")
    eve.expect(r"^! line contains NUL bytes; dropped$")
    exchange(alice, "alice", bob, "bob", "#room", "after bad bytes")
    eve.send("still here")
    bob.expect(r"^\[#room\] <eve> still here$")
    assert not [line for line in bob.seen if "nul" in line]
    assert_clean_log(server)


def test_telnet_negotiation(chatting):
    server, port, alice, bob, eve = chatting
    eve.send(telnet.IAC + telnet.DO + telnet.ECHO)
    eve.send(telnet.IAC + telnet.WILL + telnet.NAWS)
    eve.send(telnet.IAC + telnet.DO + telnet.SGA + telnet.IAC + telnet.WILL + telnet.LINEMODE)
    eve.expect_bytes(telnet.IAC + telnet.WONT + telnet.ECHO)
    eve.expect_bytes(telnet.IAC + telnet.DONT + telnet.NAWS)
    eve.expect_bytes(telnet.IAC + telnet.WONT + telnet.SGA)
    eve.expect_bytes(telnet.IAC + telnet.DONT + telnet.LINEMODE)
    exchange(alice, "alice", bob, "bob", "#room", "while eve negotiates")
    eve.send(
        b"neg" + telnet.IAC + telnet.SB + telnet.NAWS + b"\x00\x50\x00\x18" + telnet.IAC + telnet.SE
        + b"otiated" + telnet.IAC + telnet.NOP + b" fine" + telnet.IAC + b"\x01\r\n"
    )
    line = alice.expect(r"^\[#room\] <eve> ")
    # an IAC before a byte that is no telnet command is a stray 0xFF: invalid UTF-8, so U+FFFD
    # (the \x01 after it is a control character, removed)
    assert line == "[#room] <eve> negotiated fine\ufffd"
    assert b"\xff" not in bytes(alice.raw) and b"\xff" not in bytes(bob.raw)
    exchange(alice, "alice", bob, "bob", "#room", "after negotiation")
    assert_clean_log(server)


def test_binary_garbage(chatting):
    server, port, alice, bob, eve = chatting
    for _ in range(16):
        try:
            eve.send(os.urandom(4096))
        except (BrokenPipeError, ConnectionResetError):
            break  # a clean close is an acceptable answer to garbage
    exchange(alice, "alice", bob, "bob", "#room", "after garbage")
    # eve ends whatever line or telnet subnegotiation is open, then checks she is still served
    try:
        eve.send(telnet.IAC + telnet.SE + b"\r\n/names #room\r\n")
        eve.expect(r"^\* in #room \(\d\): ")
    except (EOFError, BrokenPipeError, ConnectionResetError):
        # a clean close is an acceptable answer too (a telnet subnegotiation that never
        # ends, say), with a reason, and everyone sees eve go
        server.expect_log(r"line connection from 127\.0\.0\.1 closed \(eve\)")
        if not [line for line in alice.seen if line.startswith("* eve quit ")]:
            alice.expect(r"^\* eve quit ")
    exchange(alice, "alice", bob, "bob", "#room", "at the end")
    assert_clean_log(server)


def test_disconnect_mid_line(chatting, line_client_factory):
    server, port, alice, bob, eve = chatting
    eve.send(b"this line never ends")
    eve.close()
    alice.expect(r"^\* eve quit \(Connection closed\)$")
    assert not [line for line in alice.seen if "never ends" in line]
    exchange(alice, "alice", bob, "bob", "#room", "after eve left")
    # a connection that goes before even picking a nick, mid-line
    anon = line_client_factory(port)
    anon.expect("Welcome")
    anon.send(b"/nick half")
    anon.close()
    server.expect_log(r"line connection from 127\.0\.0\.1 closed \(no nick\)")
    exchange(alice, "alice", bob, "bob", "#room", "after anon left")
    newcomer = line_client_factory(port)
    login(newcomer, "half", "#room")  # the half-sent nick was never taken
    assert_clean_log(server)


# -- a client that never reads ------------------------------------------------------------------


@pytest_twisted.inlineCallbacks
def test_never_reading_client_is_dropped_at_its_send_queue_limit(tmp_path, captured):
    limit = 32 * 1024
    config = Config().with_overrides(
        server={"data_dir": str(tmp_path)}, auth={"checkers": []},
        # the talker bursts 400 lines: a bridge's volume, exempt from flood control
        limits={"sendq_bytes": limit, "flood_exempt": ["127.0.0.1"]},
    )
    server = HubServer(config, protocols=["line"])
    hub = server.hub
    stuck_sock = None
    try:
        @defer.inlineCallbacks
        def connect(nick: str) -> IrcClient:
            client = yield server.connect("line")
            client.send(f"/nick {nick}")
            client.send("/join #busy")
            yield client.expect_count(r"^\* in #busy ", timeout=30)
            return client

        talker = yield connect("talker")
        listeners = []
        for i in range(2):
            listeners.append((yield connect(f"reader{i}")))

        # the client that never reads: a tiny receive window, and it never calls recv()
        stuck_sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        stuck_sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 2048)
        stuck_sock.setblocking(False)
        try:
            stuck_sock.connect(("127.0.0.1", server.line_port))
        except BlockingIOError:
            pass
        yield talker.expect_count(r"^\* reader1 joined #busy$", timeout=30)
        stuck_sock.send(b"/nick stuck\r\n/join #busy\r\n")
        yield talker.expect_count(r"^\* stuck joined #busy$", timeout=30)
        stuck_session = hub.find_user("stuck").participant
        queue = stuck_session.queue
        server_socket = stuck_session.transport.transport.socket
        assert server_socket.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE)  # line.tcp_keepalive
        # keep the server's kernel send buffer for it small too, so the queue fills soon
        stuck_session.transport.transport.socket.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)

        # watch the accounting after every write fan-out hands the stuck session
        seen_pending: list[int] = []
        original_send = stuck_session.send

        def counting_send(data: bytes) -> None:
            original_send(data)
            seen_pending.append(queue.pending_bytes)

        stuck_session.send = counting_send

        count = 400
        body = "x" * 400
        talker.transport.write(b"".join(f"msg {i:04d} {body}\r\n".encode() for i in range(count)))
        received = [r.expect_count(rf"^\[#busy\] <talker> msg {count - 1:04d} ", timeout=30) for r in listeners]
        quits = [r.expect_count(r"^\* stuck quit \(Send queue exceeded\)$", timeout=30) for r in listeners + [talker]]
        try:
            yield defer.gatherResults(received + quits)
        except defer.FirstError:
            state = {
                "messages per reader": [sum(1 for l in r.texts if "<talker> msg" in l) for r in listeners],
                "quit seen": [any("stuck quit" in l for l in r.lines) for r in listeners],
                "paused": queue.paused, "pending": queue.pending_bytes, "peak": queue.peak_bytes,
                "closed": queue.closed, "writes": len(seen_pending), "last": seen_pending[-5:],
                "tail": [r.texts[-3:] for r in listeners],
                "sessions": {n: (u.participant.queue.paused, u.participant.queue.pending_bytes)
                             for n, u in hub.users.items()},
                "failures": [e.get("log_format") for e in captured.events if e.get("log_failure")],
                "talker": talker.texts[-4:],
                "quits": [
                    (e.get("nick"), e.get("reason")) for e in captured.events if "quit" in e.get("log_format", "")
                ],
            }
            raise AssertionError(f"the room stalled: {state}")

        for reader in listeners:
            messages = [line for line in reader.texts if line.startswith("[#busy] <talker> msg ")]
            assert messages == [f"[#busy] <talker> msg {i:04d} {body}" for i in range(count)]
        assert queue.closed and stuck_session.closing
        assert max(seen_pending) <= limit
        assert queue.peak_bytes <= limit
        assert queue.peak_bytes > limit - 500  # it did fill up to the limit before the drop
        assert hub.find_user("stuck") is None
        overflow_logs = [e for e in captured.events if "exceeded its send queue" in e.get("log_format", "")]
        assert len(overflow_logs) == 1 and overflow_logs[0]["nick"] == "stuck"
        # the room goes on
        talker.send("after the drop")
        yield defer.gatherResults([r.expect_count(r"^\[#busy\] <talker> after the drop$", timeout=30) for r in listeners])
    finally:
        if stuck_sock is not None:
            stuck_sock.close()
        yield defer.ensureDeferred(server.stop())


def test_clean_shutdown_with_users_connected(line_server, line_client_factory):
    server, port = line_server
    alice, bob = line_client_factory(port), line_client_factory(port)
    login(alice, "alice", "#room")
    login(bob, "bob", "#room")
    exchange(alice, "alice", bob, "bob", "#room", "before shutdown")
    server.stop()  # SIGTERM
    # twistd ends by re-raising SIGTERM on itself once everything has stopped
    assert server.process.returncode in (0, -15), "\n".join(server.log)
    assert server.log[-1].endswith("Server Shut Down.")
    alice.expect_closed()
    assert server.exceptions == [], "\n".join(server.log)
    assert not [line for line in server.log if "could not store" in line], "\n".join(server.log)
