"""LineBuffer: the one line splitter of the telnet and IRC protocols."""
from __future__ import annotations

from types import SimpleNamespace

from chathub.protocols.lines import LineBuffer


def make(max_bytes: int):
    lines: list[bytes] = []
    too_long: list[int] = []
    return LineBuffer(max_bytes, SimpleNamespace(line_read=lines.append, line_too_long=lambda: too_long.append(1))), lines, too_long


def test_lf_and_crlf_across_reads():
    buffer, lines, too_long = make(10)
    for chunk in (b"one\r", b"\ntw", b"o\nthree\r\n", b"\r\n"):
        buffer.feed(chunk)
    assert lines == [b"one", b"two", b"three", b""] and too_long == []
    assert buffer.buffered == 0


def test_the_limit_counts_the_line_without_its_ending():
    buffer, lines, too_long = make(5)
    buffer.feed(b"12345\r\n123456\r\nok\n")
    assert lines == [b"12345", b"ok"] and too_long == [1]


def test_an_unterminated_flood_is_reported_once_and_skipped_to_its_end():
    buffer, lines, too_long = make(8)
    for _ in range(100):
        buffer.feed(b"x" * 50)
        assert buffer.buffered <= 8
    buffer.feed(b"tail\nnext\n")
    assert lines == [b"next"] and too_long == [1]


def test_stop_delivers_nothing_more_of_what_was_fed():
    seen: list[bytes] = []
    owner = SimpleNamespace(
        line_read=lambda line: (seen.append(line), line == b"QUIT" and buffer.stop()), line_too_long=lambda: None
    )
    buffer = LineBuffer(100, owner)
    buffer.feed(b"PING a\nQUIT\nPRIVMSG #x :after quit\npartial")
    assert seen == [b"PING a", b"QUIT"] and buffer.buffered == 0
    buffer.feed(b"\nmore\n")
    assert seen == [b"PING a", b"QUIT"]


def _reference(chunks: list[bytes], max_bytes: int) -> tuple[list[bytes], int]:
    """What the splitter must give: every line of the stream (LF or CRLF), but those over
    ``max_bytes`` and the rest of a line that was over it before its end arrived."""
    lines: list[bytes] = []
    too_long = 0
    pending = b""
    discarding = False
    for chunk in chunks:
        pending += chunk
        *complete, pending = pending.split(b"\n")
        for line in complete:
            if discarding:
                discarding = False
                continue
            line = line[:-1] if line.endswith(b"\r") else line
            if len(line) > max_bytes:
                too_long += 1
            else:
                lines.append(line)
        if len(pending) > max_bytes:
            if not discarding:
                discarding = True
                too_long += 1
            pending = b""
    return lines, too_long


def test_any_stream_cut_anywhere_gives_the_reference_lines():
    from hypothesis import given, settings, strategies as st

    pieces = st.lists(st.sampled_from([b"\n", b"\r", b"\r\n", b"a", b"bc", b"\xff", b"PRIVMSG #x :hi", b" "]),
                      max_size=60).map(b"".join)

    @settings(max_examples=500, deadline=None)
    @given(st.lists(pieces, max_size=8), st.integers(min_value=0, max_value=20))
    def check(chunks, max_bytes):
        buffer, lines, too_long = make(max_bytes)
        for chunk in chunks:
            buffer.feed(chunk)
            assert buffer.buffered <= max(max_bytes, 0) + 1  # a held line is never past the limit (+ its CR)
        assert (lines, len(too_long)) == _reference(chunks, max_bytes)

    check()

