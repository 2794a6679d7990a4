"""Races between cluster nodes (issue 12), with real ``twistd chathub`` nodes, one PostgreSQL
database and a real redis-server: one nick claimed at once over three nodes and three
protocols, and a node that loses its lease or a nick (docs/cluster.md, "What happens when
something dies")."""
from __future__ import annotations

import pytest_twisted
from twisted.internet import threads

from tests.cluster_support import (  # noqa: F401 (the cluster fixture)
    cluster,
    irc_user,
    registration,
    telnet_user,
    until_answer,
    until_listed,
)
from tests.redis_support import redis_command
from tests.store_fixtures import postgres_database, postgres_dsn  # noqa: F401 (fixtures)


def _telnet_answer(client) -> str:
    """A telnet claim's answer: granted, or refused as taken."""
    line = client.expect(r"you are samenick|^! .*already in use")
    return "granted" if "you are samenick" in line else "in use"


@pytest_twisted.ensureDeferred
async def test_fifty_claims_of_one_nick_over_three_nodes_and_three_protocols(cluster):
    from tests.browser_helpers import close_clients, connect

    ports = [await threads.deferToThread(cluster, name) for name in ("a", "b", "c")]
    https = [cluster.http[name] for name in ("a", "b", "c")]
    try:
        irc, telnet, web = [], [], []
        for i in range(50):  # every connection open and greeted before any claim
            node = i % 3
            if i % 3 == 0:
                irc.append(ports[node][1])
            elif i % 3 == 1:
                client = cluster.connect(ports[node][0])
                telnet.append(client)
            else:
                ws = await connect(https[node], protocols=["chathub.v1"])
                await ws.expect({"type": "hello"})
                web.append(ws)
        irc = [registration(cluster, port, "samenick") for port in irc]  # NICK and USER sent
        for client in telnet:
            client.send("/nick samenick\r\n")
        for ws in web:
            ws.send_json({"type": "login", "nick": "samenick"})
        answers = await threads.deferToThread(
            lambda: [{"001": "granted", "433": "in use"}[until_answer(c)] for c in irc]
            + [_telnet_answer(c) for c in telnet]
        )
        for ws in web:
            reply = await ws.expect(lambda m: m.get("type") in ("welcome", "error"))
            answers.append("granted" if reply["type"] == "welcome" else reply.get("code"))
            if reply["type"] == "error":
                assert reply["code"] == "nick_in_use", reply
        assert len(answers) == 50
        assert answers.count("granted") == 1, answers
        assert answers.count("in use") + answers.count("nick_in_use") == 49, answers
    finally:
        await close_clients()


@pytest_twisted.ensureDeferred
async def test_a_node_that_loses_its_lease_drops_its_clients_on_every_protocol(cluster, redis_server):
    from tests.browser_helpers import close_clients, connect

    a_line, a_irc = await threads.deferToThread(cluster, "a")
    _, b_irc = await threads.deferToThread(cluster, "b")
    try:
        alice = await threads.deferToThread(irc_user, cluster, a_irc, "alice")
        tom = await threads.deferToThread(telnet_user, cluster, a_line, "tom")
        wendy = await connect(cluster.http["a"], protocols=["chathub.v1"])
        await wendy.expect({"type": "hello"})
        wendy.send_json({"type": "login", "nick": "wendy"})
        await wendy.expect({"type": "welcome"})
        # the others declare A dead (as their watchdog does when A stalls past its lease):
        # A finds itself marked lost at its next renewal and must not go on serving
        prefix = cluster.prefix
        redis_command(redis_server.port, "SET", f"{prefix}:lost:a", "1")
        redis_command(redis_server.port, "DEL", f"{prefix}:node:a")
        await threads.deferToThread(alice.expect, r"^ERROR :.*lost its place in the cluster")
        await threads.deferToThread(alice.expect_closed)
        await threads.deferToThread(tom.expect, r"^! .*lost its place in the cluster")
        await threads.deferToThread(tom.expect_closed)
        closing = await wendy.expect(lambda m: m.get("type") == "closing")
        assert "lost its place in the cluster" in closing["reason"]
        await wendy.wait_closed()

        # A rejoins with a new lease, holding no nick: alice is free again on A, tom on B
        await threads.deferToThread(cluster.nodes["a"].expect_log, r"cluster node a rejoined with a new lease")
        assert await threads.deferToThread(lambda: until_answer(registration(cluster, a_irc, "alice"))) == "001"
        assert await threads.deferToThread(lambda: until_answer(registration(cluster, b_irc, "tom"))) == "001"
    finally:
        await close_clients()


