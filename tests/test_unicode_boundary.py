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
import time

import pytest_twisted
from hypothesis import given, settings
from hypothesis import strategies as st

from chathub.events import Event, EventIds, Kind, Source
from chathub.protocols.irc import caps as C
from chathub.protocols.irc.render import render_lines
from chathub.protocols.irc.wire import serialise
from chathub.protocols.line import _line, render as line_render
from chathub.protocols.web.events import dumps, event_json
from chathub.store.interfaces import RoomRecord
from chathub.text import REPLACEMENT, encode_utf8, is_valid_text, scrub
from tests.store_fixtures import *  # noqa: F401,F403 (store: SQLite and PostgreSQL)
from tests.support import HubServer
from tests.test_irc_history import history

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

