"""Long messages and messages of several lines cross every protocol whole (issue 13, item 2).

A telnet line of 1,004 characters used to reach an IRC client cut to about 455. Here:
the splitter and the IRC rendering for any text (Hypothesis); then over real sockets, with
telnet, IRC clients with and without ``draft/multiline`` and a chathub.v1 client in one
room: long messages at and around the one-line limit, multi-byte characters at the cut,
multiline batches from IRC reaching telnet and the web whole, the limits and their errors
in each protocol's terms, and CHATHISTORY replay of a long message.
"""
from __future__ import annotations

from types import SimpleNamespace

import irctokens
import pytest_twisted
from hypothesis import given, settings
from hypothesis import strategies as st

from chathub.events import Event, Kind, Source
from chathub.protocols.irc import caps as C
from chathub.protocols.irc.commands_messages import _too_long_for_one_line
from chathub.protocols.irc.multiline import (
    ACTION_WRAP,
    CONCAT,
    MIN_WIDTH,
    SOFT_BREAKS,
    line_room,
    split_utf8,
    text_messages,
)
from chathub.protocols.irc.render import event_tags, one_text_line, render_lines, source_of
from chathub.protocols.irc.wire import parse
from tests.support import HubServer, IrcClient, history, history_server, irc_user, offered_caps

ROOM = "#long"
MULTILINE = ["batch", "draft/multiline"]

# -- the splitter and the rendering, for any text --------------------------------------------

_pieces = st.sampled_from(["a", "word", " ", "  ", "é", "€", "😀", "\u0301", "x" * 40, "ü ", "\n"])
texts = st.lists(_pieces, max_size=80).map("".join)
one_line_texts = texts.map(lambda t: t.replace("\n", ""))


@settings(max_examples=400, deadline=None)
@given(one_line_texts, st.integers(min_value=1, max_value=60))
def test_the_splitter_keeps_every_character_and_cuts_only_between_characters(text, width):
    pieces = split_utf8(text, width)
    assert "".join(pieces) == text  # nothing lost, nothing added, nothing reordered
    bound = max(width, MIN_WIDTH)
    assert all(0 < len(p.encode("utf-8")) <= bound for p in pieces)
    for piece, after in zip(pieces, pieces[1:], strict=False):
        if not piece.endswith(" "):
            # cut between characters only where the piece holds no space to cut after,
            # and only because the next character would not fit
            assert " " not in piece[1:]
            assert len(piece.encode("utf-8")) + len(after[0].encode("utf-8")) > bound


@settings(max_examples=200, deadline=None)
@given(one_line_texts)
def test_a_piece_ends_at_a_word_when_a_word_fits(text):
    pieces = split_utf8(text, 20)
    for piece in pieces[:-1]:
        if " " in piece[1:]:
            assert piece.endswith(" ")


def _event(text: str, kind: str = Kind.MESSAGE, nick: str = "n" * 30, host: str = "h" * 60,
           target: str = "#" + "r" * 49) -> Event:
    source = Source(nick=nick, user="~" + "u" * 16, host=host, protocol="line")
    return Event(id="0abc", time=1.0, kind=kind, source=source, target=target, text=text)


@settings(max_examples=300, deadline=None)
@given(texts, st.sampled_from([Kind.MESSAGE, Kind.ACTION, Kind.NOTICE]),
       st.sampled_from([frozenset(), frozenset({C.MULTILINE, C.MESSAGE_TAGS, C.SERVER_TIME})]),
       st.integers(min_value=1, max_value=30))