def test_a_nick_taken_by_another_node_disconnects_its_holder(cluster, redis_server):
    _, a_irc = cluster("a")
    _, b_irc = cluster("b")
    alice = irc_user(cluster, a_irc, "alice")
    bob = irc_user(cluster, b_irc, "bob")
    # what a node started while Redis had lost its data could do: B's session holds alice
    redis_command(redis_server.port, "SET", f"{cluster.prefix}:nick:alice", "b/999")
    # A's command connection drops; A reconnects and claims its nicks again
    redis_command(redis_server.port, "CLIENT", "KILL", "TYPE", "normal")
    alice.expect(r"^ERROR :Nick collision: alice was taken")
    alice.expect_closed()
    bob.send("PING :still\r\n")
    bob.expect(r"PONG .*still")  # the rest of the cluster goes on


def _room_lines(client, marker: str) -> list[str]:
    """Bob's messages and the KICK as ``client`` sees them, up to alice's ``marker``
    (one order per room: past the marker, nothing of before can arrive)."""
    seen = []
    while marker not in (line := client.readline()):
        if line.startswith("@"):  # message tags
            line = line.split(" ", 1)[1]
        if " KICK #x bob" in line:
            seen.append("KICK")
        elif line.startswith(":bob!") and " PRIVMSG #x :" in line:
            seen.append(line.rsplit(":", 1)[1])
    return seen


