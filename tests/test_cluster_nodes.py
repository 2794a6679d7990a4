"""Two ``twistd chathub`` nodes in cluster mode: one PostgreSQL database, one redis-server
(both real; the test session starts Redis on a free port), users of both protocols on each.

What cluster mode carries today (docs/cluster.md): chat in rooms crosses nodes, each node's
messages arrive at the other's members once and in the order they were sent, history on
either node holds all of them, and a Redis outage loses nothing (the receiving node fetches
the gap from PostgreSQL).
"""
from __future__ import annotations

import re

import pytest_twisted
from twisted.internet import threads

from tests.cluster_support import (  # noqa: F401 (fixtures)
    ROOM,
    all_arrive,
    cluster,
    irc_user,
    meet,
    postgres_database,
    postgres_dsn,
    registration,
    rounds,
    telnet_user,
    two_talking,
    until_answer,
    until_names,
)
from tests.support import LineClient


def test_room_chat_crosses_nodes_both_ways_on_every_protocol(cluster):
    (a_line, a_irc), (b_line, b_irc) = cluster("a"), cluster("b")
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
    (a_line, a_irc), (b_line, b_irc) = cluster("a"), cluster("b")
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
    alice, bob = two_talking(cluster, own_redis.url)
    count = 10_000  # the figure: 10,000 messages, Redis killed and restarted among them
    for i in range(count // 3):
        alice.send(f"PRIVMSG #x :m{i}\r\n")
    own_redis.kill()  # mid-stream: A cannot ring B's doorbell for what follows
    for i in range(count // 3, 2 * count // 3):
        alice.send(f"PRIVMSG #x :m{i}\r\n")
    own_redis.restart()
    for i in range(2 * count // 3, count):
        alice.send(f"PRIVMSG #x :m{i}\r\n")
    all_arrive(bob, count)  # every one, once, in order


# -- one nick namespace ------------------------------------------------------------------------


def test_a_nick_is_granted_once_across_nodes(cluster):
    (a_line, a_irc), (b_line, b_irc) = cluster("a"), cluster("b")
    # 50 registrations of one nick at once, half on each node: exactly one gets it
    clients = [registration(cluster, a_irc if i % 2 else b_irc, "samenick") for i in range(50)]
    answers = [until_answer(c) for c in clients]
    assert answers.count("001") == 1 and answers.count("433") == 49
    # taken on A: refused on B, on IRC (registration and NICK change) and on telnet
    alice = irc_user(cluster, a_irc, "alice")
    assert until_answer(registration(cluster, b_irc, "ALICE")) == "433"
    bob = irc_user(cluster, b_irc, "bob")
    bob.send("NICK Alice\r\n")
    bob.expect(r" 433 bob Alice ")
    carol = cluster.connect(b_line)
    carol.send("/nick alice\r\n")
    carol.expect(r"^! .*already in use")
    # a nick change frees the old nick everywhere; a quit frees the nick
    alice.send("NICK alice2\r\n")
    alice.expect(r"NICK :?alice2")
    carol.send("/nick alice\r\n")
    carol.expect(r"you are alice")
    bob.send("NICK alice2\r\n")
    bob.expect(r" 433 bob alice2 ")
    alice.send("QUIT :bye\r\n")
    alice.expect_closed()
    for _ in rounds("alice2 freed"):  # the release reaches Redis after the QUIT is answered
        bob.send("NICK alice2\r\n")
        if " NICK " in bob.expect(r" 433 bob alice2 | NICK :?alice2"):
            break


def test_private_messages_cross_nodes(cluster):
    (a_line, a_irc), (b_line, b_irc) = cluster("a"), cluster("b")
    alice = irc_user(cluster, a_irc, "alice")  # IRC on A
    carol = telnet_user(cluster, b_line, "carol")  # telnet on B
    for _ in rounds("node A hearing of carol"):  # until A has heard that carol signed on at B
        alice.send("PRIVMSG carol :psst\r\n")
        if _sent_or_refused(alice, "carol"):
            break
    carol.expect(r"<- alice: psst")
    carol.send("/msg alice hi back\r\n")
    assert alice.expect(r"PRIVMSG alice :hi back").startswith(":carol!")


def _sent_or_refused(client: LineClient, nick: str) -> bool:
    """After a PRIVMSG to ``nick``: False if the server answered 401 (no such nick yet),
    True when it did not within a PING round trip (the message was taken)."""
    client.send("PING :probe\r\n")
    line = client.expect(rf" 401 \S+ {nick} | PONG .*probe")
    return " 401 " not in line


def test_with_redis_down_no_nick_is_granted_and_chat_goes_on(cluster, own_redis):
    a_line, a_irc = cluster("a", redis_url=own_redis.url)
    alice = irc_user(cluster, a_irc, "alice")
    dave = irc_user(cluster, a_irc, "dave")
    own_redis.kill()
    newcomer = registration(cluster, a_irc, "newcomer")
    assert newcomer.expect(r" 437 ").split(" ")[3] == "newcomer"  # try again shortly
    telnet = cluster.connect(a_line)
    telnet.send("/nick someone\r\n")
    telnet.expect(r"^! .*try again")
    alice.send("NICK alice2\r\n")
    alice.expect(r" 437 alice alice2 ")
    alice.send("PRIVMSG #x :still here\r\n")  # who is signed on keeps talking
    dave.expect(r"PRIVMSG #x :still here")


@pytest_twisted.ensureDeferred
async def test_with_redis_down_no_room_is_made_on_any_protocol_and_rooms_go_on(cluster, own_redis):
    """A new room's name is claimed in Redis before the room is made (docs/cluster.md, "One room
    namespace"): without Redis each protocol is refused in its own terms, and joining a room
    that exists needs no claim."""
    from tests.browser_helpers import close_clients, connect

    a_line, a_irc = await threads.deferToThread(cluster, "a", own_redis.url)
    alice = await threads.deferToThread(irc_user, cluster, a_irc, "alice")
    dave = await threads.deferToThread(irc_user, cluster, a_irc, "dave", "", False)
    tom = await threads.deferToThread(telnet_user, cluster, a_line, "tom")
    wendy = await connect(cluster.http["a"], protocols=["chathub.v1"])
    try:
        await wendy.expect({"type": "hello"})
        wendy.send_json({"type": "login", "nick": "wendy"})
        await wendy.expect({"type": "welcome"})
        own_redis.kill()

        def refused() -> None:
            alice.send("JOIN #new\r\n")
            alice.expect(r" 437 alice #new :Rooms cannot be made right now")
            tom.send("/join #new2\r\n")
            tom.expect(r"^! #new2: Rooms cannot be made right now; try again")
            dave.send(f"JOIN {ROOM}\r\n")  # exists: no claim
            dave.expect(rf" 366 dave {ROOM} ")
            alice.expect(rf"^:dave!\S+ JOIN :?{ROOM}")

        await threads.deferToThread(refused)
        wendy.send_json({"type": "join", "room": "#new3", "ref": 1})
        error = await wendy.expect(lambda m: m.get("type") == "error")
        assert (error["code"], error.get("ref")) == ("room_unavailable", 1), error
        wendy.send_json({"type": "join", "room": ROOM, "ref": 2})
        await wendy.expect(lambda m: m.get("type") == "ok" and m.get("ref") == 2)
    finally:
        await close_clients()


# -- room state across nodes -------------------------------------------------------------------


def test_room_state_is_shared_by_the_nodes(cluster):
    (a_line, a_irc), (b_line, b_irc) = cluster("a"), cluster("b")
    alice = irc_user(cluster, a_irc, "alice")  # founds #x on A: its operator
    carol = telnet_user(cluster, a_line, "carol")
    bob = irc_user(cluster, b_irc, "bob", once_listed=True)
    assert until_names(bob, "bob", {"@alice", "carol", "bob"})  # A's members, with A's operator
    alice.expect(rf":bob!\S+ JOIN :?{ROOM}")
    carol.expect(r"bob joined")
    # the topic, a mode and a privilege set on A hold on B
    alice.send(f"TOPIC {ROOM} :shared topic\r\nMODE {ROOM} +m\r\nMODE {ROOM} +o bob\r\n")
    bob.expect(rf"TOPIC {ROOM} :shared topic")
    bob.expect(rf"MODE {ROOM} \+m")
    bob.expect(rf"MODE {ROOM} \+o bob")
    assert until_names(bob, "bob", {"@alice", "carol", "@bob"})
    # bob, an operator now, kicks carol of node A: she leaves the room there too
    bob.send(f"KICK {ROOM} carol :out\r\n")
    carol.expect(r"kicked")
    alice.expect(rf":bob!\S+ KICK {ROOM} carol")
    assert until_names(alice, "alice", {"@alice", "@bob"})
    bob.send(f"PART {ROOM} :later\r\n")
    alice.expect(rf":bob!\S+ PART {ROOM}")
    assert until_names(alice, "alice", {"@alice"})
    bob.send(f"JOIN {ROOM}\r\n")
    alice.expect(rf":bob!\S+ JOIN :?{ROOM}")
    bob.send("QUIT :bye\r\n")
    alice.expect(r":bob!\S+ QUIT")
    assert until_names(alice, "alice", {"@alice"})


def test_when_a_node_dies_its_users_quit_everywhere_and_their_nicks_are_freed(cluster):
    (a_line, a_irc), (b_line, b_irc) = cluster("a"), cluster("b")
    alice = irc_user(cluster, a_irc, "alice")
    bob = irc_user(cluster, b_irc, "bob", once_listed=True)
    alice.expect(rf":bob!\S+ JOIN :?{ROOM}")
    cluster.nodes["b"].kill()  # kill -9: no QUIT is stored, no nick released
    # within the bound docs/cluster.md gives: lease 4 s + check 0.5 s, plus the grace a
    # node gives the others after it (re)joined (one lease), plus slack for a busy machine
    alice.expect(r":bob!\S+ QUIT :\*\.net \*\.split", timeout=4.0 + 0.5 + 4.0 + 3.0)
    assert until_names(alice, "alice", {"@alice"})
    # the nick is free again, on the surviving node
    newcomer = registration(cluster, a_irc, "bob")
    for _ in rounds("bob's nick freed"):
        if until_answer(newcomer) == "001":
            break
        newcomer.send("NICK bob\r\n")


# -- the browser's protocols across nodes ------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_web_users_chat_with_every_protocol_on_the_other_node(cluster):
    from tests.browser_helpers import close_clients, connect

    a_line, a_irc = await threads.deferToThread(cluster, "a")
    b_line, b_irc = await threads.deferToThread(cluster, "b")
    try:
        wendy = await connect(cluster.http["a"], protocols=["chathub.v1"])  # chathub.v1 on A
        await wendy.expect({"type": "hello"})
        wendy.send_json({"type": "login", "nick": "wendy"})
        await wendy.expect({"type": "welcome"})
        wendy.send_json({"type": "join", "room": ROOM, "ref": 1})
        await wendy.expect({"type": "ok", "ref": 1})
        ivy = await connect(cluster.http["b"], protocols=["text.ircv3.net"], json_messages=False)  # IRC over WS on B
        ivy.send_text("NICK ivy")
        ivy.send_text("USER ivy 0 * :ivy")
        await ivy.expect(" 001 ")
        carol = await threads.deferToThread(telnet_user, cluster, b_line, "carol")  # telnet on B
        ivy.send_text(f"JOIN {ROOM}")
        await ivy.expect(" 366 ")
        # until each node has heard of the other's members (as meet() does)
        for attempt in range(100):
            ivy.send_text(f"PRIVMSG {ROOM} :ping{attempt}")
            try:
                await wendy.expect(lambda m: isinstance(m, dict) and m.get("text", "").startswith("ping"), timeout=0.2)
                break
            except AssertionError:
                continue
        wendy.send_json({"type": "message", "target": ROOM, "text": "from the web on A"})
        line = await ivy.expect("PRIVMSG #x :from the web on A")
        assert line.startswith(":wendy!")
        await threads.deferToThread(carol.expect, r"\[#x\] <wendy> from the web on A")
        ivy.send_text(f"PRIVMSG {ROOM} :from IRC over WebSocket on B")
        await wendy.expect({"type": "message", "target": ROOM, "text": "from IRC over WebSocket on B"})
        await threads.deferToThread(carol.say, "from telnet on B")
        got = await wendy.expect({"type": "message", "text": "from telnet on B"})
        assert got["from"]["nick"] == "carol"
        # privately, both ways
        ivy.send_text("PRIVMSG wendy :psst")
        await wendy.expect({"type": "message", "target": "wendy", "text": "psst"})
        wendy.send_json({"type": "message", "target": "ivy", "text": "hi ivy"})
        await ivy.expect("PRIVMSG ivy :hi ivy")
    finally:
        await close_clients()


def test_every_member_on_every_node_sees_one_room_in_one_order(cluster):
    (a_line, a_irc), (b_line, b_irc) = cluster("a"), cluster("b")
    alice = irc_user(cluster, a_irc, "alice")
    dave = irc_user(cluster, a_irc, "dave", caps="draft/chathistory batch server-time message-tags")
    bob = irc_user(cluster, b_irc, "bob")
    carol = telnet_user(cluster, b_line, "carol")
    meet(bob, [alice, dave])
    meet(alice, [bob, carol])
    count = 1000  # the figure: two senders, 1,000 messages each
    for i in range(count):  # two senders on two nodes at once
        alice.send(f"PRIVMSG #x :a{i}\r\n")
        bob.send(f"PRIVMSG #x :b{i}\r\n")
    # dave (on A, alice's node) and carol (on B, bob's node) see one and the same order
    seen_on_a = [dave.expect(r"PRIVMSG #x :[ab]\d+").rsplit(":", 1)[1] for _ in range(2 * count)]
    seen_on_b = [carol.expect(r"\[#x\] <(alice|bob)> [ab]\d+").rsplit(" ", 1)[1] for _ in range(2 * count)]
    assert seen_on_a == seen_on_b
    # which is the order history keeps
    dave.send(f"CHATHISTORY LATEST #x * {2 * count}\r\n")
    history = []
    while " BATCH -" not in (line := dave.readline()):
        if "batch=" in line.split(" ", 1)[0] and " PRIVMSG #x :" in line:
            history.append(line.rsplit(":", 1)[1])
    assert [t for t in history if t[0] in "ab" and t[1:].isdigit()] == seen_on_a


def test_a_rename_on_one_node_renames_the_room_on_the_other(cluster):
    """RENAME is a hub event: stored, carried by the relay, applied by the other node to its
    copy of the room and shown to its members in their own terms; chat then crosses the
    nodes under the new name, and history holds what was said before it under that name."""
    (a_line, a_irc), (b_line, b_irc) = cluster("a"), cluster("b")
    alice = irc_user(cluster, a_irc, "alice", caps="draft/channel-rename")
    bob = irc_user(cluster, b_irc, "bob", caps="draft/chathistory batch server-time message-tags")
    carol = telnet_user(cluster, b_line, "carol")
    meet(bob, [alice])
    meet(alice, [bob, carol])
    alice.say("before the move")
    bob.expect(r"PRIVMSG #x :before the move")
    alice.send("RENAME #x #y :moved\r\n")
    assert alice.expect(r" RENAME ").endswith("RENAME #x #y moved")
    assert " :bob!" in bob.expect(r" PART #x :moved$")
    bob.expect(r" JOIN #y$")
    bob.expect(r" 366 bob #y ")
    carol.expect(r"^\* alice renamed #x to #y \(moved\)$")
    carol.send("after the move\r\n")  # her current room followed
    assert alice.expect(r"PRIVMSG #y :after the move").startswith(":carol!")
    bob.send("PRIVMSG #y :from b\r\n")
    alice.expect(r"PRIVMSG #y :from b")
    bob.send("CHATHISTORY LATEST #y * 50\r\n")
    history = []
    while " BATCH -" not in (line := bob.readline()):
        if "batch=" in line.split(" ", 1)[0] and " PRIVMSG " in line:
            history.append(line.split(" PRIVMSG ", 1)[1])
    assert "#y :before the move" in history and "#y :after the move" in history


def test_redaction_and_statusmsg_cross_nodes(cluster):
    (a_line, a_irc), (b_line, b_irc) = cluster("a"), cluster("b")
    caps = "message-tags echo-message draft/message-redaction"
    alice = irc_user(cluster, a_irc, "alice", caps=caps)  # IRC on A, the room's operator
    dave = telnet_user(cluster, a_line, "dave")  # telnet on A
    bob = irc_user(cluster, b_irc, "bob", caps=caps, once_listed=True)  # IRC on B
    carol = telnet_user(cluster, b_line, "carol")  # telnet on B
    meet(bob, [alice, dave])
    meet(alice, [bob, carol])

    alice.say("soon taken back")
    echo = alice.expect(r"PRIVMSG #x :soon taken back")
    msgid = echo.split("msgid=", 1)[1].split(";", 1)[0].split(" ", 1)[0]
    bob.expect(rf"msgid={msgid}.* PRIVMSG #x :soon taken back")
    carol.expect(r"<alice> soon taken back")
    alice.send(f"REDACT #x {msgid} :oops\r\n")
    assert bob.expect(rf"REDACT #x {msgid} :?oops$").split(" ")[1].startswith(":alice!")
    carol.expect(r"\* alice deleted a message of alice in #x \(oops\)")

    # privately, to a user of the other node named in another case: the REDACT names bob
    # as a message to him does (it said "BOB", and was stored under that name)
    alice.send("PRIVMSG BOB :psst\r\n")
    echo = alice.expect(r"PRIVMSG bob :psst")
    msgid = echo.split("msgid=", 1)[1].split(";", 1)[0].split(" ", 1)[0]
    bob.expect(rf"msgid={msgid}.* PRIVMSG bob :psst")
    alice.send(f"REDACT BOB {msgid}\r\n")
    assert re.search(rf" REDACT (\S+) {msgid}", alice.expect(rf" REDACT \S+ {msgid}")).group(1) == "bob"
    assert re.search(rf" REDACT (\S+) {msgid}", bob.expect(rf" REDACT \S+ {msgid}")).group(1) == "bob"

    # STATUSMSG from a telnet user on B reaches the operator on A, and not dave beside it
    carol.send("/msg @#x only for operators\r\n")
    assert alice.expect(r"PRIVMSG @#x :only for operators").split(" ")[1].startswith(":carol!")
    alice.say("for everyone")
    dave.expect(r"<alice> for everyone")
    assert not [line for line in dave.seen if "only for operators" in line]
