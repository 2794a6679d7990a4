"""A bounded outgoing queue per connection, so a client that stops reading cannot grow memory.

The queue registers itself as a streaming producer with the transport: while the kernel
accepts bytes, writes go straight through; once the transport's own buffer fills, Twisted
pauses us and further writes are held here, counted in ``pending_bytes``. Past ``limit``
the connection is dropped through ``owner.send_queue_overflow()``; nobody else ever
waits for it.

On a plain TCP connection (no TLS) whose Twisted write buffer is empty, a write goes to
the socket at once: fan-out writes to thousands of sockets per message, and Twisted's
buffered path (append, register with epoll, wait a reactor turn, send, unregister) costs
several times the ``send`` itself. What the kernel does not take, and every write while
Twisted still holds bytes, goes through ``transport.write`` as before, so order, flow
control and error handling stay Twisted's. Such connections also get TCP_NODELAY: our
writes are already whole batches, and Nagle's algorithm would only delay the next one.

What such a connection is written while reads are handled (inside its protocol's
``TurnWrites`` block: replies, a welcome, what the hub delivers at once) is sent at the end
of the reactor turn instead, as Twisted's buffered write would, but without its epoll
round: one ``send`` per connection for everything the turn owes it. A client that sends
several commands in one packet gets one packet back, and a burst of clients (registrations,
say) gets its answers in a row rather than one between each read: on a loopback or local
peer each ``send`` that finds the reader asleep wakes it, which costs the sender several
times the copy (measured: 21 us of the ``send`` per registration against 8.5 for Twisted
Words' buffered one; bench/README.md).
"""
from __future__ import annotations

from typing import Any, Optional, Protocol, Union, cast

from zope.interface import implementer

from twisted.internet import tcp
from twisted.internet.interfaces import IConsumer, IDelayedCall, IPushProducer, IReactorTime, ITransport
from twisted.logger import Logger

_log = Logger()

#: a connection's writes held for the end of the turn are sent at once past this many
#: bytes (Twisted's own write buffer size): what one turn owes one client stays bounded.
#: They are not counted in ``pending_bytes``: a paused queue meets its ``limit`` when they
#: are sent (at the latest when the turn ends), so it may hold this much more until then
TURN_BYTES = 65536


def _plain_tcp_socket(transport):
    """The socket of an accepted plain TCP connection, or None for anything else.

    A TLS connection's transport is the TLS protocol (or, after ``startTLS``, a
    ``tcp.Server`` whose ``TLS`` is true): its bytes must go through OpenSSL, never
    straight to the socket. Subclasses of ``tcp.Server`` count (a connection-limited
    port's connections are one).
    """
    if not isinstance(transport, tcp.Server) or getattr(transport, "TLS", True):
        return None
    try:
        transport.setTcpNoDelay(True)
    except OSError:
        return None
    return transport.socket


class QueueOwner(Protocol):
    """The connection a ``SendQueue`` writes for."""

    def send_queue_overflow(self) -> None:
        """The client stopped reading and the queue is full: drop the connection."""


class TurnWrites:
    """The end of the reactor turn, for the plain-TCP writes made while reads are handled.

    A protocol handles each read inside ``with turn:``; a ``SendQueue`` given this turn
    holds what it would have sent at once while inside, and the queues holding anything
    send it with one ``send`` each when the turn ends (``callLater(0)``: after every
    read the reactor's poll returned has been handled). One per listener kind, built
    with its server at start-up.
    """

    __slots__ = ("_clock", "reading", "_queues", "_call")

    def __init__(self, clock: Optional[IReactorTime] = None) -> None:
        """``clock``: the reactor (the default), or a ``task.Clock`` in tests."""
        self._clock = clock
        #: how deep in ``with turn:`` blocks the reactor is (reads handled inside reads)
        self.reading = 0
        self._queues: list[SendQueue] = []  # those holding writes, in the order they began
        self._call: Optional[IDelayedCall] = None

    def __enter__(self) -> None:
        self.reading += 1

    def __exit__(self, *exc_info: object) -> None:
        self.reading -= 1
        if not self.reading and self._queues and self._call is None:
            clock = self._clock
            if clock is None:
                from twisted.internet import reactor

                clock = self._clock = cast(IReactorTime, reactor)
            self._call = clock.callLater(0, self.send)

    def hold(self, queue: "SendQueue") -> None:
        """``queue`` holds writes until the end of the turn."""
        self._queues.append(queue)

    def send(self) -> None:
        """The turn has ended: every queue sends what it holds."""
        self._call = None
        queues, self._queues = self._queues, []
        for queue in queues:
            try:
                queue.send_held()
            except Exception:  # one connection's failure is not the others'
                _log.failure("sending a connection's writes at the end of the turn")


