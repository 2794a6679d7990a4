"""Failures under a cluster of real ``twistd chathub`` nodes (issue 12): PostgreSQL crashing
and restarting under two nodes, Redis cutting the nodes' subscriber connections while
their command connections stay up, and a node cut off from Redis while a room is made.
Nodes, Redis and PostgreSQL are real (tests/cluster_support.py); the PostgreSQL here is the
test's own, never the shared one.
"""
from __future__ import annotations

import re

from tests.cluster_support import (  # noqa: F401 (fixtures)
    ROOM,
    all_arrive,
    answer,
    cluster,
    irc_user,
    meet,
    own_postgres,
    postgres_database,
    postgres_dsn,
    rounds,
    two_talking,
    until,
)


def until_line(client, text: str) -> list[str]:
    """The lines ``client`` reads up to the one containing ``text``."""
    lines = []
    while text not in (line := client.readline()):
        lines.append(line)
    return lines


# -- PostgreSQL restarting under two nodes ----------------------------------------------------


def test_a_postgres_restart_under_two_nodes_loses_nothing_acknowledged_and_chat_resumes(own_postgres, cluster):
    a_line, a_irc = cluster("a", dsn=own_postgres.dsn)
    b_line, b_irc = cluster("b", dsn=own_postgres.dsn)
    # alice's echo of a message is its acknowledgement: it comes once the message is committed
    alice = irc_user(cluster, a_irc, "alice", caps="echo-message")
    bob = irc_user(cluster, b_irc, "bob", caps="draft/chathistory batch server-time message-tags")
    meet(bob, [alice])
    meet(alice, [bob])
    for i in range(50):
        alice.say(f"m{i}")
    alice.expect(r"PRIVMSG #x :m49$")  # these 50 are acknowledged (alice.seen keeps every line read)
    own_postgres.stop("immediate")  # a crash, with the next messages in flight
    for i in range(50, 100):
        alice.say(f"m{i}")
    own_postgres.start()
    for attempt, _ in enumerate(rounds("a message acknowledged after PostgreSQL came back", 60.0)):
        alice.say(f"after{attempt}")
        try:
            alice.expect(r"PRIVMSG #x :after\d+$", timeout=2.0)
            break
        except (AssertionError, TimeoutError):  # no echo yet: not committed
            continue
    alice.say("the end")
    until_line(alice, "PRIVMSG #x :the end")
    acknowledged = [  # every line alice read is in alice.seen
        line.rsplit(":", 1)[1] for line in alice.seen if re.search(r":alice!\S* PRIVMSG #x :m\d+$", line)
    ]
    received = [
        line.rsplit(":", 1)[1] for line in until_line(bob, "PRIVMSG #x :the end")
        if re.search(r":alice!\S* PRIVMSG #x :m\d+$", line)
    ]
    assert len(set(received)) == len(received)  # nothing twice
    assert set(acknowledged) <= set(received)  # nothing acknowledged lost
    assert received == sorted(received, key=lambda t: int(t[1:]))  # in the order sent
    assert acknowledged[:50] == [f"m{i}" for i in range(50)]
    bob.send(f"CHATHISTORY LATEST {ROOM} * 1000\r\n")
    history = []
    while " BATCH -" not in (line := bob.readline()):
        if "batch=" in line.split(" ", 1)[0] and re.search(r" PRIVMSG #x :m\d+$", line):
            history.append(line.rsplit(":", 1)[1])
    assert history == received


# -- the subscriber cut while commands stay up ------------------------------------------------


