"""IRCv3 draft/chathistory over real sockets: an in-process hub on a real SQLite store.

Each test starts ``tests.support.history_server``: a ``ChatHub`` with an ``SqliteStore`` in
``tmp_path``, the store-backed account checker in the portal, every protocol on 127.0.0.1
port 0. Clients are Twisted line protocols parsed with irctokens; every wait is on a line,
with a timeout. The hub's event clock steps one second per event, so timestamp references
are exact.
"""
from __future__ import annotations

import time

import irctokens
import pytest
import pytest_twisted

from chathub.events import iso_time
from tests.support import ALL_CAPS, HubServer, IrcClient, history, irc_user, join_irc, offered_caps


@pytest.fixture
def server(history_hub):
    return history_hub


async def connect(server: HubServer) -> IrcClient:
    return await server.connect("irc")


join = join_irc


async def say(client: IrcClient, target: str, text: str) -> irctokens.Line:
    """PRIVMSG and its echo (the client has echo-message): the line as everyone saw it."""
    client.send(f"PRIVMSG {target} :{text}")
    return await client.expect(lambda l: l.command == "PRIVMSG" and l.params[-1] == text)


def texts(lines) -> list[str]:
    return [l.params[-1] for l in lines]


async def chat(client: IrcClient, target: str, count: int, prefix: str = "m") -> list[irctokens.Line]:
    return [await say(client, target, f"{prefix}{i}") for i in range(count)]


# -- the subcommands ----------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_isupport_and_caps_advertise_history(server):
    client = await connect(server)
    offered = await offered_caps(client)
    assert offered["draft/chathistory"] == "" and offered["draft/event-playback"] == ""
    client.send("NICK probe")
    client.send("USER probe 0 * :probe")
    client.send("CAP END")
    await client.expect("001")
    tokens = set()
    for line in await client.roundtrip():
        if line.command == "005":
            tokens.update(line.params[1:-1])
    assert "CHATHISTORY=20" in tokens
    assert "MSGREFTYPES=msgid,timestamp" in tokens


@pytest_twisted.ensureDeferred
async def test_latest_returns_the_lines_seen_live_with_msgid_and_time(server):
    alice = await irc_user(server, "alice", rooms=["#chat"])
    sent = await chat(alice, "#chat", 5)
    params, lines = await history(alice, "CHATHISTORY LATEST #chat * 10")
    assert params == ["#chat"]
    for live, replayed in zip(sent, lines, strict=True):
        assert replayed.tags["msgid"] == live.tags["msgid"]
        assert replayed.tags["time"] == live.tags["time"]
        assert replayed.source == live.source
        assert (replayed.command, replayed.params) == (live.command, live.params)
    # the limit keeps the newest
    _, lines = await history(alice, "CHATHISTORY LATEST #chat * 2")
    assert texts(lines) == ["m3", "m4"]
    # LATEST after a reference: only what came after it (exclusive), newest first kept
    _, lines = await history(alice, f"CHATHISTORY LATEST #chat msgid={sent[1].tags['msgid']} 10")
    assert texts(lines) == ["m2", "m3", "m4"]
    _, lines = await history(alice, f"CHATHISTORY LATEST #chat timestamp={sent[3].tags['time']} 10")
    assert texts(lines) == ["m4"]


