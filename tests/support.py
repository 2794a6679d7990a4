"""Test helpers shared by the suite: a twistd subprocess (its listeners on ports the system
picks, read back from its log), a blocking line client and an in-process Twisted IRC client.

Everything here waits on events (a log line, bytes matching a pattern) with a timeout;
nothing sleeps to synchronise.
"""
from __future__ import annotations

import itertools
import base64
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
from typing import Callable, Optional, Union

import irctokens
from twisted.internet import defer
from twisted.protocols.basic import LineReceiver

REPO = Path(__file__).resolve().parent.parent

#: a listener on a port the system picks, on loopback: nothing to race other processes for
ANY_PORT = "tcp:0:interface=127.0.0.1"
#: the factory each listener kind logs as it starts ("IrcFactory starting on 40123")
_LOGGED_AS = {"LineFactory": "line", "IrcFactory": "irc", "ChathubSite": "http"}
_LISTENING = re.compile(r"\] (\w+)(?: \(TLS\))? starting on (\d+)$")


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
    ) -> None:
        """``pythonpath`` replaces the default (the repository first); ``python_flags`` go
        to the interpreter (``-S`` keeps site .pth files, an editable install's, away)."""
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
            [sys.executable, *self.python_flags, "-c", "from twisted.scripts.twistd import run; run()", "-n", "--pidfile=", "--logfile=-", "chathub",
             *(("--config", str(self.config_path)) if self.config_path else ()), *self.extra_args],
            cwd=self.workdir,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=env,
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
        except socket.timeout:
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

    def expect(self, predicate: Predicate, timeout: float = IRC_TIMEOUT) -> defer.Deferred:
        """The next line (after those already taken) matching ``predicate``: a command or a test."""
        if isinstance(predicate, str):
            wanted = predicate
            predicate = lambda line: line.command == wanted  # noqa: E731
        d = defer.Deferred()

        def check() -> None:
            while self.cursor < len(self.lines):
                line = self.lines[self.cursor]
                self.cursor += 1
                if predicate(line):
                    finish(line)
                    return
            if not self.transport.connected and not d.called:
                finish(AssertionError("connection closed; lines: " + self.dump()))

        def finish(result) -> None:
            self._waiters.remove(check)
            call.cancel()
            d.callback(result) if not isinstance(result, Exception) else d.errback(result)

        def timed_out() -> None:
            self._waiters.remove(check)
            d.errback(AssertionError(f"timed out waiting for {predicate!r}; lines: " + self.dump()))

        call = _reactor().callLater(timeout, timed_out)
        self._waiters.append(check)
        check()
        return d

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
        d = defer.Deferred()

        def check() -> None:
            if not d.called and sum(1 for l in self.lines if pattern.search(l.text)) >= count:
                self._waiters.remove(check)
                call.cancel()
                d.callback(self)

        def timed_out() -> None:
            self._waiters.remove(check)
            d.errback(AssertionError(f"fewer than {count} lines matching {regex!r}; lines: " + self.dump()))

        call = _reactor().callLater(timeout, timed_out)
        self._waiters.append(check)
        check()
        return d

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


async def quit_irc_clients(clients: list) -> None:
    """QUIT every client still connected (the server leaves the hub first) and wait."""
    while clients:
        client = clients.pop()
        if client.transport.connected:
            client.send("QUIT :done")
            await client.closed


