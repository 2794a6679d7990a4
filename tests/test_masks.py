"""Hostmask globs: the same answers as a regular expression would give, in time that no
mask can blow up, and the attacks that froze the reactor through WHO, LIST and bans (issue 10,
item 1) answered while a user of every protocol keeps chatting."""
from __future__ import annotations

import re

import pytest
import pytest_twisted
from hypothesis import given, settings
from hypothesis import strategies as st

from chathub.hub.masks import compile_mask, mask_matches
from chathub.names import fold
from tests.support import HubServer

#: the pattern that took 16 s over a 300-character realname with the regex matcher
EVIL = "*a" * 30 + "*b"


def reference(mask: str, subject: str) -> bool:
    """What the old regex translation answered (fine on the short strings Hypothesis makes)."""
    pattern = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in fold(mask))
    return re.match(pattern + r"\Z", fold(subject), re.DOTALL) is not None


@settings(max_examples=2000)
@given(
    st.text(alphabet="aAb*?!@.\n", max_size=12),
    st.text(alphabet="aAbB!@.\n", max_size=14),
)
def test_glob_agrees_with_a_regex(mask, subject):
    assert mask_matches(mask, subject) == reference(mask, subject)


@pytest.mark.parametrize(
    "mask,subject,expected",
    [
        ("*", "", True),
        ("", "", True),
        ("", "a", False),
        ("nick!*@*", "Nick!u@host", True),
        ("*!*@127.0.0.*", "bob!u@127.0.0.1", True),
        ("*!*@127.0.0.?", "bob!u@127.0.0.10", False),
        ("a*a", "a", False),  # first and last pieces may not overlap
        ("a*a", "aa", True),
        ("*ab*ab*", "abab", True),
        ("*ab*ab*", "aba", False),
        ("?*?", "x", False),
        ("*?b?*", "abc", True),
    ],
)
def test_glob_cases(mask, subject, expected):
    assert mask_matches(mask, subject) is expected


@pytest.mark.timeout(20)  # the regex matcher needed longer than the age of the universe here
def test_patterns_that_made_the_regex_backtrack_are_linear():
    glob = compile_mask(EVIL)
    assert not glob.matches("a" * 300)
    assert not glob.matches(("a" * 299 + "c") * 10)
    assert compile_mask("*?a" * 40 + "*b").matches("a" * 120 + "b")
    assert not compile_mask("*?a" * 40 + "*b").matches("a" * 3000)


# -- the attacks, over real sockets ---------------------------------------------------------


@pytest_twisted.async_yield_fixture
async def server():
    s = HubServer()
    yield s
    await s.stop()


@pytest.mark.timeout(60)
@pytest_twisted.ensureDeferred
async def test_who_list_and_bans_with_evil_masks_freeze_nobody(server):
    watchers = await server.bystanders()
    attacker = await server.connect("irc")
    attacker.send("NICK mallory", "USER m 0 * :" + "a" * 300)
    await attacker.expect("001")
    await attacker.roundtrip()
    room = "#" + "a" * 40
    attacker.send(f"JOIN {room}")
    await attacker.expect("366")

    lines = await attacker.roundtrip(f"WHO {EVIL}")
    assert [l.command for l in lines] == ["315"]
    lines = await attacker.roundtrip(f"LIST {EVIL}")
    assert [l.command for l in lines] == ["321", "323"]
    await watchers.still_served()

    # a ban like that is matched on every message and join
    lines = await attacker.roundtrip(f"MODE {room} +b {EVIL}!*@*")
    assert [l.command for l in lines] == ["MODE"]
    for n in range(20):
        attacker.send(f"PRIVMSG {room} :{n}")
    await attacker.roundtrip()
    await watchers.irc.roundtrip(f"JOIN {room}")
    watchers.telnet.send(f"/join {room}")
    await watchers.telnet.expect_re(rf"^\* you joined {room}$")
    await watchers.still_served()


@pytest_twisted.ensureDeferred
async def test_masks_are_bounded_in_length(server):
    limit = server.config.limits.mask_length
    op = await server.irc("op", rooms=["#bounded"])
    long_mask = "x" * (limit + 1) + "!*@*"

    lines = await op.roundtrip(f"MODE #bounded +b {long_mask}")
    (refusal,) = [l for l in lines if l.command == "696"]
    assert refusal.params[1:4] == ["#bounded", "b", long_mask]
    assert "at most" in refusal.params[-1]
    lines = await op.roundtrip("MODE #bounded b")
    assert not [l for l in lines if l.command == "367"]

    lines = await op.roundtrip("WHO " + "*" * (limit + 1))
    assert [(l.command, l.params[:2]) for l in lines][0] == ("FAIL", ["WHO", "INVALID_PARAMS"])
    assert lines[-1].command == "315"
    lines = await op.roundtrip("LIST " + "#" * (limit + 1))
    assert [l.command for l in lines] == ["FAIL", "323"]

    # a telnet operator meets the same bound: it is the hub's, not IRC's
    tel = await server.telnet("teller", rooms=["#tbounded"])
    tel.send(f"/mode #tbounded +b {long_mask}")
    await tel.expect_re(r"^! #tbounded: Mask is too long \(at most \d+ characters\)$")


@pytest_twisted.ensureDeferred
async def test_ban_lists_are_full_for_every_protocol(server):
    limit = server.config.irc.max_bans
    op = await server.irc("listop", rooms=["#full"])
    for n in range(limit):
        op.send(f"MODE #full +b n{n}!*@*")
    lines = await op.roundtrip(f"MODE #full +b one{limit}!*@*")
    (full,) = [l for l in lines if l.command == "478"]
    assert full.params[1:3] == ["#full", "b"]
    assert len(server.hub.find_room("#full").bans) == limit
    tel = await server.telnet("tfull")
    tel.send("/join #full")
    await tel.expect_re(r"^\* you joined #full$")
    await op.roundtrip("MODE #full +o tfull")
    tel.send("/mode #full +b more!*@*")
    await tel.expect_re(r"^! #full: Channel list is full$")