def test_every_rendered_line_fits_and_the_text_arrives_whole(text, kind, caps, nick_length):
    event = _event(text, kind, nick="n" * nick_length)
    lines = render_lines(event, caps, "irc.test")
    for line in lines:
        data = line.to_bytes()
        parsed = parse(data[:-2])  # raises for a body over 512 bytes: nothing was cut
        assert parsed.params == line.params
    if kind == Kind.MESSAGE and C.MULTILINE in caps and len(lines) > 1:
        assert lines[0].command == "BATCH" and lines[-1].command == "BATCH"
        assert lines[0].tags["msgid"] == event.id
        assert _joined_lines(lines[1:-1]) == text
        return
    # without the batch: the pieces in order, blank lines (and blank pieces) left out
    bodies = [line.params[1] for line in lines]
    if kind == Kind.ACTION:
        assert all(b.startswith("\x01ACTION ") and b.endswith("\x01") for b in bodies)
        bodies = [b[len("\x01ACTION ") : -1] for b in bodies]
    if len(bodies) > 1:
        assert all(b.strip(" ") for b in bodies)
    assert "".join(bodies).replace(" ", "") == text.replace("\n", "").replace(" ", "")
    assert [("msgid" in line.tags) for line in lines[1:]] == [False] * (len(lines) - 1)


@settings(max_examples=300, deadline=None)
@given(texts, st.lists(st.integers(min_value=-3, max_value=400), max_size=12), st.booleans())
def test_soft_breaks_come_back_as_the_lines_the_sender_sent_and_never_change_the_text(text, breaks, multiline):
    # a message from a multiline batch: IRC recipients get it cut where its sender cut it,
    # whatever offsets the event carries (out of order, outside the text, at a line break)
    event = Event(id="0abc", time=1.0, kind=Kind.MESSAGE, source=_event("").source, target=ROOM,
                  text=text, data={SOFT_BREAKS: breaks})
    caps = frozenset({C.MULTILINE, C.MESSAGE_TAGS}) if multiline else frozenset()
    lines = render_lines(event, caps, "irc.test")
    for line in lines:
        assert parse(line.to_bytes()[:-2]).params == line.params  # every line fits
    if multiline and len(lines) > 1:
        assert _joined_lines(lines[1:-1]) == text
        pieces = [line.params[1] for line in lines[1:-1]]
    else:
        pieces = [line.params[1] for line in lines]
        assert "".join(pieces).replace(" ", "") == text.replace("\n", "").replace(" ", "")
    if not (multiline and len(lines) > 1):
        return  # without the batch, blank and space-only pieces are left out: no offsets to compare
    # with the batch, every increasing offset inside a line of the text is a cut the client sees
    ends = {sum(len(p) for p in pieces[: i + 1]) for i in range(len(pieces))}
    last = 0
    for offset in breaks:
        if last < offset < len(text) and "\n" not in text[offset - 1 : offset + 1]:
            assert offset - text[:offset].count("\n") in ends
        last = max(last, offset)


def test_a_line_of_exactly_the_room_left_is_one_privmsg_and_one_more_byte_makes_two():
    event = _event("")
    source = source_of(event, "irc.test")
    room = 510 - len(f":{source} PRIVMSG {event.target} :".encode())
    for size, count in ((room, 1), (room + 1, 2)):
        long = Event(id="1", time=1.0, kind=Kind.MESSAGE, source=event.source, target=event.target, text="x" * size)
        lines = text_messages(long, frozenset(), source, event_tags(long, frozenset()), long.target)
        assert len(lines) == count
        assert len(lines[0].to_bytes()) == 512
        assert "".join(line.params[1] for line in lines) == "x" * size


# -- over real sockets -------------------------------------------------------------------------


class Room:
    """A server keeping history, and in ROOM: telnet, a chathub.v1 client, an IRC client
    without caps and one with draft/multiline (and message-tags, server-time)."""

    def __init__(self, server: HubServer) -> None:
        self.server = server

    async def fill(self) -> "Room":
        server = self.server
        self.telnet = await server.telnet("tel", rooms=[ROOM])
        self.ws = await server.ws("web", rooms=[ROOM])
        self.raw = await server.irc("raw", rooms=[ROOM])
        self.modern = await irc_user(server, "modern", caps=[*MULTILINE, "message-tags", "server-time"],
                                     rooms=[ROOM])
        return self

    @property
    def clients(self) -> tuple:
        """telnet, ws, raw, modern."""
        return self.telnet, self.ws, self.raw, self.modern


