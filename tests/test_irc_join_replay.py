"""Issue 13, point 6 over real sockets: IRC clients get a room's last lines on JOIN, as
telnet and web users do; clients that negotiate draft/chathistory fetch history
themselves and get none."""
from __future__ import annotations

import re

import pytest
import pytest_twisted
from twisted.internet import defer

from tests.support import ALL_CAPS, HubServer, IrcClient, batch_of, history_server, until


@pytest.fixture
def server(history_hub):
    return history_hub


async def room_with_history(server: HubServer, count: int = 3) -> IrcClient:
    """A telnet user said m0..m{count-1} in #r (and stays there); the IRC client that
    watched them all arrive, so they are stored."""
    telnet = await server.telnet("tom", rooms=["#r"])
    watcher = await server.irc("watcher", rooms=["#r"])
    for i in range(count):
        telnet.send(f"m{i}")
        await watcher.expect(lambda l, i=i: l.command == "PRIVMSG" and l.params[-1] == f"m{i}")
    return watcher


@pytest_twisted.ensureDeferred
async def test_batch_and_server_time_get_a_chathistory_batch(server):
    await room_with_history(server)
    client = await server.irc("bob", "batch", "server-time", "message-tags")
    client.send("JOIN #r")
    start = client.cursor
    await client.expect(lambda l: l.command == "BATCH" and l.params[0].startswith("-"))
    lines = client.lines[start : client.cursor]
    params, inner = batch_of(lines)
    assert params == ["#r"]
    assert [l.params[-1] for l in inner] == ["m0", "m1", "m2"]
    assert all(l.source.startswith("tom!") and "time" in l.tags and "msgid" in l.tags for l in inner)
    # after the JOIN burst
    assert [l.command for l in lines].index("366") < [l.command for l in lines].index("BATCH")


@pytest_twisted.ensureDeferred
async def test_plain_client_gets_lines_with_a_time_prefix(server):
    await room_with_history(server, 2)
    client = await server.irc("carl")
    client.send("JOIN #r")
    start = client.cursor
    await client.expect(lambda l: l.command == "PRIVMSG" and l.params[-1].endswith("] m1"))
    replayed = [l for l in client.lines[start : client.cursor] if l.command == "PRIVMSG"]
    assert [re.sub(r"^\[\d{4}-\d\d-\d\d \d\d:\d\d\] ", "", l.params[-1]) for l in replayed] == ["m0", "m1"]
    assert all(l.params[0] == "#r" and l.source.startswith("tom!") for l in replayed)
    assert not any(l.command == "BATCH" for l in client.lines[start : client.cursor])


@pytest_twisted.ensureDeferred
async def test_chathistory_clients_get_no_replay_and_fetch_it_themselves(server):
    await room_with_history(server)
    client = await server.irc("dora", *ALL_CAPS)
    client.send("JOIN #r")
    # the history query is answered after any replay the JOIN would have started
    lines = await client.roundtrip("CHATHISTORY LATEST #r * 10")
    _, inner = batch_of(lines)
    assert [l.params[-1] for l in inner] == ["m0", "m1", "m2"]
    assert sum(l.command == "PRIVMSG" for l in lines) == 3  # the batch's, nothing more


@pytest_twisted.ensureDeferred
async def test_a_line_said_after_the_join_is_live_only(server):
    watcher = await room_with_history(server, 1)
    client = await server.irc("erin", "batch", "server-time")
    client.send("JOIN #r")
    await client.expect("366")
    watcher.send("PRIVMSG #r :after")
    await client.expect(lambda l: l.command == "PRIVMSG" and l.params[-1] == "after")
    await client.roundtrip()
    assert [l.params[-1] for l in client.lines if l.command == "PRIVMSG"].count("after") == 1


@pytest_twisted.ensureDeferred
async def test_replay_off_by_setting(tmp_path):
    server = await history_server(tmp_path, irc={"join_replay": False, "flood_exempt": ["127.0.0.1"]})
    try:
        await room_with_history(server, 1)
        client = await server.irc("fay")
        client.send("JOIN #r")
        await client.expect("366")
        await client.roundtrip("CHATHISTORY LATEST #r * 10")  # answered after any replay
        replayed = [l for l in client.lines if l.command == "PRIVMSG"]
        assert len(replayed) == 1 and replayed[0].params[-1] == "m0"  # the one asked for only
    finally:
        await server.stop()