@implementer(IPushProducer)
class SendQueue:
    """Writes to ``transport``, holding at most ``limit`` bytes while it is paused."""

    __slots__ = (
        "transport",
        "limit",
        "owner",
        "paused",
        "_pending",
        "pending_bytes",
        "peak_bytes",
        "closed",
        "_socket",
        "_flow",
        "_turn",
        "_held",
    )

    def __init__(
        self,
        transport: ITransport,
        limit: int,
        owner: QueueOwner,
        flow: Optional[ITransport] = None,
        turn: Optional[TurnWrites] = None,
    ) -> None:
        """Write to ``transport``; register for flow control with ``flow`` (default the same).

        ``flow`` is the real TCP transport when ``transport`` is a wrapper (telnet) that
        cannot register producers itself. The queue keeps ``owner`` (the connection), not a
        bound method of it: one queue exists per connection. With ``turn``, a plain TCP
        connection's writes made while reads are handled wait for the end of the turn.
        """
        self.transport = transport
        self.limit = limit
        self.owner = owner
        self.paused = False
        self._pending: Optional[list[bytes]] = None  # made when first paused with data
        self.pending_bytes = 0
        self.peak_bytes = 0  # the most ever held at once (never above ``limit``)
        self.closed = False
        self._socket = _plain_tcp_socket(transport)
        self._turn = turn if self._socket is not None else None
        #: what waits for the end of the turn (None: nothing); every write goes after it
        self._held: Union[bytes, bytearray, None] = None
        # a consumer too: TCP and TLS transports are
        self._flow = cast(IConsumer, flow or transport)
        self._flow.registerProducer(self, True)

    def write(self, data: bytes) -> None:
        """Send ``data`` now if the transport takes it, else hold it (up to ``limit``);
        while reads are handled (``TurnWrites``), at the end of the turn."""
        if self.closed:
            return
        held = self._held
        if held is not None:
            if type(held) is bytes:  # the second write of the turn: from now on appended to
                held = self._held = bytearray(held)
            held += data
            if len(held) > TURN_BYTES:
                self.send_held()
            return
        turn = self._turn
        if turn is not None and turn.reading:
            # most turns write a connection once: kept as it is (bytes: a bytearray would be
            # the caller's, appended to by the next write)
            self._held = data if type(data) is bytes else bytes(data)
            turn.hold(self)
            return
        self._send(data)

    def send_held(self) -> None:
        """Send what waits for the end of the turn."""
        held = self._held
        if held is not None:
            self._held = None
            if not self.closed:
                self._send(held if type(held) is bytes else bytes(held))

    def _send(self, data: bytes) -> None:
        if not self.paused:
            transport: Any = self.transport  # a tcp.Server when ``sock`` is set: its buffer is read
            sock = self._socket
            if (
                sock is not None
                and not transport._tempDataLen
                and len(transport.dataBuffer) == transport.offset
                and transport.connected
                and not transport.disconnecting
                and not transport.TLS
            ):
                try:
                    sent = sock.send(data)
                except BlockingIOError:
                    sent = 0
                except OSError:
                    sent = 0  # Twisted's own write reports the broken connection
                if sent == len(data):
                    return
                data = data[sent:]
            transport.write(data)
            return
        if self.pending_bytes + len(data) > self.limit:
            # Refuse before holding it, so the accounting never exceeds the limit.
            self.closed = True
            self._pending = None
            self.pending_bytes = 0
            self.owner.send_queue_overflow()
            return
        if self._pending is None:
            self._pending = []
        self._pending.append(data)
        self.pending_bytes += len(data)
        if self.pending_bytes > self.peak_bytes:
            self.peak_bytes = self.pending_bytes

    def lose_connection(self) -> None:
        """Close the connection once what is queued has been written (``IrcWriter``).

        What this queue holds goes to the transport, and the queue stops being its
        producer: a transport closes only once its producer is gone (TLS keeps to that; a
        TLS connection closed with the queue still registered stayed open for ever). A
        write after this goes to the closing transport, which flushes it before it closes.
        """
        self.send_held()
        if self._pending and not self.closed:
            pending, self._pending = self._pending, None
            self.pending_bytes = 0
            self.transport.writeSequence(pending)
        self.paused = False
        self._flow.unregisterProducer()
        self.transport.loseConnection()

    @property
    def pending(self) -> list[bytes]:
        """The writes held while paused, oldest first."""
        return self._pending or []

    def pauseProducing(self) -> None:
        self.paused = True

    def resumeProducing(self) -> None:
        self.paused = False
        if self._pending and not self.closed:
            pending, self._pending = self._pending, None
            self.pending_bytes = 0
            self.transport.writeSequence(pending)

    def stopProducing(self) -> None:
        self.closed = True
        self._held = None
        self._pending = None
        self.pending_bytes = 0
