"""RedisBackplane against a real redis-server the test session starts (tests/redis_support.py).

Several backplanes with different node ids share one Redis in this process, as nodes of one
cluster would. Every wait is on an event (a callback, a Deferred) with a timeout; the only
real-time waits are lease expiries, the thing under test, with leases of 0.6 s.
"""
from __future__ import annotations

import itertools
import sys
from typing import Any, Callable

import pytest
import pytest_twisted
from zope.interface.verify import verifyObject

from chathub.config.cluster import ClusterConfig
from chathub.interfaces import BackplaneUnavailable, IBackplane
from tests.support import REPO, refusing_port, until

TIMEOUT = 10.0
#: lease timings short enough for liveness tests to run in about a second
FAST = dict(lease=0.6, heartbeat=0.1, check_interval=0.1)
_prefixes = itertools.count()


def _reactor():
    from twisted.internet import reactor

    return reactor


class Events:
    """A callback that records what it is called with and lets a test wait for it."""

    def __init__(self) -> None:
        self.items: list[Any] = []
        self._waiting: list[tuple[Callable[[list], bool], Any]] = []

    def __call__(self, *args: Any) -> None:
        self.items.append(args[0] if len(args) == 1 else args)
        for entry in list(self._waiting):
            if entry[0](self.items):
                self._waiting.remove(entry)
                entry[1].callback(list(self.items))

    def wait(self, condition: Callable[[list], bool] = bool, timeout: float = TIMEOUT):
        """A Deferred fired once ``condition(items)`` holds (at once if it already does)."""
        from twisted.internet.defer import Deferred, succeed

        if condition(self.items):
            return succeed(list(self.items))
        d = Deferred()
        self._waiting.append((condition, d))
        return d.addTimeout(timeout, _reactor())

    def count(self, n: int, timeout: float = TIMEOUT):
        return self.wait(lambda items: len(items) >= n, timeout)

    def has(self, item: Any, timeout: float = TIMEOUT):
        return self.wait(lambda items: item in items, timeout)


@pytest_twisted.async_yield_fixture
async def cluster(redis_server):
    """Factory: ``await cluster(node_id, server=..., **timings)`` gives a started
    RedisBackplane; every one is stopped after the test. Each test has its own key prefix."""
    from chathub.cluster.redis import RedisBackplane

    prefix = f"t{next(_prefixes)}"
    made: list[RedisBackplane] = []

    def build(node_id: str, server=None, max_pending: int = 10_000, **timings) -> RedisBackplane:
        config = ClusterConfig(
            enabled=True, redis_url=(server or redis_server).url, node_id=node_id, key_prefix=prefix, **timings
        )
        backplane = RedisBackplane(config, max_pending=max_pending)
        made.append(backplane)
        return backplane

    async def start(node_id: str, server=None, **kw) -> RedisBackplane:
        backplane = build(node_id, server, **kw)
        await backplane.start()
        return backplane

    start.build = build
    start.prefix = prefix
    yield start
    for backplane in made:
        await backplane.stop()


async def _fails_unavailable(d, *words: str) -> str:
    with pytest.raises(BackplaneUnavailable) as e:
        await d
    for word in words:
        assert word in str(e.value)
    return str(e.value)


def test_provides_the_interface(redis_server):
    from chathub.cluster.redis import RedisBackplane

    verifyObject(IBackplane, RedisBackplane(ClusterConfig(redis_url=redis_server.url, node_id="n1")))


def test_txredisapi_runs_on_hiredis():
    """The [cluster] extra brings hiredis, the faster reply parser the notes measured."""
    import txredisapi

    assert txredisapi.RedisProtocol is txredisapi.HiredisProtocol


def test_lone_node_and_config_never_import_txredisapi():
    """txredisapi installs the global reactor on import: only cluster mode may import it."""
    import os
    import subprocess

    code = (
        "import sys, chathub.app, chathub.backplane, chathub.cluster, chathub.config;"
        "from chathub.backplane import make_backplane;"
        "from chathub.config import Config;"
        "make_backplane(Config().cluster);"
        "assert 'txredisapi' not in sys.modules, 'txredisapi imported';"
        "assert 'twisted.internet.reactor' not in sys.modules, 'reactor installed'"
    )
    env = dict(os.environ, PYTHONPATH=str(REPO))  # this tree's chathub
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO, env=env)


