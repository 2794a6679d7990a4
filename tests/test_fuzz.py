"""Property-based attacks on every protocol over real sockets (issue 10, "make the classes part
of the suite"): IRC lines, telnet lines with IAC sequences, chathub.v1 requests (types,
nesting, sizes, surrogates) and raw WebSocket frames, each sent by a fresh connection to one
running hub with an honest user of every protocol in a room.

For every example: the server logs no traceback, the attacking session answers a probe or
closes (never hangs), and the bystanders still talk to each other afterwards.

Hypothesis runs in a worker thread; each example's socket work is either blocking I/O in that
thread (the server runs on the reactor meanwhile) or a coroutine run on the reactor with
``blockingCallFromThread``. ``CHATHUB_FUZZ_EXAMPLES`` sets the number of examples per
protocol (a bounded run by default; ``CHATHUB_FUZZ_EXAMPLES=2000 scripts/test tests/test_fuzz.py``
for a long one). The strategies and probes are tests/attacks.py's, shared with
tests/test_cluster_attacks.py.
"""
from __future__ import annotations

import itertools
import os

import pytest
import pytest_twisted
from hypothesis import example, given
from hypothesis import strategies as st
from twisted.internet import defer, threads
from twisted.internet.threads import blockingCallFromThread

from tests.attacks import (
    IRC_ANSWER,
    IRC_COMMANDS,
    IRC_PROBE,
    PROBE_TIMEOUT,
    ROOM,
    SESSION_REQUEST_TYPES,
    TELNET_ANSWER,
    TELNET_COMMANDS,
    TELNET_EXAMPLES,
    TELNET_PROBE,
    RawWebSocket,
    answers_or_closes,
    attack_settings,
    frames,
    irc_lines,
    irc_sign_on,
    irc_streams,
    json_messages,
    json_session_messages,
    json_sign_on,
    send_and_probe,
    session_request,
    telnet_lines,
    telnet_sign_on,
    telnet_streams,
)
from tests.support import HubServer, LineClient

EXAMPLES = int(os.environ.get("CHATHUB_FUZZ_EXAMPLES", "60"))


@pytest_twisted.async_yield_fixture
async def server():
    # flood control off for loopback (HubServer's default): the examples are short, and waiting
    # on the penalty clock would only make them slow (test_flood and the session tests cover it)
    s = HubServer()
    s.watchers = await s.bystanders(ROOM)
    yield s
    await s.stop()


def _reactor():
    from twisted.internet import reactor

    return reactor


def _on_reactor(coroutine_function, *args):
    """Run ``coroutine_function(*args)`` on the reactor from the Hypothesis thread; its result."""
    return blockingCallFromThread(_reactor(), lambda: defer.ensureDeferred(coroutine_function(*args)))


def _bystanders_fine(server) -> None:
    _on_reactor(server.watchers.still_served)
    assert not server.tracebacks, "\n".join(server.tracebacks)


async def _run_in_thread(test) -> None:
    await threads.deferToThread(test)


def _line_attack(server, kind: str, streams, probe: bytes, answer: str, examples=()):
    """The Hypothesis test of a line protocol: a fresh connection to the ``kind`` listener
    sends one of ``streams`` (every one of ``examples`` first), then ``probe``, which must be
    answered (``answer``) or closed."""

    def attack(stream):
        client = LineClient(server.port(kind))
        send_and_probe(client, client.send, stream, lambda: answers_or_closes(client, probe, answer))
        _bystanders_fine(server)

    for stream in examples:
        attack = example(stream=stream)(attack)
    return attack_settings(EXAMPLES)(given(stream=streams)(attack))


def _signed_on(sign_on, sessions):
    """``sessions`` (lists of lines) each after ``sign_on`` of a nick of its own (the last
    attacker's may not be free yet)."""
    attackers = itertools.count(1)
    return sessions.map(lambda lines: [sign_on(f"fz{next(attackers)}"), *lines])


# -- signed-on sessions ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kind, sign_on, commands, lines, probe, answer",
    [
        ("irc", irc_sign_on, IRC_COMMANDS, irc_lines, IRC_PROBE, IRC_ANSWER),
        ("line", telnet_sign_on, TELNET_COMMANDS, telnet_lines, TELNET_PROBE, TELNET_ANSWER),
    ],
    ids=["irc", "telnet"],
)
@pytest_twisted.ensureDeferred
async def test_signed_on_sessions_are_answered_or_closed_and_hurt_nobody(server, kind, sign_on, commands, lines,
                                                                        probe, answer):
    """Raw streams seldom sign on: these sessions are in the room first, then send lines
    (every command of the list alone first), so what they say reaches the bystanders."""
    examples = [[sign_on(f"fx{n}"), command + b"\r\n"] for n, command in enumerate(commands)]
    await _run_in_thread(_line_attack(server, kind, _signed_on(sign_on, lines), probe, answer, examples))


# -- IRC -------------------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_irc_bytes_are_answered_or_closed_and_hurt_nobody(server):
    await _run_in_thread(_line_attack(server, "irc", irc_streams, IRC_PROBE, IRC_ANSWER))


# -- telnet ----------------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_telnet_bytes_and_iac_are_answered_or_closed_and_hurt_nobody(server):
    attack = _line_attack(server, "line", telnet_streams, TELNET_PROBE, TELNET_ANSWER, TELNET_EXAMPLES)
    await _run_in_thread(attack)


# -- chathub.v1 requests ---------------------------------------------------------------------


async def _json_example(server, messages) -> None:
    client = await server.ws_connect()
    try:
        await client.expect({"type": "hello"})
        for message in messages:
            if client.close_info is not None:
                break
            client.send_text(message, binary=isinstance(message, bytes))
        if client.close_info is None:
            client.send_json({"type": "ping", "token": "alive"})
            try:
                await client.expect({"type": "pong", "token": "alive"}, PROBE_TIMEOUT)
            except ConnectionError:
                pass  # closed while we waited: allowed, as long as it said why (below)
        if client.close_info is not None:
            _clean, code, _reason = client.close_info
            assert code is not None and code != 1006, f"closed without a close frame: {client.close_info}"
    finally:
        if client.close_info is None:
            client.dropConnection(abort=True)
            await client.wait_closed()


@pytest_twisted.ensureDeferred
async def test_signed_on_json_sessions_are_answered_or_closed_and_hurt_nobody(server):
    """Sessions logged in and in the room, then requests (one of every kind first)."""
    attackers = itertools.count(1)

    def attack(messages):
        _on_reactor(_json_example, server, json_sign_on(f"fz{next(attackers)}") + messages)
        _bystanders_fine(server)

    for kind in SESSION_REQUEST_TYPES:
        attack = example(messages=[session_request(kind)])(attack)
    await _run_in_thread(attack_settings(EXAMPLES)(given(messages=json_session_messages)(attack)))


@pytest_twisted.ensureDeferred
async def test_json_requests_are_answered_or_closed_and_hurt_nobody(server):
    @attack_settings(EXAMPLES)
    @given(messages=json_messages)
    def attack(messages):
        _on_reactor(_json_example, server, messages)
        _bystanders_fine(server)

    await _run_in_thread(attack)


# -- WebSocket frames ------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_websocket_frames_are_answered_or_closed_and_hurt_nobody(server):
    @attack_settings(EXAMPLES)
    @given(frames=st.lists(frames(), max_size=8))
    def attack(frames):
        client = RawWebSocket(server.http_port)
        send_and_probe(client, client.sock.sendall, frames, client.answers_or_closes)
        _bystanders_fine(server)

    await _run_in_thread(attack)
