"""IRC over TCP: line splitting with the protocol's limits, feeding an ``IrcSession``."""
from __future__ import annotations

from typing import cast

from twisted.internet import protocol
from twisted.internet.interfaces import ISSLTransport, ITCPTransport
from twisted.logger import Logger

from chathub.protocols.connlimit import REASON_TEXT
from chathub.protocols.irc import numerics as N
from chathub.protocols.irc.server import IrcServer
from chathub.protocols.irc.session import IrcSession
from chathub.protocols.irc.wire import MAX_LINE
from chathub.protocols.lines import LineBuffer
from chathub.protocols.sendqueue import SendQueue


def display_host(address) -> str:
    """The host part users see for a peer address."""
    host = getattr(address, "host", None) or "localhost"
    if host.startswith(":"):
        host = "0" + host  # a leading ':' would break IRC parsing of the prefix
    return host


def _from_factory(name: str) -> property:
    """A read-only attribute that is the factory's attribute ``name``."""
    return property(lambda self: getattr(self.factory, name), doc=f"The factory's ``{name}``.")


class IrcProtocol(protocol.Protocol):
    """Splits the byte stream into lines (LF or CRLF) of at most ``MAX_LINE`` bytes
    (``LineBuffer``), feeding the session.

    A line longer than that is answered with 417 ERR_INPUTTOOLONG and skipped up to its
    end; the buffer never holds more than one line's worth, whatever the client sends.
    """

    log = Logger()

    def __init__(self, factory: "IrcFactory") -> None:
        self.factory = factory
        self.session: IrcSession | None = None
        self.queue: SendQueue | None = None
        self.lines = LineBuffer(MAX_LINE, self)

    # What every connection shares is read from the factory's server, not copied into
    # each of 10,000 instance dicts.
    server = _from_factory("server")

    # -- Protocol ----------------------------------------------------------------------

    def connectionMade(self) -> None:
        assert self.transport is not None  # Twisted sets it before calling this
        peer = self.transport.getPeer()
        host = display_host(peer)
        server = self.server
        if server.config.logging.detailed:  # else the line when it closes is the one
            self.log.debug("IRC connection from {host}:{port}", event="connect", host=host,
                           port=getattr(peer, "port", None))
        self.queue = SendQueue(self.transport, server.config.limits.sendq_bytes, self, turn=server.turn)
        # the session writes to the queue itself (its IrcWriter): fan-out calls that once
        # per recipient per message, so no forwarding method sits in between
        self.session = IrcSession(
            server,
            self.queue,
            host,
            address=getattr(peer, "host", ""),
            secure=ISSLTransport.providedBy(self.transport),
            reader=self.transport,
        )

    def send_queue_overflow(self) -> None:
        """The client stopped reading and its send queue is full."""
        self.server.hub.counts.sendq_drops += 1
        session = self.session
        if session is not None and not session.closed:
            session._shutdown("SendQ exceeded")
        cast(ITCPTransport, self.transport).abortConnection()  # TCP, or TLS over it

    def dataReceived(self, data: bytes) -> None:
        # the chat these lines cause is held by the hub's fan-out, and what they are answered
        # by (to this client or another) by the send queues: both are written at the end
        # of the reactor turn, one write per connection for every read of the turn
        server = self.server
        with server.turn, server.hub.batching():
            self._lines_received(data)

    def _lines_received(self, data: bytes) -> None:
        session = self.session
        if session is None or session.closed:
            self.lines.stop()
            return
        self.lines.feed(data)

    def line_read(self, line: bytes) -> None:
        session = self.session
        assert session is not None  # lines are fed only to a session
        session.line_received(line)
        if session.closed:
            self.lines.stop()  # a QUIT ends the connection: ignore what followed it

    def line_too_long(self) -> None:
        session = self.session
        assert session is not None  # lines are fed only to a session
        session.write_messages([session.numeric(N.ERR_INPUTTOOLONG, "Input line too long")])

    def connectionLost(self, reason=protocol.connectionDone) -> None:
        session = self.session
        if session is not None:
            # closed already: the server hung up (QUIT, KILL, bad password, timeout, send queue),
            # and the hub's quit line or the refusal line before this one says why
            self.log.info(
                "IRC connection from {host} closed ({nick}): {why}", event="disconnect",
                host=session.host,
                nick=session.nick or "no nick",
                why="by the server" if session.closed else reason.getErrorMessage(),
            )
            session.connection_lost("Connection closed")


class IrcFactory(protocol.ServerFactory):
    """Makes an ``IrcProtocol`` per connection to ``server`` (the ``IrcServer`` that
    every IRC listener of a chathub shares: it holds what the sessions share)."""

    noisy = False  # the start-up block names the listeners (chathub.lifecycle.announce)

    def __init__(self, server: IrcServer) -> None:
        self.server = server

    @classmethod
    def for_hub(cls, hub, portal, config, reactor=None) -> "IrcFactory":
        """A factory with an ``IrcServer`` of its own (tests and single-listener tools)."""
        return cls(IrcServer(hub, portal, config, reactor))

    # the server's, for whoever holds the factory
    hub = property(lambda self: self.server.hub, doc="The server's hub.")
    portal = property(lambda self: self.server.portal, doc="The server's portal (logins logged the IRC way).")
    config = property(lambda self: self.server.config, doc="The server's configuration.")
    reactor = property(lambda self: self.server.clock, doc="The server's clock.")

    def buildProtocol(self, addr) -> IrcProtocol:
        return IrcProtocol(self)

    def refusal(self, reason: str) -> bytes:
        """What a connection refused by ``[limits]`` is told before it is closed."""
        return f"ERROR :{REASON_TEXT[reason]}\r\n".encode("ascii")