@pytest_twisted.ensureDeferred
async def test_publish_reaches_every_other_node_and_never_itself(cluster):
    a, b, c = [await cluster(name) for name in ("a", "b", "c")]
    heard = {node.node_id: Events() for node in (a, b, c)}
    for node in (a, b, c):
        node.subscribe(heard[node.node_id])
    message = {"node": "a", "events": [{"text": "héllo ✓ \n", "n": [1, 2.5, None, True], "d": {"k": "v"}}]}
    a.publish(message)
    assert await heard["b"].count(1) == [message]
    assert await heard["c"].count(1) == [message]
    # b answers only after a's PUBLISH ran, so a's subscription got a's own message first
    b.publish({"marker": 1})
    assert await heard["a"].count(1) == [{"marker": 1}]
    assert a.echoes == 1 and a.received == 1  # its own message came back and was dropped
    await heard["c"].count(2)
    assert heard["c"].items == [message, {"marker": 1}] and heard["b"].items == [message]


@pytest_twisted.ensureDeferred
async def test_what_is_not_a_packed_message_is_dropped_and_the_next_one_arrives(cluster):
    """Whatever else reaches the channel (another program's PUBLISH, a torn message) is
    dropped with a warning; the subscriber goes on with the next message."""
    from chathub.cluster.redis import encode_message

    a, b = await cluster("a"), await cluster("b")
    heard = Events()
    b.subscribe(heard)
    for junk in (b"mallory\n\xc1\xc1", b"mallory\n[1,2]", b"mallory\n" + encode_message([1, 2]),
                 b"mallory\n" + encode_message({"a": 1})[:-1], b"no newline at all"):
        await a._commands.publish(a.channel, junk)
    a.publish({"after": ("the", "junk")})
    assert await heard.count(1) == [{"after": ["the", "junk"]}]  # a tuple arrives as a list
    assert b.received == 1


@pytest_twisted.ensureDeferred
async def test_fifty_concurrent_claims_of_one_nick_from_three_nodes_grant_exactly_one(cluster):
    nodes = [await cluster(name) for name in ("n1", "n2", "n3")]
    owners = [f"{nodes[i % 3].node_id}/{i}" for i in range(50)]
    from twisted.internet.defer import gatherResults

    # every claim is sent before any reply is read
    results = await gatherResults([nodes[i % 3].claim_nick("alice", owners[i]) for i in range(50)])
    assert results.count(True) == 1 and results.count(False) == 49
    winner = owners[results.index(True)]
    assert [await node.nick_owner("alice") for node in nodes] == [winner] * 3


@pytest_twisted.ensureDeferred
async def test_claim_rename_and_release_keep_to_their_owner(cluster):
    a, b = await cluster("a"), await cluster("b")
    assert await a.claim_nick("alice", "a/1") is True
    assert await a.claim_nick("alice", "a/1") is True  # already this session's
    assert await a.claim_nick("alice", "a/2") is False  # another session of the same node
    assert await b.claim_nick("alice", "b/1") is False
    assert await a.rename_nick("alice", "bob", "a/1") is True
    assert (await b.nick_owner("alice"), await b.nick_owner("bob")) == (None, "a/1")
    assert a.claims == {"bob": "a/1"}
    assert await b.claim_nick("carol", "b/1") is True
    assert await a.rename_nick("bob", "carol", "a/1") is False  # taken: bob is kept
    assert (await a.nick_owner("bob"), await a.nick_owner("carol")) == ("a/1", "b/1")
    await a.release_nick("bob", "a/2")  # not the owner
    await b.release_nick("bob", "b/1")
    assert await a.nick_owner("bob") == "a/1"
    await a.release_nick("bob", "a/1")
    assert await a.nick_owner("bob") is None and a.claims == {}
    assert await b.claim_nick("bob", "b/2") is True
    with pytest.raises(ValueError):
        a.claim_nick("dave", "b/1")  # a node claims only for its own sessions


