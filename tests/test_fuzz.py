"""Property-based attacks on every protocol over real sockets (issue 10, "make the classes part
of the suite"): IRC lines, telnet lines with IAC sequences, chathub.v1 requests (types,
nesting, sizes, surrogates) and raw WebSocket frames, each sent by a fresh connection to one
running hub with an honest user of every protocol in a room.

For every example: the server logs no traceback, the attacking session answers a probe or
closes (never hangs), and the bystanders still talk to each other afterwards.

Hypothesis runs in a worker thread; each example's socket work is either blocking I/O in that
thread (the server runs on the reactor meanwhile) or a coroutine run on the reactor with
``blockingCallFromThread``. ``CHATHUB_FUZZ_EXAMPLES`` sets the number of examples per
protocol (a bounded run by default; ``CHATHUB_FUZZ_EXAMPLES=2000 scripts/test tests/test_fuzz.py``
for a long one).
"""
from __future__ import annotations

import base64
import json
import os
import socket
import struct
import time

import pytest_twisted
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from twisted.internet import defer, threads
from twisted.internet.threads import blockingCallFromThread

from chathub.protocols.web.jsonsession import REQUESTS
from tests.support import HubServer, LineClient

EXAMPLES = int(os.environ.get("CHATHUB_FUZZ_EXAMPLES", "60"))
#: how long a probe may wait for its answer before the session counts as frozen
PROBE_TIMEOUT = 10.0