@pytest_twisted.async_yield_fixture
async def room(history_hub):
    """``Room`` over the default limits (stopped by ``history_hub``)."""
    yield await Room(history_hub).fill()


@pytest_twisted.async_yield_fixture
async def small_room(tmp_path):
    """``Room`` over limits of 600 bytes and 3 lines a message."""
    server = await history_server(tmp_path, limits={"message_bytes": 600, "message_lines": 3})
    yield await Room(server).fill()
    await server.stop()


async def _collect(client: IrcClient, text: str) -> list[irctokens.Line]:
    """The next PRIVMSGs a client without draft/multiline gets, up to the characters of
    ``text`` (its line breaks not counted: each line is a PRIVMSG of its own)."""
    wanted = len(text.replace("\n", ""))
    got: list[irctokens.Line] = []
    while sum(len(l.params[1]) for l in got) < wanted:
        got.append(await client.expect("PRIVMSG"))
    return got


async def _batch(client: IrcClient) -> tuple[irctokens.Line, list[irctokens.Line]]:
    """The next draft/multiline batch: its opening line and its PRIVMSGs."""
    opening = await client.expect(lambda l: l.command == "BATCH" and l.params[1:2] == ["draft/multiline"])
    ref = opening.params[0][1:]
    start = client.cursor
    await client.expect(lambda l: l.command == "BATCH" and l.params == [f"-{ref}"])
    inner = client.lines[start : client.cursor - 1]
    assert all(l.tags.get("batch") == ref for l in inner)
    return opening, inner


def _joined_lines(lines: list) -> str:
    """The text a draft/multiline client reads from a batch's PRIVMSGs."""
    out = ""
    for i, line in enumerate(lines):
        if i and CONCAT not in (line.tags or {}):
            out += "\n"
        out += line.params[1]
    return out


@pytest_twisted.ensureDeferred
async def test_a_1004_character_telnet_line_reaches_every_client_whole(room):
    telnet, ws, raw, modern = room.clients
    words = [f"word{i:04d}" for i in range(112)]  # 8 characters and a space each
    text = " ".join(words)[:1004]
    assert len(text) == 1004
    telnet.send(text)
    lines = await _collect(raw, text)
    assert len(lines) == 3
    assert "".join(l.params[1] for l in lines) == text
    assert all(len(l.text.encode()) + 2 <= 512 for l in lines)
    assert all(l.params[1].endswith(" ") for l in lines[:-1])  # cut between words
    opening, inner = await _batch(modern)
    assert opening.params[2] == ROOM and "msgid" in opening.tags
    assert _joined_lines(inner) == text and len(inner) == 3
    assert [CONCAT in (l.tags or {}) for l in inner] == [False, True, True]
    got = await ws.expect({"type": "message", "target": ROOM})
    assert got["text"] == text
    stored = await room.server.store.latest("tel", ROOM, None, 10)
    assert [e.text for e in stored if e.kind == Kind.MESSAGE] == [text]  # the hub keeps it whole


@pytest_twisted.ensureDeferred
async def test_lengths_at_and_around_the_line_limit_and_characters_at_the_cut(room):
    telnet, ws, raw, modern = room.clients
    telnet.send("probe")
    probe = await raw.expect("PRIVMSG")
    await modern.expect("PRIVMSG")
    await ws.expect({"type": "message", "target": ROOM})
    room = 510 - len(f":{probe.source} PRIVMSG {ROOM} :".encode())
    cases = [
        ("a" * (room - 1), 1), ("b" * room, 1), ("c" * (room + 1), 2),
        # a 2-byte character whose second byte would be the first past the limit
        ("d" * (room - 1) + "é" * 3, 2),
        # 4-byte characters straddling the limit at every offset
        *[("e" * (room - k) + "😀" * 4, 2) for k in (1, 2, 3)],
        ("f" * (2 * room) + "g", 3),
    ]
    for text, count in cases:
        telnet.send(text)
        lines = await _collect(raw, text)
        assert len(lines) == count, (len(text), [len(l.params[1]) for l in lines])
        assert "".join(l.params[1] for l in lines) == text  # no character split, none lost
        assert all(len(l.text.encode("utf-8")) + 2 <= 512 for l in lines)
        got = await ws.expect({"type": "message", "target": ROOM})
        assert got["text"] == text
        if count == 1:
            assert (await modern.expect("PRIVMSG")).params[1] == text  # no batch for one line
        else:
            _, inner = await _batch(modern)
            assert _joined_lines(inner) == text


