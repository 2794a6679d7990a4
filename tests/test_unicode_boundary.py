"""Text that is not Unicode never poisons anything (issue 10, item 2).

A JSON escape lets a chathub.v1 client send a lone UTF-16 surrogate (``"\\ud800"``): no
character, and nothing UTF-8 can carry. Such a message used to be acknowledged and
stored, then never delivered; every history page holding it got no answer, and IRC
users who JOINed, WHOISed or LISTed near it were disconnected.

Here: the check and the encoders hold for any text (Hypothesis); a JSON client sends
the poison in every field and is refused field by field while honest IRC, telnet and
JSON users watching still get everything; damaged rows already in a store (SQLite and
PostgreSQL) are served on every history path with the rest of their page; and text
that reaches the hub's state anyway still lets everyone JOIN, WHOIS, LIST and list rooms.
"""
from __future__ import annotations

import itertools
import json
import re
import time

import pytest_twisted
from hypothesis import given, settings
from hypothesis import strategies as st

from chathub.events import Event, EventIds, Kind, Source
from chathub.names import valid_room_name
from chathub.protocols.irc import caps as C
from chathub.protocols.irc.render import render_lines
from chathub.protocols.irc.wire import LineError, parse, serialise
from chathub.protocols.line import _line, render as line_render
from chathub.protocols.web.events import dumps, event_json
from chathub.records import RoomRecord
from chathub.text import REPLACEMENT, encode_utf8, is_valid_text, scrub
from tests.store_fixtures import *  # noqa: F401,F403 (store: SQLite and PostgreSQL)
from tests.support import HubServer, history, join_irc

BAD = "bad \ud800 text"  # what the attacker sends: a high surrogate without its low half
SHOWN = BAD.replace("\ud800", REPLACEMENT)  # how a stored one is shown to everyone

# -- the check and the encoders, for any text ---------------------------------------------

_SURROGATES = st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF, exclude_categories=())
_ANY_CHARACTER = st.characters(exclude_categories=())  # every code point, surrogates included
any_text = st.text(st.one_of(_SURROGATES, _ANY_CHARACTER, st.sampled_from("a #:;\\ \r\n")), max_size=24)


def _has_surrogate(text: str) -> bool:
    return any(0xD800 <= ord(c) <= 0xDFFF for c in text)


@settings(max_examples=500, deadline=None)
@given(any_text)
def test_the_check_refuses_exactly_text_holding_a_surrogate(text):
    assert is_valid_text(text) is not _has_surrogate(text)


@settings(max_examples=500, deadline=None)
@given(any_text)
def test_encode_utf8_gives_valid_utf8_for_any_text(text):
    data = encode_utf8(text)
    assert data.decode("utf-8") == scrub(text)  # strict: valid UTF-8
    assert len(scrub(text)) == len(text) and is_valid_text(scrub(text))
    if not _has_surrogate(text):
        assert data == text.encode("utf-8") and scrub(text) == text


def _scrub_deep(obj):
    if isinstance(obj, str):
        return scrub(obj)
    if isinstance(obj, list):
        return [_scrub_deep(o) for o in obj]
    if isinstance(obj, dict):
        return {scrub(k): _scrub_deep(v) for k, v in obj.items()}
    return obj


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | any_text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(any_text, inner, max_size=4),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_json_dumps_gives_valid_utf8_for_any_value(value):
    assert json.loads(dumps(value).decode("utf-8")) == _scrub_deep(value)


@settings(max_examples=300, deadline=None)
@given(
    st.dictionaries(any_text, any_text, max_size=3),
    any_text,
    st.sampled_from(["PRIVMSG", "TOPIC", "332", "JOIN", "AWAY", "301"]),
    st.lists(any_text, max_size=4),
)
def test_irc_serialise_gives_valid_utf8_for_any_text(tags, source, command, params):
    data = serialise(tags, source, command, params)
    assert data.endswith(b"\r\n")
    data.decode("utf-8")  # strict