@pytest_twisted.ensureDeferred
async def test_before_after_between_around_paging(server):
    alice = await irc_user(server, "alice", rooms=["#chat"])
    sent = await chat(alice, "#chat", 10)
    ids = [l.tags["msgid"] for l in sent]
    times = [l.tags["time"] for l in sent]

    _, lines = await history(alice, f"CHATHISTORY BEFORE #chat msgid={ids[6]} 20")
    assert texts(lines) == [f"m{i}" for i in range(6)]
    _, lines = await history(alice, f"CHATHISTORY BEFORE #chat timestamp={times[6]} 2")
    assert texts(lines) == ["m4", "m5"]
    # before the oldest: an empty batch, not an error
    params, lines = await history(alice, f"CHATHISTORY BEFORE #chat msgid={ids[0]} 20")
    assert params == ["#chat"] and lines == []

    _, lines = await history(alice, f"CHATHISTORY AFTER #chat msgid={ids[3]} 3")
    assert texts(lines) == ["m4", "m5", "m6"]
    _, lines = await history(alice, f"CHATHISTORY AFTER #chat timestamp={times[3]} 20")
    assert texts(lines) == [f"m{i}" for i in range(4, 10)]
    _, lines = await history(alice, f"CHATHISTORY AFTER #chat msgid={ids[9]} 20")
    assert lines == []

    # BETWEEN: exclusive at both ends, counted from the first reference, either direction
    _, lines = await history(alice, f"CHATHISTORY BETWEEN #chat msgid={ids[0]} msgid={ids[9]} 20")
    assert texts(lines) == [f"m{i}" for i in range(1, 9)]
    _, lines = await history(alice, f"CHATHISTORY BETWEEN #chat msgid={ids[0]} msgid={ids[9]} 3")
    assert texts(lines) == ["m1", "m2", "m3"]
    _, lines = await history(alice, f"CHATHISTORY BETWEEN #chat msgid={ids[9]} msgid={ids[0]} 3")
    assert texts(lines) == ["m6", "m7", "m8"]
    _, lines = await history(alice, f"CHATHISTORY BETWEEN #chat timestamp={times[9]} timestamp={times[0]} 20")
    assert texts(lines) == [f"m{i}" for i in range(1, 9)]

    # AROUND a msgid: centred on it, the message itself included
    _, lines = await history(alice, f"CHATHISTORY AROUND #chat msgid={ids[7]} 1")
    assert texts(lines) == ["m7"]
    _, lines = await history(alice, f"CHATHISTORY AROUND #chat msgid={ids[7]} 3")
    assert texts(lines) == ["m6", "m7", "m8"]
    _, lines = await history(alice, f"CHATHISTORY AROUND #chat timestamp={times[7]} 3")
    assert "m7" in texts(lines) and len(lines) == 3
    # near the end the window shifts rather than shrinks
    _, lines = await history(alice, f"CHATHISTORY AROUND #chat msgid={ids[9]} 3")
    assert texts(lines) == ["m7", "m8", "m9"]


@pytest_twisted.ensureDeferred
async def test_limits_are_capped_at_the_query_limit(server):
    alice = await irc_user(server, "alice", rooms=["#chat"])
    await chat(alice, "#chat", 25)
    _, lines = await history(alice, "CHATHISTORY LATEST #chat * 1000")
    assert len(lines) == 20 and texts(lines)[-1] == "m24" and texts(lines)[0] == "m5"
    _, lines = await history(alice, "CHATHISTORY LATEST #chat * 0")
    assert len(lines) == 20


@pytest_twisted.ensureDeferred
async def test_private_conversation_history_is_for_its_two_parties(server):
    alice = await irc_user(server, "alice")
    bob = await irc_user(server, "bob")
    eve = await irc_user(server, "eve")
    await say(alice, "bob", "hello bob")
    await bob.expect(lambda l: l.command == "PRIVMSG" and l.params[-1] == "hello bob")
    await say(bob, "alice", "hi alice")
    params, lines = await history(alice, "CHATHISTORY LATEST BOB * 10")
    assert params == ["BOB"]  # the target as the client named it
    assert [(l.hostmask.nickname, l.params[0], l.params[1]) for l in lines] == [
        ("alice", "bob", "hello bob"),
        ("bob", "alice", "hi alice"),
    ]
    _, lines = await history(bob, "CHATHISTORY LATEST alice * 10")
    assert texts(lines) == ["hello bob", "hi alice"]
    _, lines = await history(eve, "CHATHISTORY LATEST alice * 10")
    assert lines == []
    # notes to oneself are a conversation too, seen once
    await say(eve, "eve", "note to self")
    _, lines = await history(eve, "CHATHISTORY LATEST eve * 10")
    assert texts(lines) == ["note to self"]
    # and the conversation outlives the other party's connection
    bob.send("QUIT")
    await bob.closed
    _, lines = await history(alice, "CHATHISTORY LATEST bob * 10")
    assert texts(lines) == ["hello bob", "hi alice"]