def _settings():
    return settings(
        max_examples=EXAMPLES,
        deadline=None,
        derandomize=False,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


@pytest_twisted.async_yield_fixture
async def server():
    # flood control off for loopback (HubServer's default): the examples are short, and waiting
    # on the penalty clock would only make them slow (test_flood and the session tests cover it)
    s = HubServer()
    s.watchers = await s.bystanders("#fuzz")
    yield s
    await s.stop()


def _reactor():
    from twisted.internet import reactor

    return reactor


def _on_reactor(coroutine_function, *args):
    """Run ``coroutine_function(*args)`` on the reactor from the Hypothesis thread; its result."""
    return blockingCallFromThread(_reactor(), lambda: defer.ensureDeferred(coroutine_function(*args)))


def _bystanders_fine(server) -> None:
    _on_reactor(server.watchers.still_served)
    assert not server.tracebacks, "\n".join(server.tracebacks)


def _answers_or_closes(client: LineClient, probe: bytes, answer: str) -> None:
    """Send ``probe``; the server must answer (a line matching ``answer``) or close."""
    try:
        client.send(probe)
    except OSError:
        return  # closed by the server already
    deadline = time.monotonic() + PROBE_TIMEOUT
    try:
        while time.monotonic() < deadline:
            if answer in client.readline(deadline - time.monotonic()):
                return
    except (EOFError, ConnectionResetError):
        return
    except TimeoutError:
        pass
    raise AssertionError(f"no answer to {probe!r} and no close; lines: {client.seen[-20:]}")


async def _run_in_thread(test) -> None:
    await threads.deferToThread(test)


def _line_attack(server, kind: str, streams, probe: bytes, answer: str, examples=()):
    """The Hypothesis test of a line protocol: a fresh connection to the ``kind`` listener
    sends one of ``streams`` (every one of ``examples`` first), then ``probe``, which must be
    answered (``answer``) or closed."""

    def attack(stream):
        client = LineClient(server.port(kind))
        try:
            for chunk in stream:
                client.send(chunk)
            _answers_or_closes(client, probe, answer)
        except OSError:
            pass  # the server closed on us while we sent
        finally:
            client.close()
        _bystanders_fine(server)

    for stream in examples:
        attack = example(stream=stream)(attack)
    return _settings()(given(stream=streams)(attack))


# -- IRC -------------------------------------------------------------------------------------

_irc_fragments = st.sampled_from(
    [
        b"NICK fz", b"NICK FZ", b"USER a 0 * :r", b"CAP LS 302", b"CAP REQ :sasl batch echo-message",
        b"CAP END", b"JOIN #fuzz", b"JOIN #f,#g key", b"PART #fuzz", b"PRIVMSG #fuzz :", b"NOTICE #fuzz :x",
        b"MODE #f +ovbklimnt", b"MODE #f +b *a*a*a*a*a*b", b"@label=1;+t=\\s", b":src ", b"TAGMSG #f",
        b"AUTHENTICATE PLAIN", b"AUTHENTICATE +", b"AUTHENTICATE *", b"WHO * %tcuihsnfdlaor,1",
        b"WHO *a*a*a*b", b"LIST *", b"LIST <\xc2\xb2", b"PING", b"KICK #f,#g x,y", b"MONITOR + a,b",
        b"TOPIC #f :", b"CHATHISTORY LATEST #f * 10", b"CHATHISTORY BEFORE #f timestamp=9999-99 5",
        b"METADATA * SET x :y", b"REGISTER * * pw", b"QUIT :bye", b"\r\n", b"\n", b"\r", b" ",
        b":", b"\x00", b"\xff\xfe", b"\xed\xa0\x80", b"\x01ACTION", b"@", b";", b"=", b",", b"#",
    ]
)
_irc_streams = st.lists(st.one_of(_irc_fragments, st.binary(max_size=64)), max_size=30)


@pytest_twisted.ensureDeferred
async def test_irc_bytes_are_answered_or_closed_and_hurt_nobody(server):
    await _run_in_thread(_line_attack(server, "irc", _irc_streams, b"\r\nPING :alive\r\n", "alive"))


# -- telnet ----------------------------------------------------------------------------------

IAC = b"\xff"
_telnet_fragments = st.sampled_from(
    [
        b"/nick tz", b"/nick TZ pw", b"/join #fuzz", b"/join #t key", b"/part", b"/room #fuzz",
        b"/msg b_irc hi", b"/msg #fuzz hi", b"/me waves", b"/topic t", b"/who", b"/who #fuzz",
        b"/list", b"/names", b"/away", b"/away back soon", b"/mode #t +b *a*a*a*b", b"/mode #t +kl k 1",
        b"/kick b_irc", b"/invite b_irc #t", b"/register pw", b"/quit", b"/", b"//", b"/help",
        b"plain words", b"\x1b[31mred", b"\x033,4green", b"\r\n", b"\n", b"\r", b"\r\x00", b"\x00",
        IAC, IAC + IAC, IAC + b"\xfb\x01", IAC + b"\xfd\x18", IAC + b"\xfe\x03", IAC + b"\xfc\x1f",
        IAC + b"\xfa\x18\x01" + IAC + b"\xf0", IAC + b"\xfa" + b"x" * 100, IAC + b"\xf0", IAC + b"\xf4",
        IAC + b"\xf3", IAC + b"\xfd", b"\xed\xa0\x80", b"\xc0\xaf", b"\xff\xfe",
    ]
)
_telnet_streams = st.lists(st.one_of(_telnet_fragments, st.binary(max_size=64)), max_size=30)


@pytest_twisted.ensureDeferred
async def test_telnet_bytes_and_iac_are_answered_or_closed_and_hurt_nobody(server):
    # A subnegotiation left open swallows bytes until IAC SE: the probe closes it first. Its
    # NUL comes before that IAC SE: after a lone IAC inside a subnegotiation, IAC SE alone
    # would read as an escaped IAC and a byte 0xF0, and the subnegotiation would stay open
    # (a stream that did so, CI at 322af1e). Anywhere else the NUL is a byte of text, the
    # option of a pending WILL/DO or a CR's partner.
    probe = b"\x00" + IAC + b"\xf0\r\n/help\r\n"
    sb_after_lone_iac = [IAC + b"\xfa" + b"x" * 100, IAC]
    attack = _line_attack(server, "line", _telnet_streams, probe, "Commands:", [sb_after_lone_iac])
    await _run_in_thread(attack)


# -- chathub.v1 requests ---------------------------------------------------------------------

_surrogates = st.text(alphabet=st.characters(categories=["Cs"]), min_size=1, max_size=3)
_texts = st.one_of(
    st.text(max_size=40),
    _surrogates,
    st.builds(lambda a, b: a + b, st.text(max_size=5), _surrogates),
    st.sampled_from(["#fuzz", "#FUZZ", "#j", "b_irc", "B_WS", "jz", "", " ", "#", "x" * 5000, "a\nb\nc" * 50]),
)
_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | _texts,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3),
    max_leaves=8,
)
_field_names = ["nick", "password", "account", "room", "key", "reason", "target", "text", "state",
                "token", "before", "after", "limit", "ref"]
_requests = st.builds(
    lambda kind, fields: {"type": kind, **fields},
    st.sampled_from(sorted(REQUESTS) + ["bogus", ""]),
    st.dictionaries(st.sampled_from(_field_names), st.one_of(_texts, _json_values), max_size=5),
)
_deep = st.integers(min_value=1, max_value=3000).map(lambda n: '{"type":"ping","ref":' + "[" * n + "]" * n + "}")
_json_messages = st.lists(
    st.one_of(
        _requests.map(json.dumps),
        _json_values.map(json.dumps),
        _deep,
        st.text(max_size=50),
        st.binary(max_size=50),
    ),
    max_size=12,
)


async def _json_example(server, messages) -> None:
    client = await server.ws_connect()
    try:
        await client.expect({"type": "hello"})
        for message in messages:
            if client.close_info is not None:
                break
            client.send_text(message, binary=isinstance(message, bytes))
        if client.close_info is None:
            client.send_json({"type": "ping", "token": "alive"})
            try:
                await client.expect({"type": "pong", "token": "alive"}, PROBE_TIMEOUT)
            except ConnectionError:
                pass  # closed while we waited: allowed, as long as it said why (below)
        if client.close_info is not None:
            _clean, code, _reason = client.close_info
            assert code is not None and code != 1006, f"closed without a close frame: {client.close_info}"
    finally:
        if client.close_info is None:
            client.dropConnection(abort=True)
            await client.wait_closed()