def _any_event(draw_kind, text, nick, realname, target, tag, extra) -> Event:
    data = {
        Kind.KICK: {"nick": extra},
        Kind.NICK: {"new": extra},
        Kind.MODE: {"changes": [["+b", extra], ["+m", None]]},
        Kind.INVITE: {"nick": extra},
        Kind.CHGHOST: {"user": extra, "host": extra},
        Kind.JOIN: {"account": extra, "away": extra},
        Kind.ACCOUNT: {"account": extra},
        Kind.PRESENCE: {"state": "online"},
    }.get(draw_kind, {})
    source = Source(nick=nick, user=nick, host=extra, account=extra or None, realname=realname, protocol="ws")
    return EventIds().make(draw_kind, source, target, text, {"+draft/react": tag}, data)


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(sorted(v for k, v in vars(Kind).items() if k.isupper() and isinstance(v, str))),
    any_text, any_text, any_text, st.one_of(any_text.filter(bool), any_text.map(lambda t: "#" + t)), any_text, any_text,
)
def test_every_protocol_renders_any_event_as_valid_utf8(kind, text, nick, realname, target, tag, extra):
    event = _any_event(kind, text, nick, realname, target, tag, extra)
    obj = event_json(event)
    if obj is not None:
        dumps(obj).decode("utf-8")
    for caps in (frozenset(), frozenset(C.RENDERING)):
        for message in render_lines(event, caps, "irc.test", direct=True):
            message.to_bytes().decode("utf-8")
    shown = line_render(event)
    if shown is not None:
        _line(shown).decode("utf-8")


_irc_fragments = st.sampled_from(
    [b"PRIVMSG #a :", b"TOPIC #a :", b"AWAY :", b"@+t=", b":src ", b" ", b"\xed\xa0\x80", b"\xed\xbf\xbf",
     b"\xf0\x9f\x98\x80", b"\xc3\xa9", b"\xff", b"\\"]
)


@settings(max_examples=500, deadline=None)
@given(st.lists(st.one_of(_irc_fragments, st.binary(max_size=8)), max_size=12).map(b"".join))
def test_irc_decoding_never_yields_a_surrogate(line):
    """IRC lines are decoded strictly: an encoded surrogate (CESU-8 ``ED A0 80``) is not UTF-8."""
    try:
        message = parse(line)
    except LineError:
        return
    texts = [message.command, message.source or "", *message.params, *message.tags, *message.tags.values()]
    assert all(is_valid_text(t) for t in texts), message


def test_the_hub_refuses_a_room_name_holding_a_surrogate():
    # defence in depth: a room name is a key in the store and in everyone's room list
    assert not valid_room_name("#x\ud800", 50) and not valid_room_name("#\udfff", 50)
    assert valid_room_name("#caf\u00e9\U0001f600", 50)


# -- a hub on a real store, every protocol on a real socket --------------------------------

#: an IRC client that reads history, with what it shows of each event
HISTORY_CAPS = ("batch", "server-time", "message-tags", "extended-join", "draft/chathistory", "draft/event-playback")


@pytest_twisted.async_yield_fixture
async def server(store):
    """Every protocol on one hub keeping history in ``store`` (SQLite and PostgreSQL); its
    ``stop`` fails the test if the server logged a traceback."""
    hub_server = HubServer(store=store)
    yield hub_server
    await hub_server.stop()


async def _answer(client, request: dict) -> dict:
    """Send a chathub.v1 request with a fresh ref; its answer."""
    ref = f"r{id(request)}"
    client.send_json({**request, "ref": ref})
    return await client.expect(lambda m: isinstance(m, dict) and m.get("ref") == ref)


def _said(text: str):
    return lambda line: line.command == "PRIVMSG" and line.params[-1] == text


