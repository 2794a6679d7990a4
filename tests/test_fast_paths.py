"""The fast paths for the commonest input (IRC ``PRIVMSG #room :text``, a telnet line of
plain text, a chathub.v1 ``message``) do exactly what the general path does: for generated
lines, two hubs, one with the fast path and one without, see the same hub calls (or the
same refusal) and their clients the same bytes; and the fast path is the one taken."""
from __future__ import annotations

import os
import re
from typing import Callable
from unittest import mock

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from chathub.hub.errors import HubError
from chathub.protocols.irc.table import FAST_PATHS
from chathub.protocols.irc.wire import parse, plain_privmsg
from chathub.protocols.line import clean_input, plain_text
from chathub.protocols.web.jsonsession import REQUESTS, RequestError, _check_fields, plain_message
from tests.support import irc_world, line_world

EXAMPLES = int(os.environ.get("CHATHUB_FUZZ_EXAMPLES", "150"))
_settings = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def record_sends(hub) -> list:
    """Every ``hub.send`` from now on: its arguments and what came of it (the event's
    kind and text, or the refusal's code and target)."""
    calls: list = []
    real = hub.send

    def send(user, target, text, kind="message", tags=None, receipt=None, **more):
        call = (user.nick, target, text, kind, dict(tags or {}), receipt is not None, more.get("data"))
        try:
            event = real(user, target, text, kind, tags, receipt=receipt, **more)
        except HubError as e:
            calls.append((call, "refused", e.code, e.target))
            raise
        calls.append((call, "sent", event.kind, event.target, event.text))
        return event

    hub.send = send
    return calls


def same_without(fast_path_off, outcome: Callable[..., tuple], *args) -> None:
    """``outcome(*args)`` (of a new hub each time) is the same with the fast path as with
    ``fast_path_off`` (a patch that leaves only the general path) in force."""
    fast = outcome(*args)
    with fast_path_off:
        assert outcome(*args) == fast


# -- IRC ----------------------------------------------------------------------------------

_targets = st.sampled_from(
    [b"#a", b"#m", b"#o", b"#nosuch", b"#", b"#A", b"#a,#m", b"#a,", b"peer", b"#a\xff", b"#" + b"x" * 70, b"#a:b"]
)
_texts = st.one_of(
    st.sampled_from(
        [b"hi", b"", b"\x01ACTION waves\x01", b"\x01ACTION ", b" :x", b"a\rb", b"a\x00b", b"\xff\xfe", b"  ", b":x",
         b"a\x01b", "caf\u00e9 \U0001f600".encode()]
    ),
    st.binary(max_size=40),
    st.text(max_size=30).map(lambda t: t.encode("utf-8", "surrogatepass")),
    st.binary(min_size=490, max_size=520),
)
_irc_lines = st.builds(
    lambda head, target, sep, text: head + target + sep + text,
    st.sampled_from([b"PRIVMSG ", b"PRIVMSG ", b"PRIVMSG ", b"privmsg ", b"PRIVMSG  ", b"@label=x PRIVMSG ",
                     b"@+draft/react=1 PRIVMSG ", b":me PRIVMSG ", b"NOTICE "]),
    _targets,
    st.sampled_from([b" :", b" :", b" ", b"  :", b" ::"]),
    _texts,
)
_caps = st.sampled_from(["", "", "echo-message", "message-tags", "labeled-response batch", "server-time"])


def irc_room(caps: str, bot: bool):
    """A hub with ``sender`` (``caps``, bot mode if ``bot``) and ``peer`` in #a and in the
    moderated #m, and #o that only ``peer`` is in; every line so far read."""
    world = irc_world()
    peer = world.irc_conn("peer")
    peer.send("JOIN #a", "JOIN #m", "MODE #m +m", "JOIN #o")
    sender = world.irc_conn("sender", caps)
    sender.send("JOIN #a", "JOIN #m")
    if bot:
        sender.send("MODE sender +B")
    peer.lines()
    sender.lines()
    return world, sender, peer


def seen(world, conn) -> bytes:
    """The bytes ``conn`` was sent, without what differs between two hubs: ids and times,
    and the cloak of 127.0.0.1 (each hub's own secret)."""
    data = conn.transport.value().replace(world.host.encode(), b"HOST")
    conn.transport.clear()
    data = re.sub(rb"(?<=[@;])(msgid|time)=[^; ]*;?", b"", data)
    return re.sub(rb"(?m)^@ ", b"", data.replace(b"\r\n@ ", b"\r\n"))


def irc_outcome(line: bytes, caps: str, bot: bool) -> tuple:
    world, sender, peer = irc_room(caps, bot)
    calls = record_sends(world.hub)
    sender.send(line)
    world.clock.advance(0)
    return calls, seen(world, sender), seen(world, peer)