class HubServer:
    """An in-process hub with every protocol listening on 127.0.0.1 port 0: IRC, the telnet
    line protocol, and HTTP with the WebSocket endpoint. Clients of each protocol come from
    ``irc``, ``telnet`` and ``ws``; ``bystanders`` puts an honest user of each protocol in a
    room, to show that an attack on the hub hurt nobody else.

    ``config`` defaults to the built-in one with loopback exempt from flood control on every
    protocol (the tests drive many lines quickly); ``checkers`` are the password checkers; with ``store``
    (opened) the hub keeps history and registers accounts in it."""

    def __init__(self, config=None, checkers=(), store=None) -> None:
        from chathub.config import Config
        from chathub.protocols.irc import IrcFactory
        from chathub.protocols.line import LineFactory
        from tests.browser_helpers import start_server

        if config is None:
            config = Config().with_overrides(
                limits={"flood_exempt": ["127.0.0.0/8"]}, websocket={"ping_interval": 0}
            )
        self.config = config
        self.hub, self.portal, self.site, self.http = start_server(config, checkers, store)
        reactor = _reactor()
        # IRC over TCP and over WebSocket are one IRC server, as in chathub/app.py
        self.irc_server = self.site.websocket_factory.irc
        irc = reactor.listenTCP(0, IrcFactory(self.irc_server), interface="127.0.0.1")
        line = reactor.listenTCP(0, LineFactory(self.hub, self.portal, config), interface="127.0.0.1")
        self._ports = [self.http, irc, line]
        self.irc_port = irc.getHost().port
        self.line_port = line.getHost().port
        self.ws_port = self.http.getHost().port
        self.clients: list = []  # IRC and telnet clients
        # every traceback the server logs while it runs: ``stop`` fails on any (a test that
        # provokes one on purpose takes it out of this list)
        self.tracebacks: list[str] = []
        from twisted.logger import globalLogPublisher

        globalLogPublisher.addObserver(self._observe)

    def _observe(self, event: dict) -> None:
        failure = event.get("log_failure")
        if failure is not None:
            self.tracebacks.append(failure.getTraceback())

    @classmethod
    async def stored(cls, data_dir: Path, config=None, checkers=()) -> "HubServer":
        """A server keeping history and accounts in an SQLite store under ``data_dir``."""
        import dataclasses

        from chathub.config import Config
        from chathub.store import open_store

        if config is None:
            config = Config().with_overrides(
                limits={"flood_exempt": ["127.0.0.0/8"]}, websocket={"ping_interval": 0}
            )
        config = dataclasses.replace(config, server=dataclasses.replace(config.server, data_dir=str(data_dir)))
        store = open_store(config)
        await store.open()
        server = cls(config, checkers, store)
        server.store = store
        return server

    store = None

    async def irc(
        self, nick: str, *caps: str, password: Optional[str] = None, rooms=(), source: Optional[str] = None
    ) -> "IrcClient":
        """A registered IRC client with ``caps``, in ``rooms`` (from the loopback address ``source``)."""
        client = await connect_irc(self.irc_port, self.clients, source=source)
        return await register_irc(client, nick, caps, password, rooms, username="u")

    async def raw_irc(self) -> "IrcClient":
        """An IRC connection that has sent nothing yet."""
        return await connect_irc(self.irc_port, self.clients)

    async def telnet(self, nick: str, rooms=(), source: Optional[str] = None) -> "IrcClient":
        """A telnet user of the line protocol, named ``nick``, in ``rooms`` (from the loopback
        address ``source``); its lines are read with ``expect_re``."""
        client = await connect_irc(self.line_port, self.clients, source=source)
        client.send(f"/nick {nick}")
        await client.expect_re(rf"^\* you are {re.escape(nick)}, ")
        for room in rooms:
            client.send(f"/join {room}")
            await client.expect_re(rf"^\* you joined {re.escape(room)}$")
        return client

    async def ws(self, nick: str, password: Optional[str] = None, rooms=(), source: Optional[str] = None):
        """A chathub.v1 WebSocket client logged in as ``nick``, in ``rooms`` (from the loopback
        address ``source``)."""
        from tests.browser_helpers import connect

        client = await connect(self.ws_port, protocols=["chathub.v1"], source=source)
        await client.expect({"type": "hello"})
        request = {"type": "login", "nick": nick}
        if password is not None:
            request["password"] = password
        client.send_json(request)
        welcome = await client.expect(lambda m: m.get("type") in ("welcome", "error"))
        assert welcome["type"] == "welcome", welcome
        for room in rooms:
            client.send_json({"type": "join", "room": room})
            await client.expect({"type": "room", "room": room})
        return client

    async def bystanders(self, room: str = "#bystanders") -> "Bystanders":
        """An honest user of each protocol, all in ``room``."""
        return Bystanders(
            room,
            await self.irc("b_irc", rooms=[room]),
            await self.telnet("b_tel", rooms=[room]),
            await self.ws("b_ws", rooms=[room]),
        )

    async def stop(self) -> None:
        """Close every client and listener this server made; fail if the server logged a
        traceback meanwhile (bad input is answered, never an unhandled error)."""
        from twisted.logger import globalLogPublisher

        from tests.browser_helpers import close_clients

        for client in self.clients:
            if client.transport.connected:
                client.transport.abortConnection()
        await defer.DeferredList([c.closed for c in self.clients])
        await close_clients()
        for port in self._ports:
            await port.stopListening()
        if self.store is not None:
            for user in list(self.hub.users.values()):
                self.hub.quit(user, "test over")  # stored now, before the store closes
            await self.store.close()
        globalLogPublisher.removeObserver(self._observe)
        assert not self.tracebacks, "the server logged tracebacks:\n" + "\n".join(self.tracebacks)


