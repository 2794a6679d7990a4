"""A chathub.v1 and a telnet user joining, on node B, a room whose lines from node A are
still on their way to B: B puts them in its copy of the room at once, and answers their join
once it reaches the JOIN's number, after those lines. Before, the lines reached them ahead
of the answer: the web user's client then asked history only for what came after them (the
room's earlier talk never shown), and the telnet user read them live and again in the join's
replay. Now what is numbered before the JOIN is in the answer only (the web client's history,
the telnet replay), once. (IRC's side: tests/test_cluster_admission.py.)

The lines' way to B is made long and certain by killing Redis: B learns them only when its
own JOIN, numbered after them, shows it the gap, and reads it from PostgreSQL."""
from __future__ import annotations

import pytest_twisted
from twisted.internet import threads

from tests.cluster_support import (  # noqa: F401 (fixtures)
    ROOM,
    cluster,
    irc_user,
    postgres_database,
    postgres_dsn,
    meet,
)

SAID = [f"before{i}" for i in range(5)]


@pytest_twisted.ensureDeferred
async def test_joiners_on_another_node_get_what_came_before_their_join_once_in_its_answer(cluster, own_redis):
    from tests.browser_helpers import close_clients, connect

    def nodes():
        a_line, a_irc = cluster("a", redis_url=own_redis.url)
        b_line, b_irc = cluster("b", redis_url=own_redis.url)
        alice = irc_user(cluster, a_irc, "alice")
        bob = irc_user(cluster, b_irc, "bob")
        meet(bob, [alice])  # each node past the other's joins
        meet(alice, [bob])
        alan = irc_user(cluster, a_irc, "alan")  # shown A's lines once committed
        tess = cluster.connect(b_line)
        tess.send("/nick tess\r\n")
        tess.expect(r"tess")
        return alice, alan, tess

    alice, alan, tess = await threads.deferToThread(nodes)
    try:
        wendy = await connect(cluster.http["b"], protocols=["chathub.v1"])
        await wendy.expect({"type": "hello"})
        wendy.send_json({"type": "login", "nick": "wendy", "ref": 1})
        await wendy.expect({"type": "welcome"})

        own_redis.kill()  # A's lines reach B only as a gap its JOINs show it
        for text in SAID:
            alice.send(f"PRIVMSG {ROOM} :{text}\r\n")
        await threads.deferToThread(alan.expect, rf"PRIVMSG {ROOM} :{SAID[-1]}")  # committed on A
        start = len(wendy.received)
        wendy.send_json({"type": "join", "room": ROOM, "ref": 2})
        tess.send(f"/join {ROOM}\r\n")
        await wendy.expect({"type": "ok", "ref": 2}, timeout=20)
        told = await threads.deferToThread(tess.expect, rf"\* end of history of {ROOM}", 20)
        telnet_lines = [line for line in tess.seen if "before" in line or "you joined" in line]

        # the web user: its JOIN and the room's snapshot, and none of A's lines live
        web = wendy.received[start:]
        kinds = [(m.get("type"), m.get("room") or m.get("target")) for m in web]
        assert ("room", ROOM) in kinds, web
        assert not [m for m in web if m.get("type") == "message"], web
        wendy.send_json({"type": "history", "target": ROOM, "limit": 20, "ref": 3})
        history = await wendy.expect({"type": "history", "ref": 3})
        assert [e["text"] for e in history["events"] if e["type"] == "message"][-5:] == SAID

        # the telnet user: joined, then the replay of the five, each once
        assert told and telnet_lines[0].startswith("* you joined"), telnet_lines
        assert [line.rsplit(" ", 1)[-1] for line in telnet_lines[1:]] == SAID, telnet_lines
    finally:
        if own_redis.process is None:
            own_redis.restart()
        await close_clients()