@pytest_twisted.ensureDeferred
async def test_a_guests_private_history_is_one_conversation_across_its_nick_change(server):
    """A guest's talk is its connection's: after NICK, CHATHISTORY with the other party, by
    either side and under either nick, reads the talk before and after the change as one
    (before, a nick change began a new conversation: only what followed it came back)."""
    alice = await irc_user(server, "alice")
    bob = await irc_user(server, "bob")
    await say(alice, "bob", "before")
    await bob.expect(lambda l: l.command == "PRIVMSG" and l.params[-1] == "before")
    alice.send("NICK alice2")
    await alice.expect(lambda l: l.command == "NICK" and l.params[0] == "alice2")
    await say(alice, "bob", "after")
    await bob.expect(lambda l: l.command == "PRIVMSG" and l.params[-1] == "after")
    await say(bob, "alice2", "answer")
    _, lines = await history(alice, "CHATHISTORY LATEST bob * 10")
    assert [(l.hostmask.nickname, texts([l])[0]) for l in lines] == [
        ("alice", "before"), ("alice2", "after"), ("bob", "answer")]
    for nick in ("alice2", "alice"):
        _, lines = await history(bob, f"CHATHISTORY LATEST {nick} * 10")
        assert texts(lines) == ["before", "after", "answer"], nick


@pytest_twisted.ensureDeferred
async def test_targets_lists_rooms_and_private_conversations(server):
    alice = await irc_user(server, "alice", rooms=["#one", "#two"])
    bob = await irc_user(server, "bob", rooms=["#two"])
    first = await say(alice, "#one", "in one")
    await say(bob, "alice", "psst")
    await say(alice, "#two", "in two")
    last = await say(bob, "#two", "bob in two")
    start = iso_time(time.time() - 7200)
    end = iso_time(time.time() + 60)
    params, lines = await history(alice, f"CHATHISTORY TARGETS timestamp={start} timestamp={end} 10", "draft/chathistory-targets")
    assert params == []
    assert [l.params[:2] for l in lines] == [["TARGETS", "#one"], ["TARGETS", "bob"], ["TARGETS", "#two"]]
    assert lines[0].params[2] == first.tags["time"] and lines[2].params[2] == last.tags["time"]
    # bob is not in #one: it is not listed for him
    _, lines = await history(bob, f"CHATHISTORY TARGETS timestamp={start} timestamp={end} 10", "draft/chathistory-targets")
    assert [l.params[1] for l in lines] == ["alice", "#two"]
    _, lines = await history(alice, f"CHATHISTORY TARGETS timestamp={end} timestamp={start} 1", "draft/chathistory-targets")
    assert [l.params[1] for l in lines] == ["#two"]