# every text-bearing field of every request, poisoned: (request, field named in the error)
ATTACKS = [
    ({"type": "message", "target": "#chat", "text": BAD}, "text"),
    ({"type": "action", "target": "#chat", "text": BAD}, "text"),
    ({"type": "notice", "target": "#chat", "text": BAD}, "text"),
    ({"type": "message", "target": "#chat", "text": "low half \udc00 alone"}, "text"),
    ({"type": "message", "target": "#chat\ud800", "text": "hi"}, "target"),
    ({"type": "message", "target": "b_ws", "text": BAD}, "text"),
    ({"type": "topic", "room": "#chat", "text": BAD}, "text"),
    ({"type": "away", "text": BAD}, "text"),
    ({"type": "join", "room": "#x\ud800"}, "room"),
    ({"type": "join", "room": "#keyed", "key": BAD}, "key"),
    ({"type": "part", "room": "#chat", "reason": BAD}, "reason"),
    ({"type": "nick", "nick": "m\ud800"}, "nick"),
    ({"type": "typing", "target": "#chat", "state": "\ud800"}, "state"),
    ({"type": "members", "room": "#chat\udfff"}, "room"),
    ({"type": "history", "target": "#chat\ud800"}, "target"),
    ({"type": "history", "target": "#chat", "before": "\ud800"}, "before"),
    ({"type": "ping", "token": BAD}, "token"),
    ({"type": "register", "password": BAD}, "password"),
    ({"type": "quit", "reason": BAD}, "reason"),
]
LOGIN_ATTACKS = [
    ({"type": "login", "nick": "eve\ud800"}, "nick"),
    ({"type": "login", "nick": "eve", "password": BAD}, "password"),
    ({"type": "login", "nick": "eve", "account": "eve\ud800", "password": "pw"}, "account"),
]


@pytest_twisted.ensureDeferred
async def test_a_json_client_sending_surrogates_is_refused_and_everyone_is_still_served(server):
    watchers = await server.bystanders("#chat")
    ann = await server.irc("ann", *HISTORY_CAPS, rooms=["#chat"])
    # the attackers share the work: one connection's flood budget would only pace it
    mals = [await server.ws(f"mal{i}", rooms=["#chat"]) for i in range(3)]
    mals[0].send_json({"type": "message", "target": "#chat", "text": "hello before"})
    await ann.expect(_said("hello before"))

    for i, (request, field) in enumerate(ATTACKS):
        answer = await _answer(mals[i % len(mals)], request)
        assert (answer["type"], answer["code"], answer["field"], answer["request"]) == (
            "error", "invalid_text", field, request["type"]), answer
    eve = await server.ws_connect()
    await eve.expect({"type": "hello"})
    for request, field in LOGIN_ATTACKS:
        answer = await _answer(eve, request)
        assert (answer["code"], answer["field"]) == ("invalid_text", field), answer
    # what is only copied back (an unknown type, a ref) comes back as U+FFFD, never as a lost answer
    eve.send_json({"type": "\ud800", "ref": "r\udc00"})
    echoed = await eve.expect({"type": "error", "code": "unknown_type"})
    assert echoed["ref"] == "r" + REPLACEMENT and echoed["request"] == REPLACEMENT
    assert (await _answer(eve, {"type": "login", "nick": "eve"}))["type"] == "welcome"

    # the attackers are still connected, and nothing they sent was done
    mals[0].send_json({"type": "message", "target": "#chat", "text": "hello after"})
    await ann.expect(_said("hello after"))
    await watchers.irc.expect(_said("hello after"))
    await watchers.telnet.expect_re(r"^\[#chat\] <mal0> hello after$")
    await watchers.ws.expect({"type": "message", "text": "hello after"})
    seen = ann.texts + watchers.irc.texts + watchers.telnet.texts
    seen += [json.dumps(m, ensure_ascii=False) for m in watchers.ws.received]
    # a word, not a substring: a hex cloak such as ea36d765.4fd845e5.bad49693 holds "bad"
    poisoned = re.compile(r"\bbad\b|low half|\bmal\d (left|quit)")
    assert not [t for t in seen if REPLACEMENT in t or poisoned.search(t)], seen
    done = [m for m in watchers.ws.received if m["type"] in ("part", "quit", "topic", "away")]
    assert done == []

    # IRC: history, JOIN, WHOIS and LIST all answered
    _, lines = await history(ann, "CHATHISTORY LATEST #chat * 20")
    assert [l.params[-1] for l in lines if l.command == "PRIVMSG"] == ["hello before", "hello after"]
    await join_irc(ann, "#other")
    ann.send("WHOIS mal0")
    await ann.expect("318")
    ann.send("LIST")
    await ann.expect("323")
    # chathub.v1: rooms and history
    rooms = await _answer(watchers.ws, {"type": "rooms"})
    assert rooms["type"] == "rooms" and "#chat" in [r["room"] for r in rooms["rooms"]]
    page = await _answer(watchers.ws, {"type": "history", "target": "#chat"})
    assert [e["text"] for e in page["events"]] == ["hello before", "hello after"]
    # telnet: a newcomer's join replay
    una = await server.telnet("una", rooms=["#chat"])
    await una.expect_re(r"<mal0> hello after$")
    await una.expect_re(r"^\* end of history of #chat$")
    await watchers.still_served()


