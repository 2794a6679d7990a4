"""What the attacks on every protocol share (tests/test_fuzz.py on one hub,
tests/test_cluster_attacks.py on cluster nodes): Hypothesis strategies of IRC lines, telnet
lines with IAC sequences, chathub.v1 requests and raw WebSocket frames, the probes that show
an attacking session still answers (or was closed), and a blocking raw WebSocket client.

The strategies aim at a room ``#fuzz`` and at users ``b_irc`` and ``B_WS``: the tests put their
honest users there, so an attack reaches them.
"""
from __future__ import annotations

import base64
import json
import os
import socket
import struct
import time
from typing import Any, Callable, Iterable

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from chathub.protocols.web.jsonsession import REQUESTS
from tests.support import LineClient


def attack_settings(examples: int) -> settings:
    """Hypothesis settings of an attack: ``examples`` of them, new ones every run (the
    suite explores as it goes), no deadline (the server shares the machine)."""
    return settings(
        max_examples=examples,
        deadline=None,
        derandomize=False,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


#: how long a probe may wait for its answer before the session counts as frozen
PROBE_TIMEOUT = 10.0
#: the room the strategies aim at
ROOM = "#fuzz"
IRC_PROBE = b"\r\nPING :alive\r\n"
IRC_ANSWER = "alive"
IAC = b"\xff"


def _streams(commands: list[bytes]):
    """Raw streams: commands of the list and random bytes, run together as they come."""
    return st.lists(st.one_of(st.sampled_from(commands), st.binary(max_size=64)), max_size=30)


def _session_lines(commands: list[bytes]):
    """The lines of a session signed on already: raw streams seldom get that far. Three in
    four are commands of the list (Hypothesis would otherwise draw mostly random bytes)."""
    line = st.one_of(*[st.sampled_from(commands)] * 3, st.binary(max_size=64))
    return st.lists(line, max_size=20).map(lambda lines: [each + b"\r\n" for each in lines])


# A subnegotiation left open swallows bytes until IAC SE: the probe closes it first. Its NUL
# comes before that IAC SE: after a lone IAC inside a subnegotiation, IAC SE alone would read
# as an escaped IAC and a byte 0xF0, and the subnegotiation would stay open (a stream that did
# so, CI at 322af1e). Anywhere else the NUL is a byte of text, the option of a pending WILL/DO
# or a CR's partner.
TELNET_PROBE = b"\x00" + IAC + b"\xf0\r\n/help\r\n"
TELNET_ANSWER = "Commands:"
#: telnet streams every run tries first: a subnegotiation whose last byte is a lone IAC
TELNET_EXAMPLES = [[IAC + b"\xfa" + b"x" * 100, IAC]]


def answers_or_closes(client: LineClient, probe: bytes, answer: str) -> None:
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


def send_and_probe(client, send: Callable[[Any], None], chunks: Iterable, probe: Callable[[], None]) -> None:
    """One attack: ``send`` each of ``chunks`` on ``client``, then ``probe()`` (which fails
    unless the session answers or was closed); a close by the server on the way is allowed.
    ``client`` is closed after."""
    try:
        for chunk in chunks:
            send(chunk)
        probe()
    except OSError:
        pass  # the server closed on us while we sent
    finally:
        client.close()


IRC_COMMANDS = [
    b"NICK fz", b"NICK FZ", b"USER a 0 * :r", b"CAP LS 302", b"CAP REQ :sasl batch echo-message",
    b"CAP END", b"JOIN #fuzz", b"JOIN #f,#g key", b"PART #fuzz", b"PRIVMSG #fuzz :", b"NOTICE #fuzz :x",
    b"MODE #f +ovbklimnt", b"MODE #f +b *a*a*a*a*a*b", b"@label=1;+t=\\s", b":src ", b"TAGMSG #f",
    b"AUTHENTICATE PLAIN", b"AUTHENTICATE +", b"AUTHENTICATE *", b"WHO * %tcuihsnfdlaor,1",
    b"WHO *a*a*a*b", b"LIST *", b"LIST <\xc2\xb2", b"PING", b"KICK #f,#g x,y", b"MONITOR + a,b",
    b"TOPIC #f :", b"CHATHISTORY LATEST #f * 10", b"CHATHISTORY BEFORE #f timestamp=9999-99 5",
    b"METADATA * SET x :y", b"REGISTER * * pw", b"QUIT :bye", b"\r\n", b"\n", b"\r", b" ",
    b":", b"\x00", b"\xff\xfe", b"\xed\xa0\x80", b"\x01ACTION", b"@", b";", b"=", b",", b"#",
    # what a user in the room makes other users (of every node) see
    b"PRIVMSG #fuzz :\x01ACTION waves\x01", b"PRIVMSG #fuzz :\x02hi\x0f \xe2\x80\xae", b"PRIVMSG b_irc,B_WS :hi",
    b"NOTICE #fuzz,b_irc :x", b"@+typing=active;+draft/reply=x TAGMSG #fuzz", b"@+draft/react=:) TAGMSG b_irc",
    b"TOPIC #fuzz :\x03" + b"9" * 400, b"MODE #fuzz +b fz*!*@*", b"KICK #fuzz b_irc", b"INVITE B_WS #f",
    b"AWAY :gone", b"AWAY", b"NICK fzz", b"METADATA * SET avatar :x", b"METADATA #fuzz SET url :y",
    b"RENAME #fuzz #fuzz2 :r", b"PART #fuzz :\xed\xa0\x80", b"QUIT :\x01\x02",
]
irc_streams = _streams(IRC_COMMANDS)
irc_lines = _session_lines(IRC_COMMANDS)


def irc_sign_on(nick: str) -> bytes:
    """What signs an IRC client on as ``nick`` and joins it to ``ROOM``."""
    return f"NICK {nick}\r\nUSER {nick} 0 * :{nick}\r\nJOIN {ROOM}\r\n".encode()


TELNET_COMMANDS = [
    b"/nick tz", b"/nick TZ pw", b"/join #fuzz", b"/join #t key", b"/part", b"/room #fuzz",
    b"/msg b_irc hi", b"/msg #fuzz hi", b"/me waves", b"/topic t", b"/who", b"/who #fuzz",
    b"/list", b"/names", b"/away", b"/away back soon", b"/mode #t +b *a*a*a*b", b"/mode #t +kl k 1",
    b"/kick b_irc", b"/invite b_irc #t", b"/register pw", b"/quit", b"/", b"//", b"/help",
    b"plain words", b"\x1b[31mred", b"\x033,4green", b"\r\n", b"\n", b"\r", b"\r\x00", b"\x00",
    IAC, IAC + IAC, IAC + b"\xfb\x01", IAC + b"\xfd\x18", IAC + b"\xfe\x03", IAC + b"\xfc\x1f",
    IAC + b"\xfa\x18\x01" + IAC + b"\xf0", IAC + b"\xfa" + b"x" * 100, IAC + b"\xf0", IAC + b"\xf4",
    IAC + b"\xf3", IAC + b"\xfd", b"\xed\xa0\x80", b"\xc0\xaf", b"\xff\xfe",
    b"/msg B_WS hi", b"/me \x01ACTION x\x01", b"/rename #fuzz2", b"/topic \xe2\x80\xae" + b"t" * 500,
]
telnet_streams = _streams(TELNET_COMMANDS)
telnet_lines = _session_lines(TELNET_COMMANDS)


def telnet_sign_on(nick: str) -> bytes:
    """What names a telnet user ``nick`` and joins it to ``ROOM``."""
    return f"/nick {nick}\r\n/join {ROOM}\r\n".encode()


surrogates = st.text(alphabet=st.characters(categories=["Cs"]), min_size=1, max_size=3)
texts = st.one_of(
    st.text(max_size=40),
    surrogates,
    st.builds(lambda a, b: a + b, st.text(max_size=5), surrogates),
    st.sampled_from(["#fuzz", "#FUZZ", "#j", "b_irc", "B_WS", "jz", "", " ", "#", "x" * 5000, "a\nb\nc" * 50]),
)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | texts,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3),
    max_leaves=8,
)
FIELD_NAMES = ["nick", "password", "account", "room", "key", "reason", "target", "text", "state",
                "token", "before", "after", "limit", "ref"]
