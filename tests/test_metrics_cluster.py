"""``/healthz`` and the backplane figures of ``/metrics`` on real cluster nodes (two
``twistd chathub`` processes, one PostgreSQL, a redis-server of the test's own): a node
whose Redis is gone answers 503 until it is back."""
from __future__ import annotations

import json
import urllib.error
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

from tests.cluster_support import (  # noqa: F401 (fixtures)
    cluster,
    irc_user,
    meet,
    postgres_database,
    postgres_dsn,
    rounds,
)


def _get(port: int, path: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def _health(port: int) -> tuple[int, dict]:
    code, body = _get(port, "/healthz")
    return code, json.loads(body)


def _samples(port: int) -> dict:
    code, body = _get(port, "/metrics")
    assert code == 200, body
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(body.decode())
        for s in family.samples
    }


def test_health_follows_the_backplane_and_the_lag_is_measured(cluster, own_redis):  # noqa: F811 (fixture)
    _, a_irc = cluster("a", redis_url=own_redis.url)
    _, b_irc = cluster("b", redis_url=own_redis.url)
    a_http, b_http = cluster.http["a"], cluster.http["b"]
    code, report = _health(a_http)
    assert code == 200 and report["checks"]["backplane"] is True and report["checks"]["store"] is True

    alice = irc_user(cluster, a_irc, "alice")
    bob = irc_user(cluster, b_irc, "bob")
    meet(alice, [bob])
    lag_before = _samples(b_http)[("chathub_backplane_lag_seconds_count", ())]
    alice.say("across")
    bob.expect(r"PRIVMSG #x :across")
    samples = _samples(b_http)
    assert samples[("chathub_backplane_lag_seconds_count", ())] > lag_before  # B heard A's message
    assert samples[("chathub_backplane_connected", ())] == 1
    assert samples[("chathub_users", (("protocol", "irc"),))] == 1  # bob; alice is A's
    # alice made #x on A (granted); bob's join on B claimed nothing or was refused, never granted
    claimed = _samples(a_http)
    assert claimed[("chathub_room_claims_total", (("outcome", "granted"),))] == 1
    assert samples[("chathub_room_claims_total", (("outcome", "granted"),))] == 0
    assert samples[("chathub_room_claims_total", (("outcome", "taken_over"),))] == 0

    own_redis.kill()
    for _ in rounds("a 503 from /healthz while Redis is down"):
        code, report = _health(a_http)
        if code == 503:
            break
    assert report["status"] == "failing" and report["checks"]["backplane"] is False
    assert report["checks"]["store"] is True and report["checks"]["listeners"] is True
    assert _samples(a_http)[("chathub_backplane_connected", ())] == 0

    own_redis.restart()
    for _ in rounds("a 200 from /healthz once Redis is back"):
        if _health(a_http)[0] == 200:
            break


def test_a_fenced_node_is_not_healthy_until_it_holds_its_lease_again(cluster, own_redis):  # noqa: F811
    """A node fenced for good (another process took its node id) kept its listeners and
    answered every sign-on 437, while /healthz said ok: behind one port, a share of new
    connections landed on a node that could sign no one on, and its watchdog never
    restarted it."""
    _, a_irc = cluster("a", redis_url=own_redis.url)
    a_http = cluster.http["a"]
    assert _health(a_http)[0] == 200 and _samples(a_http)[("chathub_backplane_lease", ())] == 1
    lease = f"{cluster.prefix}:node:a"
    own_redis.command("SET", lease, "another-process", "PX", "60000")  # its node id, taken
    for _ in rounds("a 503 from /healthz once the node is fenced"):
        code, report = _health(a_http)
        if code == 503:
            break
    assert report["checks"]["lease"] is False and report["checks"]["backplane"] is True
    assert _samples(a_http)[("chathub_backplane_lease", ())] == 0
    own_redis.command("DEL", lease)  # the other process is gone: the node rejoins
    for _ in rounds("a 200 from /healthz once the node holds its lease again"):
        code, report = _health(a_http)
        if code == 200:
            break
    assert report["checks"]["lease"] is True


def test_chat_of_a_room_with_nobody_on_a_node_passes_it_by_and_a_join_there_takes_the_room_up(cluster):
    """B holds a copy of a room whose members are all on A: B counts the room's chat in its
    order without reading it (``ChatHub.no_audience``). A user who then joins on B sees what
    follows, once and in order, and B's history of the room holds every message."""
    (_, a_irc), (_, b_irc) = cluster("a"), cluster("b")
    passed = ("chathub_relay_events_total", (("outcome", "passed"),))
    alice = irc_user(cluster, a_irc, "alice")
    dave = irc_user(cluster, a_irc, "dave")
    count = 300
    for i in range(count):
        alice.say(f"a{i}")
    assert [dave.expect(r"PRIVMSG #x :a\d+").rsplit(":", 1)[1] for _ in range(count)] == [
        f"a{i}" for i in range(count)
    ]
    for _ in rounds("B passing the room's chat by", 20):
        if _samples(cluster.http["b"])[passed] > count // 2:  # the first may come before B knows the room
            break
    carol = irc_user(cluster, b_irc, "carol", caps="draft/chathistory batch server-time message-tags",
                     once_listed=True)
    meet(alice, [carol])
    for i in range(count):
        alice.say(f"b{i}")
    seen = [carol.expect(r"PRIVMSG #x :b\d+").rsplit(":", 1)[1] for _ in range(count)]
    assert seen == [f"b{i}" for i in range(count)]
    assert _samples(cluster.http["b"])[passed] < 2 * count  # read once it had an audience
    carol.send(f"CHATHISTORY LATEST #x * {3 * count}\r\n")
    history = []
    while " BATCH -" not in (line := carol.readline()):
        if "batch=" in line.split(" ", 1)[0] and " PRIVMSG #x :" in line:
            history.append(line.rsplit(":", 1)[1])
    assert [t for t in history if t[0] in "ab" and t[1:].isdigit()] == (
        [f"a{i}" for i in range(count)] + [f"b{i}" for i in range(count)]
    )