# -- event playback -----------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_event_playback_adds_joins_topics_modes_and_tagmsg(server):
    alice = await irc_user(server, "alice", caps=ALL_CAPS + ["draft/event-playback"], rooms=["#chat"])
    plain = await irc_user(server, "plain", rooms=["#chat"])
    await alice.roundtrip("TOPIC #chat :a topic")
    await say(alice, "#chat", "hello")
    await alice.roundtrip("MODE #chat +v plain")
    await alice.roundtrip("@+typing=active TAGMSG #chat")
    await plain.roundtrip("PART #chat :gone")
    # events are stored in order but not waited for; a message is (delivered once
    # committed), so once its echo is here everything before it is in the store too
    await say(alice, "#chat", "after")
    _, lines = await history(alice, "CHATHISTORY LATEST #chat * 20")
    commands = [l.command for l in lines]
    assert commands == ["JOIN", "JOIN", "TOPIC", "PRIVMSG", "MODE", "TAGMSG", "PART", "PRIVMSG"], alice.dump()
    assert lines[2].params == ["#chat", "a topic"]
    assert lines[4].params == ["#chat", "+v", "plain"]
    assert lines[5].tags["+typing"] == "active"
    assert lines[6].params == ["#chat", "gone"] and lines[6].hostmask.nickname == "plain"
    # without event-playback only PRIVMSG and NOTICE, and the limit counts only those
    rejoined = await irc_user(server, "other", rooms=["#chat"])
    _, lines = await history(rejoined, "CHATHISTORY LATEST #chat * 1")
    assert [l.command for l in lines] == ["PRIVMSG"]


# -- refusals -------------------------------------------------------------------------------


def fails(lines) -> list[list[str]]:
    return [l.params for l in lines if l.command == "FAIL"]


@pytest_twisted.ensureDeferred
async def test_bad_parameters_get_standard_replies(server):
    alice = await irc_user(server, "alice", rooms=["#chat"])
    await say(alice, "#chat", "m0")

    async def fail_of(command):
        lines = await alice.roundtrip(command)
        assert len(lines) == 1 and lines[0].command == "FAIL", alice.dump()
        return lines[0].params

    assert (await fail_of("CHATHISTORY"))[:3] == ["CHATHISTORY", "INVALID_PARAMS", "*"]
    assert (await fail_of("CHATHISTORY FROB #chat * 10"))[:3] == ["CHATHISTORY", "INVALID_PARAMS", "FROB"]
    assert (await fail_of("CHATHISTORY LATEST #chat *"))[:3] == ["CHATHISTORY", "INVALID_PARAMS", "LATEST"]
    assert (await fail_of("CHATHISTORY LATEST #chat * 10 extra"))[:3] == ["CHATHISTORY", "INVALID_PARAMS", "LATEST"]
    assert (await fail_of("CHATHISTORY LATEST #chat * ten"))[:4] == ["CHATHISTORY", "INVALID_PARAMS", "LATEST", "ten"]
    assert (await fail_of("CHATHISTORY LATEST #chat * -5"))[:3] == ["CHATHISTORY", "INVALID_PARAMS", "LATEST"]
    assert (await fail_of("CHATHISTORY BEFORE #chat timestamp=yesterday 10"))[:4] == [
        "CHATHISTORY", "INVALID_PARAMS", "BEFORE", "timestamp=yesterday"
    ]
    assert (await fail_of("CHATHISTORY AFTER #chat * 10"))[:3] == ["CHATHISTORY", "INVALID_PARAMS", "AFTER"]
    assert (await fail_of("CHATHISTORY AFTER #chat 12345 10"))[:3] == ["CHATHISTORY", "INVALID_PARAMS", "AFTER"]
    assert (await fail_of("CHATHISTORY AFTER #chat seq=4 10"))[:3] == ["CHATHISTORY", "INVALID_MSGREFTYPE", "AFTER"]
    assert (await fail_of("CHATHISTORY BETWEEN #chat msgid=a 10"))[:3] == ["CHATHISTORY", "INVALID_PARAMS", "BETWEEN"]
    assert (await fail_of("CHATHISTORY TARGETS msgid=abc timestamp=2020-01-01T00:00:00.000Z 10"))[:3] == [
        "CHATHISTORY", "INVALID_PARAMS", "TARGETS"
    ]
    # an unknown msgid names no message here: MESSAGE_ERROR, whether or not it exists elsewhere
    assert (await fail_of("CHATHISTORY BEFORE #chat msgid=nosuchid 10"))[:4] == [
        "CHATHISTORY", "MESSAGE_ERROR", "BEFORE", "#chat"
    ]
    # rooms one is not in, rooms that do not exist, and nonsense are INVALID_TARGET
    bob = await irc_user(server, "bob", rooms=["#secret"])
    await say(bob, "#secret", "private plans")
    for target in ("#secret", "#nowhere", "bad,target", "NickServ"):
        params = await fail_of(f"CHATHISTORY LATEST {target} * 10")
        assert params[:4] == ["CHATHISTORY", "INVALID_TARGET", "LATEST", target]
    # a msgid from a room one cannot read is refused the same way as a wrong one
    secret = (await history(bob, "CHATHISTORY LATEST #secret * 1"))[1][0].tags["msgid"]
    assert (await fail_of(f"CHATHISTORY AROUND #chat msgid={secret} 10"))[1] == "MESSAGE_ERROR"
    # the connection is still fine
    _, lines = await history(alice, "CHATHISTORY LATEST #chat * 10")
    assert texts(lines) == ["m0"]