class Bystanders:
    """Honest users of IRC, telnet and chathub.v1 in one room (``HubServer.bystanders``)."""

    def __init__(self, room: str, irc: "IrcClient", telnet: "IrcClient", ws) -> None:
        self.room = room
        self.irc = irc
        self.telnet = telnet
        self.ws = ws
        self._said = itertools.count(1)

    async def still_served(self, timeout: float = IRC_TIMEOUT) -> None:
        """Each bystander says a line and every other one receives it, within ``timeout``."""
        n = next(self._said)
        room = self.room
        self.irc.send(f"PRIVMSG {room} :irc still here {n}")
        await self.telnet.expect_re(rf"<b_irc> irc still here {n}$", timeout)
        await self.ws.expect({"type": "message", "text": f"irc still here {n}"}, timeout)
        self.telnet.send(f"/msg {room} telnet still here {n}")
        await self.irc.expect(lambda l: l.command == "PRIVMSG" and l.params[-1] == f"telnet still here {n}", timeout)
        await self.ws.expect({"type": "message", "text": f"telnet still here {n}"}, timeout)
        self.ws.send_json({"type": "message", "target": room, "text": f"ws still here {n}"})
        await self.irc.expect(lambda l: l.command == "PRIVMSG" and l.params[-1] == f"ws still here {n}", timeout)
        await self.telnet.expect_re(rf"<b_ws> ws still here {n}$", timeout)
async def every_protocol_server(tmp_path, **overrides):
    """``tests.test_irc_history.Server`` (a hub on a real SQLite store, serving IRC) that
    also serves telnet and HTTP/WebSocket: ``line_port`` and ``http_port`` besides
    ``irc_port``. Stop it with ``await server.stop()``."""
    from chathub.protocols.line import LineFactory
    from chathub.protocols.web import build_site
    from tests.test_irc_history import Server

    server = await Server(tmp_path, **overrides).start()
    server.line_port = server.listen(LineFactory(server.hub, server.portal, server.config))
    server.site = build_site(server.hub, server.portal, server.config)
    server.http_port = server.listen(server.site)
    return server


class LogCapture:
    """Every log event while in use (``with LogCapture() as log:``); ``failures`` are the
    ones carrying a traceback, ``matching(text)`` the ones whose format contains ``text``."""

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
            if text in (event.get("log_format") or ""):
                self._waiters.remove((text, d))
                d.callback(event)

    @property
    def failures(self) -> list[dict]:
        return [e for e in self.events if e.get("log_failure") is not None]

    def matching(self, text: str) -> list[dict]:
        return [e for e in self.events if text in (e.get("log_format") or "")]

    def wait_for(self, text: str, timeout: float = 10.0) -> defer.Deferred:
        """Fires with the first event (already seen or to come) whose format contains ``text``."""
        seen = self.matching(text)
        if seen:
            return defer.succeed(seen[0])
        d: defer.Deferred = defer.Deferred()
        self._waiters.append((text, d))
        return d.addTimeout(timeout, _reactor())


async def until(condition: Callable[[], object], timeout: float = 10.0) -> None:
    """Wait, one reactor turn at a time, until ``condition()`` holds; fail after ``timeout``.

    For states that no event announces (a request reaching a queue inside the server)."""
    from twisted.internet import task

    reactor = _reactor()
    deadline = reactor.seconds() + timeout
    while not condition():
        assert reactor.seconds() < deadline, f"timed out waiting for {condition}"
        await task.deferLater(reactor, 0, lambda: None)
