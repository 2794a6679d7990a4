"""TurnWrites: what a plain TCP connection is written while reads are handled goes out
with one ``send`` at the end of the reactor turn, in order, bounded, and before a close.

The connections are real (127.0.0.1, port 0): only an accepted ``tcp.Server`` takes the
queue's direct-send path the turn is about. The turn's clock is a ``task.Clock``, so the
end of the turn is the test's ``advance(0)``; the sends are counted at ``SendQueue._send``.
"""
from __future__ import annotations

import socket
from types import SimpleNamespace

import pytest
import pytest_twisted
from twisted.internet import defer, protocol, reactor, task
from twisted.internet.endpoints import TCP4ServerEndpoint
from twisted.internet.testing import StringTransport
from twisted.internet.threads import deferToThread

from chathub.protocols.sendqueue import TURN_BYTES, SendQueue, TurnWrites

TIMEOUT = 10.0


class _Accepted(protocol.Protocol):
    def connectionMade(self) -> None:
        self.factory.accepted.put(self)


@pytest_twisted.async_yield_fixture
async def connect():
    """Makes connections to a listener: ``await connect()`` is (the server side's protocol,
    a blocking client socket) of one accepted connection; all end with the test."""
    factory = protocol.Factory.forProtocol(_Accepted)
    factory.accepted = defer.DeferredQueue()
    port = await TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(factory)
    made: list = []

    async def one():
        client = socket.create_connection(("127.0.0.1", port.getHost().port), timeout=TIMEOUT)
        made.append((None, client))
        accepted = await factory.accepted.get().addTimeout(TIMEOUT, reactor)
        made[-1] = (accepted, client)
        return accepted, client

    try:
        yield one
    finally:
        for accepted, client in made:
            if accepted is not None:
                accepted.transport.abortConnection()
            client.close()
        await port.stopListening()


@pytest.fixture
def sends(monkeypatch):
    """Every ``send`` the queues make (through ``_send``), as (queue, bytes)."""
    made: list[tuple[SendQueue, bytes]] = []
    real = SendQueue._send

    def counted(self, data: bytes) -> None:
        made.append((self, bytes(data)))
        real(self, data)

    monkeypatch.setattr(SendQueue, "_send", counted)
    return made


@pytest.fixture
def failures():
    """The failures logged while the test runs."""
    from twisted.logger import globalLogPublisher

    seen: list = []

    def observe(event) -> None:
        if "log_failure" in event:
            seen.append(event["log_failure"])

    globalLogPublisher.addObserver(observe)
    yield seen
    globalLogPublisher.removeObserver(observe)


def queue_of(accepted, turn: TurnWrites, limit: int = 1 << 20) -> SendQueue:
    owner = SimpleNamespace(send_queue_overflow=accepted.transport.abortConnection)
    return SendQueue(accepted.transport, limit, owner, turn=turn)


async def turn_queue(connect):
    """(client socket, the turn's clock, the turn, a queue of one new connection in it)."""
    accepted, client = await connect()
    clock = task.Clock()
    turn = TurnWrites(clock)
    return client, clock, turn, queue_of(accepted, turn)


async def read_exactly(client: socket.socket, size: int) -> bytes:
    """``size`` bytes from ``client``, read in a thread (with the socket's timeout): what the
    kernel did not take at once the reactor writes meanwhile."""

    def read() -> bytes:
        parts = []
        left = size
        while left:
            data = client.recv(left)
            assert data, "the connection closed early"
            parts.append(data)
            left -= len(data)
        return b"".join(parts)

    return await deferToThread(read)


@pytest_twisted.ensureDeferred
async def test_writes_while_reading_go_out_in_one_send_at_the_end_of_the_turn(connect, sends):
    client, clock, turn, queue = await turn_queue(connect)
    with turn:
        queue.write(b"one ")
        with turn:  # a read handled inside another
            queue.write(b"two ")
        queue.write(b"three\r\n")
        assert clock.getDelayedCalls() == []  # the inner block's end is not the turn's
    assert sends == []
    assert len(clock.getDelayedCalls()) == 1
    clock.advance(0)
    assert sends == [(queue, b"one two three\r\n")]
    assert await read_exactly(client, 15) == b"one two three\r\n"


@pytest_twisted.ensureDeferred
async def test_a_write_after_the_read_goes_behind_what_the_read_wrote(connect, sends):
    # the hub's fan-out writes at the end of the turn too, outside any read: if it runs
    # first, what it writes must still follow the replies the reads made
    client, clock, turn, queue = await turn_queue(connect)
    with turn:
        queue.write(b"reply\r\n")
    queue.write(b"chat\r\n")
    assert sends == []
    clock.advance(0)
    assert sends == [(queue, b"reply\r\nchat\r\n")]
    queue.write(b"later\r\n")  # nothing held: at once
    assert [data for _, data in sends] == [b"reply\r\nchat\r\n", b"later\r\n"]
    assert await read_exactly(client, 20) == b"reply\r\nchat\r\nlater\r\n"


@pytest_twisted.ensureDeferred
async def test_outside_a_read_writes_go_at_once(connect, sends):
    client, clock, _, queue = await turn_queue(connect)
    queue.write(b"ping\r\n")
    assert sends == [(queue, b"ping\r\n")] and clock.getDelayedCalls() == []
    assert await read_exactly(client, 6) == b"ping\r\n"