@pytest_twisted.ensureDeferred
async def test_an_irc_line_that_fits_its_sender_but_not_its_recipients_is_refused_with_the_limit(room):
    # what arrives as one IRC line leaves as one line or not at all (irctest's buffering and
    # message-tags length tests): the relay adds the sender's prefix, so the sender is told
    # the limit (417) instead of its line reaching IRC clients cut in two
    telnet, ws, raw, modern = room.clients
    sender = await irc_user(server := room.server, "longliner", caps=["echo-message"], rooms=[ROOM])
    sender.send(f"PRIVMSG {ROOM} :probe")
    probe = await raw.expect(lambda l: l.command == "PRIVMSG" and l.params[1] == "probe")
    left = 510 - len(f":{probe.source} PRIVMSG {ROOM} :".encode())
    sender.send(f"PRIVMSG {ROOM} :{'y' * (left + 1)}")
    refused = await sender.expect("417")
    assert f"at most {left} bytes" in refused.params[-1]
    sender.send(f"PRIVMSG {ROOM} :{'x' * left}")  # exactly the room left: one line to everyone
    got = await raw.expect("PRIVMSG")  # the next after the probe: the refused line reached nobody
    assert got.params[1] == "x" * left  # 510 bytes with its prefix: the limit exactly
    assert (await ws.expect({"type": "message", "target": ROOM}))["text"] == "probe"
    assert (await ws.expect({"type": "message", "target": ROOM}))["text"] == "x" * left
    echo = await sender.expect(lambda l: l.command == "PRIVMSG" and l.params[1].startswith("x"))
    assert echo.params[1] == "x" * left
    assert [e.text for e in await server.store.latest("longliner", ROOM, None, 5) if e.kind == Kind.MESSAGE][-1] == "x" * left


@pytest_twisted.ensureDeferred
async def test_a_multiline_batch_from_irc_reaches_telnet_web_and_irc_as_one_message(room):
    server = room.server
    telnet, ws, raw, modern = room.clients
    sender = await irc_user(server, "paster", caps=[*MULTILINE, "message-tags", "echo-message",
                                                    "labeled-response"], rooms=[ROOM])
    long_tail = "z" * 600
    sender.send(
        "@label=p1;+draft/reply=abc BATCH +b1 draft/multiline " + ROOM,
        f"@batch=b1 PRIVMSG {ROOM} :def f(x):",
        f"@batch=b1 PRIVMSG {ROOM} :    return x ",
        f"@batch=b1;{CONCAT} PRIVMSG {ROOM} :+ 1",
        f"@batch=b1 PRIVMSG {ROOM} :",
        f"@batch=b1 PRIVMSG {ROOM} :{long_tail[:400]}",
        f"@batch=b1;{CONCAT} PRIVMSG {ROOM} :{long_tail[400:]}",
        "BATCH -b1",
    )
    text = "def f(x):\n    return x + 1\n\n" + long_tail
    got = await ws.expect({"type": "message", "target": ROOM})
    assert got["text"] == text and got["from"]["nick"] == "paster"
    assert got["tags"] == {"+draft/reply": "abc"}
    await telnet.expect_re(r"^\[#long\] <paster> def f\(x\):$")
    await telnet.expect_re(r"^\[#long\] <paster>     return x \+ 1$")
    await telnet.expect_re(rf"^\[#long\] <paster> {long_tail}$")  # the blank line is left out
    # IRC clients get the lines as the sender sent them (irctest's multiline tests): split
    # where the sender split, blank lines left out without the capability
    lines = await _collect(raw, text)
    assert [l.params[1] for l in lines] == ["def f(x):", "    return x ", "+ 1", long_tail[:400], long_tail[400:]]
    _, inner = await _batch(modern)
    assert _joined_lines(inner) == text
    assert [(l.params[1], CONCAT in l.tags) for l in inner] == [
        ("def f(x):", False), ("    return x ", False), ("+ 1", True), ("", False),
        (long_tail[:400], False), (long_tail[400:], True)]
    # the sender's echo is one batch, the label on its opening line
    opening, echoed = await _batch(sender)
    assert opening.tags.get("label") == "p1"
    assert _joined_lines(echoed) == text


