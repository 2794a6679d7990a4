"""IRCv3 draft/message-redaction over real sockets, every protocol in one room (issue 16, item 1).

``history_hub`` is a hub on a real SQLite store serving IRC, telnet and chathub.v1 on
127.0.0.1 port 0. In the room: an IRC client with ``draft/message-redaction``, one without
it, a telnet user and a chathub.v1 WebSocket user. A redaction reaches the first as REDACT,
the second not at all, the telnet user as a line naming whose message it was, the web user
as a ``redact`` event; history (CHATHISTORY, web history, telnet's join replay, the database
itself) keeps no trace of the text. Every wait is on a line or a message, with a timeout.
"""
from __future__ import annotations

import sqlite3

import irctokens
import pytest_twisted

from tests.support import ALL_CAPS, HubServer, IrcClient, history

ROOM = "#redact"
REDACTION = "draft/message-redaction"
#: an IRC client with the capability (and what reading history and its own msgids need)
WITH_CAP = [*ALL_CAPS, REDACTION]
#: one without it: it sees msgids, but never a REDACT
WITHOUT_CAP = ["message-tags", "echo-message", "batch", "server-time", "labeled-response"]


async def say(client: IrcClient, target: str, text: str) -> irctokens.Line:
    """PRIVMSG and its echo (the client has echo-message): the line everyone saw."""
    client.send(f"PRIVMSG {target} :{text}")
    return await client.expect(lambda l: l.command == "PRIVMSG" and l.params[-1] == text)


def is_redact(msgid: str):
    return lambda l: l.command == "REDACT" and l.params[1] == msgid


def fail_of(lines: list[irctokens.Line]) -> list[str]:
    fails = [l for l in lines if l.command == "FAIL"]
    assert len(fails) == 1, [l.format() for l in lines]
    return fails[0].params[:-1]


def stored_bodies(server: HubServer) -> list[str]:
    """Every stored event's body, read from the SQLite file itself."""
    with sqlite3.connect(server.store.path) as db:
        return [row[0] for row in db.execute("SELECT body FROM conversation_events")]


async def room_of_four(server: HubServer):
    """op (IRC, with the capability, the room's operator), plain (IRC, without it), tel
    (telnet) and web (chathub.v1), all in ROOM."""
    op = await server.irc("op", *WITH_CAP, rooms=[ROOM])
    plain = await server.irc("plain", *WITHOUT_CAP, rooms=[ROOM])
    tel = await server.telnet("tel", rooms=[ROOM])
    web = await server.ws("web", rooms=[ROOM])
    return op, plain, tel, web


@pytest_twisted.ensureDeferred
async def test_a_redaction_reaches_each_protocol_in_its_terms_and_history_loses_the_text(history_hub):
    server = history_hub
    op, plain, tel, web = await room_of_four(server)
    writer = await server.irc("writer", *WITH_CAP, rooms=[ROOM])
    await op.expect(lambda l: l.command == "JOIN" and l.source.startswith("writer!"))

    line = await say(writer, ROOM, "a secret to take back")
    msgid = line.tags["msgid"]
    await plain.expect(lambda l: l.command == "PRIVMSG" and l.tags.get("msgid") == msgid)
    await tel.expect_re(r"<writer> a secret to take back$")
    await web.expect({"type": "message", "id": msgid})

    # the sender takes it back: the REDACT comes with a label, once stored
    reply = await writer.labeled(f"REDACT {ROOM} {msgid} :oops")
    assert [(l.command, l.params) for l in reply] == [("REDACT", [ROOM, msgid, "oops"])]
    assert reply[0].source.startswith("writer!") and reply[0].tags["msgid"] != msgid
    redact_id = reply[0].tags["msgid"]
    seen = await op.expect(is_redact(msgid))
    assert seen.params == [ROOM, msgid, "oops"] and seen.tags["msgid"] == redact_id
    assert await tel.expect_re(r"deleted") == f"* writer deleted a message of writer in {ROOM} (oops)"
    event = await web.expect({"type": "redact"})
    assert event["id"] == redact_id and event["msgid"] == msgid and event["target"] == ROOM
    assert event["from"]["nick"] == "writer" and event["sender"] == "writer" and event["reason"] == "oops"
    # a client without the capability is told nothing: a line sent after the REDACT comes first
    await say(writer, ROOM, "after the redaction")
    await plain.expect(lambda l: l.command == "PRIVMSG" and l.params[-1] == "after the redaction")
    assert not [l for l in plain.lines if l.command == "REDACT"]

    # history: IRC leaves the message out, the web gets a placeholder, nobody gets the text
    _, lines = await history(op, f"CHATHISTORY LATEST {ROOM} * 10")
    assert [l.params[-1] for l in lines if l.command == "PRIVMSG"] == ["after the redaction"]
    web.send_json({"type": "history", "target": ROOM, "ref": 7})
    page = await web.expect({"type": "history", "ref": 7})
    taken = [e for e in page["events"] if e["id"] == msgid]
    assert len(taken) == 1 and taken[0]["text"] == ""
    assert taken[0]["redacted"]["by"] == "writer" and taken[0]["redacted"]["reason"] == "oops"
    assert taken[0]["redacted"]["id"] == redact_id
    late = await server.telnet("late", rooms=[ROOM])  # its join replay
    replayed = await late.expect_re(r"<writer> ")
    assert replayed.endswith(f"[{ROOM}] <writer> (message deleted)"), replayed
    bodies = stored_bodies(server)
    assert not [b for b in bodies if "a secret to take back" in b]
    assert any(f'"id":"{redact_id}"' in b and '"kind":"redact"' in b for b in bodies)