def _damaged_history() -> tuple[list[Event], list[str]]:
    """Events as an older version stored them, surrogates and all; and the texts a client
    should then read of the chat ones, in order."""
    ids = EventIds(clock=itertools.count(time.time() - 600, 1.0).__next__)
    clean = Source(nick="old", user="old", host="example.test", protocol="irc")
    damaged = Source(nick="old", user="old", host="example.test", realname="Old \udbff Timer", protocol="ws")
    events = [
        ids.make(Kind.MESSAGE, clean, "#chat", "first"),
        ids.make(Kind.MESSAGE, damaged, "#chat", BAD, {"+draft/react": "\udc00"}),
        ids.make(Kind.TOPIC, damaged, "#chat", "topic \ud800"),
        ids.make(Kind.ACTION, damaged, "#chat", "waves \udfff"),
        ids.make(Kind.JOIN, damaged, "#chat", data={"account": None, "away": "away \ud800"}),
        ids.make(Kind.NOTICE, damaged, "#chat", "notice \ud800"),
        ids.make(Kind.MESSAGE, clean, "#chat", "last"),
    ]
    return events, ["first", SHOWN, "waves \ufffd", "notice \ufffd", "last"]


@pytest_twisted.ensureDeferred
async def test_stored_damaged_rows_are_served_on_every_history_path(store):
    # a registered room, and its history as an older version stored it
    await store.save_room(RoomRecord("#chat", created=time.time() - 3600))
    events, chat_texts = _damaged_history()
    for event in events:
        await store.append(event)
    server = HubServer(store=store)
    server.hub.restore_rooms(await store.load_rooms())
    try:
        # telnet: the join replay (telnet shows what UTF-8 cannot carry as '?')
        watchers = await server.bystanders("#chat")
        await watchers.telnet.expect_re(r"^\* last 5 messages in #chat:$")
        replay = [await watchers.telnet.expect_re(r"^\d\d:\d\d ") for _ in chat_texts]
        assert replay[0].endswith("<old> first") and replay[-1].endswith("<old> last")
        assert replay[1].endswith("<old> bad ? text") and replay[2].endswith("* old waves ?")
        await watchers.telnet.expect_re(r"^\* end of history of #chat$")
        # IRC CHATHISTORY (with event-playback: the TOPIC and JOIN rows too)
        ann = await server.irc("ann", *HISTORY_CAPS, rooms=["#chat"])
        _, lines = await history(ann, "CHATHISTORY LATEST #chat * 20")
        shown = [(l.command, l.params[-1]) for l in lines]
        assert ("PRIVMSG", "first") in shown and ("PRIVMSG", "last") in shown
        assert ("PRIVMSG", SHOWN) in shown and ("TOPIC", "topic \ufffd") in shown
        assert ("PRIVMSG", "\x01ACTION waves \ufffd\x01") in shown and ("NOTICE", "notice \ufffd") in shown
        assert [l.tags.get("+draft/react") for l in lines if l.params[-1] == SHOWN] == ["\ufffd"]
        joins = [l for l in lines if l.command == "JOIN" and l.source.startswith("old!")]
        assert [l.params for l in joins] == [["#chat", "*", "Old \ufffd Timer"]]  # extended-join: realname
        # chathub.v1 history
        page = await _answer(watchers.ws, {"type": "history", "target": "#chat"})
        assert page["type"] == "history" and [e["text"] for e in page["events"]] == chat_texts
        # and the room goes on for everyone
        await watchers.still_served()
    finally:
        await server.stop()