@pytest_twisted.ensureDeferred
async def test_a_lost_node_is_reported_once_reaped_once_and_its_nicks_freed(cluster, redis_server):
    a, b = await cluster("a", **FAST), await cluster("b", **FAST)
    c, d = await cluster("c", **FAST), await cluster("d", **FAST)
    lost = {node.node_id: Events() for node in (a, b)}
    for node in (a, b):
        node.on_node_lost(lost[node.node_id])
    fenced = Events()
    c.on_lease_lost(fenced)
    assert await c.claim_nick("carl", "c/1") and await c.claim_nick("cleo", "c/2")
    await d.stop()  # leaves cleanly: never reported lost

    c.heartbeat_loop.stop()  # c stalls: its lease runs out in 0.6 s
    assert await lost["a"].count(1) == ["c"]
    assert await lost["b"].count(1) == ["c"]
    # a dead node's nick may be claimed at once, before it is reaped
    assert await a.claim_nick("cleo", "a/1") is True
    from twisted.internet.defer import gatherResults

    reaped = await gatherResults([a.reap("c"), b.reap("c"), a.reap("c"), b.reap("c")])
    assert reaped.count(True) == 1
    assert await a.nick_owner("carl") is None and await a.nick_owner("cleo") == "a/1"
    prefix = cluster.prefix
    assert redis_server.command("SISMEMBER", f"{prefix}:nodes", "c") == b"0"

    # c wakes up, finds it was declared dead and fences itself
    c.heartbeat_loop.start(c.heartbeat)
    await fenced.count(1)
    await _fails_unavailable(c.claim_nick("carl", "c/1"))
    # another node stalls: by the time it is reported, a and b checked c many times over
    e = await cluster("e", **FAST)
    e.heartbeat_loop.stop()
    assert await lost["a"].count(2) == ["c", "e"]
    assert await lost["b"].count(2) == ["c", "e"]
    # and c rejoined with a new lease, holding nothing
    await until(lambda: c.claims == {} and c._lease_held, TIMEOUT)
    assert await c.claim_nick("carl", "c/3") is True
    assert len(fenced.items) == 1  # fenced once


@pytest_twisted.ensureDeferred
async def test_a_node_another_reaped_before_this_one_looked_is_reported_lost_here_too(cluster):
    """With three nodes, the first to find a node's lease gone reaps it at once (the hub
    does), which takes it out of the set of nodes; a node whose watchdog looked only after
    that never found it lost and forgot it as one that had left: its users stayed in that
    node's rooms for good (a random three-node driver killing a node: NAMES on one of the
    two survivors listed them)."""
    a, b, c = await cluster("a", **FAST), await cluster("b", **FAST), await cluster("c", **FAST)
    reaped = Events()
    a.on_node_lost(lambda node: a.reap(node).addCallback(reaped))
    lost = Events()
    b.on_node_lost(lost)
    await until(lambda: "c" in b._known, TIMEOUT)
    watchdog = b._timers[1]
    watchdog.stop()  # b looks only once a has reaped c
    c.heartbeat_loop.stop()  # c stalls: its lease runs out
    assert await reaped.count(1) == [True]
    watchdog.start(b.check_interval, now=False)
    assert await lost.count(1) == ["c"]
    # a node that leaves cleanly, known here, is forgotten, never reported lost
    d = await cluster("d", **FAST)
    await until(lambda: "d" in b._known, TIMEOUT)
    await d.stop()
    await until(lambda: "d" not in b._known, TIMEOUT)
    assert lost.items == ["c"]


@pytest_twisted.ensureDeferred
async def test_a_crashed_node_restarting_with_its_id_waits_for_its_reaping(cluster):
    a = await cluster("a", **FAST)
    lost = Events()
    reaped = Events()
    a.on_node_lost(lost)
    a.on_node_lost(lambda node: a.reap(node).addCallback(reaped))
    c = await cluster("c", **FAST)
    assert await c.claim_nick("carl", "c/1")
    # c crashes: no goodbye, its lease stays until it runs out
    for loop in c._timers:
        loop.stop()
    c._stopping = True
    await c._disconnect()
    again = await cluster("c", **FAST)  # waits for the old lease, then for a to reap it
    assert lost.items == ["c"] and reaped.items == [True]
    assert await again.nick_owner("carl") is None
    assert await again.claim_nick("carl", "c/1") is True