@pytest_twisted.ensureDeferred
async def test_a_room_without_history_replays_no_empty_batch(server):
    """Nothing to replay, nothing sent: an empty chathistory batch, answered after the
    store's read, could reach the client after the room's first live lines."""
    client = await server.irc("gil", "batch", "server-time")
    client.send("JOIN #quiet")
    await client.expect("366")
    await client.roundtrip("CHATHISTORY LATEST #quiet * 10")  # answered after any replay
    start = client.lines.index(next(l for l in client.lines if l.command == "366"))
    replayed = [l for l in client.lines[start:] if l.command == "BATCH" and l.params[1:2] == ["chathistory"]]
    assert len(replayed) == 1  # the CHATHISTORY reply's own (empty) batch, no replay before it


def slow_replays(server: HubServer, monkeypatch) -> list:
    """From now on each join replay's read waits until the test fires it: the list gets
    (the store's real answer, the Deferred the replay waits on) for each."""
    reads: list = []
    real = server.hub.recent_history

    def slow(user, target, limit, before=None):
        waiting: defer.Deferred = defer.Deferred()
        reads.append((real(user, target, limit, before), waiting))
        return waiting

    monkeypatch.setattr(server.hub, "recent_history", slow)
    return reads


@pytest_twisted.ensureDeferred
async def test_a_line_said_while_the_replay_is_read_comes_after_the_replay(server, monkeypatch):
    """The store answers the replay a moment after the JOIN; a line said in the room
    meanwhile is held for the joiner behind the replay, and so is any other reply."""
    watcher = await room_with_history(server, 2)
    other = await server.irc("olga", rooms=["#r"])
    reads = slow_replays(server, monkeypatch)
    client = await server.irc("hal", "batch", "server-time")
    client.send("JOIN #r")
    await client.expect("366")
    await until(lambda: reads)
    watcher.send("PRIVMSG #r :meanwhile")
    await other.expect(lambda l: l.command == "PRIVMSG" and l.params[-1] == "meanwhile")  # hal's copy is out too
    client.send("PING :after")
    answer, waiting = reads[0]
    answer.chainDeferred(waiting)
    await client.expect(lambda l: l.command == "PONG" and l.params[-1] == "after")
    after_join = client.lines[client.lines.index(next(l for l in client.lines if l.command == "366")) + 1 :]
    shown = [l for l in after_join if l.command in ("BATCH", "PRIVMSG", "PONG")]
    assert [l.command for l in shown] == ["BATCH", "PRIVMSG", "PRIVMSG", "BATCH", "PRIVMSG", "PONG"]
    assert [l.params[-1] for l in shown if l.command == "PRIVMSG"] == ["m0", "m1", "meanwhile"]


@pytest_twisted.ensureDeferred
async def test_a_replay_the_store_never_answers_holds_the_joiner_one_second_at_most(server, monkeypatch):
    """Output held for a replay is let go after ``REPLAY_WAIT`` without it; the replay, if it
    comes later, follows."""
    await room_with_history(server, 1)
    reads = slow_replays(server, monkeypatch)
    client = await server.irc("ivy", "batch", "server-time")
    client.send("JOIN #r")
    await client.expect("366")
    await until(lambda: reads)
    lines = await client.roundtrip()  # held, then let go without the replay
    assert not any(l.command == "BATCH" for l in lines)
    answer, waiting = reads[0]
    answer.chainDeferred(waiting)
    await client.expect(lambda l: l.command == "PRIVMSG" and l.params[-1] == "m0")


def after_first(lines: list, command: str) -> list:
    """The lines after the first ``command`` line."""
    return lines[lines.index(next(l for l in lines if l.command == command)) + 1 :]


def replay_texts(lines: list) -> list[tuple[str, str]]:
    """(room, text) of each PRIVMSG among ``lines``, with the BATCH lines as ("BATCH", +/-)."""
    return [("BATCH", l.params[0][0]) if l.command == "BATCH" else (l.params[0], l.params[-1])
            for l in lines if l.command in ("BATCH", "PRIVMSG")]


async def two_rooms_with_history(server: HubServer) -> tuple[IrcClient, IrcClient]:
    """#r (m0, said by tom) and #s (s0, said by sam), both stored; the IRC client that
    watched m0 arrive in #r, and olga, in both rooms, who watched s0 arrive."""
    watcher = await room_with_history(server, 1)
    other = await server.irc("olga", rooms=["#r", "#s"])
    telnet = await server.telnet("sam", rooms=["#s"])
    telnet.send("s0")
    await other.expect(lambda l: l.command == "PRIVMSG" and l.params[-1] == "s0")
    return watcher, other