@pytest_twisted.ensureDeferred
async def test_text_in_the_hubs_state_never_stops_join_whois_list_or_rooms(server):
    """Were such text to reach the hub some other way, every encoder still serves it (as U+FFFD)."""
    watchers = await server.bystanders()
    mal = await server.ws("mal", rooms=["#chat"])
    hub = server.hub
    user = hub.find_user("mal")
    hub.set_topic(user, "#chat", "topic \ud800")
    hub.set_away(user, "away \ud800")
    hub.set_realname(user, "real \udc00")
    # IRC: JOIN (topic), WHOIS (realname, away), LIST (topic)
    ann = await server.irc("ann")
    ann.send("JOIN #chat")
    assert (await ann.expect("332")).params[-1] == "topic \ufffd"
    await ann.expect("366")
    ann.send("WHOIS mal")
    assert (await ann.expect("311")).params[-1] == "real \ufffd"
    assert (await ann.expect("301")).params[-1] == "away \ufffd"
    await ann.expect("318")
    ann.send("LIST #chat")
    assert (await ann.expect("322")).params[-1].endswith("topic \ufffd")
    await ann.expect("323")
    # chathub.v1: rooms and members, for the poisoner and for everyone else
    for client in (watchers.ws, mal):
        rooms = await _answer(client, {"type": "rooms"})
        assert ("#chat", "topic \ufffd") in [(r["room"], r["topic"]) for r in rooms["rooms"]]
    members = await _answer(watchers.ws, {"type": "members", "room": "#chat"})
    assert {m["nick"]: m["away"] for m in members["members"]}["mal"] == "away \ufffd"
    # telnet: /list, /who and a join showing the topic
    tom = await server.telnet("tom")
    tom.send("/list")
    await tom.expect_re(r"^\*   #chat \(\d\): topic \?$")
    tom.send("/who #chat")
    await tom.expect_re(r"mal \(ws\) away: away \?$")
    tom.send("/join #chat")
    await tom.expect_re(r"^\* topic of #chat: topic \?$")
    await tom.expect_re(r"^\* in #chat ")
    await watchers.still_served()


@pytest_twisted.ensureDeferred
async def test_irc_and_telnet_decode_an_encoded_surrogate_as_no_surrogate(server):
    """Bytes cannot carry a surrogate past a strict decoder: IRC refuses them (UTF8ONLY),
    telnet shows them as U+FFFD (its documented leniency), and either way others are served."""
    watchers = await server.bystanders("#chat")
    watchers.irc.send(b"PRIVMSG #chat :bad \xed\xa0\x80 text")  # CESU-8's spelling of U+D800
    fail = await watchers.irc.expect("FAIL")
    assert fail.params[:2] == ["PRIVMSG", "INVALID_UTF8"]
    watchers.telnet.send(b"/msg #chat bad \xed\xa0\x80 text")
    said = await watchers.ws.expect({"type": "message"})
    assert said["from"]["nick"] == "b_tel" and re.fullmatch("bad \ufffd+ text", said["text"])
    assert (await watchers.irc.expect("PRIVMSG")).params[-1] == said["text"]
    page = await _answer(watchers.ws, {"type": "history", "target": "#chat"})
    assert [e["text"] for e in page["events"]] == [said["text"]]  # the IRC line was never sent
    await watchers.still_served()
