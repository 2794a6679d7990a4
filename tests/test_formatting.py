"""The hub's formatting model (chathub/formatting.py): mIRC codes into styled runs, stripped,
as ANSI SGR; terminal escapes removed whole. Hypothesis checks the invariants over any text."""
from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from chathub import formatting as f
from chathub.formatting import PLAIN, Style

#: text rich in formatting codes, digits, commas, hex digits and escapes
ALPHABET = st.sampled_from(list(f.CODES) + list("0123456789,abcdefABCDEF xyz\x1b[];?\x07\\\x9b") + ["é", "\ufffd"])
TEXT = st.lists(ALPHABET, max_size=60).map("".join)


def test_each_code_as_modern_ircdocs_describes_it():
    assert f.spans("\x02b\x02 \x1di\x1d\x1fu\x1e\x11\x16x\x0fy") == [
        ("b", Style(bold=True)), (" ", PLAIN), ("i", Style(italic=True)),
        ("u", Style(underline=True)), ("x", Style(underline=True, strikethrough=True, monospace=True, reverse=True)),
        ("y", PLAIN),
    ]
    # colour: one or two digits, a comma only with a digit after it; \x03 alone resets colours
    assert f.spans("\x033,4g\x03,x\x0312,x\x03") == [
        ("g", Style(fg=3, bg=4)), (",x", PLAIN), (",x", Style(fg=12)),
    ]
    assert f.spans("\x03044") == [("4", Style(fg=4))]  # at most two digits
    assert f.spans("\x034,5a\x036b") == [("a", Style(fg=4, bg=5)), ("b", Style(fg=6, bg=5))]  # bg kept
    assert f.spans("\x0399,99d") == [("d", PLAIN)]  # 99: the default colour
    assert f.spans("\x04FF8800,000000h\x04x\x04abcq") == [
        ("h", Style(fg="#ff8800", bg="#000000")), ("xabcq", PLAIN),
    ]
    assert f.plain("\x0304,01red on black\x03 plain \x02bold\x02 \x1dital\x1d") == "red on black plain bold ital"


def test_ansi():
    assert f.to_ansi("plain") == "plain"
    assert f.to_ansi("\x0304,01r\x03 p") == "\x1b[0;91;40mr\x1b[0m p"
    assert f.to_ansi("\x0352e\x04010203,ffffffh") == "\x1b[0;38;2;255;0;0me\x1b[0;38;2;1;2;3;48;2;255;255;255mh\x1b[0m"
    assert f.to_ansi("\x11mono only") == "mono only"  # a terminal is monospaced already


def test_strip_ansi_whole():
    assert f.strip_ansi("a\x1b[31mb\x1b[0m") == "ab"
    assert f.strip_ansi("\x1b]0;title\x07t\x1b]8;;u\x1b\\l\x1bPdcs\x1b\\d") == "tld"
    assert f.strip_ansi("\x1b(Bx\x1bcy\u009b2Jz") == "xyz"
    assert f.strip_ansi("cut \x1b[38;5") == "cut "
    assert f.strip_ansi("cut \x1b]0;never ended") == "cut "
    assert f.strip_ansi("\x1b[é") == "é"  # not a CSI byte: the sequence ends, the text stays


@given(TEXT)
def test_spans_cover_the_text_without_codes(text):
    runs = f.spans(text)
    assert "".join(part for part, _ in runs) == f.plain(text)
    assert all(part and not (set(part) & f.CODES) for part, _ in runs)
    assert all(a[1] != b[1] for a, b in zip(runs, runs[1:], strict=False))  # neighbours differ in style
    # text without codes is kept whole, in order
    kept = [c for c in text if c not in f.CODES and not c.isdigit() and c not in ",abcdefABCDEF"]
    stripped = [c for c in f.plain(text) if c not in "0123456789,abcdefABCDEF"]
    assert stripped == kept


@given(TEXT)
def test_strip_is_idempotent_and_ansi_strips_back(text):
    stripped = f.plain(text)
    assert f.plain(stripped) == stripped
    assert f.strip_ansi(f.to_ansi(f.strip_ansi(text))) == f.plain(f.strip_ansi(text))


@given(TEXT)
def test_strip_ansi_leaves_no_escape(text):
    out = f.strip_ansi(text)
    assert "\x1b" not in out and "\x9b" not in out
    assert f.strip_ansi(out) == out


def test_long_hostile_input():
    # shapes that would cost a backtracking or merging parser dearly; the parser reads them once
    n = 100_000
    for text in ("\x03" * n, "\x031," * n, "\x04abcde" * n, "\x1b[" * n, "\x1b]" + "x" * n):
        assert len(f.plain(text)) <= len(text)
        assert len(f.strip_ansi(text)) <= len(text)


@given(st.text(alphabet=st.sampled_from("aZ09[]\\`_^{|}- é\ufffd\x01"), max_size=12), st.integers(1, 10))
def test_a_nick_is_refused_exactly_when_a_reason_is_given(nick, length):
    from chathub.names import nick_problem, valid_nick

    problem = nick_problem(nick, length)
    assert (problem is None) == valid_nick(nick, length)
    # the first character that is not allowed is named
    bad = [c for i, c in enumerate(nick) if not valid_nick("a" + c, 2) or (i == 0 and c in "0123456789-")]
    if bad and 0 < len(nick) <= length:
        names = {"\ufffd": "U+FFFD", "\x01": "U+0001", " ": "U+0020"}
        assert names.get(bad[0], repr(bad[0])) in problem
