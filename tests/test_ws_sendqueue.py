"""A WebSocket client that stops reading is dropped at its send-queue limit; the room carries on."""
from __future__ import annotations

import os
import socket

import pytest_twisted
from twisted.internet import threads

from chathub.config import Config
from tests.support import HubServer, ws_join, ws_login


def client_frame(text: str) -> bytes:
    """One masked text frame, as a browser sends it."""
    payload = text.encode("utf-8")
    mask = os.urandom(4)
    n = len(payload)
    header = bytes([0x81]) + (bytes([0x80 | n]) if n < 126 else bytes([0x80 | 126]) + n.to_bytes(2, "big"))
    return header + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def _read_until(sock: socket.socket, marker: bytes) -> bytes:
    data = b""
    while marker not in data:
        chunk = sock.recv(1)  # byte by byte: read nothing past the marker
        if not chunk:
            break
        data += chunk
    return data


@pytest_twisted.ensureDeferred
async def test_never_reading_websocket_client_is_dropped_at_its_send_queue_limit():
    limit = 32 * 1024
    config = Config().with_overrides(
        limits={"sendq_bytes": limit},
        websocket={"ping_interval": 0.0, "flood_rate": 1000.0, "flood_burst": 1000},
    )
    server = HubServer(config, protocols=["http"])
    hub, port = server.hub, server.http_port
    stuck = None
    try:
        talker = await ws_login(port, "talker")
        reader = await ws_login(port, "reader")
        await ws_join(talker, "#busy", "talker")
        await ws_join(reader, "#busy", "reader")

        # a raw client with a tiny receive window that stops reading once it is in the room
        stuck = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        stuck.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 2048)
        stuck.settimeout(10)
        stuck.connect(("127.0.0.1", port))  # the kernel completes it; the reactor accepts later
        stuck.sendall(
            f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
            "Sec-WebSocket-Protocol: chathub.v1\r\n\r\n".encode()
        )
        # RFC 6455: a client sends nothing more until the server's handshake answer arrives
        answer = await threads.deferToThread(_read_until, stuck, b"\r\n\r\n")
        assert answer.startswith(b"HTTP/1.1 101 ")
        stuck.sendall(client_frame('{"type":"login","nick":"stuck"}') + client_frame('{"type":"join","room":"#busy"}'))
        joined = await reader.expect(lambda m: m.get("type") == "join" and m["from"]["nick"] == "stuck")
        assert joined["room"] == "#busy"
        ws = hub.find_user("stuck").participant.ws
        queue = ws.sendqueue
        ws.real_transport.socket.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)

        talker_user = hub.find_user("talker")
        count, body = 400, "x" * 400
        # in batches a reading client keeps up with; the stuck one falls further behind each time
        for i in range(count):
            hub.send(talker_user, "#busy", f"msg {i:04d} {body}")
            assert queue.pending_bytes <= limit
            if i % 20 == 19:
                await reader.expect({"type": "message", "text": f"msg {i:04d} {body}"})
        quit_event = await reader.expect(lambda m: m.get("type") == "quit" and m["from"]["nick"] == "stuck")
        assert quit_event["reason"] == "Send queue exceeded"
        texts = [m["text"] for m in reader.received if m.get("type") == "message"]
        assert texts == [f"msg {i:04d} {body}" for i in range(count)]
        assert queue.closed and queue.peak_bytes <= limit
        assert hub.find_user("stuck") is None
    finally:
        if stuck is not None:
            stuck.close()
        await server.stop()


@pytest_twisted.ensureDeferred
async def test_dead_peer_is_dropped_after_the_ping_timeout():
    config = Config().with_overrides(websocket={"ping_interval": 0.5, "ping_timeout": 1.0})
    server = HubServer(config, protocols=["http"])
    hub, port = server.hub, server.http_port
    dead = None
    try:
        watcher = await ws_login(port, "watcher")
        await ws_join(watcher, "#r", "watcher")
        # a peer that completes the handshake, joins, then goes silent (never answers a ping)
        dead = socket.create_connection(("127.0.0.1", port), timeout=10)
        dead.sendall(
            f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
            "Sec-WebSocket-Protocol: chathub.v1\r\n\r\n".encode()
        )
        assert (await threads.deferToThread(_read_until, dead, b"\r\n\r\n")).startswith(b"HTTP/1.1 101 ")
        dead.sendall(client_frame('{"type":"login","nick":"ghost"}') + client_frame('{"type":"join","room":"#r"}'))
        await watcher.expect(lambda m: m.get("type") == "join" and m["from"]["nick"] == "ghost")
        gone = await watcher.expect(lambda m: m.get("type") == "quit" and m["from"]["nick"] == "ghost", timeout=10)
        assert gone["reason"] == "Ping timeout"
        assert hub.find_user("ghost") is None
        # the watcher answers pings (autobahn's client does) and stays
        watcher.send_json({"type": "ping", "token": "still"})
        assert (await watcher.expect({"type": "pong"}))["token"] == "still"
    finally:
        if dead is not None:
            dead.close()
        await server.stop()