@pytest_twisted.ensureDeferred
async def test_a_node_id_held_by_a_live_process_is_refused(cluster):
    await cluster("same", **FAST)
    await _fails_unavailable(cluster("same", **FAST), "'same'", "held by another live process")


@pytest_twisted.ensureDeferred
async def test_start_fails_clearly_when_redis_is_unreachable():
    from chathub.cluster.redis import RedisBackplane

    with refusing_port() as port:
        url = f"redis://127.0.0.1:{port}/0"
        backplane = RedisBackplane(ClusterConfig(redis_url=url, node_id="n1", connect_timeout=3.0))
        await _fails_unavailable(backplane.start(), f"cannot connect to Redis at {url}")
    assert not backplane.connected


@pytest_twisted.ensureDeferred
async def test_start_fails_clearly_when_redis_url_names_another_kind_of_server():
    """A server that answers, but not in Redis's protocol (another service's port), gave an
    unhandled error's traceback on every attempt and then "no usable connection"."""
    from twisted.internet import protocol, reactor

    from chathub.cluster.redis import RedisBackplane

    class NotRedis(protocol.Protocol):
        def dataReceived(self, data: bytes) -> None:
            self.transport.write(b"INFO {\"server_id\":\"not redis\"}\r\n")

    port = reactor.listenTCP(0, protocol.Factory.forProtocol(NotRedis), interface="127.0.0.1")
    try:
        url = f"redis://127.0.0.1:{port.getHost().port}/0"
        backplane = RedisBackplane(ClusterConfig(redis_url=url, node_id="n1", connect_timeout=2.0))
        await _fails_unavailable(backplane.start(), "does not speak Redis's protocol")
        assert not backplane.connected
    finally:
        await port.stopListening()


@pytest_twisted.ensureDeferred
async def test_password_and_database_come_from_the_url(own_redis):
    from chathub.cluster.redis import RedisBackplane

    own_redis.command("CONFIG", "SET", "requirepass", "s3cret")
    wrong = RedisBackplane(ClusterConfig(redis_url=f"redis://:nope@127.0.0.1:{own_redis.port}/3", node_id="n1"))
    message = await _fails_unavailable(wrong.start(), f"Redis at redis://127.0.0.1:{own_redis.port}/3")
    assert "nope" not in message
    right = RedisBackplane(ClusterConfig(redis_url=f"redis://:s3cret@127.0.0.1:{own_redis.port}/3", node_id="n1"))
    await right.start()
    try:
        assert await right.claim_nick("alice", "n1/1") is True
        assert await right.nick_owner("alice") == "n1/1"
        assert own_redis.command("GET", "ch:nick:alice", password="s3cret", db=3) == b"n1/1"
        assert own_redis.command("DBSIZE", password="s3cret") == b"0"  # nothing in database 0
    finally:
        await right.stop()


@pytest_twisted.ensureDeferred
async def test_resync_is_asked_for_periodically(cluster):
    a = await cluster("a", resync_interval=0.2)
    resync = Events()
    a.on_resync(resync)
    assert await resync.count(2) == [False, False]