@pytest_twisted.ensureDeferred
async def test_operators_may_redact_others_messages_and_others_may_not(history_hub):
    server = history_hub
    op, plain, tel, web = await room_of_four(server)

    tel.send(f"/msg {ROOM} from telnet")
    line = await op.expect(lambda l: l.command == "PRIVMSG" and l.params[-1] == "from telnet")
    msgid = line.tags["msgid"]
    # a member who is no operator may not take back someone else's message, on any protocol
    lines = await plain.roundtrip(f"REDACT {ROOM} {msgid} :mine now")
    assert fail_of(lines) == ["REDACT", "REDACT_FORBIDDEN", ROOM, msgid]
    web.send_json({"type": "redact", "target": ROOM, "msgid": msgid, "ref": 3})
    refused = await web.expect({"type": "error", "ref": 3})
    assert refused["code"] == "redact_forbidden"

    # the room's operator may
    op.send(f"REDACT {ROOM} {msgid} :spam")
    mine = await op.expect(is_redact(msgid))
    assert mine.source.startswith("op!") and mine.params == [ROOM, msgid, "spam"]
    assert await tel.expect_re(r"deleted") == f"* op deleted a message of tel in {ROOM} (spam)"
    await web.expect({"type": "redact", "msgid": msgid})
    # once taken back it is gone: a second redaction finds nothing
    lines = await op.roundtrip(f"REDACT {ROOM} {msgid} :again")
    assert fail_of(lines) == ["REDACT", "UNKNOWN_MSGID", ROOM, msgid]


@pytest_twisted.ensureDeferred
async def test_a_web_user_redacts_its_own_message(history_hub):
    server = history_hub
    op, plain, tel, web = await room_of_four(server)
    web.send_json({"type": "message", "target": ROOM, "text": "typed on the web", "ref": 1})
    sent = await web.expect({"type": "message", "text": "typed on the web"})
    await tel.expect_re(r"<web> typed on the web$")

    web.send_json({"type": "redact", "target": ROOM, "msgid": sent["id"], "ref": 2})
    event = await web.expect({"type": "redact", "msgid": sent["id"]})  # its own, like every event
    ok = await web.expect({"type": "ok", "ref": 2})
    assert ok["request"] == "redact" and ok["id"] == event["id"]
    assert "reason" in event and event["reason"] == ""
    line = await op.expect(is_redact(sent["id"]))
    assert line.params == [ROOM, sent["id"]]  # no reason given, none sent
    assert await tel.expect_re(r"deleted") == f"* web deleted a message of web in {ROOM}"