requests = st.builds(
    lambda kind, fields: {"type": kind, **fields},
    st.sampled_from(sorted(REQUESTS) + ["bogus", ""]),
    st.dictionaries(st.sampled_from(FIELD_NAMES), st.one_of(texts, json_values), max_size=5),
)
deep = st.integers(min_value=1, max_value=3000).map(lambda n: '{"type":"ping","ref":' + "[" * n + "]" * n + "}")
json_messages = st.lists(
    st.one_of(
        requests.map(json.dumps),
        json_values.map(json.dumps),
        deep,
        st.text(max_size=50),
        st.binary(max_size=50),
    ),
    max_size=12,
)
#: requests of a signed-on chathub.v1 session (``json_sign_on``) in the room, with every field
#: any of them takes (others are ignored): most are well-formed, so they reach the hub
SESSION_REQUEST_TYPES = sorted(set(REQUESTS) - {"login", "logout", "register", "password", "quit"})
session_requests = st.builds(
    lambda kind, fields: {"type": kind, **fields},
    st.sampled_from(SESSION_REQUEST_TYPES),
    st.fixed_dictionaries(
        {
            "target": st.sampled_from([ROOM, "b_irc", "B_WS"]) | texts,
            "room": st.just(ROOM) | texts,
            "text": texts, "new": texts, "nick": texts, "msgid": texts, "state": texts, "reason": texts,
        }
    ),
)
json_session_messages = st.lists(st.one_of(session_requests.map(json.dumps), requests.map(json.dumps)), max_size=12)