@pytest_twisted.ensureDeferred
async def test_redis_killed_and_restarted_empty(own_redis, cluster):
    a = await cluster("a", server=own_redis, **FAST)
    b = await cluster("b", server=own_redis, **FAST)
    state = {n.node_id: Events() for n in (a, b)}
    resync = {n.node_id: Events() for n in (a, b)}
    heard = Events()
    for n in (a, b):
        n.on_connection(state[n.node_id])
        n.on_resync(resync[n.node_id])
    b.subscribe(heard)
    lost = Events()
    a.on_node_lost(lost)
    b.on_node_lost(lost)
    assert await a.claim_nick("alice", "a/1") and await a.claim_nick("amy", "a/2")
    assert await b.claim_nick("bob", "b/1")
    c = await cluster("c", server=own_redis, **FAST)  # dies while Redis is down
    await until(lambda: "c" in a._known and "c" in b._known, TIMEOUT)

    own_redis.kill()
    for loop in c._timers:
        loop.stop()
    c._stopping = True
    await c._disconnect()
    await state["a"].has(False)
    await state["b"].has(False)
    assert not a.connected and not b.connected
    # the subscriber's loss may be noticed first: wait for the command connection's too
    await until(lambda: a._commands is None, TIMEOUT)
    # publishing while down drops at once: nothing waits in txredisapi for Redis to return
    published = a.published
    for i in range(100):
        a.publish({"lost": i})
    assert a.dropped == 100 and a.published == published and a._pending == 0
    # claims fail closed; a release is kept for later
    await _fails_unavailable(a.claim_nick("carol", "a/3"), "not connected")
    await _fails_unavailable(a.rename_nick("alice", "alicia", "a/1"), "not connected")
    await _fails_unavailable(a.nick_owner("alice"))
    assert await a.release_nick("amy", "a/2") is None

    own_redis.restart()  # empty: no persistence
    assert True in await resync["a"].has(True) and True in await resync["b"].has(True)
    assert state["a"].items[-1] is True and a.connected and b.connected
    # Redis lost its data: each node took its lease again and re-claimed its nicks,
    # except the one released while down; new claims wait one lease
    await until(lambda: a._claims_closed_until and b._claims_closed_until, TIMEOUT)
    await until(lambda: not (a._resync_claims or a.settling or b._resync_claims or b.settling), TIMEOUT)
    prefix = cluster.prefix
    assert own_redis.command("GET", f"{prefix}:node:a") == a._token.encode()
    assert own_redis.command("GET", f"{prefix}:node:b") == b._token.encode()
    assert own_redis.command("GET", f"{prefix}:nick:alice") == b"a/1"
    assert own_redis.command("GET", f"{prefix}:nick:bob") == b"b/1"
    assert own_redis.command("EXISTS", f"{prefix}:nick:amy") == b"0"
    await _fails_unavailable(b.claim_nick("amy", "b/2"), "restarted without its data")
    # so are new rooms' names, while each node claims again those of the rooms it made
    await _fails_unavailable(b.claim_room("#new", "b/x/1"), "restarted without its data")
    # nothing published while down arrives now: the next message is the first
    a.publish({"after": True})
    assert await heard.count(1) == [{"after": True}]
    await until(lambda: a._claims_refused() is None and b._claims_refused() is None, TIMEOUT)
    assert await b.claim_nick("amy", "b/2") is True
    assert await b.claim_room("#new", "b/x/1") is None
    # the node that died during the outage is declared dead once the grace is over (Redis
    # forgot it, the others did not), and only it: a and b lived through the restart
    assert await lost.count(2) == ["c", "c"]
    assert await a.reap("c") is True


@pytest_twisted.ensureDeferred
async def test_publishes_awaiting_replies_from_a_stalled_redis_are_bounded(own_redis, cluster):
    import signal

    a = await cluster("a", server=own_redis, max_pending=5)
    b = await cluster("b", server=own_redis)
    heard = Events()
    b.subscribe(heard)
    own_redis.process.send_signal(signal.SIGSTOP)  # connected, but answers nothing
    try:
        for i in range(12):
            a.publish({"i": i})
        assert (a.published, a.dropped) == (5, 7)
    finally:
        own_redis.process.send_signal(signal.SIGCONT)
    assert await heard.count(5) == [{"i": i} for i in range(5)]
    await until(lambda: a._pending == 0, TIMEOUT)
    a.publish({"i": 12})
    assert (await heard.count(6))[-1] == {"i": 12}