@pytest_twisted.ensureDeferred
async def test_limits_are_told_to_the_sender_in_each_protocols_terms_and_nothing_is_sent(small_room):
    server = small_room.server
    telnet, ws, raw, _ = small_room.clients
    # the cap advertises the limits the settings give
    offered = await offered_caps(await server.connect("irc"))
    assert offered["draft/multiline"] == "max-bytes=600,max-lines=3"
    sender = await irc_user(server, "paster", caps=[*MULTILINE, "message-tags", "labeled-response"],
                            rooms=[ROOM])
    # at the limits: sent
    sender.send("BATCH +ok draft/multiline " + ROOM, f"@batch=ok PRIVMSG {ROOM} :{'a' * 298}",
                f"@batch=ok PRIVMSG {ROOM} :{'b' * 299}", f"@batch=ok PRIVMSG {ROOM} :c", "BATCH -ok")
    assert (await ws.expect({"type": "message"}))["text"] == f"{'a' * 298}\n{'b' * 299}\nc"
    # one byte over max-bytes
    sender.send("BATCH +big draft/multiline " + ROOM, f"@batch=big PRIVMSG {ROOM} :{'a' * 300}",
                f"@batch=big PRIVMSG {ROOM} :{'b' * 300}", f"@batch=big PRIVMSG {ROOM} :more", "BATCH -big")
    fail = await sender.expect("FAIL")
    assert fail.params[:3] == ["BATCH", "MULTILINE_MAX_BYTES", "600"]
    # one line over max-lines
    sender.send("BATCH +many draft/multiline " + ROOM,
                *[f"@batch=many PRIVMSG {ROOM} :l{i}" for i in range(4)], "BATCH -many")
    fail = await sender.expect("FAIL")
    assert fail.params[:3] == ["BATCH", "MULTILINE_MAX_LINES", "3"]
    # a line for another target
    sender.send("BATCH +t draft/multiline " + ROOM, "@batch=t PRIVMSG #other :x", "BATCH -t")
    fail = await sender.expect("FAIL")
    assert fail.params[:4] == ["BATCH", "MULTILINE_INVALID_TARGET", ROOM, "#other"]
    # no batch open, and a blank line joined to the one before
    sender.send(f"@batch=nope PRIVMSG {ROOM} :x")
    assert (await sender.expect("FAIL")).params[:2] == ["BATCH", "MULTILINE_INVALID"]
    sender.send("BATCH +c draft/multiline " + ROOM, f"@batch=c PRIVMSG {ROOM} :x",
                f"@batch=c;{CONCAT} PRIVMSG {ROOM} :", "BATCH -c")
    assert (await sender.expect("FAIL")).params[:2] == ["BATCH", "MULTILINE_INVALID"]
    # a label on the opening line comes back on the error
    reply = await sender.labeled(f"BATCH +lab draft/multiline {ROOM}\r\n@batch=lab PRIVMSG {ROOM} :{'x' * 400}"
                                 f"\r\n@batch=lab PRIVMSG {ROOM} :{'y' * 400}\r\nBATCH -lab")
    assert reply[0].command == "FAIL" and reply[0].params[1] == "MULTILINE_MAX_BYTES"
    # without the capability a client cannot open one
    # (one error for the batch, its lines dropped without one each)
    # (draft/chathistory: it fetches history itself, so no join replay comes before the answer)
    plain = await server.irc("plain", "batch draft/chathistory", rooms=[ROOM])
    replies = await plain.roundtrip("\r\n".join(
        ["BATCH +p draft/multiline " + ROOM, *[f"@batch=p PRIVMSG {ROOM} :x{i}" for i in range(5)], "BATCH -p"]))
    assert [r.params[:2] for r in replies] == [["BATCH", "MULTILINE_INVALID"]]
    # telnet: a line over message_bytes
    telnet.send("t" * 601)
    await telnet.expect_re(r"^! #long: Message too long \(at most 600 bytes\)$")
    # chathub.v1: too many bytes, too many lines
    ws.send_json({"type": "message", "target": ROOM, "text": "w" * 601, "ref": "big"})
    refused = await ws.expect({"type": "error", "ref": "big"})
    assert refused["code"] == "message_too_long" and "600 bytes" in refused["message"]
    ws.send_json({"type": "message", "target": ROOM, "text": "1\n2\n3\n4", "ref": "many"})
    refused = await ws.expect({"type": "error", "ref": "many"})
    assert refused["code"] == "message_too_long" and "at most 3" in refused["message"]
    # none of the refused messages reached anyone: the next one is the next seen
    sender.send(f"PRIVMSG {ROOM} :after")
    assert (await raw.expect("PRIVMSG")).params[1] == "a" * 298
    nexts = [await raw.expect("PRIVMSG") for _ in range(3)]
    assert [l.params[1] for l in nexts] == ["b" * 299, "c", "after"]
    assert (await ws.expect({"type": "message"}))["text"] == "after"
    await telnet.expect_re(r"<paster> after$")
    assert not [t for t in telnet.texts if "<paster> l0" in t or "<paster> xxx" in t]