@pytest_twisted.ensureDeferred
async def test_rooms_joined_in_one_command_each_get_their_replay_in_its_place(server, monkeypatch):
    """``JOIN #r,#s`` with both reads slow, the second answered first: each replay comes in
    its room's place, and a line said meanwhile after both."""
    watcher, other = await two_rooms_with_history(server)
    reads = slow_replays(server, monkeypatch)
    client = await server.irc("ned", "batch", "server-time")
    client.send("JOIN #r,#s")
    await client.expect(lambda l: l.command == "366" and l.params[1] == "#s")
    await until(lambda: len(reads) == 2)
    watcher.send("PRIVMSG #r :meanwhile")
    await other.expect(lambda l: l.command == "PRIVMSG" and l.params[-1] == "meanwhile")  # the joiner's is out too
    client.send("PING :after")
    for answer, waiting in reversed(reads):
        answer.chainDeferred(waiting)
    await client.expect(lambda l: l.command == "PONG" and l.params[-1] == "after")
    shown = replay_texts(after_first(client.lines, "366"))
    assert shown == [("BATCH", "+"), ("#r", "m0"), ("BATCH", "-"), ("BATCH", "+"), ("#s", "s0"), ("BATCH", "-"),
                     ("#r", "meanwhile")]


@pytest_twisted.ensureDeferred
async def test_a_join_while_output_is_held_gets_its_replay_in_its_own_place(server, monkeypatch):
    """A second JOIN while the first one's replay is read: its reply waits behind that
    replay and the line said before it, and its own replay follows its reply."""
    watcher, other = await two_rooms_with_history(server)
    reads = slow_replays(server, monkeypatch)
    client = await server.irc("ora", "batch", "server-time")
    client.send("JOIN #r")
    await client.expect("366")
    await until(lambda: len(reads) == 1)
    watcher.send("PRIVMSG #r :meanwhile")
    await other.expect(lambda l: l.command == "PRIVMSG" and l.params[-1] == "meanwhile")  # the joiner's is out too
    client.send("JOIN #s")
    await until(lambda: len(reads) == 2)
    client.send("PING :after")
    reads[1][0].chainDeferred(reads[1][1])  # the second is in first: it still waits for its place
    reads[0][0].chainDeferred(reads[0][1])
    await client.expect(lambda l: l.command == "PONG" and l.params[-1] == "after")
    after = after_first(client.lines, "366")
    assert [l.command for l in after if l.command in ("JOIN", "366", "PONG")] == ["JOIN", "366", "PONG"]
    second_join = after.index(next(l for l in after if l.command == "366"))
    assert replay_texts(after[:second_join]) == [("BATCH", "+"), ("#r", "m0"), ("BATCH", "-"), ("#r", "meanwhile")]
    assert replay_texts(after[second_join:]) == [("BATCH", "+"), ("#s", "s0"), ("BATCH", "-")]


@pytest_twisted.ensureDeferred
async def test_irc_over_websocket_gets_the_replay_before_a_line_said_while_it_is_read(server, monkeypatch):
    """The same hold for IRC over WebSocket, whose fan-out writes are frames made already."""
    watcher = await room_with_history(server, 1)
    other = await server.irc("olga", rooms=["#r"])
    reads = slow_replays(server, monkeypatch)
    client = await server.ws_connect(protocols=["text.ircv3.net"], json_messages=False)
    client.send_text("NICK wes")
    client.send_text("USER wes 0 * :wes")
    await client.expect(" 001 ")
    client.send_text("JOIN #r")
    await client.expect(" 366 ")
    await until(lambda: reads)
    watcher.send("PRIVMSG #r :meanwhile")
    await other.expect(lambda l: l.command == "PRIVMSG" and l.params[-1] == "meanwhile")  # the joiner's is out too
    client.send_text("PING :after")
    reads[0][0].chainDeferred(reads[0][1])
    await client.expect("PONG")
    after = client.received[client.received.index(next(l for l in client.received if " 366 " in l)) + 1 :]
    said = [l for l in after if "PRIVMSG" in l or "PONG" in l]
    words = ("m0", "meanwhile", "after")
    assert [next(w for w in words if line.endswith(w)) for line in said] == list(words)


