"""Property tests: whatever bytes a client sends, the server answers or closes cleanly,
and nothing is ever logged as a failure."""
from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.logger import LogLevel, globalLogPublisher

from tests.support import irc_world

#: byte strings biased towards IRC: real commands, separators, tags, junk
_fragments = st.sampled_from(
    [
        b"NICK x", b"USER a 0 * :r", b"CAP LS 302", b"CAP REQ :sasl batch", b"CAP END",
        b"JOIN #a", b"PRIVMSG #a :", b"MODE #a +ovbklimnt", b"@label=1;+t=\\s", b":src ",
        b"AUTHENTICATE PLAIN", b"AUTHENTICATE +", b"WHO * %tcuihsnfdlaor,1", b"PING",
        b"KICK #a,#b x,y", b"MONITOR + a,b", b"TOPIC #a :", b"\r\n", b"\n", b"\r", b" ",
        b":", b"\x00", b"\xff\xfe", b"\x01ACTION", b"@", b";", b"=", b",", b"#",
    ]
)
_chunks = st.lists(st.one_of(_fragments, st.binary(max_size=64)), max_size=40)


@pytest.fixture
def failures():
    seen = []

    def observer(event):
        if event.get("log_failure") is not None or event.get("log_level") in (
            LogLevel.error,
            LogLevel.critical,
        ):
            seen.append(event)

    globalLogPublisher.addObserver(observer)
    yield seen
    globalLogPublisher.removeObserver(observer)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(chunks=_chunks, register_first=st.booleans())
def test_any_bytes_get_replies_or_a_clean_close(failures, chunks, register_first):
    world = irc_world()
    bystander = world.irc_conn("bystander")
    bystander.send("JOIN #a")
    conn = world.irc_conn("fuzzer") if register_first else world.irc_conn()
    for chunk in chunks:
        if conn.closed:
            break
        conn.protocol.dataReceived(chunk)
    if not conn.closed:
        conn.send("", "PING :alive?")
        assert conn.lines()[-1].params[-1] == "alive?"
    else:
        assert conn.lines()[-1].command == "ERROR"
    # another user of the same hub is unaffected
    bystander.lines()
    bystander.send("PING :still")
    assert bystander.lines()[-1].params[-1] == "still"
    assert failures == []


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(min_size=1, max_size=20000))
def test_unterminated_garbage_is_bounded(failures, data):
    world = irc_world()
    conn = world.irc_conn()
    conn.protocol.dataReceived(data.replace(b"\n", b" "))
    assert conn.protocol.lines.buffered <= 8703
    assert failures == []