@pytest_twisted.ensureDeferred
async def test_a_multi_line_web_message_is_one_message(room):
    telnet, ws, raw, modern = room.clients
    ws.send_json({"type": "message", "target": ROOM, "text": "one\r\ntwo\n\nthree\n", "ref": "m"})
    ok = await ws.expect({"type": "ok", "ref": "m"})
    echoed = await ws.expect({"type": "message", "target": ROOM})
    assert echoed["text"] == "one\ntwo\n\nthree" and echoed["id"] == ok["id"]
    assert [l.params[1] for l in await _collect(raw, "onetwothree")] == ["one", "two", "three"]
    _, inner = await _batch(modern)
    assert [l.params[1] for l in inner] == ["one", "two", "", "three"]
    for line in ("one", "two", "three"):
        await telnet.expect_re(rf"^\[#long\] <web> {line}$")
    # replayed on join the same way, to telnet and to the web
    late = await room.server.telnet("late", rooms=[ROOM])
    await late.expect_re(r"^\d\d:\d\d \[#long\] <web> one$")
    await late.expect_re(r"^\[#long\] <web> two$")
    await late.expect_re(r"^\[#long\] <web> three$")
    reader = await room.server.ws("reader", rooms=[ROOM])
    reader.send_json({"type": "history", "target": ROOM, "ref": "h"})
    page = await reader.expect({"type": "history", "ref": "h"})
    assert [e["text"] for e in page["events"] if e["type"] == "message"] == ["one\ntwo\n\nthree"]


@pytest_twisted.ensureDeferred
async def test_chathistory_replays_a_long_message_as_it_went_live(room):
    server = room.server
    telnet, ws, _, _ = room.clients
    text = " ".join(["lorem"] * 300)  # 1,799 characters: four lines
    telnet.send(text)
    await ws.expect({"type": "message", "target": ROOM})
    plain = await irc_user(server, "reader", caps=["batch", "draft/chathistory", "message-tags"], rooms=[ROOM])
    _, inner = await history(plain, f"CHATHISTORY LATEST {ROOM} * 10")
    privmsgs = [l for l in inner if l.command == "PRIVMSG"]
    assert len(privmsgs) == 4 and "".join(l.params[1] for l in privmsgs) == text
    assert "msgid" in privmsgs[0].tags and not any("msgid" in l.tags for l in privmsgs[1:])
    reader = await irc_user(server, "reader2", caps=["batch", "draft/chathistory", "message-tags",
                                                     "draft/multiline"], rooms=[ROOM])
    lines = await reader.roundtrip(f"CHATHISTORY LATEST {ROOM} * 10")
    outer = next(l for l in lines if l.command == "BATCH" and l.params[1:2] == ["chathistory"])
    opening = next(l for l in lines if l.command == "BATCH" and l.params[1:2] == ["draft/multiline"])
    assert opening.tags["batch"] == outer.params[0][1:]  # nested in the history batch
    ref = opening.params[0][1:]
    inner = [l for l in lines if l.tags and l.tags.get("batch") == ref]
    assert _joined_lines(inner) == text
    closing = next(l for l in lines if l.command == "BATCH" and l.params == [f"-{ref}"])
    assert closing.tags["batch"] == outer.params[0][1:]