@pytest_twisted.ensureDeferred
async def test_a_nick_taken_while_redis_had_lost_its_data_is_reported(own_redis, cluster):
    a = await cluster("a", server=own_redis, **FAST)
    taken = Events()
    a.on_nick_lost(taken)
    assert await a.claim_nick("alice", "a/1")
    a.heartbeat_loop.stop()  # a has not yet noticed the loss when n claims
    own_redis.command("FLUSHALL")
    n = await cluster("n", server=own_redis, **FAST)
    assert await n.claim_nick("alice", "n/1") is True
    a.heartbeat_loop.start(a.heartbeat)
    assert await taken.count(1) == [("alice", "a/1")]
    assert a.claims == {} and await a.nick_owner("alice") == "n/1"


@pytest_twisted.ensureDeferred
async def test_stop_releases_the_nicks_and_the_lease(cluster, redis_server):
    a, b = await cluster("a"), await cluster("b")
    assert await a.claim_nick("alice", "a/1")
    await a.stop()
    assert not a.connected
    assert await b.nick_owner("alice") is None
    assert redis_server.command("EXISTS", f"{cluster.prefix}:node:a") == b"0"
    assert redis_server.command("SISMEMBER", f"{cluster.prefix}:nodes", "a") == b"0"
    assert await b.claim_nick("alice", "b/1") is True


def test_make_backplane_builds_redis_in_cluster_mode():
    from chathub.backplane import LocalBackplane, make_backplane
    from chathub.cluster.redis import RedisBackplane
    from chathub.config import parse_config

    assert isinstance(make_backplane(parse_config("").cluster), LocalBackplane)
    config = parse_config(
        '[storage]\nbackend = "postgres"\npostgres_dsn = "host=db"\n'
        '[cluster]\nenabled = true\nredis_url = "redis://:pw@10.0.0.5:6380/2"\nnode_id = "n7"\nlease = 8.0\n'
    )
    backplane = make_backplane(config.cluster)
    assert isinstance(backplane, RedisBackplane)
    assert (backplane.node_id, backplane.lease, str(backplane.address)) == ("n7", 8.0, "redis://10.0.0.5:6380/2")
    assert backplane.address.password == "pw"


# -- room names (chathub.hub.roomclaims) -------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_fifty_concurrent_claims_of_one_room_name_from_three_nodes_grant_exactly_one(cluster):
    nodes = [await cluster(name) for name in ("n1", "n2", "n3")]
    tokens = [f"{nodes[i % 3].node_id}/x/{i}" for i in range(50)]
    from twisted.internet.defer import gatherResults

    # every claim is sent before any reply is read
    results = await gatherResults([nodes[i % 3].claim_room("#new", tokens[i]) for i in range(50)])
    winner = tokens[results.index(None)]
    assert results.count(None) == 1
    assert [r for r in results if r is not None] == [winner] * 49  # each refusal names the holder
    assert await nodes[1].claim_room("#new", tokens[1]) == winner
    assert await nodes[0].claim_room("#other", tokens[0]) is None  # another name is free


@pytest_twisted.ensureDeferred
async def test_a_room_claim_is_released_only_by_its_token_and_taken_over_only_from_the_one_named(
    cluster, redis_server
):
    a, b = await cluster("a"), await cluster("b")
    key = f"{cluster.prefix}:room:#x"
    assert await a.claim_room("#x", "a/1") is None
    assert await a.claim_room("#x", "a/1") is None  # already this making's
    assert await b.claim_room("#x", "b/1") == "a/1"
    assert await b.claim_room("#x", "b/1", replacing="a/9") == "a/1"  # not the holder named
    await b.release_room("#x", "b/1")  # not its claim: nothing happens
    assert redis_server.command("GET", key) == f"a/1 {a._token}".encode()  # the maker's lease with it
    assert await b.claim_room("#x", "b/1", replacing="a/1") is None  # a claim whose room never came
    assert redis_server.command("GET", key) == f"b/1 {b._token}".encode()
    await a.release_room("#x", "a/1")  # the old making's release does not free the new one's
    assert redis_server.command("GET", key).startswith(b"b/1 ")
    await b.release_room("#x", "b/1")
    assert redis_server.command("EXISTS", key) == b"0"
    assert await a.claim_room("#x", "a/2") is None
    with pytest.raises(ValueError):
        await a.claim_room("#y", "b/2")  # a node claims only for its own makings
    # a value that is no claim is refused (never overwritten), but may be named and replaced
    redis_server.command("SET", f"{cluster.prefix}:room:#z", "junk")
    assert await a.claim_room("#z", "a/3") == "junk"
    assert await a.claim_room("#z", "a/3", replacing="junk") is None