@pytest_twisted.ensureDeferred
async def test_labeled_response_wraps_the_history_batch(server):
    alice = await irc_user(server, "alice", rooms=["#chat"])
    await chat(alice, "#chat", 2)
    lines = await alice.labeled("CHATHISTORY LATEST #chat * 10")
    outer = lines[0]
    assert outer.command == "BATCH" and outer.params[1] == "labeled-response"
    ref = outer.params[0][1:]
    inner_start = lines[1]
    assert inner_start.command == "BATCH" and inner_start.params[1:] == ["chathistory", "#chat"]
    assert inner_start.tags["batch"] == ref
    inner = inner_start.params[0][1:]
    assert [l.tags["batch"] for l in lines[2:4]] == [inner, inner]
    assert texts(lines[2:4]) == ["m0", "m1"]
    assert lines[4].params == [f"-{inner}"] and lines[4].tags["batch"] == ref
    assert lines[5].params == [f"-{ref}"] and len(lines) == 6
    # a refusal is one labeled FAIL
    (fail,) = await alice.labeled("CHATHISTORY LATEST #nowhere * 10")
    assert fail.command == "FAIL" and fail.params[1] == "INVALID_TARGET"


@pytest_twisted.ensureDeferred
async def test_without_batch_the_lines_come_unbatched(server):
    alice = await irc_user(server, "alice", caps=["server-time", "message-tags"], rooms=["#chat"])
    bob = await irc_user(server, "bob", rooms=["#chat"])
    for i in range(3):
        bob.send(f"PRIVMSG #chat :b{i}")
    await alice.expect(lambda l: l.params[-1:] == ["b2"])
    lines = await alice.roundtrip("CHATHISTORY LATEST #chat * 10")
    assert [l.command for l in lines] == ["PRIVMSG"] * 3
    assert texts(lines) == ["b0", "b1", "b2"] and all("batch" not in l.tags for l in lines)
    assert all("msgid" in l.tags and "time" in l.tags for l in lines)
    # no tags at all for a client without tag capabilities
    bare = await irc_user(server, "bare", caps=[], rooms=["#chat"])
    lines = await bare.roundtrip("CHATHISTORY LATEST #chat * 1")
    # the join replay (tests/test_irc_join_replay.py) came first: bare has no draft/chathistory
    assert lines[-1].format() == f":bob!~bob@{server.host} PRIVMSG #chat b2"


@pytest_twisted.ensureDeferred
async def test_account_tag_on_replayed_lines(server):
    await server.accounts.create_account("carol", "carolpass")
    carol = await irc_user(server, "carol", caps=ALL_CAPS + ["account-tag"], password="carolpass", rooms=["#chat"])
    await say(carol, "#chat", "signed")
    _, lines = await history(carol, "CHATHISTORY LATEST #chat * 1")
    assert lines[0].tags["account"] == "carol"
    other = await irc_user(server, "other", rooms=["#chat"])
    _, lines = await history(other, "CHATHISTORY LATEST #chat * 1")
    assert "account" not in lines[0].tags


