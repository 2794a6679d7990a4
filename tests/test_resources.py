"""What an attacker can make the server hold (issue 10, "make the classes part of the suite").

A twistd chathub in a subprocess; from this process, with many loopback source addresses
(the whole of 127.0.0.0/8 is loopback on Linux, so the per-address limits are met the way a
botnet would meet them): ``CONNECTIONS`` idle, registered connections of each protocol, a client
that never reads in a busy room, HTTP clients trickling their headers, and a room-creation
attack. Meanwhile and afterwards the server's memory and descriptors stay under the bounds
stated in docs/security.md, and a new user still registers within a second.

``CHATHUB_RESOURCE_CONNECTIONS`` changes the number of idle connections per protocol (5,000
by default, as docs/security.md states).
"""
from __future__ import annotations

import base64
import os
import resource
import selectors
import socket
import struct
import time
from typing import Callable, Iterator

import pytest

from tests.support import LineClient, TwistdServer, server_config

CONNECTIONS = int(os.environ.get("CHATHUB_RESOURCE_CONNECTIONS", "5000"))
#: connections opened from one source address (each address stays far under its limit)
PER_ADDRESS = 4
#: what an idle registered connection may cost the server, at most, per protocol (KiB of RSS);
#: measured costs are in docs/security.md, these bounds leave room for allocator noise
RSS_KIB_PER_CONNECTION = {"irc": 4, "line": 6, "ws": 16}
#: connections opened at once: the listen backlog (Twisted's default 50) is not overrun, so no
#: SYN waits for the kernel's retransmission
BATCH = 40
#: descriptors the server may hold beyond one per connection (listeners, database, logs)
SPARE_DESCRIPTORS = 64


def _addresses(start: int) -> Iterator[str]:
    """Loopback addresses 127.1.0.0 onwards, ``PER_ADDRESS`` connections each."""
    n = start
    while True:
        a, b, c = (n >> 16) & 0xFF, (n >> 8) & 0xFF, n & 0xFF
        for _ in range(PER_ADDRESS):
            yield f"127.{1 + a}.{b}.{c or 1}"
        n += 1


def _rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


