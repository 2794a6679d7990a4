"""Two ``twistd chathub`` nodes in cluster mode: one PostgreSQL database, one redis-server
(both real; the test session starts Redis on a free port), users of both protocols on each.

What cluster mode carries today (docs/cluster.md): chat in rooms crosses nodes, each node's
messages arrive at the other's members once and in the order they were sent, history on
either node holds all of them, and a Redis outage loses nothing (the receiving node fetches
the gap from PostgreSQL).
"""
from __future__ import annotations

import uuid

import pytest

from tests.store_fixtures import postgres_database, postgres_dsn  # noqa: F401 (fixtures)
from tests.support import LineClient, server_config

ROOM = "#x"


def node_config(tmp_path, name: str, dsn: str, redis_url: str, prefix: str) -> str:
    extra = (
        f'[storage]\nbackend = "postgres"\npostgres_dsn = "{dsn}"\n'
        f'[cluster]\nenabled = true\nredis_url = "{redis_url}"\nnode_id = "{name}"\nkey_prefix = "{prefix}"\n'
        "lease = 4.0\nheartbeat = 1.0\ncheck_interval = 0.5\nresync_interval = 0.5\n"
        "[limits]\nflood_exempt = [\"127.0.0.1\"]\n[history]\nquery_limit = 1000\n"
    )
    return server_config(tmp_path / name, extra, irc=True)


@pytest.fixture
def cluster(tmp_path, postgres_dsn, redis_server, twistd_server):  # noqa: F811 (fixture)
    """Start nodes on one database and one Redis: ``start(name) -> (line_port, irc_port)``
    (``twistd_server`` last: its nodes stop before the schema they use is dropped)."""
    prefix = "t" + uuid.uuid4().hex[:8]
    clients: list[LineClient] = []

    def start(name: str, redis_url: str = "") -> tuple[int, int]:
        config = node_config(tmp_path, name, postgres_dsn, redis_url or redis_server.url, prefix)
        node = start.nodes[name] = twistd_server(config)
        return node.port("line"), node.port("irc")

    def connect(port: int) -> LineClient:
        client = LineClient(port, timeout=20.0)
        clients.append(client)
        return client

    start.connect = connect
    start.nodes = {}
    yield start
    for client in clients:
        client.close()


def telnet_user(cluster, port: int, nick: str) -> LineClient:
    user = cluster.connect(port)
    user.send(f"/nick {nick}\r\n")
    user.expect(rf"{nick}")
    user.send(f"/join {ROOM}\r\n")
    user.expect(rf"{ROOM}")
    user.say = lambda text: user.send(f"{text}\r\n")
    return user


def irc_user(cluster, port: int, nick: str, caps: str = "") -> LineClient:
    user = cluster.connect(port)
    if caps:
        user.send(f"CAP REQ :{caps}\r\n")
    user.send(f"NICK {nick}\r\nUSER {nick} 0 * :{nick}\r\n")
    if caps:
        user.expect(r" ACK ")
        user.send("CAP END\r\n")
    user.expect(r" 001 ")
    user.send(f"JOIN {ROOM}\r\n")
    user.expect(rf" 366 {nick} {ROOM} ")
    user.say = lambda text: user.send(f"PRIVMSG {ROOM} :{text}\r\n")
    return user


def meet(sender, watchers) -> None:
    """Ping the room from ``sender``'s node until each of ``watchers`` (on the other node)
    has seen a ping. A node starts delivering a conversation at the first number it hears
    of it (docs/cluster.md): from here on, the watchers' node has heard of the room past
    its own users' joins, so whatever the sender's node writes next reaches them."""
    for attempt in range(100):
        sender.say(f"ping{attempt}")
        try:
            for watcher in watchers:
                watcher.expect(r"ping\d+", timeout=0.2)
            return
        except TimeoutError:
            continue
    raise AssertionError("no ping crossed the nodes")