@pytest_twisted.ensureDeferred
async def test_what_one_turn_holds_for_a_connection_is_bounded(connect, sends):
    client, clock, turn, queue = await turn_queue(connect)
    big = b"x" * TURN_BYTES
    with turn:
        queue.write(big)
        assert sends == []
        queue.write(b"y")  # past the bound: sent at once
        assert sends == [(queue, big + b"y")]
        queue.write(b"z")  # held again
    assert len(sends) == 1
    clock.advance(0)
    assert sends[1:] == [(queue, b"z")]
    assert await read_exactly(client, TURN_BYTES + 2) == big + b"yz"


@pytest_twisted.ensureDeferred
async def test_a_close_sends_what_is_held_first(connect, sends):
    client, clock, turn, queue = await turn_queue(connect)
    with turn:
        queue.write(b"ERROR :bye\r\n")
        queue.lose_connection()
    assert sends == [(queue, b"ERROR :bye\r\n")]
    assert await read_exactly(client, 12) == b"ERROR :bye\r\n"
    clock.advance(0)  # the turn's end finds nothing left
    assert len(sends) == 1


@pytest_twisted.ensureDeferred
async def test_a_connection_gone_before_the_end_of_the_turn_sends_nothing(connect, sends):
    _, clock, turn, gone = await turn_queue(connect)
    with turn:
        gone.write(b"never\r\n")
    gone.stopProducing()  # what Twisted does when the connection is lost
    clock.advance(0)
    assert sends == []


@pytest_twisted.ensureDeferred
async def test_held_writes_of_a_paused_connection_wait_in_its_queue_in_order(connect, sends):
    accepted, client = await connect()
    clock = task.Clock()
    turn = TurnWrites(clock)
    queue = queue_of(accepted, turn, limit=100)
    queue.pauseProducing()  # the kernel took no more: what it is written waits in ``pending``
    queue.write(b"older\r\n")
    with turn:
        queue.write(b"newer\r\n")
    clock.advance(0)
    assert queue.pending == [b"older\r\n", b"newer\r\n"] and queue.pending_bytes == 14
    queue.resumeProducing()
    assert await read_exactly(client, 14) == b"older\r\nnewer\r\n"


@pytest_twisted.ensureDeferred
async def test_one_connection_failing_does_not_keep_the_others_from_their_writes(connect, sends, failures):
    broken, _ = await connect()
    accepted, client = await connect()
    clock = task.Clock()
    turn = TurnWrites(clock)

    def overflow() -> None:
        raise RuntimeError("a broken owner")

    failing = SendQueue(broken.transport, 4, SimpleNamespace(send_queue_overflow=overflow), turn=turn)
    healthy = queue_of(accepted, turn)
    with turn:
        failing.write(b"0123456789")  # over its limit once paused: its owner raises
        healthy.write(b"fine\r\n")
    failing.pauseProducing()
    clock.advance(0)
    assert [data for q, data in sends if q is healthy] == [b"fine\r\n"]
    assert await read_exactly(client, 6) == b"fine\r\n"
    assert [f for f in failures if f.check(RuntimeError) and str(f.value) == "a broken owner"] != []


def test_a_transport_without_a_plain_socket_ignores_the_turn():
    # TLS and test transports: Twisted (or OpenSSL) buffers those writes already
    transport = StringTransport()
    clock = task.Clock()
    turn = TurnWrites(clock)
    queue = SendQueue(transport, 100, SimpleNamespace(send_queue_overflow=lambda: None), turn=turn)
    with turn:
        queue.write(b"now")
    assert transport.value() == b"now" and clock.getDelayedCalls() == []


@pytest_twisted.ensureDeferred
async def test_an_irc_client_pipelining_its_registration_gets_one_packet(irc_hub, sends):
    # NICK, USER and PING in one packet: the welcome burst and the PONG go out together
    client = await irc_hub.connect("irc")
    client.send("NICK piped", "USER u 0 * :R", "PING :turn")
    await client.expect_re(r"PONG \S+ :?turn")
    mine = [data for _, data in sends if b" 001 piped " in data or b"PONG" in data]
    assert len(mine) == 1
    lines = mine[0].split(b"\r\n")
    assert b" 001 piped " in lines[0] and lines[-2].endswith(b" PONG irc.test turn") and lines[-1] == b""


@pytest_twisted.ensureDeferred
async def test_a_telnet_client_pipelining_commands_gets_one_packet(irc_hub, sends):
    client = await irc_hub.connect("line")
    await client.expect_re(r"^Welcome to ")  # the greeting, written when it connected
    client.send("/nick piped", "/help")
    await client.expect_re(r"^Commands: ")
    (answers,) = [data for _, data in sends if b"Commands: " in data]
    assert b"you are piped" in answers and answers.index(b"you are piped") < answers.index(b"Commands: ")


@pytest_twisted.ensureDeferred
async def test_a_websocket_client_sending_two_requests_at_once_gets_one_packet(ws_hub, sends):
    from tests.support import ws_login

    client = await ws_login(ws_hub.port("http"), "piped")
    client.send_together({"type": "rooms", "ref": "turn-one"}, {"type": "rooms", "ref": "turn-two"})
    await client.expect({"type": "rooms", "ref": "turn-one"})
    await client.expect({"type": "rooms", "ref": "turn-two"})
    (answers,) = [data for _, data in sends if b"turn-one" in data]
    assert b"turn-two" in answers and answers.index(b"turn-one") < answers.index(b"turn-two")