def _descriptors(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def _ws_frame(text: bytes) -> bytes:
    key = b"\x11\x22\x33\x44"
    masked = bytes(b ^ key[i % 4] for i, b in enumerate(text))
    return struct.pack("!BB", 0x81, 0x80 | len(text)) + key + masked


def _handshake(kind: str, n: int) -> tuple[bytes, bytes, Callable[[int], bytes] | None]:
    """What connection ``n`` of ``kind`` sends first, the bytes that mean it is registered,
    and (for WebSocket) what it sends once the upgrade is done."""
    if kind == "irc":
        return f"NICK i{n}\r\nUSER u 0 * :idle\r\n".encode(), b" 001 ", None
    if kind == "line":
        return f"/nick t{n}\r\n".encode(), b"* you are t", None
    key = base64.b64encode(n.to_bytes(16, "big")).decode()
    upgrade = (
        "GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: chathub.v1\r\n\r\n"
    ).encode()
    return upgrade, b'"welcome"', lambda n: _ws_frame(b'{"type":"login","nick":"w%d"}' % n)


def open_idle(kind: str, port: int, count: int, addresses: Iterator[str], timeout: float = 120.0) -> list[socket.socket]:
    """``count`` registered connections of ``kind``, opened BATCH at a time, all left idle."""
    sockets: list[socket.socket] = []
    selector = selectors.DefaultSelector()
    n = len(sockets)
    deadline = time.monotonic() + timeout
    while len(sockets) < count:
        batch = {}
        for _ in range(min(BATCH, count - len(sockets))):
            s = socket.socket()
            s.bind((next(addresses), 0))
            s.connect(("127.0.0.1", port))
            s.setblocking(False)
            first, done, after_upgrade = _handshake(kind, n)
            s.sendall(first)
            batch[s] = [b"", done, after_upgrade, n, False]
            selector.register(s, selectors.EVENT_READ)
            n += 1
        while batch:
            if time.monotonic() > deadline:
                raise AssertionError(f"{len(batch)} {kind} connections not registered in {timeout}s")
            for key, _ in selector.select(timeout=1.0):
                s = key.fileobj
                state = batch.get(s)
                data = s.recv(65536)
                if not data:
                    raise AssertionError(f"{kind} connection closed while registering: {state[0][-300:]!r}")
                if state is None:
                    continue  # registered already: ignore what else it is sent
                state[0] += data
                if state[2] is not None and not state[4] and b"\r\n\r\n" in state[0]:
                    assert state[0].startswith(b"HTTP/1.1 101"), state[0][:200]
                    s.sendall(state[2](state[3]))
                    state[4] = True
                if state[1] in state[0]:
                    del batch[s]
                    selector.unregister(s)
                    sockets.append(s)
    selector.close()
    return sockets


def drain(sockets: list[socket.socket]) -> None:
    """Read whatever idle connections were sent (PINGs), so none counts as a slow reader."""
    for s in sockets:
        try:
            while s.recv(65536):
                pass
        except (BlockingIOError, InterruptedError):
            pass


@pytest.fixture
def descriptors():
    """Raise this process's descriptor limit for the clients (3 x CONNECTIONS sockets)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = 3 * CONNECTIONS + 1000
    if hard < needed:
        pytest.fail(f"the test needs {needed} descriptors; the hard limit here is {hard} (ulimit -Hn)")
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def _irc(port: int, nick: str, source: str, **kw) -> LineClient:
    client = LineClient(port, source=source, **kw)
    client.send(f"NICK {nick}")
    client.send(f"USER u 0 * :{nick}")
    client.expect(rf" 001 {nick} ")
    return client


def never_reading_client_is_dropped(port: int) -> None:
    """A member of a busy room that stops reading is dropped at its send queue while an
    honest member gets every message."""
    sink = socket.socket()
    sink.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sink.bind(("127.0.0.3", 0))
    sink.connect(("127.0.0.1", port))
    sink.sendall(b"NICK sink\r\nUSER u 0 * :sink\r\nJOIN #busy\r\n")  # and never reads again
    reader = _irc(port, "reader", "127.0.0.4")
    reader.send("JOIN #busy")
    reader.expect(r" 366 reader #busy ")
    sender = _irc(port, "sender", "127.0.0.2")  # flood-exempt: a bridge
    sender.send("JOIN #busy")
    sender.expect(r" 366 sender #busy ")
    line = "x" * 400
    sent = 0
    while True:
        assert sent < 100_000, "the never-reading client was never dropped"
        sender.send("".join(f"PRIVMSG #busy :{sent + i} {line}\r\n" for i in range(500)))
        sent += 500
        sender.send(f"PING :{sent}")
        sender.expect(rf"PONG .* :?{sent}$", timeout=30)
        quits = [l for l in reader.seen if " QUIT " in l and l.startswith(":sink!")]
        while not quits:
            try:
                reader.readline(0.05)
            except TimeoutError:
                break
            quits = [l for l in reader.seen if " QUIT " in l and l.startswith(":sink!")]
        if quits:
            assert "SendQ exceeded" in quits[0], quits[0]
            break
    # the honest reader got everything sent so far, in order
    last = sent - 1
    reader.expect(rf"PRIVMSG #busy :{last} x+$", timeout=30)
    numbers = [int(l.split(" :", 1)[1].split()[0]) for l in reader.seen if "PRIVMSG #busy :" in l]
    assert numbers == list(range(sent))
    sink.close()
    for client in (reader, sender):
        client.close()


def trickling_http_heads_end_at_the_deadline(port: int, count: int, deadline: float) -> None:
    """``count`` clients sending a request head one byte at a time are all closed by the
    server once ``deadline`` has passed, and nothing of theirs is left."""
    head = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"a" * 1000
    clients = []
    for n in range(count):
        s = socket.socket()
        s.bind((f"127.5.{n // 250}.{n % 250 + 1}", 0))
        s.connect(("127.0.0.1", port))
        s.setblocking(False)
        clients.append(s)
    selector = selectors.DefaultSelector()
    for s in clients:
        selector.register(s, selectors.EVENT_READ)
    open_ = set(clients)
    offset = 0
    give_up = time.monotonic() + deadline + 20
    while open_:
        assert time.monotonic() < give_up, f"{len(open_)} trickling clients still open"
        for s in list(open_):
            try:
                s.send(head[offset:offset + 1])
            except OSError:
                open_.discard(s)
        offset += 1
        # pacing the attack (a byte per client per turn); what the loop waits for is the close
        for key, _ in selector.select(timeout=0.2):
            try:
                data = key.fileobj.recv(4096)
            except OSError:
                data = b""
            if not data or b"408" in data:
                open_.discard(key.fileobj)
                selector.unregister(key.fileobj)
    selector.close()
    for s in clients:
        s.close()


def room_creation_floods_are_bounded(port: int, max_rooms: int) -> None:
    """Guests from many addresses try to make far more rooms than ``max_rooms``: no more
    than that exist, the rest are refused, and the guests' rooms go when they leave."""
    guests = [_irc(port, f"maker{n}", f"127.6.0.{n + 1}") for n in range(60)]
    for n, guest in enumerate(guests):
        guest.send("JOIN " + ",".join("#m%d-%d" % (n, r) for r in range(50)))
    refused = 0
    for n, guest in enumerate(guests):
        guest.send(f"PING :made{n}")
        lines = []
        while not lines or not lines[-1].endswith(f"made{n}"):
            lines.append(guest.readline())
        refused += sum(1 for l in lines if " 403 " in l or " 437 " in l)
    watcher = _irc(port, "counter", "127.6.1.1")
    watcher.send("LIST")
    watcher.expect(r" 323 counter ")
    listed = [l for l in watcher.seen if " 322 counter #m" in l]
    assert len(listed) <= max_rooms
    assert refused >= 60 * 50 - max_rooms
    for guest in guests:
        guest.send("QUIT")
        guest.expect_closed()
    watcher.send("LIST")
    start = len(watcher.seen)
    watcher.expect(r" 323 counter ")
    assert not [l for l in watcher.seen[start:] if " 322 counter #m" in l]
    watcher.close()


@pytest.mark.timeout(600)
def test_idle_crowds_slow_readers_trickles_and_room_floods_stay_bounded(tmp_path, descriptors):
    max_rooms, http_deadline = 1000, 2.0
    config = server_config(
        tmp_path / "var",
        f'[limits]\nmax_rooms = {max_rooms}\nflood_exempt = ["127.0.0.2"]\n'
        + f"http_request_timeout = {http_deadline}\nsendq_bytes = 65536\n"
        + "[irc]\nping_interval = 600.0\n"
        + "[websocket]\nping_interval = 0.0\n",
        irc=True,
        http=True,
    )
    server = TwistdServer(tmp_path / "srv", config).start()
    ports = {kind: server.port(kind) for kind in ("line", "irc", "http")}
    crowd: dict[str, list[socket.socket]] = {}
    try:
        pid = server.process.pid
        base_rss, base_fds = _rss_kib(pid), _descriptors(pid)
        addresses = _addresses(0)
        for kind, port in (("irc", ports["irc"]), ("line", ports["line"]), ("ws", ports["http"])):
            before, started = _rss_kib(pid), time.monotonic()
            crowd[kind] = open_idle(kind, port, CONNECTIONS, addresses)
            cost = (_rss_kib(pid) - before) / CONNECTIONS
            print(f"{kind}: {CONNECTIONS} idle connections in {time.monotonic() - started:.1f} s, "
                  f"{cost:.2f} KiB of server RSS each")
            assert cost <= RSS_KIB_PER_CONNECTION[kind], f"{kind}: {cost:.2f} KiB per connection"
        held = 3 * CONNECTIONS
        assert _descriptors(pid) <= base_fds + held + SPARE_DESCRIPTORS
        crowd_rss = _rss_kib(pid)

        # the attacks, one after the other, with the crowd still connected
        started = time.monotonic()
        never_reading_client_is_dropped(ports["irc"])
        print(f"never-reading client dropped in {time.monotonic() - started:.1f} s")
        started = time.monotonic()
        trickling_http_heads_end_at_the_deadline(ports["http"], 300, http_deadline)
        print(f"300 trickling HTTP clients closed in {time.monotonic() - started:.1f} s")
        room_creation_floods_are_bounded(ports["irc"], max_rooms)
        assert _descriptors(pid) <= base_fds + held + SPARE_DESCRIPTORS
        grown = _rss_kib(pid) - crowd_rss
        print(f"server RSS: {base_rss} KiB empty, {crowd_rss} KiB with the crowd, +{grown} KiB after the attacks")
        assert grown < 40 * 1024, f"the attacks left {grown} KiB behind"

        # a new user of every protocol still gets in at once
        irc = _irc(ports["irc"], "newcomer", "127.7.0.1", timeout=1.0)
        tel = LineClient(ports["line"], timeout=1.0, source="127.7.0.2")
        tel.send("/nick newtel")
        tel.expect(r"^\* you are newtel", timeout=1.0)
        irc.close()
        tel.close()
        drain([s for group in crowd.values() for s in group])
        assert server.exceptions == []
    finally:
        for group in crowd.values():
            for s in group:
                s.close()
        server.stop()
