"""An IRC client that never reads, in a busy channel, is dropped at its send-queue limit
with the SendQ reason (everyone else sees its QUIT), while the other members receive every
message. The IRC twin of test_line_integration's never-reading line client."""
from __future__ import annotations

import socket

import pytest_twisted
from twisted.internet import defer

from chathub.config import Config
from tests.support import HubServer

LIMIT = 32 * 1024
COUNT = 400
BODY = "x" * 400


def is_msg(n: int):
    return lambda l: l.command == "PRIVMSG" and l.params[-1].startswith(f"msg {n:04d} ")


@pytest_twisted.ensureDeferred
async def test_never_reading_irc_client_is_dropped_with_sendq_exceeded(tmp_path, captured):
    config = Config().with_overrides(
        server={"data_dir": str(tmp_path), "name": "irc.test"},
        auth={"checkers": []},
        limits={"sendq_bytes": LIMIT},
        irc={"flood_exempt": ["127.0.0.0/8"]},
    )
    server = HubServer(config, protocols=["irc"])
    hub = server.hub
    stuck_sock = None
    try:
        number = server.irc_port

        async def member(nick: str):
            c = await server.connect("irc")
            c.send(f"NICK {nick}")
            c.send(f"USER {nick} 0 * :{nick}")
            c.send("JOIN #busy")
            await c.expect(lambda l: l.command == "366")
            return c

        talker = await member("talker")
        readers = [await member(f"reader{i}") for i in range(2)]

        # the client that never reads: a tiny receive window, and it never calls recv()
        stuck_sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        stuck_sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 2048)
        stuck_sock.setblocking(False)
        try:
            stuck_sock.connect(("127.0.0.1", number))
        except BlockingIOError:
            pass
        await talker.expect(lambda l: l.command == "JOIN" and l.source.startswith("reader1!"))
        stuck_sock.send(b"NICK stuck\r\nUSER stuck 0 * :stuck\r\nJOIN #busy\r\n")
        await talker.expect(lambda l: l.command == "JOIN" and l.source.startswith("stuck!"))
        queue = hub.find_user("stuck").participant.writer  # the connection's SendQueue
        stuck_proto = queue.owner
        # keep the server's kernel send buffer for it small too, so the queue fills soon
        stuck_proto.transport.socket.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)

        # in small bursts (each one fan-out batch), so the stuck queue fills step by step
        for start in range(0, COUNT, 10):
            talker.transport.write(
                b"".join(f"PRIVMSG #busy :msg {i:04d} {BODY}\r\n".encode() for i in range(start, start + 10))
            )
            await readers[0].expect(is_msg(start + 9), timeout=30)
        await readers[1].expect(is_msg(COUNT - 1), timeout=30)
        for c in readers + [talker]:
            await c.roundtrip()
            # the QUIT was fanned out when the queue overflowed, before later messages
            quits = [l for l in c.lines if l.command == "QUIT"]
            assert [(q.source.split("!")[0], q.params) for q in quits] == [("stuck", ["SendQ exceeded"])]

        for reader in readers:
            texts = [l.params[-1] for l in reader.lines if l.command == "PRIVMSG"]
            assert texts == [f"msg {i:04d} {BODY}" for i in range(COUNT)]
        # dropped by its queue (not by a socket error), which filled up to the limit, never past it
        assert queue.closed and stuck_proto.session.closed
        assert LIMIT - 10 * 600 < queue.peak_bytes <= LIMIT
        assert hub.find_user("stuck") is None
        # the channel goes on
        talker.send("PRIVMSG #busy :after the drop")
        await defer.gatherResults(
            [r.expect(lambda l: l.command == "PRIVMSG" and l.params[-1] == "after the drop") for r in readers]
        )
        lines = await readers[0].roundtrip("NAMES #busy")
        assert "stuck" not in [n.lstrip("@+") for n in lines[0].params[-1].split()]
        assert not [e for e in captured.events if e.get("log_failure")], "a traceback in the server log"
    finally:
        if stuck_sock is not None:
            stuck_sock.close()
        await server.stop()