@pytest_twisted.ensureDeferred
async def test_a_room_claim_whose_makers_process_is_gone_is_taken_over_at_once(cluster, redis_server):
    """A node stopped (or crashed and restarted under its id, with a new lease token): the
    rooms only it held ended with it, and their claims stay in Redis; the next making of
    such a name does not wait for a room that cannot come."""
    a, b = await cluster("a"), await cluster("b")
    assert await a.claim_room("#x", "a/1") is None
    assert await a.claim_room("#y", "a/2") is None
    await a.stop()  # its lease goes
    assert await b.claim_room("#x", "b/1") is None
    again = await cluster("a")  # the same node id, a new process
    assert await b.claim_room("#y", "b/2") is None
    assert await again.claim_room("#x", "a/3") == "b/1"  # b's process holds its lease


@pytest_twisted.ensureDeferred
async def test_a_room_claim_whose_makers_lease_lapsed_is_kept_until_the_node_is_dead(cluster, redis_server):
    """A lease that ran out while its node was cut off may be taken again by the same
    process (nobody declared the node dead): its rooms live, so its claims hold."""
    a = await cluster("a", **FAST)
    b = await cluster("b")  # watches with the default timings: a is not declared lost meanwhile
    assert await a.claim_room("#x", "a/1") is None
    a.heartbeat_loop.stop()
    lease = f"{cluster.prefix}:node:a"
    await until(lambda: redis_server.command("EXISTS", lease) == b"0", TIMEOUT)
    assert await b.claim_room("#x", "b/1") == "a/1"
    redis_server.command("SET", f"{cluster.prefix}:lost:a", "b")  # a watchdog declares it dead
    assert await b.claim_room("#x", "b/1") is None


@pytest_twisted.ensureDeferred
async def test_room_claims_fail_closed_without_redis_and_releases_wait_for_it(own_redis, cluster):
    a = await cluster("a", server=own_redis)
    key = f"{cluster.prefix}:room:#x"
    assert await a.claim_room("#x", "a/1") is None
    # the command connection drops (Redis keeps its data): a claim cannot be decided, and a
    # release made meanwhile is applied once the connection is back
    own_redis.command("CLIENT", "KILL", "TYPE", "normal")
    await until(lambda: a._commands is None, TIMEOUT)
    await _fails_unavailable(a.claim_room("#y", "a/2"), "not connected")
    assert await a.release_room("#x", "a/1") is None
    assert own_redis.command("GET", key).startswith(b"a/1 ")
    await until(lambda: a._commands is not None and not a._room_releases and not a.settling, TIMEOUT)
    assert own_redis.command("EXISTS", key) == b"0"
    assert await a.claim_room("#y", "a/3") is None


@pytest_twisted.ensureDeferred
async def test_a_check_answered_across_a_loss_of_redis_data_forgets_no_node(cluster, redis_server):
    """A lease check sent just before the renewal that finds Redis restarted empty (a new
    epoch) is answered after it: its answer, read against the old epoch, forgot the nodes
    known from before the loss as if they had left, so a node that died in the outage was
    never declared lost by this node (test_redis_killed_and_restarted_empty failed so, now
    and then, on a busy machine). Such an answer is dropped; the next check reads the new
    epoch."""
    a, c = await cluster("a", **FAST), await cluster("c", **FAST)
    await until(lambda: "c" in a._known, TIMEOUT)
    for loop in a._timers:  # this test runs a's checks itself
        loop.stop()
    a._watch_from = _reactor().seconds() + 60  # nobody is marked lost meanwhile
    redis_server.command("SREM", f"{cluster.prefix}:nodes", "c")  # as after Redis lost its data
    checking = a._watch()
    a._epoch = "the new epoch"  # the renewal's answer, read first
    await checking
    assert "c" in a._known