def test_room_chat_crosses_nodes_both_ways_on_every_protocol(cluster):
    a_line, a_irc = cluster("a")
    b_line, b_irc = cluster("b")
    alice = telnet_user(cluster, a_line, "alice")  # telnet on A
    dave = irc_user(cluster, a_irc, "dave")  # IRC on A
    bob = irc_user(cluster, b_irc, "bob")  # IRC on B
    carol = telnet_user(cluster, b_line, "carol")  # telnet on B
    meet(bob, [alice, dave])
    meet(alice, [bob, carol])
    alice.send("hello from A\r\n")
    assert bob.expect(r"PRIVMSG #x :hello from A").startswith(":alice!")
    carol.expect(r"\[#x\] <alice> hello from A")
    bob.send("PRIVMSG #x :hi from B\r\n")
    alice.expect(r"\[#x\] <bob> hi from B")
    assert dave.expect(r"PRIVMSG #x :hi from B").startswith(":bob!")
    carol.expect(r"\[#x\] <bob> hi from B")
    bob.send("PRIVMSG #x :\x01ACTION waves\x01\r\n")
    alice.expect(r"\[#x\] \* bob waves")


def test_each_nodes_messages_arrive_once_in_order_and_history_holds_them_all(cluster):
    a_line, a_irc = cluster("a")
    b_line, b_irc = cluster("b")
    alice = irc_user(cluster, a_irc, "alice")
    bob = irc_user(cluster, b_irc, "bob", caps="draft/chathistory batch server-time message-tags")
    carol = telnet_user(cluster, b_line, "carol")
    meet(bob, [alice])
    meet(alice, [bob, carol])
    count = 200
    for i in range(count):  # both nodes write into the room at once
        alice.send(f"PRIVMSG #x :a{i}\r\n")
        bob.send(f"PRIVMSG #x :b{i}\r\n")
    seen_by_carol = [carol.expect(r"\[#x\] <alice> a\d+").rsplit(" ", 1)[1] for _ in range(count)]
    assert seen_by_carol == [f"a{i}" for i in range(count)]
    seen_by_alice = [alice.expect(r"PRIVMSG #x :b\d+").rsplit(":", 1)[1] for _ in range(count)]
    assert seen_by_alice == [f"b{i}" for i in range(count)]
    bob.send(f"CHATHISTORY LATEST #x * {2 * count}\r\n")
    history = []
    while True:
        line = bob.readline()
        if " BATCH -" in line:
            break
        if "batch=" in line.split(" ", 1)[0] and " PRIVMSG #x :" in line:  # not the live copies
            history.append(line.rsplit(":", 1)[1])
    assert sorted(history) == sorted([f"a{i}" for i in range(count)] + [f"b{i}" for i in range(count)])
    assert [t for t in history if t.startswith("a")] == [f"a{i}" for i in range(count)]
    assert [t for t in history if t.startswith("b")] == [f"b{i}" for i in range(count)]
    # nothing more arrives: each message was delivered once
    alice.send("PRIVMSG #x :the end\r\n")
    later = []
    while "the end" not in (line := carol.readline()):
        later.append(line)
    assert not [line for line in later if "<alice> a" in line]


def test_a_redis_outage_loses_nothing(tmp_path, cluster, own_redis):
    a_line, a_irc = cluster("a", redis_url=own_redis.url)
    b_line, b_irc = cluster("b", redis_url=own_redis.url)
    alice = irc_user(cluster, a_irc, "alice")
    bob = irc_user(cluster, b_irc, "bob")
    meet(bob, [alice])
    meet(alice, [bob])
    count = 600
    for i in range(count // 3):
        alice.send(f"PRIVMSG #x :m{i}\r\n")
    own_redis.kill()  # mid-stream: A cannot ring B's doorbell for what follows
    for i in range(count // 3, 2 * count // 3):
        alice.send(f"PRIVMSG #x :m{i}\r\n")
    own_redis.restart()
    for i in range(2 * count // 3, count):
        alice.send(f"PRIVMSG #x :m{i}\r\n")
    got: list[str] = []
    while not got or got[-1] != f"m{count - 1}":  # the last one comes last
        got.append(bob.expect(r"PRIVMSG #x :m\d+", timeout=30).rsplit(":", 1)[1])
    assert got == [f"m{i}" for i in range(count)]  # every one, once, in order
