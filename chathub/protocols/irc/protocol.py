"""IRC over TCP: line splitting with the protocol's limits, feeding an ``IrcSession``."""
from __future__ import annotations

from twisted.internet import protocol
from twisted.internet.interfaces import ISSLTransport
from twisted.logger import Logger

from chathub.protocols.connlimit import REASON_TEXT
from chathub.protocols.irc import numerics as N
from chathub.protocols.irc.commands_registration import LoggedLogins
from chathub.protocols.irc.commands_server import Motd
from chathub.protocols.irc.flood import exempt_host
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

    # What every connection shares is read from the factory, not copied into each of
    # 10,000 instance dicts.
    hub = _from_factory("hub")
    portal = _from_factory("portal")
    config = _from_factory("config")
    reactor = _from_factory("reactor")

    # -- Protocol ----------------------------------------------------------------------

    def connectionMade(self) -> None:
        peer = self.transport.getPeer()
        host = display_host(peer)
        self.log.info("IRC connection from {host}:{port}", host=host, port=getattr(peer, "port", None))
        self.queue = SendQueue(self.transport, self.config.limits.sendq_bytes, self)
        # the session writes to the queue itself (its IrcWriter): fan-out calls that once
        # per recipient per message, so no forwarding method sits in between
        self.session = IrcSession(
            self.hub,
            self.portal.client(getattr(peer, "host", None)),
            self.config,
            self.queue,
            host=host,
            reactor=self.reactor,
            secure=ISSLTransport.providedBy(self.transport),
            flood_exempt=exempt_host(self.config, getattr(peer, "host", "")),
            reader=self.transport,
        )

    def send_queue_overflow(self) -> None:
        """The client stopped reading and its send queue is full."""
        session = self.session
        if session is not None and not session.closed:
            session._shutdown("SendQ exceeded")
        self.transport.abortConnection()

    def dataReceived(self, data: bytes) -> None:
        # one read's worth of messages shares one write per recipient (hub fan-out batching)
        batching = getattr(self.hub, "batching", None)
        if batching is None:
            self._lines_received(data)
            return
        with batching():
            self._lines_received(data)

    def _lines_received(self, data: bytes) -> None:
        session = self.session
        if session is None or session.closed:
            self.lines.stop()
            return
        self.lines.feed(data)

    def line_read(self, line: bytes) -> None:
        session = self.session
        session.line_received(line)
        if session.closed:
            self.lines.stop()  # a QUIT ends the connection: ignore what followed it

    def line_too_long(self) -> None:
        session = self.session
        session.write_messages([session.numeric(N.ERR_INPUTTOOLONG, "Input line too long")])

    def connectionLost(self, reason=protocol.connectionDone) -> None:
        session = self.session
        if session is not None:
            # closed already: the server hung up (QUIT, KILL, bad password, timeout, send queue),
            # and the hub's quit line or the refusal line before this one says why
            self.log.info(
                "IRC connection from {host} closed ({nick}): {why}",
                host=session.host,
                nick=session.nick or "no nick",
                why="by the server" if session.closed else reason.getErrorMessage(),
            )
            session.connection_lost("Connection closed")


class IrcFactory(protocol.ServerFactory):
    """Makes an ``IrcProtocol`` per connection, all sharing one hub and portal."""

    def __init__(self, hub, portal, config, reactor=None) -> None:
        self.hub = hub
        self.portal = LoggedLogins(portal)
        self.config = config
        self.reactor = reactor
        # read now, at start-up: MOTD is answered from memory, never from disk on the reactor
        self.motd = Motd(config)

    def buildProtocol(self, addr) -> IrcProtocol:
        return IrcProtocol(self)

    def refusal(self, reason: str) -> bytes:
        """What a connection refused by ``[limits]`` is told before it is closed."""
        return f"ERROR :{REASON_TEXT[reason]}\r\n".encode("ascii")