@pytest_twisted.ensureDeferred
async def test_refusals_name_the_specifications_codes(history_hub):
    server = history_hub
    op, plain, tel, web = await room_of_four(server)
    msgid = (await say(op, ROOM, "a message")).tags["msgid"]

    lines = await op.roundtrip(f"REDACT {ROOM} 0000000000000000000000 :oops")
    assert fail_of(lines) == ["REDACT", "UNKNOWN_MSGID", ROOM, "0000000000000000000000"]
    # the right id in the wrong room is no message of that room
    op.send("JOIN #other")
    await op.expect(lambda l: l.command == "366")
    lines = await op.roundtrip(f"REDACT #other {msgid} :oops")
    assert fail_of(lines) == ["REDACT", "UNKNOWN_MSGID", "#other", msgid]
    # nor may one redact in a room one is not in (nor learn whether the id is there)
    lines = await plain.roundtrip(f"REDACT #other {msgid} :oops")
    assert fail_of(lines) == ["REDACT", "INVALID_TARGET", "#other"]
    lines = await plain.roundtrip(f"REDACT #nowhere {msgid}")
    assert fail_of(lines) == ["REDACT", "INVALID_TARGET", "#nowhere"]
    # a join is no message
    join_id = next(l.tags["msgid"] for l in op.lines if l.command == "JOIN" and l.params[0] == "#other")
    lines = await op.roundtrip(f"REDACT #other {join_id}")
    assert fail_of(lines) == ["REDACT", "UNKNOWN_MSGID", "#other", join_id]
    lines = await op.roundtrip("REDACT")
    assert [l.command for l in lines] == ["461"]
    assert not [l for l in plain.lines + op.lines if l.command == "REDACT"]


@pytest_twisted.ensureDeferred
async def test_a_private_message_is_redacted_by_its_sender_only(history_hub):
    server = history_hub
    reader = await server.irc("reader", *WITH_CAP)
    web = await server.ws("webby")
    tel = await server.telnet("telly")

    web.send_json({"type": "message", "target": "reader", "text": "private words", "ref": 1})
    sent = await web.expect({"type": "message", "text": "private words"})
    line = await reader.expect(lambda l: l.command == "PRIVMSG" and l.params[-1] == "private words")
    msgid = line.tags["msgid"]
    assert msgid == sent["id"]
    # the recipient may not take it back, nor may a third party (who finds nothing at all)
    lines = await reader.roundtrip(f"REDACT webby {msgid} :no")
    assert fail_of(lines) == ["REDACT", "REDACT_FORBIDDEN", "webby", msgid]
    third = await server.irc("third", *WITH_CAP)
    lines = await third.roundtrip(f"REDACT webby {msgid} :no")
    assert fail_of(lines) == ["REDACT", "UNKNOWN_MSGID", "webby", msgid]

    web.send_json({"type": "redact", "target": "reader", "msgid": msgid, "reason": "wrong person", "ref": 2})
    event = await web.expect({"type": "redact", "msgid": msgid})
    assert event["target"] == "reader"
    seen = await reader.expect(is_redact(msgid))
    assert seen.params == ["reader", msgid, "wrong person"] and seen.source.startswith("webby!")
    _, lines = await history(reader, "CHATHISTORY LATEST webby * 10")
    assert [l for l in lines if l.command == "PRIVMSG"] == []

    # telnet: a private message taken back shows where it was
    tel.send("/msg reader for your eyes")
    line = await reader.expect(lambda l: l.command == "PRIVMSG" and l.params[-1] == "for your eyes")
    await tel.expect_re(r"^-> reader: for your eyes$")
    reader.send("PRIVMSG telly :to take back")
    mine = await reader.expect(lambda l: l.command == "PRIVMSG" and l.params[-1] == "to take back")
    await tel.expect_re(r"^<- reader: to take back$")
    reader.send(f"REDACT telly {mine.tags['msgid']}")
    await reader.expect(is_redact(mine.tags["msgid"]))
    assert await tel.expect_re(r"deleted") == "* reader deleted a message of reader"
    assert not [b for b in stored_bodies(server) if "private words" in b or "to take back" in b]


@pytest_twisted.ensureDeferred
async def test_event_playback_clients_get_the_redact_in_history(history_hub):
    server = history_hub
    op = await server.irc("op", *WITH_CAP, "draft/event-playback", rooms=[ROOM])
    old = await server.irc("old", *ALL_CAPS, "draft/event-playback", rooms=[ROOM])
    msgid = (await say(op, ROOM, "soon gone")).tags["msgid"]
    op.send(f"REDACT {ROOM} {msgid} :gone")
    await op.expect(is_redact(msgid))
    _, lines = await history(op, f"CHATHISTORY LATEST {ROOM} * 10")
    assert [l.params for l in lines if l.command in ("PRIVMSG", "REDACT")] == [[ROOM, msgid, "gone"]]
    # without the capability the REDACT is no line at all
    _, lines = await history(old, f"CHATHISTORY LATEST {ROOM} * 10")
    assert [l.command for l in lines if l.command in ("PRIVMSG", "REDACT")] == []


@pytest_twisted.ensureDeferred
async def test_the_capability_is_offered(history_hub):
    client = await history_hub.connect("irc")
    client.send("CAP LS 302")
    ls = await client.expect("CAP")
    assert REDACTION in ls.params[-1].split()