def test_cutting_the_subscribers_off_redis_loses_nothing(cluster, own_redis):
    alice, bob = two_talking(cluster, own_redis.url)
    count = 600
    for i in range(count):
        alice.say(f"m{i}")
        if i in (count // 3, 2 * count // 3):  # the doorbell cut twice, mid-stream
            for _ in rounds("both nodes subscribed again"):  # before the second cut
                if own_redis.command("CLIENT", "LIST", "TYPE", "pubsub").count(b"cmd=") == 2:
                    break
            assert own_redis.command("CLIENT", "KILL", "TYPE", "pubsub") == b"2"
    all_arrive(bob, count)


# -- a node cut off from Redis while a room is made -------------------------------------------


def test_a_room_made_while_a_node_was_cut_off_from_redis_is_there_when_it_is_back(cluster, own_redis):
    """b is cut off from Redis (its connections killed, its Redis user refused) while
    alice (on a) makes #new, sets its topic and carol joins: b gets none of the doorbell's
    messages of it, and its relay compares with the database only the rooms it heard of.
    Back, b asks the other nodes for the rooms it has not heard of: its users see #new as
    it is, and bob's JOIN joins it. Before, b had no #new (not in LIST, NAMES empty, TOPIC
    403) and bob's JOIN waited for it in vain, took the claim over and made #new a second
    time, bob its operator."""
    own_redis.command("ACL", "SETUSER", "nodeb", "on", ">nodeb-secret", "~*", "&*", "+@all")
    b_url = f"redis://nodeb:nodeb-secret@127.0.0.1:{own_redis.port}/0"
    (_, a_irc), (_, b_irc) = cluster("a", redis_url=own_redis.url), cluster("b", redis_url=b_url)
    alice = irc_user(cluster, a_irc, "alice")
    bob = irc_user(cluster, b_irc, "bob")
    meet(bob, [alice])
    meet(alice, [bob])
    carol = irc_user(cluster, a_irc, "carol", join=False)
    own_redis.command("ACL", "SETUSER", "nodeb", "off")
    assert int(own_redis.command("CLIENT", "KILL", "USER", "nodeb")) >= 2  # commands, subscriber
    alice.send("JOIN #new\r\n")
    alice.expect(r" 366 alice #new ")
    alice.send("TOPIC #new :made while b was away\r\n")
    alice.expect(r" TOPIC #new :made while b was away")  # shown: committed, and published
    carol.send("JOIN #new\r\n")
    alice.expect(r":carol!\S* JOIN #new")
    answer(alice, "PING :published", "PONG")
    own_redis.command("ACL", "SETUSER", "nodeb", "on")
    until(bob, "LIST", r" 323 bob ", r" 322 bob #new 2 :\[\+nt\] made while b was away")
    names = answer(bob, "NAMES #new", r" 366 bob ")
    assert names[0].endswith(" 353 bob = #new :@alice carol")
    bob.send("JOIN #new\r\n")
    bob.expect(r" 332 bob #new :made while b was away")
    assert bob.expect(r" 353 bob = #new ").split(" :", 1)[1].split() == ["@alice", "carol", "bob"]
    alice.expect(r":bob!\S* JOIN #new")
    alice.send("PRIVMSG #new :welcome, bob\r\n")
    bob.expect(r":alice!\S* PRIVMSG #new :welcome, bob")
    assert not any("taken over" in line for line in cluster.nodes["b"].log)


# -- Redis restarted without its data -----------------------------------------------------------


def test_the_names_of_live_rooms_are_claimed_again_when_redis_lost_its_data(cluster, own_redis):
    """Leases and nicks were claimed again after Redis restarted empty, room names were not:
    every live room went on without its claim, which is what keeps its name for the node
    whose user leaves it last until the end stands (another node could make it meanwhile)."""
    alice, bob = two_talking(cluster, own_redis.url)  # alice made #x on a
    key = f"{cluster.prefix}:room:{ROOM}"
    held = own_redis.command("GET", key)
    assert held and held.startswith(b"a/")
    own_redis.kill()
    own_redis.restart()  # empty
    for _ in rounds("the name of #x claimed again"):
        again = own_redis.command("GET", key)
        if again:
            break
    assert again.split(b" ")[0] == held.split(b" ")[0]  # a's making, as before
    alice.say("still here")
    bob.expect(r"PRIVMSG #x :still here")