@pytest_twisted.ensureDeferred
async def test_a_replay_read_once_later_lines_are_stored_is_the_lines_before_the_join(server, monkeypatch):
    """The replay is read once the join is answered (on a cluster node, once the JOIN is
    at its number): in a busy room the lines said since were the latest ones by then, and
    the replay (the latest lines, less those after the JOIN) came out short or empty (a
    two-node probe: 5 of 18 joins). It is the lines before the JOIN, however many came after."""
    limit = server.hub.config.history.join_replay
    watcher = await room_with_history(server, limit + 5)
    olga = await server.irc("olga", rooms=["#r"])
    held: list = []
    real = server.hub.history

    def later(*args, **kw):
        waiting: defer.Deferred = defer.Deferred()
        held.append((args, kw, waiting))
        return waiting

    monkeypatch.setattr(server.hub, "history", later)
    client = await server.irc("bob", "batch", "server-time")
    client.send("JOIN #r")
    await until(lambda: held)
    monkeypatch.setattr(server.hub, "history", real)
    for i in range(limit):
        watcher.send(f"PRIVMSG #r :after{i}")
    await olga.expect(lambda l: l.command == "PRIVMSG" and l.params[-1] == f"after{limit - 1}")  # stored
    args, kw, waiting = held[0]
    real(*args, **kw).chainDeferred(waiting)
    await client.expect(lambda l: l.command == "BATCH" and l.params[0].startswith("-"))
    _, inner = batch_of(client.lines)
    assert [l.params[-1] for l in inner] == [f"m{i}" for i in range(5, limit + 5)]
    await client.expect(lambda l: l.command == "PRIVMSG" and l.params[-1] == f"after{limit - 1}")  # then live


@pytest_twisted.ensureDeferred
async def test_the_joiners_own_join_has_the_msgid_history_and_the_others_have(server):
    """The joiner was shown its JOIN with an id of its own, not the JOIN's: history did not
    know it (CHATHISTORY AFTER msgid=<it>: no such message) and other members saw another."""
    watcher = await server.irc("wendy", "message-tags", rooms=["#r"])
    client = await server.irc("jo", "message-tags", "batch", "server-time", "draft/chathistory")
    client.send("JOIN #r")
    own = await client.expect(lambda l: l.command == "JOIN")
    seen = await watcher.expect(lambda l: l.command == "JOIN" and l.source.startswith("jo!"))
    assert own.tags["msgid"] == seen.tags["msgid"] and own.tags["time"] == seen.tags.get("time", own.tags["time"])
    watcher.send("PRIVMSG #r :after the join")
    await client.expect(lambda l: l.command == "PRIVMSG" and l.params[-1] == "after the join")
    start = client.cursor
    client.send(f"CHATHISTORY AFTER #r msgid={own.tags['msgid']} 10")
    answer = await client.expect(lambda l: l.command == "FAIL" or (l.command == "BATCH" and l.params[0][0] == "-"))
    assert answer.command == "BATCH", answer
    _, inner = batch_of(client.lines[start:])
    assert [l.params[-1] for l in inner if l.command == "PRIVMSG"] == ["after the join"]


@pytest_twisted.ensureDeferred
async def test_a_line_said_in_the_millisecond_of_the_join_is_replayed(server, monkeypatch):
    """A lone node shows a JOIN before its commit, so the replay reads what was stored before
    the JOIN's time: a line said in the JOIN's own millisecond, just before it, was in neither
    the replay nor live (a telnet test of the full suite, once in a run). It is replayed."""
    watcher = await room_with_history(server, 1)
    frozen = server.hub.ids._clock()
    monkeypatch.setattr(server.hub.ids, "_clock", lambda: frozen)  # every event in one millisecond
    watcher.send("PRIVMSG #r :same millisecond")
    tom = server.clients[0]  # the telnet user of ``room_with_history``, shown it once stored
    await tom.expect_re(r"<watcher> same millisecond$")
    client = await server.irc("carl")
    client.send("JOIN #r")
    await client.expect(lambda l: l.command == "PRIVMSG" and l.params[-1].endswith("] same millisecond"))
    tina = await server.telnet("tina")
    tina.send("/join #r")
    await tina.expect_re(r"^\d\d:\d\d \[#r\] <watcher> same millisecond$")