@pytest_twisted.ensureDeferred
async def test_json_requests_are_answered_or_closed_and_hurt_nobody(server):
    @_settings()
    @given(messages=_json_messages)
    def attack(messages):
        _on_reactor(_json_example, server, messages)
        _bystanders_fine(server)

    await _run_in_thread(attack)


# -- WebSocket frames ------------------------------------------------------------------------


@st.composite
def _frames(draw) -> bytes:
    """One client frame: any opcode, flags and mask; its length honest or far beyond the
    server's limit (a short lie would only make the server wait for the rest, rightly)."""
    fin = draw(st.booleans())
    rsv = draw(st.integers(0, 7)) if draw(st.integers(0, 5)) == 0 else 0
    opcode = draw(st.sampled_from([0, 1, 2, 8, 9, 10, 1, 1, 2, 0]) | st.integers(0, 15))
    masked = draw(st.integers(0, 7)) != 0
    payload = draw(
        st.one_of(
            st.binary(max_size=150),
            _requests.map(lambda r: json.dumps(r).encode()),
            st.just(struct.pack("!H", 1000) + b"bye"),
            st.just(b"\xed\xa0\x80"),
        )
    )
    huge = draw(st.integers(0, 9)) == 0
    first = (0x80 if fin else 0) | (rsv << 4) | opcode
    length = draw(st.sampled_from([1 << 20, 1 << 40, (1 << 63) - 1])) if huge else len(payload)
    if length < 126:
        header = struct.pack("!BB", first, (0x80 if masked else 0) | length)
    elif length < 1 << 16 and not huge:
        header = struct.pack("!BBH", first, (0x80 if masked else 0) | 126, length)
    else:
        header = struct.pack("!BBQ", first, (0x80 if masked else 0) | 127, length)
    if masked:
        key = draw(st.binary(min_size=4, max_size=4))
        header += key
        payload = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
    return header + payload


def _client_frame(opcode: int, payload: bytes) -> bytes:
    key = b"\x01\x02\x03\x04"
    masked = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
    assert len(payload) < 126
    return struct.pack("!BB", 0x80 | opcode, 0x80 | len(payload)) + key + masked


class _RawWebSocket:
    """A blocking WebSocket client that sends whatever frames it is given."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=PROBE_TIMEOUT)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(
            (
                "GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
                "Sec-WebSocket-Protocol: chathub.v1\r\n\r\n"
            ).encode()
        )
        self.buffer = b""
        while b"\r\n\r\n" not in self.buffer:
            self._fill()
        head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
        assert head.startswith(b"HTTP/1.1 101"), head

    def _fill(self) -> None:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise EOFError
        self.buffer += chunk

    def frame(self) -> tuple[int, bytes]:
        """The server's next frame: (opcode, payload)."""
        while len(self.buffer) < 2:
            self._fill()
        first, second = self.buffer[0], self.buffer[1]
        length, offset = second & 0x7F, 2
        if length == 126:
            while len(self.buffer) < 4:
                self._fill()
            (length,), offset = struct.unpack("!H", self.buffer[2:4]), 4
        elif length == 127:
            while len(self.buffer) < 10:
                self._fill()
            (length,), offset = struct.unpack("!Q", self.buffer[2:10]), 10
        while len(self.buffer) < offset + length:
            self._fill()
        payload = self.buffer[offset : offset + length]
        self.buffer = self.buffer[offset + length :]
        return first & 0x0F, payload

    def answers_or_closes(self) -> None:
        """Probe with a ping request; the server must answer it or close."""
        try:
            self.sock.sendall(_client_frame(1, b'{"type":"ping","token":"alive"}'))
        except OSError:
            return
        deadline = time.monotonic() + PROBE_TIMEOUT
        try:
            while time.monotonic() < deadline:
                opcode, payload = self.frame()
                if opcode == 8:
                    code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None
                    assert code != 1006, payload
                    return
                if opcode == 1 and b'"alive"' in payload:
                    return
        except (EOFError, ConnectionResetError):
            return
        except socket.timeout:
            pass
        raise AssertionError("no answer to a ping request and no close")

    def close(self) -> None:
        self.sock.close()


@pytest_twisted.ensureDeferred
async def test_websocket_frames_are_answered_or_closed_and_hurt_nobody(server):
    @_settings()
    @given(frames=st.lists(_frames(), max_size=8))
    def attack(frames):
        client = _RawWebSocket(server.http_port)
        try:
            for frame in frames:
                client.sock.sendall(frame)
            client.answers_or_closes()
        except OSError:
            pass
        finally:
            client.close()
        _bystanders_fine(server)

    await _run_in_thread(attack)
