"""The suite's harness: what every test builds a chathub from, and its clients.

Servers, from the smallest to the whole:

- ``RecorderWorld``: a hub whose users are ``Recorder`` participants (the hub's plug point).
- ``Chat``: a hub and its portal (checkers, optionally a store), as ``chathub/app.py``
  builds them; ``irc_conn`` and ``line_conn`` make connections on StringTransports,
  their time a ``task.Clock`` (``TransportWorld``: a ``Chat`` whose portal runs on it too).
- ``HubServer``: a ``Chat`` serving any set of protocols on 127.0.0.1 port 0, with clients
  of each; ``stop`` ends every client, listener and service it started, and fails on a
  traceback logged or a timer left behind.
- ``TwistdServer``: ``twistd chathub`` in a subprocess; it binds port 0 and the ports are
  read back from its log.

Everything here waits on events (a log line, bytes matching a pattern) with a timeout;
nothing sleeps to synchronise.
"""
from __future__ import annotations

import base64
import contextlib
import functools
import itertools
import os
import queue
import re
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import tomllib
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Optional, Union

from zope.interface import implementer

import irctokens
import pytest
from argon2 import PasswordHasher
from twisted.internet import defer, task
from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone
from twisted.internet.testing import StringTransport
from twisted.protocols.basic import LineReceiver
from twisted.python.failure import Failure

from chathub.config import Config
from chathub.interfaces import IParticipant

REPO = Path(__file__).resolve().parent.parent

#: argon2 at its cheapest: the tests check behaviour, not the cost of hashing
CHEAP_HASHER = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
#: the password of the IRC operator ``boss`` that ``irc_config`` sets up, and its hash
OPER_PASSWORD = "opersecret"
OPER_HASH = CHEAP_HASHER.hash(OPER_PASSWORD)
#: every loopback address (the tests' clients come from several: 127.0.0.1 to 127.0.0.4)
LOOPBACK = ["127.0.0.0/8"]
#: a listener on a port the system picks, on loopback: nothing to race other processes for
ANY_PORT = "tcp:0:interface=127.0.0.1"


def creds(name: str, password: str):
    """Credentials as the protocols make them: UTF-8 bytes."""
    from twisted.cred.credentials import UsernamePassword

    return UsernamePassword(name.encode("utf-8"), password.encode("utf-8"))


def refusal_naming(text: str, key: str) -> str:
    """The ConfigError message for the config file ``text``, checked to name ``key``."""
    from chathub.config import ConfigError, parse_config

    with pytest.raises(ConfigError) as e:
        parse_config(text)
    message = str(e.value)
    assert f"'{key}'" in message
    return message


def irc_config(**irc) -> Config:
    """The IRC tests' server: named irc.test, loopback exempt from IRC flood control, the
    operator ``boss`` (``OPER_PASSWORD``, privileges kill and wallops); ``irc`` overrides."""
    irc.setdefault("flood_exempt", LOOPBACK)
    irc.setdefault("operators", [{"name": "boss", "password_hash": OPER_HASH, "privileges": ["kill", "wallops"]}])
    return Config().with_overrides(irc=irc, server={"name": "irc.test"})


# -- twistd in a subprocess -------------------------------------------------------------------

#: the factory each listener kind logs as it starts ("IrcFactory starting on 40123")
_LOGGED_AS = {"LineFactory": "line", "IrcFactory": "irc", "ChathubSite": "http"}
_LISTENING = re.compile(r"\] (\w+)(?: \(TLS\))? starting on (\d+)$")