def kick_in_flight(cluster) -> tuple[list[str], list[str], list[str], int]:
    """Bob on B talks as fast as he can while alice on A kicks him: what a member on A and
    one on B saw (bob's messages and the KICK), bob's messages in B's CHATHISTORY, and how
    many of them bob was told could not be sent (404)."""
    _, a_irc = cluster("a")
    _, b_irc = cluster("b")
    alice = irc_user(cluster, a_irc, "alice")  # founds #x on A: its operator
    carol = irc_user(cluster, a_irc, "carol")  # watches on A
    # B's users join once B knows the room (a room B never heard of would start anew there)
    bob, dave = cluster.connect(b_irc), cluster.connect(b_irc)
    dave.send("CAP REQ :draft/chathistory batch server-time message-tags\r\n")
    dave.expect(r" ACK ")
    dave.send("CAP END\r\n")
    for client, nick in ((bob, "bob"), (dave, "dave")):
        client.send(f"NICK {nick}\r\nUSER {nick} 0 * :{nick}\r\n")
        client.expect(r" 001 ")
        until_listed(client, nick, "#x")
        client.send("JOIN #x\r\n")
        client.expect(rf" 366 {nick} #x ")
    for nick in ("bob", "dave"):  # A applied both joins
        carol.expect(rf"^:{nick}!\S+ JOIN :?#x")
    # bob (on B) talks as fast as he can while alice (on A) kicks him mid-stream
    count = 300
    bob.send("".join(f"PRIVMSG #x :m{i}\r\n" for i in range(count // 2)))
    alice.send("KICK #x bob :enough\r\n")
    bob.send("".join(f"PRIVMSG #x :m{i}\r\n" for i in range(count // 2, count)))
    bob.expect(r" KICK #x bob ")
    # before the KICK every message of bob was taken; after it, each is refused, when B
    # checks it or when it is found void at its number: the PONG comes after every answer
    bob.send("PING :done\r\n")
    refused = 0
    while " PONG " not in (line := bob.readline()):
        refused += " 404 bob #x " in line
    alice.send("PRIVMSG #x :marker\r\n")
    on_a, on_b = _room_lines(carol, "marker"), _room_lines(dave, "marker")
    dave.send("CHATHISTORY LATEST #x * 1000\r\n")
    history = []
    while " BATCH -" not in (line := dave.readline()):
        if "batch=" in line.split(" ", 1)[0] and line.split(" ", 2)[1].startswith(":bob!") and " PRIVMSG #x :" in line:
            history.append(line.rsplit(":", 1)[1])
    return on_a, on_b, history, refused


def test_a_kick_against_messages_in_flight_is_seen_in_one_order_everywhere(cluster):
    on_a, on_b, history, refused = kick_in_flight(cluster)
    said = [m for m in on_b if m != "KICK"]
    assert said == [f"m{i}" for i in range(len(said))]  # in bob's order, none twice
    assert len(said) + refused == 300  # each of bob's messages was shown or refused
    assert history == said  # what is stored is what B's members saw
    assert on_a == on_b  # one order on both nodes
    assert on_a[-1] == "KICK"  # nothing of bob once he is out


def _names(client, nick: str) -> set[str]:
    client.send("NAMES #x\r\n")
    line = client.expect(rf" 353 {nick} . #x ")
    client.expect(rf" 366 {nick} ")
    return set(line.split(" #x ", 1)[1].lstrip(":").split())


def test_invite_only_against_a_concurrent_join_has_one_outcome_everywhere(cluster):
    _, a_irc = cluster("a")
    _, b_irc = cluster("b")
    alice = irc_user(cluster, a_irc, "alice")  # founds #x on A: its operator
    dave, bob = cluster.connect(b_irc), cluster.connect(b_irc)
    for client, nick in ((dave, "dave"), (bob, "bob")):
        client.send(f"NICK {nick}\r\nUSER {nick} 0 * :{nick}\r\n")
        client.expect(r" 001 ")
        until_listed(client, nick, "#x")
    dave.send("JOIN #x\r\n")  # a member on B, to see B's copy of the room
    dave.expect(r" 366 dave #x ")
    alice.expect(r"^:dave!\S+ JOIN :?#x")
    # +i on A and bob's JOIN on B at once
    alice.send("MODE #x +i\r\n")
    bob.send("JOIN #x\r\n")
    answer = bob.expect(r" 366 bob #x | 473 bob #x ")
    joined = " 366 " in answer
    alice.send("PRIVMSG #x :marker\r\n")  # past it, both nodes applied both changes
    dave.expect(r"PRIVMSG #x :marker")
    on_a, on_b = _names(alice, "alice"), _names(dave, "dave")
    assert on_a == on_b  # no node shows bob in the room while another does not
    assert ("bob" in on_a) == joined
    if joined:  # then the join came first, in A's order too (history numbers them so)
        seen = alice.seen  # NAMES read past both
        mode = next(i for i, line in enumerate(seen) if " MODE #x +i" in line)
        join = next(i for i, line in enumerate(seen) if line.startswith(":bob!") and " JOIN " in line)
        assert join < mode, seen[-10:]


def test_a_new_room_joined_at_once_on_three_nodes_is_made_once(cluster):
    """Nine users over three nodes send JOIN of one new name at the same moment: one node
    claims the name in Redis and makes the room, the others' joins wait for it and join
    it (docs/cluster.md, "One room namespace"). One operator, the same members everywhere, and
    every JOIN in the room's history (without the claim: an operator per node, and each
    node's later incarnation of the history hid the other nodes' first JOINs)."""
    ports = [cluster(name)[1] for name in ("a", "b", "c")]
    nicks = [f"u{i}" for i in range(9)]
    caps = "batch draft/chathistory draft/event-playback message-tags server-time"
    users = [irc_user(cluster, ports[i % 3], nick, caps=caps, join=False) for i, nick in enumerate(nicks)]
    for user in users:  # every JOIN sent before any answer is read
        user.send("JOIN #fresh\r\n")
    for user, nick in zip(users, nicks):
        user.expect(rf" 366 {nick} #fresh ")
    users[0].send("PRIVMSG #fresh :marker\r\n")  # past it, every node applied every join
    for user in users[1:]:
        user.expect(r"PRIVMSG #fresh :marker")
    listed = []
    for user, nick in zip(users[:3], nicks[:3]):  # one user of each node
        user.send("NAMES #fresh\r\n")
        line = user.expect(rf" 353 {nick} . #fresh ")
        user.expect(rf" 366 {nick} ")
        listed.append(sorted(line.split(" #fresh ", 1)[1].lstrip(":").split()))
    assert listed[0] == listed[1] == listed[2], listed  # one room, the same on every node
    operators = [name for name in listed[0] if name.startswith("@")]
    assert len(operators) == 1 and sorted(name.lstrip("@") for name in listed[0]) == sorted(nicks), listed[0]
    for user, nick in zip(users[:3], nicks[:3]):  # each node's history holds all nine JOINs
        user.send("CHATHISTORY LATEST #fresh * 50\r\n")
        joined = []
        while " BATCH -" not in (line := user.readline()):
            if "batch=" in line.split(" ", 1)[0] and " JOIN " in line:
                joined.append(line.split(" ", 2)[1][1:].split("!")[0])
        assert sorted(joined) == sorted(nicks), (nick, joined)
        assert joined[0] == operators[0].lstrip("@")  # the maker's JOIN first
