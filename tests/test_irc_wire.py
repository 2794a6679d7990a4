"""The IRC wire layer: ircdocs parser vectors (msg-split, msg-join) and the length limits."""
from __future__ import annotations

import irctokens
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from parser_tests import data

from chathub.protocols.irc.wire import MAX_BODY, MAX_TAGS, LineError, Message, parse, parse_general, serialise


def _split_cases():
    return [pytest.param(t, id=t["input"][:60]) for t in data.msg_split["tests"]]


def _join_cases():
    return [pytest.param(t, id=t.get("desc", "")[:60]) for t in data.msg_join["tests"]]


@pytest.mark.parametrize("case", _split_cases())
def test_msg_split_vectors(case):
    atoms = case["atoms"]
    msg = parse(case["input"].encode("utf-8"))
    assert msg.command == atoms["verb"].upper()
    assert msg.params == atoms.get("params", [])
    assert msg.source == atoms.get("source")
    assert msg.tags == (atoms.get("tags") or {})


@pytest.mark.parametrize("case", _join_cases())
def test_msg_join_vectors(case):
    atoms = case["atoms"]
    line = serialise(atoms.get("tags"), atoms.get("source"), atoms["verb"], atoms.get("params", []))
    assert line.endswith(b"\r\n")
    text = line[:-2].decode("utf-8")
    if text in case["matches"]:
        return
    # tag order is free: compare parsed forms against each accepted match
    ours = irctokens.tokenise(text)
    assert any(
        (ours.tags, ours.source, ours.command, ours.params)
        == (m.tags, m.source, m.command, m.params)
        for m in map(irctokens.tokenise, case["matches"])
    ), text


def test_round_trip_keeps_every_part():
    msg = Message("PRIVMSG", ["#a", ":x y;z"], "n!u@h", {"+draft/reply": "a;b c\\d", "k": ""})
    assert parse(msg.to_bytes()[:-2]) == msg


#: any text but NUL (no part of an IRC line) and surrogates (written as U+FFFD, see
#: tests/test_unicode_boundary.py), the characters escaping is about made likely
_tag_values = st.text(
    st.one_of(st.characters(exclude_categories=("Cs",), exclude_characters="\x00"), st.sampled_from(";\\ \r\n=")),
    min_size=1,
    max_size=30,
)


@settings(max_examples=300, deadline=None)
@given(_tag_values)
def test_any_tag_value_survives_escaping(value):
    msg = Message("TAGMSG", ["#a"], "n!u@h", {"+t": value})
    assert parse(msg.to_bytes()[:-2]).tags == {"+t": value}


def test_serialise_cuts_body_to_512_bytes_on_a_character_boundary():
    line = Message("PRIVMSG", ["#room", "é" * 600], "nick!user@host").to_bytes()
    assert len(line) <= MAX_BODY
    line.decode("utf-8")  # never cut inside a character
    assert line.endswith(b"\r\n")


def test_serialise_keeps_tags_within_their_limit():
    tags = {f"+t{i}": "x" * 100 for i in range(200)}
    line = serialise(tags, "s", "TAGMSG", ["#a"])
    tag_part = line.split(b" ", 1)[0]
    assert len(tag_part) + 1 <= MAX_TAGS
    assert line.endswith(b" :s TAGMSG #a\r\n")


@pytest.mark.parametrize(
    "line, reason",
    [
        (b"PRIVMSG #a :" + b"x" * 600, "too_long"),
        (b"@" + b"a" * 9000 + b" PING x", "too_long"),
        (b"PRIVMSG #a :hi\xaa", "invalid_utf8"),
        (b"", "empty"),
        (b"   ", "empty"),
        (b"@a=b", "empty"),
        (b":src", "empty"),
    ],
)
def test_bad_lines_are_refused_with_a_reason(line, reason):
    with pytest.raises(LineError) as info:
        parse(line)
    assert info.value.reason == reason


def test_refused_line_keeps_its_label():
    with pytest.raises(LineError) as info:
        parse(b"@label=xyz PRIVMSG #qux hi\xaa")
    assert info.value.tags == {"label": "xyz"}
    assert info.value.command == "PRIVMSG"


def _outcome(parser, line: bytes):
    try:
        m = parser(line)
    except LineError as e:
        return ("error", e.reason, e.command, e.tags)
    return (m.command, m.params, m.source, m.tags)


_irc_bytes = st.one_of(
    st.binary(max_size=600),
    st.lists(
        st.sampled_from([b"PING", b"NICK", b"user", b" ", b"  ", b":", b" :", b"@a=b", b"#room", b"x", b"\x00",
                         b"\r", b"\t", b"\xff", "é".encode(), b"%", b"*", b"0"]),
        max_size=40,
    ).map(b"".join),
)


@given(line=_irc_bytes)
@settings(max_examples=500, deadline=None)
def test_the_plain_line_path_parses_as_the_general_one(line):
    """``parse`` takes a line without tags or source apart itself; for any bytes it gives
    what the general path (irctokens) gives: the same message, or the same error."""
    assert _outcome(parse, line) == _outcome(parse_general, line)