# -- one history for every protocol ---------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_one_history_seen_from_irc_telnet_and_the_web(server):
    alice = await irc_user(server, "alice", rooms=["#mix"])
    tom = await server.telnet("tom", rooms=["#mix"])
    await alice.expect(lambda l: l.command == "JOIN" and l.hostmask.nickname == "tom")

    seen = [await say(alice, "#mix", "hello from IRC")]  # the echo: as everyone saw it
    await tom.expect_re(r"^\[#mix\] <alice> hello from IRC$")
    tom.send("hello from telnet")
    seen.append(await alice.expect(lambda l: l.command == "PRIVMSG" and l.params[-1] == "hello from telnet"))
    tom.send("/me waves")
    seen.append(await alice.expect(lambda l: l.command == "PRIVMSG" and "waves" in l.params[-1]))
    seen.append(await say(alice, "#mix", "bye from IRC"))
    await tom.expect_re(r"<alice> bye from IRC$")

    _, lines = await history(alice, "CHATHISTORY LATEST #mix * 10")
    assert [(l.source, l.params, l.tags["msgid"], l.tags["time"]) for l in lines] == [
        (l.source, l.params, l.tags["msgid"], l.tags["time"]) for l in seen
    ]
    assert lines[1].source.startswith("tom!") and lines[2].params[-1] == "\x01ACTION waves\x01"

    # a telnet user joining later gets the same lines replayed
    tina = await server.telnet("tina", rooms=["#mix"])
    await tina.expect_re(r"^\* last 4 messages in #mix:$")
    replayed = [await tina.expect_re(r"^\d\d:\d\d ") for _ in range(4)]
    assert [line[6:] for line in replayed] == [
        "[#mix] <alice> hello from IRC",
        "[#mix] <tom> hello from telnet",
        "[#mix] * tom waves",
        "[#mix] <alice> bye from IRC",
    ]
    # and a web (chathub.v1) user asking for the room's history gets the same ids
    web = await server.ws("wendy", rooms=["#mix"])
    web.send_json({"type": "history", "target": "#mix", "limit": 10, "ref": "h"})
    page = await web.expect({"type": "history", "ref": "h"})
    assert [e["id"] for e in page["events"]] == [l.tags["msgid"] for l in seen]
    assert [e["from"]["nick"] for e in page["events"]] == ["alice", "tom", "tom", "alice"]
    web.send_json({"type": "quit"})
    for telnet in (tom, tina):
        telnet.send("/quit")
        await telnet.closed


# -- when history cannot be read --------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_disabled_or_failing_history_is_a_message_error(server, tmp_path):
    import sqlite3

    alice = await irc_user(server, "alice", rooms=["#chat"])
    await say(alice, "#chat", "kept")
    server.hub.history_enabled = False
    lines = await alice.roundtrip("CHATHISTORY LATEST #chat * 10")
    assert [l.params[:4] for l in lines] == [["CHATHISTORY", "MESSAGE_ERROR", "LATEST", "#chat"]]
    server.hub.history_enabled = True
    # the database breaks under the running server: the failure is surfaced (and logged,
    # with its traceback, up to the end of the test)
    server.check_tracebacks = False
    with sqlite3.connect(tmp_path / "chathub.sqlite3") as db:
        db.execute("DROP TABLE conversation_events")
    lines = await alice.roundtrip("CHATHISTORY LATEST #chat * 10")
    assert [l.params[:4] for l in lines] == [["CHATHISTORY", "MESSAGE_ERROR", "LATEST", "#chat"]]
    lines = await alice.roundtrip(f"CHATHISTORY TARGETS timestamp={iso_time(0)} timestamp={iso_time(time.time())} 5")
    assert [l.params[:3] for l in lines] == [["CHATHISTORY", "MESSAGE_ERROR", "TARGETS"]]
    assert (await alice.roundtrip("CHATHISTORY LATEST #nowhere * 1"))[0].params[1] == "INVALID_TARGET"