@settings(max_examples=500, deadline=None)
@given(texts | st.text(max_size=40), st.sampled_from([Kind.MESSAGE, Kind.ACTION, Kind.NOTICE, Kind.TAGMSG]),
       st.sets(st.sampled_from([C.MULTILINE, C.MESSAGE_TAGS, C.SERVER_TIME, C.ACCOUNT_TAG])).map(frozenset),
       st.integers(min_value=1, max_value=30), st.sampled_from(["#" + "r" * 49, "#r", "", "bob"]),
       st.dictionaries(st.sampled_from(["+draft/reply", "+x", "bot"]), st.text(max_size=20), max_size=2),
       st.sampled_from([{}, {"statusmsg": "@"}, {"seen": 3, "privileges": "o"}, {SOFT_BREAKS: [2]}]),
       st.sampled_from(["alice", None]))
def test_a_message_on_one_line_is_the_bytes_the_general_path_writes(text, kind, caps, nick_length, target, tags,
                                                                     data, account):
    """``one_text_line``, fan-out's short cut, writes exactly what ``render_lines`` and
    ``serialise`` write for the messages it takes, and leaves the others to them."""
    source = Source(nick="n" * nick_length, user="~u", host="h.example", account=account, protocol="irc")
    event = Event(id="0abc", time=1.5, kind=kind, source=source, target=target, text=text, tags=tags, data=data)
    wire = one_text_line(event, caps, "irc.test")
    general = b"".join(m.to_bytes() for m in render_lines(event, caps, "irc.test"))
    if wire is not None:
        assert wire == general
    elif kind == Kind.MESSAGE and text.isascii() and text.strip() and "\n" not in text and "\r" not in text \
            and len(text) < 300 and SOFT_BREAKS not in data:
        raise AssertionError("a plain one-line message did not take the short cut")


@settings(max_examples=400, deadline=None)
@given(
    body=st.one_of(  # one character repeated reaches every width in bytes; mixed text too
        st.builds(lambda c, n: c * n, st.sampled_from(["a", "é", "中", "😀"]), st.integers(1, 520)),
        st.text(st.sampled_from(["a", " ", "é", "中", "😀"]), min_size=1, max_size=520),
    ),
    nick=st.text(st.sampled_from("abcxyz_"), min_size=1, max_size=30),
    host=st.text(st.sampled_from(["h", ".", "é", "中"]), min_size=1, max_size=60),
    target=st.text(st.sampled_from(["r", "é", "中"]), min_size=1, max_size=40).map(lambda t: "#" + t),
    action=st.booleans(),
)
def test_the_quick_fit_of_a_relayed_line_agrees_with_the_exact_count(body, nick, host, target, action):
    # a message short enough to fit whatever its characters skips the byte count: it must
    # refuse exactly what the count refuses (417), no more and no fewer
    refused = []

    class Replies:
        def numeric(self, *params):
            refused.append(params)

    source = Source(nick, "~u", host)
    sender = SimpleNamespace(source=source)
    kind = Kind.ACTION if action else Kind.MESSAGE
    too_long = _too_long_for_one_line(Replies(), "PRIVMSG", sender, target, kind, body)
    exact = len(body.encode("utf-8")) > line_room("PRIVMSG", source.mask, target, ACTION_WRAP if action else 0)
    assert too_long == exact and bool(refused) == exact