@contextlib.contextmanager
def refusing_port() -> Iterator[int]:
    """A port of 127.0.0.1 held, bound but not listening, for the block: a connection to it
    is refused, and no other process can take it meanwhile."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        yield s.getsockname()[1]


class TwistdServer:
    """``twistd -n chathub --config FILE`` in a subprocess (in ``workdir``), with its log read
    line by line; ``config_text=None`` runs it without ``--config``."""

    def __init__(
        self,
        workdir: Path,
        config_text: Optional[str],
        extra_args: tuple[str, ...] = (),
        pythonpath: Optional[list[str]] = None,
        python_flags: tuple[str, ...] = (),
        launcher: tuple[str, ...] = (),
        pass_fds: tuple[int, ...] = (),
    ) -> None:
        """``pythonpath`` replaces the default (the repository first); ``python_flags`` go
        to the interpreter (``-S`` keeps site .pth files, an editable install's, away);
        ``launcher`` is a command that execs the rest of its arguments (the twistd command),
        given the descriptors ``pass_fds`` (systemd's socket activation: tests/test_systemd.py)."""
        self.launcher = launcher
        self.pass_fds = pass_fds
        self.pythonpath = pythonpath
        self.python_flags = python_flags
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.config_path: Optional[Path] = None  # None: no --config, the built-in defaults
        if config_text is not None:
            self.config_path = self.workdir / "chathub.toml"
            self.config_path.write_text(config_text)
        self.extra_args = extra_args
        self.process: Optional[subprocess.Popen] = None
        self.lines: "queue.Queue[str]" = queue.Queue()
        self.log: list[str] = []

    def start(self, wait_for: Optional[str] = None, count: int = 1, timeout: float = 30.0) -> "TwistdServer":
        """Start and wait until ``count`` log lines match ``wait_for``; without ``wait_for``,
        until every listener of the config file (the defaults' three without one) listens."""
        if wait_for is None:
            wait_for, count = r" starting on ", self._listener_count()
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        if self.pythonpath is None:
            env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
        else:
            env["PYTHONPATH"] = os.pathsep.join(self.pythonpath)
        self.process = subprocess.Popen(
            [*self.launcher, sys.executable, *self.python_flags, "-c", "from twisted.scripts.twistd import run; run()",
             "-n", "--pidfile=", "--logfile=-", "chathub",
             *(("--config", str(self.config_path)) if self.config_path else ()), *self.extra_args],
            cwd=self.workdir,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=env,
            pass_fds=self.pass_fds,
        )
        threading.Thread(target=self._read, daemon=True).start()
        for _ in range(count):
            self.expect_log(wait_for, timeout)
        return self

    def _listener_count(self) -> int:
        if self.config_path is None:
            return 3
        listeners = tomllib.loads(self.config_path.read_text()).get("listeners", {})
        return sum(len(listeners.get(kind, ())) for kind in ("line", "irc", "http"))

    def ports(self, kind: str) -> list[int]:
        """The ports the ``kind`` listeners ("line", "irc", "http") listen on, in the order
        they started (the config's), as the server logged them."""
        found = []
        for line in self.log:
            match = _LISTENING.search(line)
            if match and _LOGGED_AS.get(match.group(1)) == kind:
                found.append(int(match.group(2)))
        return found

    def port(self, kind: str = "line") -> int:
        """The port of the (first) ``kind`` listener; the server must have logged it."""
        ports = self.ports(kind)
        assert ports, f"no {kind} listener started; log:\n" + "\n".join(self.log[-50:])
        return ports[0]

    def _read(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        for raw in self.process.stdout:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            self.log.append(line)
            self.lines.put(line)
        self.lines.put("")  # EOF marker

    def expect_log(self, pattern: str, timeout: float = 15.0) -> str:
        """Wait for a log line matching ``pattern``; fail with the log so far if none comes."""
        deadline = time.monotonic() + timeout
        regex = re.compile(pattern)
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no log line matching {pattern!r}; log:\n" + "\n".join(self.log[-50:]))
            try:
                line = self.lines.get(timeout=remaining)
            except queue.Empty:
                continue
            if line == "" and self.process is not None and self.process.poll() is not None:
                raise AssertionError(
                    f"server exited ({self.process.returncode}) before {pattern!r}; log:\n" + "\n".join(self.log[-50:])
                )
            if regex.search(line):
                return line

    def refused(self, pattern: str = r"chathub cannot start") -> "TwistdServer":
        """Start, expect a log line matching ``pattern`` (the refusal), and an exit with a
        non-zero status and a clear message (no traceback)."""
        try:
            self.start(wait_for=pattern)
            status = self.wait_exit()
        finally:
            self.stop()
        assert status != 0, "twistd exited 0 after refusing to start:\n" + "\n".join(self.log)
        assert self.exceptions == [], "a traceback instead of a clear message:\n" + "\n".join(self.log)
        return self

    def wait_exit(self, timeout: float = 30.0) -> int:
        """Wait for the process to end by itself; return its exit status."""
        assert self.process is not None
        return self.process.wait(timeout)

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Send ``sig`` and wait for the process to go."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(sig)
            self.process.wait(30)

    def stop(self) -> None:
        """Stop cleanly (SIGTERM), or kill if it does not go."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(15)

    @property
    def exceptions(self) -> list[str]:
        """Log lines that show a traceback (a server-side bug)."""
        return [line for line in self.log if "Traceback" in line or "Unhandled" in line]


class LineClient:
    """A blocking socket client reading lines, with ``expect`` that waits for a pattern."""

    def __init__(self, port: int = 0, host: str = "127.0.0.1", timeout: float = 10.0,
                 unix_path: Optional[str] = None, tls: Optional[ssl.SSLContext] = None,
                 source: Optional[str] = None) -> None:
        """Connect to ``host:port``, or to the UNIX socket ``unix_path`` when given; over TLS
        (checking the certificate for ``localhost``) with ``tls``; from the local address
        ``source`` (e.g. 127.0.0.2, another client address on loopback) when given."""
        if unix_path is not None:
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.settimeout(timeout)
            self.sock.connect(unix_path)
        else:
            self.sock = socket.create_connection(
                (host, port), timeout=timeout, source_address=(source, 0) if source else None
            )
            if tls is not None:
                self.sock = tls.wrap_socket(self.sock, server_hostname="localhost")
        self.timeout = timeout
        self.buffer = b""
        self.raw = bytearray()  # every byte received, telnet negotiation included
        self.seen: list[str] = []

    def send(self, data: bytes | str) -> None:
        """Send raw bytes (or text + CRLF)."""
        if isinstance(data, str):
            data = (data + "\r\n").encode("utf-8")
        self.sock.sendall(data)

    def _fill(self, deadline: float) -> bool:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        self.sock.settimeout(remaining)
        try:
            chunk = self.sock.recv(65536)
        except TimeoutError:
            return False
        if not chunk:
            raise EOFError("connection closed; lines so far:\n" + "\n".join(self.seen[-30:]))
        self.buffer += chunk
        self.raw += chunk
        return True

    def readline(self, timeout: Optional[float] = None) -> str:
        """The next line (without CRLF)."""
        deadline = time.monotonic() + (timeout or self.timeout)
        while b"\n" not in self.buffer:
            if not self._fill(deadline):
                raise TimeoutError("no complete line; lines so far:\n" + "\n".join(self.seen[-30:]))
        raw, self.buffer = self.buffer.split(b"\n", 1)
        line = raw.rstrip(b"\r").decode("utf-8", "replace")
        self.seen.append(line)
        return line

    def expect(self, pattern: str, timeout: Optional[float] = None) -> str:
        """Read lines until one matches ``pattern`` (a regex); fail after ``timeout``."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no line matching {pattern!r}; lines so far:\n" + "\n".join(self.seen[-30:]))
            line = self.readline(remaining)
            if regex.search(line):
                return line

    def expect_bytes(self, needle: bytes, timeout: Optional[float] = None) -> None:
        """Wait until ``needle`` has been received (anywhere in the raw stream)."""
        deadline = time.monotonic() + (timeout or self.timeout)
        while needle not in self.raw:
            if not self._fill(deadline):
                raise AssertionError(f"never received {needle!r}; raw so far: {bytes(self.raw[-300:])!r}")

    def expect_closed(self, timeout: Optional[float] = None) -> list[str]:
        """Read until the server closes the connection; return the lines read."""
        deadline = time.monotonic() + (timeout or self.timeout)
        start = len(self.seen)
        try:
            while True:
                if b"\n" in self.buffer:
                    self.readline()
                    continue
                if not self._fill(deadline):
                    raise AssertionError("connection still open; lines so far:\n" + "\n".join(self.seen[-30:]))
        except (EOFError, ConnectionResetError):
            return self.seen[start:]

    def close(self) -> None:
        self.sock.close()


Listeners = Union[bool, str, list[str]]


def server_config(data_dir: Path, extra: str = "", *, line: Listeners = True, irc: Listeners = False,
                  http: Listeners = False) -> str:
    """A TOML config for ``TwistdServer`` with the listeners asked for: each one ``True`` (a
    port the system picks on 127.0.0.1, ``TwistdServer.port`` reads it back), an endpoint
    description or a list of them, or ``False`` (none); ``extra`` is appended."""
    def listeners(value: Listeners) -> str:
        if value is False:
            value = []
        elif value is True:
            value = [ANY_PORT]
        elif isinstance(value, str):
            value = [value]
        return "[" + ", ".join(f'"{description}"' for description in value) + "]"

    return (
        f'[server]\ndata_dir = "{data_dir}"\n'
        f"[listeners]\nline = {listeners(line)}\nirc = {listeners(irc)}\nhttp = {listeners(http)}\n"
        + extra
    )


# -- an in-process IRC client (Twisted) ------------------------------------------------------

IRC_TIMEOUT = 10.0

Predicate = Union[str, Callable[[irctokens.Line], bool]]


def _reactor():
    from twisted.internet import reactor

    return reactor


class IrcClient(LineReceiver):
    """An in-process client on the reactor, for IRC and for the telnet line protocol: records
    every line (as text, and parsed by irctokens) and lets a test wait for one.

    ``expect`` takes a command name or a predicate on the parsed line, ``expect_re`` a regex
    searched in the line as received; each consumes the lines up to the match, so two waits
    on one client must not run at once. ``expect_count`` counts every line received instead."""

    delimiter = b"\n"  # and a CR before it is stripped: telnet-side lines may come LF-only
    MAX_LENGTH = 16384

    def __init__(self) -> None:
        self.lines: list[irctokens.Line] = []
        self.cursor = 0
        self._waiters: list = []
        self._tokens = itertools.count(1)
        self.closed = defer.Deferred()

    def lineReceived(self, raw: bytes) -> None:
        text = raw.rstrip(b"\r").decode("utf-8", "replace")
        try:
            line = irctokens.tokenise(text)
        except (ValueError, IndexError):  # not an IRC line (a telnet user's view, an empty line)
            line = irctokens.Line(None, None, "", [])
        line.text = text  # as received, for expect_re
        self.lines.append(line)
        self._wake()

    def connectionLost(self, reason=None) -> None:
        self._wake()
        if not self.closed.called:
            self.closed.callback(None)

    def _wake(self) -> None:
        for waiter in list(self._waiters):
            waiter()

    def send(self, *lines: str | bytes) -> None:
        """Send each line (text or bytes) with CRLF, all in one write."""
        self.transport.write(b"".join((l if isinstance(l, bytes) else l.encode("utf-8")) + b"\r\n" for l in lines))

    def _wait(self, poll: Callable[[], object], what: str, timeout: float) -> defer.Deferred:
        """Fires with what ``poll()`` returns once it returns something other than None (it
        is asked now and on every line and close; an exception it returns fails the wait);
        fails after ``timeout`` seconds, saying it waited for ``what``."""
        d = defer.Deferred()

        def check() -> None:
            if d.called:
                return
            result = poll()
            if result is None:
                return
            self._waiters.remove(check)
            call.cancel()
            d.errback(result) if isinstance(result, Exception) else d.callback(result)

        def timed_out() -> None:
            self._waiters.remove(check)
            d.errback(AssertionError(f"timed out waiting for {what}; lines: " + self.dump()))

        call = _reactor().callLater(timeout, timed_out)
        self._waiters.append(check)
        check()
        return d

    def expect(self, predicate: Predicate, timeout: float = IRC_TIMEOUT) -> defer.Deferred:
        """The next line (after those already taken) matching ``predicate``: a command or a test."""
        if isinstance(predicate, str):
            wanted = predicate
            predicate = lambda line: line.command == wanted  # noqa: E731

        def next_match():
            while self.cursor < len(self.lines):
                line = self.lines[self.cursor]
                self.cursor += 1
                if predicate(line):
                    return line
            if not self.transport.connected:
                return AssertionError("connection closed; lines: " + self.dump())
            return None

        return self._wait(next_match, repr(predicate), timeout)

    def expect_re(self, regex: str, timeout: float = IRC_TIMEOUT) -> defer.Deferred:
        """The next line whose text as received matches ``regex`` (searched); fires with that text."""
        pattern = re.compile(regex)

        def matches(line: irctokens.Line) -> bool:
            return bool(pattern.search(line.text))

        matches.__qualname__ = f"/{regex}/"
        return self.expect(matches, timeout).addCallback(lambda line: line.text)

    def expect_count(self, regex: str, count: int = 1, timeout: float = IRC_TIMEOUT) -> defer.Deferred:
        """Fires once ``count`` lines received so far (consumed or not) match ``regex``."""
        pattern = re.compile(regex)

        def enough():
            return self if sum(1 for l in self.lines if pattern.search(l.text)) >= count else None

        return self._wait(enough, f"{count} lines matching {regex!r}", timeout)

    @property
    def texts(self) -> list[str]:
        """Every line received, as text."""
        return [l.text for l in self.lines]

    async def roundtrip(self, line: Optional[str] = None) -> list[irctokens.Line]:
        """Send ``line``, then a PING; every line that came before its PONG."""
        token = f"sync{next(self._tokens)}"
        if line is not None:
            self.send(line)
        self.send(f"PING :{token}")
        start = self.cursor
        await self.expect(lambda l: l.command == "PONG" and l.params[-1] == token)
        return [l for l in self.lines[start : self.cursor - 1]]

    async def labeled(self, line: str) -> list[irctokens.Line]:
        """Send ``line`` with a label; the whole labeled response (ACK, one line, or a batch)."""
        label = f"q{next(self._tokens)}"
        self.send(f"@label={label} {line}")
        first = await self.expect(lambda l: l.tags and l.tags.get("label") == label)
        if first.command == "BATCH" and first.params[1:2] == ["labeled-response"]:
            ref = first.params[0][1:]
            start = self.cursor - 1
            await self.expect(lambda l: l.command == "BATCH" and l.params[0] == f"-{ref}")
            return self.lines[start : self.cursor]
        return [first]

    def dump(self) -> str:
        return "\n".join(l.text for l in self.lines[-40:])


def client_endpoint(port: int, tls=None, source: Optional[str] = None):
    """A Twisted client endpoint to 127.0.0.1:``port``: over TLS with ``tls`` (client
    ``IOpenSSLClientConnectionCreator`` options), from local address ``source`` if given."""
    from twisted.internet.endpoints import SSL4ClientEndpoint, TCP4ClientEndpoint

    bind = (source, 0) if source else None
    if tls is not None:
        return SSL4ClientEndpoint(_reactor(), "127.0.0.1", port, tls, bindAddress=bind)
    return TCP4ClientEndpoint(_reactor(), "127.0.0.1", port, bindAddress=bind)


async def connect_irc(port: int, clients: Optional[list] = None, tls=None, source: Optional[str] = None) -> IrcClient:
    """An :class:`IrcClient` connected to 127.0.0.1:``port`` (added to ``clients``), over
    TLS and from another local address as ``client_endpoint`` makes them."""
    from twisted.internet.endpoints import connectProtocol

    client = IrcClient()
    await connectProtocol(client_endpoint(port, tls, source), client)
    if clients is not None:
        clients.append(client)
    return client


async def register_irc(
    client: IrcClient,
    nick: str,
    caps=(),
    password: Optional[str] = None,
    rooms=(),
    username: Optional[str] = None,
) -> IrcClient:
    """Register ``client`` as ``nick`` with ``caps`` (all ACKed), by SASL PLAIN when
    ``password``; consume the welcome burst, then join ``rooms``."""
    wanted = list(caps) + (["sasl"] if password else [])
    if wanted:
        client.send("CAP LS 302")
        client.send("CAP REQ :" + " ".join(wanted))
        ack = await client.expect(lambda l: l.command == "CAP" and l.params[1] in ("ACK", "NAK"))
        assert ack.params[1] == "ACK", client.dump()
    if password:
        client.send("AUTHENTICATE PLAIN")
        await client.expect("AUTHENTICATE")
        blob = base64.b64encode(f"{nick}\0{nick}\0{password}".encode()).decode()
        client.send(f"AUTHENTICATE {blob}")
        await client.expect("903")
    client.send(f"NICK {nick}")
    client.send(f"USER {username or nick} 0 * :{nick} real")
    if wanted:
        client.send("CAP END")
    await client.expect("001")
    await client.roundtrip()
    for room in rooms:
        await join_irc(client, room)
    return client


async def join_irc(client: IrcClient, room: str, key: str = "") -> None:
    """JOIN ``room`` (with ``key``) and wait for the end of its NAMES."""
    client.send(f"JOIN {room} {key}".rstrip())
    await client.expect(lambda l: l.command == "366" and l.params[1].lower() == room.lower())


#: the capabilities a client reading history asks for
ALL_CAPS = ["batch", "server-time", "message-tags", "echo-message", "labeled-response", "draft/chathistory"]


async def offered_caps(client: IrcClient) -> dict[str, str]:
    """``CAP LS 302`` as ``{name: value}``."""
    client.send("CAP LS 302")
    ls = await client.expect("CAP")
    return dict(word.partition("=")[::2] for word in ls.params[-1].split())


def batch_of(lines: list[irctokens.Line], kind: str = "chathistory") -> tuple[list[str], list[irctokens.Line]]:
    """The parameters of the (only) ``kind`` batch in ``lines`` and the lines inside it."""
    starts = [l for l in lines if l.command == "BATCH" and l.params[0].startswith("+") and l.params[1] == kind]
    assert len(starts) == 1, "\n".join(l.format() for l in lines)
    ref = starts[0].params[0][1:]
    assert any(l.command == "BATCH" and l.params == [f"-{ref}"] for l in lines)
    inner = [l for l in lines if l.tags and l.tags.get("batch") == ref]
    return starts[0].params[2:], inner


async def history(client: IrcClient, command: str, kind: str = "chathistory"):
    """Run a CHATHISTORY command; ``(batch params, lines in the batch)``."""
    return batch_of(await client.roundtrip(command), kind)


async def quit_irc_clients(clients: list) -> None:
    """QUIT every client still connected (the server leaves the hub first) and wait."""
    while clients:
        client = clients.pop()
        if client.transport.connected:
            client.send("QUIT :done")
            await client.closed


# -- a hub and its portal, and connections on StringTransports ---------------------------------


#: one event's encoding by a ``Recorder`` (its format key, a colon, the event's id), found in
#: a write that joins several
_ENCODINGS = re.compile(rb"[^:]+:[0-9a-v]{23}")


@implementer(IParticipant)
class Recorder:
    """A participant that records what the hub asks of it.

    ``encode`` writes the event into a codec shared by every recorder, so the bytes one
    recorder encoded can be read back as events by all the others that received them.
    """

    protocol = "test"
    address = "192.0.2.1"  # documentation range (RFC 5737): users here are made without the realm

    def __init__(self, codec: dict, format_key: str = "a", echo_own: bool = False) -> None:
        self.codec = codec
        self.format_key = format_key
        self.echo_own = echo_own
        self.encoded: list = []
        self.sent: list[bytes] = []
        self.closed: Optional[str] = None

    def encode(self, event) -> bytes:
        self.encoded.append(event)
        data = f"{self.format_key}:{event.id}".encode()
        self.codec[data] = event
        return data

    def send(self, data: bytes) -> None:
        self.sent.append(data)

    def deliver(self, event) -> None:
        self.send(self.encode(event))

    def close(self, reason: str) -> None:
        self.closed = reason

    @property
    def events(self) -> list:
        shown = []
        for data in self.sent:
            event = self.codec.get(data)
            if event is not None:
                shown.append(event)
            else:  # one write of a fan-out batch: several events' encodings joined
                shown.extend(self.codec[part] for part in _ENCODINGS.findall(data))
        return shown

    def kinds(self) -> list[str]:
        return [e.kind for e in self.events]

    def clear(self) -> None:
        self.sent.clear()


class RecorderWorld:
    """A hub whose users are ``Recorder`` participants: the hub against its plug point.
    With ``clock`` (a ``task.Clock``) the room-creation rate is measured on it."""

    def __init__(self, config: Optional[Config] = None, store=None, clock: Optional[task.Clock] = None) -> None:
        from chathub.hub.service import ChatHub

        self.clock = clock
        timing = {} if clock is None else {"seconds": clock.seconds}
        self.hub = ChatHub(config or Config(), store=store, **timing)
        self.codec: dict = {}

    def connect(self, nick: str, format_key: str = "a", echo_own: bool = False, host: str = "example.org",
                account: Optional[str] = None):
        """A recording user signed on as ``nick`` (logged in to ``account`` if given)."""
        from chathub.hub.users import User

        user = User(Recorder(self.codec, format_key, echo_own), account=account, user=nick.lower(), host=host)
        self.hub.sign_on(user, nick)
        return user

    def clear(self) -> None:
        for user in self.hub.users.values():
            user.participant.clear()

    def encode_calls(self) -> int:
        seen = {id(u.participant): u.participant for u in self.hub.users.values()}
        return sum(len(p.encoded) for p in seen.values())


class _Transport(StringTransport):
    """A StringTransport that tells its waiters about every write."""

    def __init__(self, **kw) -> None:
        super().__init__(**kw)
        self.waiters: list = []

    def write(self, data: bytes) -> None:
        super().write(data)
        for waiter in list(self.waiters):
            waiter()


class IrcConn:
    """One IRC connection on a StringTransport; ``lines()`` returns (and forgets) what the
    server sent, parsed."""

    def __init__(self, factory, port: int, host: str = "127.0.0.1") -> None:
        self.transport = _Transport(peerAddress=IPv4Address("TCP", host, port))
        self.protocol = factory.buildProtocol(None)
        self.protocol.makeConnection(self.transport)

    def register(self, nick: str, caps: str = "") -> "IrcConn":
        """NICK and USER (after ``CAP REQ :caps`` if given); the server must welcome it."""
        if caps:
            self.send("CAP LS 302", f"CAP REQ :{caps}", f"NICK {nick}", "USER u 0 * :Real Name", "CAP END")
        else:
            self.send(f"NICK {nick}", "USER u 0 * :Real Name")
        assert "001" in self.commands()
        return self

    def written(self, command: str, timeout: float = 10.0) -> defer.Deferred:
        """Fires with ``lines()`` once a line with ``command`` has been written (work in a
        thread, such as an argon2 check, answers later than ``send`` returns)."""
        d = defer.Deferred()

        def check() -> None:
            if any(m.command == command for m in self.peek()):
                self.transport.waiters.remove(check)
                d.callback(self.lines())

        self.transport.waiters.append(check)
        check()
        return d.addTimeout(timeout, _reactor())

    def peek(self):
        """What the server sent and ``lines()`` has not returned yet."""
        from chathub.protocols.irc.wire import parse

        return [parse(l) for l in self.transport.value().split(b"\r\n") if l]

    def send(self, *lines: str | bytes) -> None:
        data = b"".join((l.encode() if isinstance(l, str) else l) + b"\r\n" for l in lines)
        self.protocol.dataReceived(data)

    def lines(self):
        found = self.peek()
        self.transport.clear()
        return found

    def commands(self):
        return [m.command for m in self.lines()]

    @property
    def closed(self) -> bool:
        return self.transport.disconnecting or self.protocol.session.closed


class LineConn:
    """One telnet connection on a StringTransport."""

    def __init__(self, factory, host: str) -> None:
        self.transport = StringTransport(peerAddress=IPv4Address("TCP", host, 40000))
        self.proto = factory.buildProtocol(self.transport.getPeer())
        self.proto.makeConnection(self.transport)
        self.session = self.proto.protocol
        self._seen = 0

    def send(self, data) -> None:
        if isinstance(data, str):
            data = (data + "\r\n").encode("utf-8")
        self.proto.dataReceived(data)

    def raw(self) -> bytes:
        return self.transport.value()

    def new_lines(self) -> list[str]:
        """Complete lines written since the last call."""
        text = self.raw().decode("utf-8", "replace")
        lines = text.split("\r\n")[:-1]
        out, self._seen = lines[self._seen :], len(lines)
        return out

    def expect(self, needle: str) -> str:
        """The first new line containing ``needle``; fails listing the new lines if none."""
        lines = self.new_lines()
        for line in lines:
            if needle in line:
                return line
        raise AssertionError(f"no line with {needle!r} in {lines!r}")

    def disconnect(self) -> None:
        self.proto.connectionLost(Failure(ConnectionDone()))

    @property
    def closed(self) -> bool:
        return self.transport.disconnecting


class Chat:
    """A hub and its portal over ``checkers``, as chathub/app.py builds them; with ``store``
    (opened) the hub keeps history, and ``accounts`` (a checker over the store, also an
    ``IAccountCreator``) creates accounts and is asked after ``checkers``. OPER passwords
    are checked through ``hashing`` (a ``PasswordHashing``; a new one without it).

    The portal's login limiter runs on ``clock`` (the reactor without one). Connections on
    StringTransports (``irc_conn``, ``line_conn``) run on ``self.clock``: ``clock``, or a
    ``task.Clock`` of their own, so no timer of theirs reaches the reactor."""

    def __init__(self, config: Optional[Config] = None, checkers: Iterable = (), *, store=None, accounts=None,
                 clock: Optional[task.Clock] = None, hashing=None) -> None:
        from chathub.auth.portal import account_directory, build_portal
        from chathub.hub.service import ChatHub

        self.config = config or Config()
        self.store = store
        self.accounts = accounts
        self.checkers = list(checkers)
        if accounts is not None and accounts not in self.checkers:
            self.checkers.append(accounts)
        self.hub = ChatHub(
            self.config, store=store, accounts=account_directory(self.checkers), account_creator=accounts
        )
        tokens = None
        if store is not None:  # session tokens, as chathub/app.py keeps them
            from chathub.auth.tokens import SessionTokens

            tokens = SessionTokens(store, self.config.auth.token_lifetime, self.config.auth.max_tokens)
        self.portal = build_portal(self.hub, self.config, self.checkers, clock=clock, hashing=hashing, tokens=tokens)
        self.clock = clock if clock is not None else task.Clock()
        self._peer_ports = itertools.count(40000)

    @property
    def host(self) -> str:
        """The host everyone else sees for a client of 127.0.0.1 (its cloak)."""
        return self.portal.realm.cloak.host_for("127.0.0.1")

    @functools.cached_property
    def irc_conn_factory(self):
        """The IRC factory of ``irc_conn``'s connections (an ``IrcServer`` of its own, on ``clock``)."""
        from chathub.protocols.irc import IrcFactory

        return IrcFactory.for_hub(self.hub, self.portal, self.config, reactor=self.clock)

    @functools.cached_property
    def line_conn_factory(self):
        """The telnet factory of ``line_conn``'s connections (on ``clock``)."""
        from chathub.protocols.line import LineFactory

        return LineFactory(self.hub, self.portal, self.config, self.clock)

    def irc_conn(self, nick: Optional[str] = None, caps: str = "", host: str = "127.0.0.1") -> IrcConn:
        """An IRC connection from ``host`` on a StringTransport, registered as ``nick`` if given."""
        conn = IrcConn(self.irc_conn_factory, next(self._peer_ports), host)
        return conn.register(nick, caps) if nick else conn

    def line_conn(self, nick: Optional[str] = None, room: Optional[str] = None, host: str = "192.0.2.7") -> LineConn:
        """A telnet connection from ``host`` on a StringTransport, named ``nick`` and in
        ``room`` if given."""
        conn = LineConn(self.line_conn_factory, host)
        if nick:
            conn.send(f"/nick {nick}")
            conn.expect(f"you are {nick}")
        if room:
            conn.send(f"/join {room}")
            conn.expect(f"you joined {room}")
        return conn

    async def close(self) -> None:
        """Quit everyone (stored now, while the store is open), stop every checker's
        re-reading of its file (a ``LoopingCall`` on the reactor), let account writes
        finish and close the store."""
        for user in list(self.hub.users.values()):
            self.hub.quit(user, "test over")
        for checker in self.checkers:
            stop = getattr(checker, "stop", None)
            if stop is not None:
                stop()
        if self.accounts is not None:
            await self.accounts.idle()
        if self.store is not None:
            await self.store.close()


def irc_world(server: Optional[dict] = None, **irc) -> Chat:
    """IRC units: a ``Chat`` (memory checker: alice/sesame) whose time is a ``task.Clock``,
    with ``[server]`` settings ``server`` and ``[irc]`` settings ``irc``; loopback is exempt
    from flood control unless ``irc`` sets it up."""
    from twisted.cred.checkers import InMemoryUsernamePasswordDatabaseDontUse

    config = Config().with_overrides(irc=irc or {"flood_exempt": LOOPBACK}, server=server or {})
    return Chat(config, [InMemoryUsernamePasswordDatabaseDontUse(alice=b"sesame")], clock=task.Clock())


def line_world(config: Optional[Config] = None, **limits) -> Chat:
    """Telnet units: a ``Chat`` on ``config`` with no configured checkers, ``[limits]``
    settings ``limits``, the account owner/secret, and a ``task.Clock`` for time."""
    from twisted.cred.checkers import InMemoryUsernamePasswordDatabaseDontUse

    config = (config or Config()).with_overrides(auth={"checkers": []}, limits=limits)
    return Chat(config, [InMemoryUsernamePasswordDatabaseDontUse(owner=b"secret")], clock=task.Clock())


def recording_irc_factory():
    """An IRC factory on the reactor over a new ``Chat``, keeping the protocols it builds in
    ``built`` (for tests that listen through endpoints of their own)."""
    from chathub.protocols.irc import IrcFactory

    chat = Chat()
    factory = IrcFactory.for_hub(chat.hub, chat.portal, chat.config, _reactor())
    factory.built = []
    build = factory.buildProtocol

    def buildProtocol(addr):
        protocol = build(addr)
        factory.built.append(protocol)
        return protocol

    factory.buildProtocol = buildProtocol
    return factory


# -- a hub serving every protocol on real sockets -----------------------------------------------

#: the chathub.v1 WebSocket subprotocol, as a client asks for it
V1 = ["chathub.v1"]
PROTOCOLS = ("irc", "line", "http")


def history_config(**sections: dict) -> Config:
    """The history tests' server: irc.test, CHATHISTORY pages of 20, 127.0.0.1 exempt from
    IRC flood control (the other protocols keep theirs), 30 s to register; each of
    ``sections`` (``irc={...}``) updates its section."""
    settings: dict[str, dict] = {
        "server": {"name": "irc.test"},
        "history": {"query_limit": 20},
        "irc": {"flood_exempt": ["127.0.0.1"]},
        "limits": {"registration_timeout": 30},
    }
    for name, values in sections.items():
        settings.setdefault(name, {}).update(values)
    return Config().with_overrides(**settings)


def ws_config(**websocket) -> Config:
    """The WebSocket tests' server: 4 KiB messages and frames, no pings, 30 s to log in;
    ``websocket`` overrides."""
    return Config().with_overrides(
        websocket={"max_message_bytes": 4096, "max_frame_bytes": 4096, "ping_interval": 0, **websocket},
        limits={"registration_timeout": 30},
    )


class HubServer(Chat):
    """A ``Chat`` serving ``protocols`` ("irc", "line": telnet, "http": the web client and
    the WebSocket endpoint) on 127.0.0.1, each on a port the system picks, through
    chathub/app.py's ``Listener`` service; IRC over TCP and over WebSocket share one
    ``IrcServer``, as in the server. ``listen`` adds listeners.

    ``config`` defaults to the built-in one with loopback exempt from flood control on every
    protocol (the tests drive many lines quickly) and no WebSocket pings. With ``store``
    (opened) the hub keeps history and a ``StoreAccountChecker`` over it (cheap hashes)
    creates and checks accounts; ``stored`` opens one, as the server does.

    Clients: ``irc``, ``telnet`` and ``ws`` sign on, ``connect`` and ``ws_connect`` only
    connect; ``bystanders`` puts an honest user of each protocol in a room. ``stop`` ends
    them all, then every listener and the core, and fails if the server logged a traceback
    meanwhile or left a timer of its own running."""

    def __init__(self, config: Optional[Config] = None, checkers: Iterable = (), store=None, *,
                 protocols: Iterable[str] = PROTOCOLS, accounts=None) -> None:
        from twisted.application import service
        from twisted.logger import globalLogPublisher

        from chathub.auth.accounts import StoreAccountChecker

        self._timers_before = _timers(_reactor())
        if config is None:
            config = Config().with_overrides(limits={"flood_exempt": LOOPBACK}, websocket={"ping_interval": 0})
        if store is not None and accounts is None:
            accounts = StoreAccountChecker(store, CHEAP_HASHER)
        super().__init__(config, checkers, store=store, accounts=accounts)
        self.listeners = service.MultiService()
        self.listeners.startService()
        self._ports: dict[str, list[int]] = {}
        self._factories: dict[str, Any] = {}
        self.clients: list = []  # IRC and telnet clients (WebSocket ones: browser_helpers)
        # every traceback the server logs while it runs: ``stop`` fails on any (a test that
        # provokes one on purpose takes it out of this list)
        self.tracebacks: list[str] = []
        #: False where a test breaks the server for good (its store): tracebacks go unchecked
        self.check_tracebacks = True
        globalLogPublisher.addObserver(self._observe)
        for kind in protocols:
            self.listen(kind)

    @classmethod
    async def stored(cls, data_dir: Path, config: Optional[Config] = None, checkers: Iterable = (),
                     protocols: Iterable[str] = PROTOCOLS) -> "HubServer":
        """A server keeping history and accounts in the store ``config`` names (SQLite by
        default) under ``data_dir``, its account names loaded; the password checkers are
        ``checkers`` and those ``[auth] checkers`` names, composed as chathub/app.py does."""
        import dataclasses

        from chathub.auth.accounts import StoreAccountChecker
        from chathub.auth.portal import password_checkers
        from chathub.store import open_store

        timers_before = _timers(_reactor())
        config = config or Config().with_overrides(limits={"flood_exempt": LOOPBACK}, websocket={"ping_interval": 0})
        config = dataclasses.replace(config, server=dataclasses.replace(config.server, data_dir=str(data_dir)))
        store = open_store(config)
        await store.open()
        accounts = StoreAccountChecker(store, CHEAP_HASHER)
        await accounts.load()
        checkers = password_checkers(config, checkers, store_checker=accounts)
        server = cls(config, checkers, store, protocols=protocols, accounts=accounts)
        server._timers_before = timers_before  # the checkers' timers are the server's too
        return server

    def _observe(self, event: dict) -> None:
        failure = event.get("log_failure")
        if failure is not None:
            self.tracebacks.append(failure.getTraceback())

    def take_tracebacks(self, text: str) -> list[str]:
        """Take the tracebacks mentioning ``text`` out of the ones ``stop`` fails on (a test
        that provoked them on purpose); there must be one at least."""
        taken = [t for t in self.tracebacks if text in t]
        assert taken, f"no traceback mentions {text!r}"
        self.tracebacks[:] = [t for t in self.tracebacks if text not in t]
        return taken

    # -- listeners ---------------------------------------------------------------------------

    @functools.cached_property
    def irc_server(self):
        """What every IRC session shares, over TCP and over WebSocket."""
        from chathub.protocols.irc import IrcServer

        return IrcServer(self.hub, self.portal, self.config)

    @property
    def site(self):
        """The HTTP listener's factory (``build_site``)."""
        return self.factory("http")

    def factory(self, kind: str):
        """The one factory of every ``kind`` listener, as chathub/app.py makes them."""
        if kind not in self._factories:
            if kind == "irc":
                from chathub.protocols.irc import IrcFactory

                self._factories[kind] = IrcFactory(self.irc_server)
            elif kind == "line":
                from chathub.protocols.line import LineFactory

                self._factories[kind] = LineFactory(self.hub, self.portal, self.config)
            else:
                from chathub.protocols.web import build_site

                self._factories[kind] = build_site(self.hub, self.portal, self.config, irc=self.irc_server)
        return self._factories[kind]

    def listen(self, kind: str, description: str = ANY_PORT) -> int:
        """Serve ``kind`` on the endpoint ``description`` as well; the port it listens on."""
        from twisted.internet import endpoints

        from chathub.app import Listener

        refused: list[str] = []
        endpoint = endpoints.serverFromString(_reactor(), description)
        listener = Listener(kind, description, endpoint, self.factory(kind), refused.append)
        listener.setServiceParent(self.listeners)  # a TCP endpoint listens at once
        assert listener.port is not None, refused
        port = listener.port.getHost().port
        self._ports.setdefault(kind, []).append(port)
        return port

    def port(self, kind: str) -> int:
        """The port of the (first) ``kind`` listener."""
        return self._ports[kind][0]

    irc_port = property(lambda self: self.port("irc"), doc="The IRC listener's port.")
    line_port = property(lambda self: self.port("line"), doc="The telnet listener's port.")
    http_port = property(lambda self: self.port("http"), doc="The HTTP (and WebSocket) listener's port.")

    # -- clients -----------------------------------------------------------------------------

    async def connect(self, kind: str = "irc", source: Optional[str] = None) -> IrcClient:
        """A connection to the ``kind`` listener ("irc" or "line") from the loopback address
        ``source``, that has sent nothing yet."""
        return await connect_irc(self.port(kind), self.clients, source=source)

    async def irc(self, nick: str, *caps: str, password: Optional[str] = None, rooms=(), source: Optional[str] = None,
                  username: str = "u") -> IrcClient:
        """An IRC client registered as ``nick`` (user name ``username``) with ``caps``, by SASL
        PLAIN with ``password``, in ``rooms``, from the loopback address ``source``."""
        client = await self.connect("irc", source)
        return await register_irc(client, nick, caps, password, rooms, username=username)

    async def telnet(self, nick: str, rooms=(), source: Optional[str] = None) -> IrcClient:
        """A telnet user of the line protocol, named ``nick``, in ``rooms`` (from the loopback
        address ``source``); its lines are read with ``expect_re``."""
        client = await self.connect("line", source)
        client.send(f"/nick {nick}")
        await client.expect_re(rf"^\* you are {re.escape(nick)}, ")
        for room in rooms:
            client.send(f"/join {room}")
            await client.expect_re(rf"^\* you joined {re.escape(room)}$")
        return client

    async def ws_connect(self, protocols=V1, source: Optional[str] = None, **options):
        """A WebSocket client of the HTTP listener (``browser_helpers.connect``), open."""
        from tests.browser_helpers import connect

        return await connect(self.http_port, protocols=list(protocols), source=source, **options)

    async def ws(self, nick: str, password: Optional[str] = None, rooms=(), source: Optional[str] = None):
        """A chathub.v1 WebSocket client logged in as ``nick``, in ``rooms`` (from the loopback
        address ``source``)."""
        client = await ws_login(self.http_port, nick, password, source=source)
        for room in rooms:
            await ws_join(client, room, nick)
        return client

    async def bystanders(self, room: str = "#bystanders", nicks=("b_irc", "b_tel", "b_ws")) -> "Bystanders":
        """An honest user of each protocol (IRC, telnet, chathub.v1: ``nicks``), all in ``room``."""
        irc, telnet, ws = nicks
        return Bystanders(
            room, nicks, await self.irc(irc, rooms=[room]), await self.telnet(telnet, rooms=[room]),
            await self.ws(ws, rooms=[room]),
        )

    # -- the end -----------------------------------------------------------------------------

    async def stop(self) -> None:
        """Close every client, listener and service this server made; fail if the server
        logged a traceback meanwhile (bad input is answered, never an unhandled error) or
        if a timer it started is still set (a loop nobody stops runs on into later tests)."""
        from twisted.logger import globalLogPublisher

        await end_clients(self.clients)
        await self.listeners.stopService()
        await self.close()
        globalLogPublisher.removeObserver(self._observe)
        if self.check_tracebacks:
            assert not self.tracebacks, "the server logged tracebacks:\n" + "\n".join(self.tracebacks)
        await task.deferLater(_reactor(), 0, lambda: None)  # what the closes scheduled for now has run
        assert not self.timers(), f"timers still set after the server stopped: {self.timers()!r}"

    def timers(self) -> list:
        """The reactor's delayed calls set since this server was made and still pending:
        not those of a loop (a ``LoopingCall``) that ran before it, nor Autobahn's, which
        keeps a WebSocket's close-handshake timeout (in a txaio bucket) set when the
        connection is lost, to find it closed and do nothing: neither is ours to stop."""
        return [
            call for call in _reactor().getDelayedCalls()
            if call.active() and not _timer_of(call) & self._timers_before and not _autobahn_bucket(call)
        ]


async def end_clients(clients: list) -> None:
    """Abort every IRC and telnet client of ``clients`` and every WebSocket client made
    (``browser_helpers``), and wait until each is closed."""
    from tests.browser_helpers import close_clients

    for client in clients:
        if client.transport.connected:
            client.transport.abortConnection()
    await defer.DeferredList([c.closed for c in clients])
    await close_clients()


def _timer_of(call) -> set:
    """What a delayed call belongs to: itself, and the loop that set it if any (a loop
    sets a new delayed call each time round)."""
    return {call, call.func} if isinstance(call.func, task.LoopingCall) else {call}


def _timers(reactor) -> set:
    """Every pending delayed call of ``reactor`` and the loops that set them."""
    return set().union(*(_timer_of(call) for call in reactor.getDelayedCalls()))


def _autobahn_bucket(call) -> bool:
    timer = getattr(call.func, "__self__", None)
    return type(timer).__module__.startswith("txaio.") and call.func.__name__ == "_notify_bucket"


async def history_server(data_dir: Path, protocols: Iterable[str] = PROTOCOLS, **sections: dict) -> HubServer:
    """``HubServer.stored`` with ``history_config(**sections)``, its event clock stepping one
    second per event from an hour ago, so timestamp references are exact."""
    from chathub.events import EventIds

    server = await HubServer.stored(data_dir, history_config(**sections), protocols=protocols)
    server.hub.ids = EventIds(clock=itertools.count(time.time() - 3600, 1.0).__next__)
    return server


async def irc_user(server: HubServer, nick: str, caps=ALL_CAPS, password: Optional[str] = None, rooms=()) -> IrcClient:
    """A client of ``server`` registered as ``nick`` (its user name too) with ``caps``, by
    SASL PLAIN with ``password``, in ``rooms``."""
    return await server.irc(nick, *caps, password=password, rooms=rooms, username=nick)


async def ws_login(port: int, nick: str, password: Optional[str] = None, protocols=V1, source: Optional[str] = None):
    """A chathub.v1 client of the HTTP listener on ``port``, logged in as ``nick``."""
    from tests.browser_helpers import connect

    client = await connect(port, protocols=list(protocols), source=source)
    hello = await client.expect({"type": "hello"})
    assert hello["protocol"] == "chathub.v1"
    request = {"type": "login", "nick": nick, "ref": 1}
    if password is not None:
        request["password"] = password
    client.send_json(request)
    welcome = await client.expect(lambda m: m.get("type") in ("welcome", "error"))
    assert welcome["type"] == "welcome", welcome
    assert welcome["nick"] == nick and welcome["ref"] == 1
    return client


async def ws_join(client, room: str, nick: str) -> dict:
    """``client`` (signed on as ``nick``) joins ``room``; the room's snapshot."""
    client.send_json({"type": "join", "room": room})
    joined = await client.expect({"type": "join", "room": room})
    assert joined["from"]["nick"] == nick
    return await client.expect({"type": "room", "room": room})


class Bystanders:
    """Honest users of IRC, telnet and chathub.v1 in one room (``HubServer.bystanders``)."""

    def __init__(self, room: str, nicks: tuple[str, str, str], irc: IrcClient, telnet: IrcClient, ws) -> None:
        self.room = room
        self.nicks = nicks
        self.irc = irc
        self.telnet = telnet
        self.ws = ws
        self._said = itertools.count(1)

    async def still_served(self, timeout: float = IRC_TIMEOUT) -> None:
        """Each bystander says a line and every other one receives it, within ``timeout``."""
        n = next(self._said)
        room = self.room
        irc_nick, _, ws_nick = (re.escape(nick) for nick in self.nicks)
        self.irc.send(f"PRIVMSG {room} :irc still here {n}")
        await self.telnet.expect_re(rf"<{irc_nick}> irc still here {n}$", timeout)
        await self.ws.expect({"type": "message", "text": f"irc still here {n}"}, timeout)
        self.telnet.send(f"/msg {room} telnet still here {n}")
        await self.irc.expect(lambda l: l.command == "PRIVMSG" and l.params[-1] == f"telnet still here {n}", timeout)
        await self.ws.expect({"type": "message", "text": f"telnet still here {n}"}, timeout)
        self.ws.send_json({"type": "message", "target": room, "text": f"ws still here {n}"})
        await self.irc.expect(lambda l: l.command == "PRIVMSG" and l.params[-1] == f"ws still here {n}", timeout)
        await self.telnet.expect_re(rf"<{ws_nick}> ws still here {n}$", timeout)


class LogCapture:
    """Every log event while in use (``with LogCapture() as log:``, or the ``captured``
    fixture), to search: ``failures`` are the events carrying a traceback, ``matching(text)``
    and ``wait_for(text)`` the ones whose format or formatted text contains ``text``."""

    def __init__(self) -> None:
        self.events: list[dict] = []
        self._waiters: list = []

    def __enter__(self) -> "LogCapture":
        from twisted.logger import globalLogPublisher

        globalLogPublisher.addObserver(self._observe)
        return self

    def __exit__(self, *exc) -> None:
        from twisted.logger import globalLogPublisher

        globalLogPublisher.removeObserver(self._observe)

    def _observe(self, event: dict) -> None:
        self.events.append(event)
        for text, d in list(self._waiters):
            if _mentions(event, text):
                self._waiters.remove((text, d))
                d.callback(event)

    @property
    def failures(self) -> list[dict]:
        return [e for e in self.events if e.get("log_failure") is not None]

    def texts(self) -> list[str]:
        """Every event as formatted text."""
        from twisted.logger import formatEvent

        return [formatEvent(e) for e in self.events]

    def matching(self, text: str) -> list[dict]:
        return [e for e in self.events if _mentions(e, text)]

    def find(self, *parts: str) -> dict:
        """The last event whose text contains every part; it must be at info level."""
        from twisted.logger import LogLevel, formatEvent

        found = [e for e in self.events if all(p in formatEvent(e) for p in parts)]
        assert found, f"no log line with {parts}; lines: {self.texts()[-20:]}"
        assert found[-1]["log_level"] == LogLevel.info
        return found[-1]

    def wait_for(self, text: str, timeout: float = 10.0) -> defer.Deferred:
        """Fires with the first event (already seen or to come) that mentions ``text``."""
        seen = self.matching(text)
        if seen:
            return defer.succeed(seen[0])
        d: defer.Deferred = defer.Deferred()
        self._waiters.append((text, d))
        return d.addTimeout(timeout, _reactor())

    def assert_no_secret(self, *secrets: str) -> None:
        """No event, in its text or any of its fields, holds one of ``secrets``."""
        from twisted.logger import formatEvent

        for event in self.events:
            blob = formatEvent(event) + " " + " ".join(
                repr(v) for k, v in event.items() if k not in ("log_logger", "log_source", "log_observer")
            )
            for secret in secrets:
                assert secret not in blob, f"{secret!r} logged: {formatEvent(event)}"


def _mentions(event: dict, text: str) -> bool:
    from twisted.logger import formatEvent

    return text in (event.get("log_format") or "") or text in formatEvent(event)


async def until(condition: Callable[[], object], timeout: float = 10.0) -> None:
    """Wait, one reactor turn at a time, until ``condition()`` holds; fail after ``timeout``.

    For states that no event announces (a request reaching a queue inside the server)."""
    from twisted.internet import task

    reactor = _reactor()
    deadline = reactor.seconds() + timeout
    while not condition():
        assert reactor.seconds() < deadline, f"timed out waiting for {condition}"
        await task.deferLater(reactor, 0, lambda: None)


class HeldStore:
    """A store whose commits wait for ``commit(result)``: what the hub shows once stored
    waits too. ``commit()`` stores them; ``commit(Failure(...))`` refuses them (a full disk)."""

    def __init__(self) -> None:
        self.waiting: list = []
        self.around = None

    def wrap_releases(self, around) -> None:
        self.around = around

    def append(self, event, rooms=(), notify=None):
        if notify is None:  # not held for its commit (a join): nothing to wait for here
            return defer.succeed(None)
        self.waiting.append(notify)
        return None

    def begin_room(self, name):
        return defer.succeed(None)

    def rename_room(self, old, new):
        return defer.succeed(None)

    def read_markers(self, account):
        return defer.succeed({})  # an account's stored read markers: none

    def before(self, *query, **options):
        return defer.succeed([])  # history (a join's replay): nothing stored yet

    def commit(self, result=None) -> None:
        with self.around():
            for notify in self.waiting:
                notify(result)
        self.waiting = []