@_settings
@given(line=_irc_lines, caps=_caps, bot=st.booleans())
@example(line=b"PRIVMSG #a :hello", caps="", bot=False)
@example(line=b"PRIVMSG #a :\x01ACTION waves\x01", caps="", bot=False)
@example(line=b"PRIVMSG #a :\x01ACTION waves", caps="", bot=False)
@example(line=b"PRIVMSG #m :moderated", caps="", bot=False)
@example(line=b"PRIVMSG #o :not in it", caps="", bot=False)
@example(line=b"PRIVMSG #nosuch :hello", caps="", bot=False)
@example(line=b"PRIVMSG #a :" + b"x" * 498, caps="", bot=False)
@example(line=b"PRIVMSG #a :" + b"x" * 499, caps="", bot=False)
@example(line=b"PRIVMSG #a :  spaced  ", caps="echo-message", bot=False)
@example(line=b"PRIVMSG #a :bot", caps="message-tags", bot=True)
def test_irc_fast_path_is_the_general_path(line, caps, bot):
    same_without(mock.patch.dict(FAST_PATHS, clear=True), irc_outcome, line, caps, bot)


@_settings
@given(line=_irc_lines)
def test_plain_privmsg_is_what_parse_gives(line):
    found = plain_privmsg(line)
    if found is not None:
        message = parse(line)
        assert (message.command, message.params, message.source, message.tags) == ("PRIVMSG", list(found), None, {})


def test_irc_fast_path_is_taken_without_the_parser():
    world, sender, peer = irc_room("", False)
    with mock.patch("chathub.protocols.irc.session.parse", side_effect=AssertionError("parsed")):
        sender.send("PRIVMSG #a :hello there", "PRIVMSG #a :\x01ACTION waves\x01", "PRIVMSG #m :moderated")
    assert [(m.command, m.params[-1]) for m in peer.lines()] == [
        ("PRIVMSG", "hello there"), ("PRIVMSG", "\x01ACTION waves\x01")
    ]
    assert [m.command for m in sender.lines()] == ["404"]  # +m: the refusal, as dispatch gives it


# -- telnet -------------------------------------------------------------------------------

_line_texts = st.one_of(
    st.sampled_from(
        [b"hello", b"  hello  ", b"", b"   ", b"/help", b"//not a command", b"\x1b[31mred", b"a\x00b", b"tab\there",
         b"caf\xc3\xa9", b"\xff", b"\x03" + b"4red", b"~!@#$%^&*()", b"\x7f", b"/me waves", b"\t"]
    ),
    st.binary(max_size=40),
    st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=40).map(str.encode),
)


def line_outcome(raw: bytes, in_room: bool) -> tuple:
    world = line_world()
    peer = world.line_conn("peer", "#a")
    sender = world.line_conn("sender", "#a")
    if not in_room:
        sender.send("/part #a")
    peer.new_lines()
    sender.new_lines()
    calls = record_sends(world.hub)
    sender.send(raw + b"\r\n")
    world.clock.advance(0)
    return calls, sender.new_lines(), peer.new_lines()


@_settings
@given(raw=_line_texts, in_room=st.booleans())
@example(raw=b"hello", in_room=True)
@example(raw=b"  hello  ", in_room=True)
@example(raw=b"hello", in_room=False)
@example(raw=b"x" * 600, in_room=True)
def test_telnet_fast_path_is_the_general_path(raw, in_room):
    same_without(mock.patch("chathub.protocols.line.plain_text", return_value=None), line_outcome, raw, in_room)


@_settings
@given(raw=_line_texts)
def test_plain_text_is_what_cleaning_gives(raw):
    text = plain_text(raw)
    if text is not None:
        assert text == clean_input(raw.decode("utf-8", "replace")).strip()
        assert not text.startswith("/")


def test_telnet_fast_path_is_taken_without_the_cleaning():
    world = line_world()
    peer = world.line_conn("peer", "#a")
    sender = world.line_conn("sender", "#a")
    peer.new_lines()
    with mock.patch("chathub.protocols.line.clean_input", side_effect=AssertionError("cleaned")):
        sender.send("  hello there ")
    assert peer.new_lines() == ["[#a] <sender> hello there"]


# -- chathub.v1 ---------------------------------------------------------------------------

_json_values = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=10),
    st.sampled_from(["#a", "\ud800", "a\udfffb", "", " "]), st.lists(st.integers(), max_size=2),
)


@_settings
@given(fields=st.dictionaries(st.sampled_from(["target", "text", "type", "ref", "other"]), _json_values))
def test_plain_message_only_where_the_checks_pass(fields):
    """A request the fast path takes is one the field checks let through: both then run
    the same handler (``_talk``); any other goes the general way."""
    msg = {**fields, "type": "message"}
    spec = REQUESTS["message"]
    try:
        _check_fields(msg, spec)
    except RequestError:
        passes = False
    else:
        passes = True
    # the fast path is taken exactly when the checks pass (a bool or a number is no string)
    assert plain_message(msg) == passes


@pytest.mark.parametrize("msg", [{"type": "message", "target": "#a", "text": "hi"}])
def test_plain_message_takes_the_commonest_request(msg):
    assert plain_message(msg)