def session_request(kind: str) -> str:
    """A well-formed request of ``kind`` in ``ROOM`` (with every field any request takes)."""
    return json.dumps(
        {"type": kind, "target": ROOM, "room": ROOM, "text": "x \u202e\U0001f600", "new": "#fuzz2", "nick": "fzz",
         "msgid": "x", "state": "active", "reason": "r"}
    )


def json_sign_on(nick: str) -> list[str]:
    """The requests that sign a chathub.v1 session on as ``nick`` and join it to ``ROOM``."""
    return [json.dumps({"type": "login", "nick": nick}), json.dumps({"type": "join", "room": ROOM})]


@st.composite
def frames(draw) -> bytes:
    """One client frame: any opcode, flags and mask; its length honest or far beyond the
    server's limit (a short lie would only make the server wait for the rest, rightly)."""
    fin = draw(st.booleans())
    rsv = draw(st.integers(0, 7)) if draw(st.integers(0, 5)) == 0 else 0
    opcode = draw(st.sampled_from([0, 1, 2, 8, 9, 10, 1, 1, 2, 0]) | st.integers(0, 15))
    masked = draw(st.integers(0, 7)) != 0
    payload = draw(
        st.one_of(
            st.binary(max_size=150),
            requests.map(lambda r: json.dumps(r).encode()),
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


def client_frame(opcode: int, payload: bytes) -> bytes:
    """A final, masked client frame of any length."""
    key = b"\x01\x02\x03\x04"
    masked = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
    if len(payload) < 126:
        header = struct.pack("!BB", 0x80 | opcode, 0x80 | len(payload))
    elif len(payload) < 1 << 16:
        header = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, len(payload))
    else:
        header = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, len(payload))
    return header + key + masked


class RawWebSocket:
    """A blocking WebSocket client (chathub.v1) that sends whatever frames it is given, and
    reads the server's as they come."""

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

    def send_message(self, message: str | bytes) -> None:
        """One message in one frame: text for ``str`` (a lone surrogate encoded as it is, which
        makes invalid UTF-8), binary for ``bytes``."""
        if isinstance(message, str):
            self.sock.sendall(client_frame(1, message.encode("utf-8", "surrogatepass")))
        else:
            self.sock.sendall(client_frame(2, message))

    def send_json(self, obj: dict) -> None:
        self.send_message(json.dumps(obj))

    def expect_json(self, wanted: Callable[[dict], bool], timeout: float = PROBE_TIMEOUT) -> dict:
        """The next JSON object from the server that ``wanted`` accepts (others are passed
        over; a ping is answered); fail with the last ones seen if none comes in ``timeout``."""
        seen: list[dict] = []
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                self.sock.settimeout(max(0.01, deadline - time.monotonic()))
                opcode, payload = self.frame()
                if opcode == 9:
                    self.sock.sendall(client_frame(10, payload))
                elif opcode == 1:
                    message = json.loads(payload)
                    if wanted(message):
                        return message
                    seen.append(message)
                elif opcode == 8:
                    raise AssertionError(f"closed by the server: {payload!r}; before: {seen[-10:]}")
        except TimeoutError:
            pass
        finally:
            self.sock.settimeout(PROBE_TIMEOUT)
        raise AssertionError(f"nothing wanted came in {timeout} s; the last seen: {seen[-10:]}")

    def answers_or_closes(self) -> None:
        """Probe with a ping request; the server must answer it or close."""
        try:
            self.sock.sendall(client_frame(1, b'{"type":"ping","token":"alive"}'))
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
        except TimeoutError:
            pass
        raise AssertionError("no answer to a ping request and no close")

    def close(self) -> None:
        self.sock.close()
