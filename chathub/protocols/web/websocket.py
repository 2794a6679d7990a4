"""The /ws endpoint: Autobahn protocol and factory, subprotocol choice, Origin check, send queue.

One ``ChatWebSocketProtocol`` per connection owns the transport; the subprotocol picked in
the handshake decides which *session* (``chathub.v1`` JSON, or IRC over WebSocket) turns
its messages into hub calls. Every frame written goes through a ``SendQueue`` over the
real transport, so a browser that stops reading is dropped at the send-queue limit.
"""
from __future__ import annotations

import fnmatch
import re
import types
from collections import deque
from typing import Any, Callable, Optional, cast
from urllib.parse import urlsplit

from zope.interface import directlyProvides, providedBy

from autobahn.twisted.resource import WebSocketResource
from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from autobahn.websocket.types import ConnectionDeny, ConnectionRequest
from twisted.internet import defer
from twisted.internet.abstract import FileDescriptor
from twisted.internet.interfaces import IReactorTime, ISSLTransport, ITransport
from twisted.logger import Logger

from chathub.config import Config
from chathub.protocols.irc.server import IrcServer
from chathub.protocols.sendqueue import SendQueue
from chathub.protocols.sweeper import Sweeper
from chathub.text import encode_utf8

#: subprotocol names
JSON_V1 = "chathub.v1"
IRC_TEXT = "text.ircv3.net"
IRC_BINARY = "binary.ircv3.net"
SUBPROTOCOLS = (JSON_V1, IRC_BINARY, IRC_TEXT)

#: close codes chathub sends (1000-1011 are RFC 6455's; 4000-4999 are ours, see docs/protocol.md)
CLOSE_NORMAL = 1000
CLOSE_GOING_AWAY = 1001
CLOSE_TOO_BIG = 1009
CLOSE_SERVER_ERROR = 1011
CLOSE_BY_SERVER = 4000  # killed or otherwise closed by the server
CLOSE_LOGIN_TIMEOUT = 4001
CLOSE_FLOOD = 4008


def choose_subprotocol(offered: list[str], supported=SUBPROTOCOLS) -> Optional[str]:
    """The first subprotocol in the client's preference order that we speak.

    No subprotocol offered means IRC as text (what gamja and Kiwi IRC send): returns None,
    so the answer has no Sec-WebSocket-Protocol header. Raises ``ConnectionDeny`` when the
    client offers only subprotocols we do not speak.
    """
    if not offered:
        if IRC_TEXT in supported:
            return None
        raise ConnectionDeny(ConnectionDeny.BAD_REQUEST, "ask for a subprotocol: " + ", ".join(supported))
    for name in offered:
        if name in supported:
            return name
    raise ConnectionDeny(
        ConnectionDeny.BAD_REQUEST,
        "unsupported WebSocket subprotocol; this server speaks " + ", ".join(supported),
    )


def host_name(host: str) -> str:
    """The name part of a Host header, lower case: ``"[::1]:8080"`` -> ``"[::1]"``."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[: host.find("]") + 1] if "]" in host else host
    return host.rsplit(":", 1)[0].rstrip(".")


def _normal_hostname(name: str) -> str:
    # an IPv6 address is written with brackets in a Host header
    name = name.strip().lower().rstrip(".")
    return f"[{name}]" if ":" in name and not name.startswith("[") else name


def host_allowed(host: str, hostnames) -> bool:
    """Whether a request's ``Host`` header names one of ``hostnames`` (globs, ``*`` for any).

    This is what stops DNS rebinding: a page at ``http://evil.example:8080`` whose name
    resolves to 127.0.0.1 reaches us with ``Host: evil.example:8080``. A request without
    a Host header (HTTP/1.0, not a browser) is allowed.
    """
    if not host:
        return True
    name = host_name(host)
    return any(_glob_match(name, _normal_hostname(pattern)) for pattern in hostnames)


def _glob_match(name: str, pattern: str) -> bool:
    # only "*" is special: fnmatch would read "[::1]" as a character class
    if "*" not in pattern:
        return name == pattern
    regex = ".*".join(re.escape(part) for part in pattern.split("*"))
    return re.fullmatch(regex, name) is not None


def origin_allowed(origin: str, host: str, allowed: list[str], secure: bool, hostnames=("*",)) -> bool:
    """Whether a page at ``origin`` may open a WebSocket to us (reached as ``host``).

    The page's own origin (same scheme, host and port as ``host``), when that host is one
    of ``hostnames``, is allowed; ``allowed`` adds origins as ``scheme://host[:port]`` or
    a host glob (``*.example.org``), or ``*`` for any. An empty ``origin`` (no header: not
    a browser) is allowed.
    """
    if not origin:
        return True
    if origin == "null":
        return "null" in allowed or "*" in allowed
    try:
        parts = urlsplit(origin)
        origin_host = (parts.hostname or "").lower()
        origin_port = parts.port or (443 if parts.scheme in ("https", "wss") else 80)
    except ValueError:
        return False
    if not origin_host:
        return False
    # Host header: the page's own origin, when the scheme fits how we were reached and the
    # name is one we answer to (a rebound name's page has a matching Host and Origin)
    try:
        own = urlsplit(("https://" if secure else "http://") + host.lower())
        own_host, own_port = own.hostname or "", own.port or (443 if secure else 80)
    except ValueError:
        own_host, own_port = "", 0
    if (
        parts.scheme == ("https" if secure else "http")
        and (origin_host, origin_port) == (own_host, own_port)
        and host_allowed(host, hostnames)
    ):
        return True
    normalized = f"{parts.scheme}://{origin_host}:{origin_port}"
    for pattern in allowed:
        pattern = pattern.lower().rstrip("/")
        if pattern == "*":
            return True
        if "://" in pattern:
            scheme, _, rest = pattern.partition("://")
            if ":" not in rest:
                rest += ":443" if scheme == "https" else ":80"
            if fnmatch.fnmatchcase(normalized, f"{scheme}://{rest}"):
                return True
        elif fnmatch.fnmatchcase(origin_host, pattern):
            return True
    return False


class QueuedTransport:
    """The real transport, with writes going through the connection's ``SendQueue``."""

    def __init__(self, transport, queue: SendQueue) -> None:
        self._transport = transport
        self._queue = queue
        directlyProvides(self, providedBy(transport))

    def write(self, data: bytes) -> None:
        self._queue.write(data)

    def writeSequence(self, seq) -> None:
        self._queue.write(b"".join(seq))

    def loseConnection(self) -> None:
        # through the queue: it writes what it holds and stops being the producer first
        self._queue.lose_connection()

    def __getattr__(self, name):
        return getattr(self._transport, name)


class TrafficCounters:
    """Autobahn's ``TrafficStats`` counters in slots: Autobahn adds to them on every frame,
    and its own class keeps them in a per-connection dict five times the size."""

    __slots__ = (
        "incomingOctetsAppLevel", "incomingOctetsWebSocketLevel", "incomingOctetsWireLevel",
        "incomingWebSocketFrames", "incomingWebSocketMessages", "outgoingOctetsAppLevel",
        "outgoingOctetsWebSocketLevel", "outgoingOctetsWireLevel", "outgoingWebSocketFrames",
        "outgoingWebSocketMessages", "preopenIncomingOctetsWireLevel", "preopenOutgoingOctetsWireLevel",
    )

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """Every counter back to 0 (Autobahn's ``TrafficStats.reset``)."""
        for name in self.__slots__:
            setattr(self, name, 0)


#: what the opening handshake left on the protocol that nothing reads once it is open: the
#: request and the answer (Autobahn 26.10 reads none of these after the handshake, which
#: tests/test_websocket_memory.py checks by running a session after), and the transport
#: details Autobahn's WAMP layer reads (chathub has none; the peer string stays as ``peer``).
HANDSHAKE_LEFTOVERS = (
    "http_headers", "http_request_data", "http_response_data", "http_status_line", "http_request_params",
    "http_request_uri", "http_request_path", "http_request_host", "_wskey", "websocket_protocols",
    "websocket_extensions", "websocket_origin", "_transport_details",
)

#: Autobahn sets each of these on every connection as it opens, and an idle connection keeps
#: them at this value. They are class attributes of ``ChatWebSocketProtocol`` too, so an open
#: connection whose value is still the default drops its own copy (``_shed_handshake``) and
#: reads the class's; Autobahn's first assignment puts a value back in the instance. Only
#: immutable values: nothing can change them in place. Not ``connected`` nor ``state``: before
#: the connection is made they must read as Twisted's and Autobahn's say (0; none).
IDLE_DEFAULTS: dict[str, Any] = {
    "_perMessageCompress": None, "trackedTimings": None, "send_state": 0, "data": b"", "triggered": False,
    "wasMaxFramePayloadSizeExceeded": False, "wasMaxMessagePayloadSizeExceeded": False,
    "closedByMe": False, "failedByMe": False, "droppedByMe": False, "wasClean": False,
    "wasNotCleanReason": None, "wasServerConnectionDropTimeout": False, "wasOpenHandshakeTimeout": False,
    "wasCloseHandshakeTimeout": False, "wasServingFlashSocketPolicyFile": False,
    "localCloseCode": None, "localCloseReason": None, "remoteCloseCode": None, "remoteCloseReason": None,
    "openHandshakeTimeoutCall": None, "closeHandshakeTimeoutCall": None, "autoPingTimeoutCall": None,
    "autoPingPending": None, "autoPingPendingSeq": 0, "autoPingPendingSent": None,
    "inside_message": False, "current_frame": None, "current_frame_masker": None, "_isMessageCompressed": False,
    "message_is_binary": False, "message_data": None, "frame_data": None,
    "utf8validateIncomingCurrentMessage": True,
    "websocket_version": 13, "quit_reason": None, "_transport_details": None,
}


#: the events Autobahn's protocol declares for its emitter (``WebSocketProtocol.__init__``)
WEBSOCKET_EVENTS = ["message"]


def _is_default(value: Any, default: Any) -> bool:
    # by type too: 0 == False, 1 == True
    return type(value) is type(default) and value == default


class ChatWebSocketProtocol(WebSocketServerProtocol):
    """One WebSocket connection; hands messages to the session its subprotocol names."""

    # not ``log``: that is autobahn's txaio logger, which drops its per-frame debug lines
    _log = Logger()
    factory: "ChatWebSocketFactory"
    #: Autobahn's queue for chopped and synchronous sends, which chathub never asks for:
    #: empty, an open connection shares this one (``sendData`` gives it its own deque first
    #: whenever it could append); a deque costs 760 bytes even empty
    send_queue: Any = ()
    websocket_extensions_in_use: Any = ()
    #: Deferreds to fire when the connection closes (``when_closed``); most never have any
    on_closed: Any = ()
    #: keepalive, checked by the factory's sweeper once a second (``check_timers``): when
    #: the peer was last heard from, and when the ping it has not answered went out
    last_heard = 0.0
    ping_sent: Optional[float] = None

    def __init__(self) -> None:
        super().__init__()
        self.subprotocol: Optional[str] = None
        self.session: Any = None  # an IrcSession or a JsonSession (``make_session``), once open
        self.sendqueue: Optional[SendQueue] = None
        self.real_transport: Any = None  # the TCP or TLS transport under the send queue
        self.client_host = ""
        self.quit_reason: Optional[str] = None

    # -- handshake ---------------------------------------------------------------------

    def onConnect(self, request: ConnectionRequest):
        config = self.factory.config.websocket
        secure = ISSLTransport.providedBy(self.transport)
        # request.host has the port cut off; the origin comparison needs it
        host = request.headers.get("host", "")
        if not host_allowed(host, config.hostnames):
            # also refused by the site before the upgrade; this covers the factory on its own
            self._log.info(
                "refused WebSocket from {peer}: host {host} is not in [websocket] hostnames",
                peer=request.peer, host=host,
            )
            raise ConnectionDeny(ConnectionDeny.FORBIDDEN, "host not allowed")
        if not origin_allowed(request.origin, host, config.allowed_origins, secure, config.hostnames):
            self._log.info(
                "refused WebSocket from {peer}: origin {origin} not allowed", peer=request.peer, origin=request.origin
            )
            raise ConnectionDeny(ConnectionDeny.FORBIDDEN, "origin not allowed")
        self.subprotocol = choose_subprotocol(list(request.protocols), self.factory.subprotocols)
        self.client_host = _peer_host(request.peer)
        return self.subprotocol

    # -- transport ---------------------------------------------------------------------

    def connectionMade(self) -> None:
        super().connectionMade()
        self.trafficStats = TrafficCounters()  # type: ignore[assignment]  # the same counters
        self.real_transport = self.transport
        real = self.real_transport
        # Under twisted.web the HTTP channel registered itself as the transport's
        # producer; the connection is ours now, so is its flow control.
        real.unregisterProducer()

    def _start_send_queue(self) -> None:
        # From the open on, every write goes through the send queue. Not before: when the
        # opening handshake completes, Autobahn reads the TLS channel id and the peer
        # certificate from ``self.transport``, which must then be the TLS transport itself
        # (a wrapper made every wss:// handshake fail); the handshake's own answer is one
        # small write.
        real = self.real_transport
        self.sendqueue = SendQueue(real, self.factory.config.limits.sendq_bytes, self, turn=self.factory.turn)
        # it provides whatever the real transport provides (ITransport among them)
        self.transport = cast(ITransport, QueuedTransport(real, self.sendqueue))

    def send_queue_overflow(self) -> None:
        """The client stopped reading and its send queue is full."""
        # No close frame: the queue it would wait behind is what overflowed.
        self.factory.hub.counts.sendq_drops += 1
        self._log.info("dropping WebSocket client {peer}: send queue exceeded", peer=self.peer)
        self.quit_reason = "Send queue exceeded"
        self.real_transport.abortConnection()

    # -- messages ----------------------------------------------------------------------

    def onOpen(self) -> None:
        self._start_send_queue()
        self.last_heard = self.factory.clock.seconds()
        self.factory.sweeper.add(self)
        if self.factory.config.logging.detailed:  # else the line when it closes is the one
            self._log.debug(
                "WebSocket connection from {host} ({subprotocol})", event="connect",
                host=self.client_host, peer=self.peer, subprotocol=self.subprotocol or IRC_TEXT,
            )
        self.factory.connections.add(self)
        self.session = self.factory.make_session(self)
        self.session.opened()
        self._shed_handshake()

    def _shed_handshake(self) -> None:
        """Drop what the opening handshake left behind (the request's headers and raw
        bytes, the answer's) and the per-connection copies of values the class holds
        (``IDLE_DEFAULTS``, the factory's options): an idle browser connection keeps only
        what it uses. Under 43 attributes an instance's dict takes 832 bytes, not 1,584."""
        state = self.__dict__
        for name in HANDSHAKE_LEFTOVERS:
            state.pop(name, None)
        for name, default in IDLE_DEFAULTS.items():
            if name in state and _is_default(state[name], default):
                del state[name]
        if not state.get("send_queue", True):
            del state["send_queue"]
        if state.get("websocket_extensions_in_use") == []:  # none negotiated (chathub offers none)
            del state["websocket_extensions_in_use"]
        if self._listeners is None:
            # Autobahn's event emitter (``on``/``fire``), which chathub does not use: its
            # per-connection list of event names and results dict (``on`` makes them again)
            state.pop("_valid_events", None)
            state.pop("_results", None)
        # A dict does not shrink when keys go, and dict(d) of a dense dict clones its table:
        # one built from the items is sized for what is left.
        self.__dict__ = dict(list(state.items()))
        real = self.real_transport
        if isinstance(real, FileDescriptor):
            # The TCP connection's dict loses its shared-key form under the HTTP server (832
            # bytes where an IRC connection's takes 192): rebuilt with the two attributes
            # its first buffered write adds (at their class values), it takes 464.
            transport_state = real.__dict__
            transport_state.setdefault("dataBuffer", b"")
            transport_state.setdefault("offset", 0)
            real.__dict__ = dict(list(transport_state.items()))

    def on(self, event: str, handler: Callable) -> None:
        if "_results" not in self.__dict__:  # shed by _shed_handshake
            self.set_valid_events(WEBSOCKET_EVENTS)
        super().on(event, handler)

    def sendData(self, data: bytes, sync: bool = False, chopsize: Optional[int] = None) -> None:
        # the paths that append to Autobahn's queue: give the connection its own first
        if (sync or chopsize) and not isinstance(self.send_queue, deque):
            self.send_queue = deque()
        super().sendData(data, sync, chopsize)

    def onFrameEnd(self) -> Any:
        result = super().onFrameEnd()
        # A frame's unmasker serves that frame only (each frame brings its own mask):
        # an idle connection need not keep the last one (about 350 bytes).
        self.__dict__.pop("current_frame_masker", None)
        return result

    # -- keepalive -----------------------------------------------------------------------
    # Autobahn's own auto-ping keeps a timer per connection, rescheduled on traffic (about
    # 500 bytes of an idle connection); the factory's sweeper does the same for all of them.

    def dataReceived(self, data: bytes) -> None:
        # anything from the peer shows it is there (Autobahn's autoPingRestartOnAnyTraffic)
        self.last_heard = self.factory.clock.seconds()
        if self.ping_sent is not None:
            del self.ping_sent
        with self.factory.turn:  # what the frames read now are answered by waits for the turn's end
            super().dataReceived(data)

    def check_timers(self, now: float) -> None:
        """Ping a peer not heard from for ``[websocket] ping_interval`` seconds, and drop
        one that sent nothing for ``ping_timeout`` seconds after the ping (the sweeper
        calls this once a second, so both are kept to within a second)."""
        if self.state != self.STATE_OPEN:
            return
        config = self.factory.config.websocket
        if self.ping_sent is not None:
            if now - self.ping_sent >= config.ping_timeout:
                # what Autobahn's onAutoPingTimeout does; onClose reads the reason
                self.wasClean = False
                self.wasNotCleanReason = "WebSocket ping timeout (peer did not respond with pong in time)"
                self.dropConnection(abort=True)
        elif config.ping_interval > 0 and now - self.last_heard >= config.ping_interval:
            self.ping_sent = now
            self.sendPing()

    def when_closed(self) -> defer.Deferred:
        """A Deferred that fires (with None) when this connection has closed."""
        d: defer.Deferred[None] = defer.Deferred()
        self.on_closed = [*self.on_closed, d]
        return d

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        if self.session is not None:
            self.session.message_received(payload, isBinary)

    def onClose(self, wasClean: bool, code: Optional[int], reason: Optional[str]) -> None:
        self.factory.connections.discard(self)
        self.factory.sweeper.discard(self)
        waiting, self.on_closed = self.on_closed, ()
        for d in waiting:
            d.callback(None)
        session, self.session = self.session, None
        if session is None:
            return
        self._log.info(
            "WebSocket connection from {host} closed ({nick}): code {code}, {why}", event="disconnect",
            host=self.client_host, nick=_nick_of(session) or "no nick", code=code,
            why=self.quit_reason or reason or self.wasNotCleanReason or "closed by the client",
        )
        quit_reason = self.quit_reason
        if quit_reason is None:
            not_clean = (self.wasNotCleanReason or "").lower()
            if "ping" in not_clean and "timeout" in not_clean:
                quit_reason = "Ping timeout"
            elif CLOSE_TOO_BIG in (code, self.localCloseCode):
                quit_reason = "Message too big"
            else:
                quit_reason = "Connection closed"
        session.connection_lost(quit_reason)

    # -- for sessions ------------------------------------------------------------------

    def send_frame(self, frame: bytes) -> None:
        """Write one already framed message (see ``ChatWebSocketFactory.frame``)."""
        if self.state == self.STATE_OPEN:
            if self.send_queue:
                self.sendData(frame)  # autobahn is trickling something out: stay behind it
            else:
                # straight to the send queue: autobahn's sendData formats a debug log line
                # per call: measured 17 us per recipient that way, about 1 us this way
                assert self.transport is not None  # open
                self.transport.write(frame)

    def close_with(self, code: int, reason: str) -> None:
        """Start the closing handshake with ``code`` and a reason (cut to fit a close frame)."""
        if self.quit_reason is None:
            self.quit_reason = reason
        if self.state == self.STATE_OPEN:
            data = encode_utf8(reason)[:123].decode("utf-8", "ignore").encode("utf-8")
            # sendClose only takes 1000 and 3000-4999; the server may also say 1001 (going away)
            self.sendCloseFrame(code=code, reasonUtf8=data, isReply=False)


for _name, _default in IDLE_DEFAULTS.items():  # see IDLE_DEFAULTS
    setattr(ChatWebSocketProtocol, _name, _default)


def _nick_of(session) -> Optional[str]:
    # an IRC session has its nick; a chathub.v1 session has a hub user once logged in
    nick = getattr(session, "nick", None)
    if nick is None:
        nick = getattr(getattr(session, "user", None), "nick", None)
    return nick


def _peer_host(peer: str) -> str:
    # autobahn's peer strings look like "tcp:127.0.0.1:5555" or "tcp6:[::1]:5555"
    if peer.startswith(("tcp:", "tcp4:", "tcp6:")):
        rest = peer.split(":", 1)[1]
        host = rest.rsplit(":", 1)[0]
        return host.strip("[]")
    return peer


class ChatWebSocketFactory(WebSocketServerFactory):
    """Makes ``ChatWebSocketProtocol``s configured from ``[websocket]``."""

    protocol: type[WebSocketServerProtocol] = ChatWebSocketProtocol

    def __init__(
        self,
        hub,
        portal,
        config: Config,
        irc: IrcServer,
        clock: Optional[IReactorTime] = None,
        url: Optional[str] = None,
    ) -> None:
        """``irc`` is the IRC server that IRC-over-WebSocket sessions belong to (the one
        the TCP IRC listener serves too)."""
        super().__init__(url)
        if clock is None:
            from twisted.internet import reactor

            clock = reactor
        self.hub = hub
        self.portal = portal
        self.config = config
        self.irc = irc
        self.clock = clock
        #: checks every open connection's keepalive once a second
        self.sweeper = Sweeper(clock)
        #: the end of the reactor turn, for what connections are written while their reads
        #: are handled: the IRC server's (one for IRC over TCP and everything over WebSocket)
        self.turn = irc.turn
        self._set_options(config)
        # no Server header in the handshake's answers (Autobahn's default names its version)
        self.server = None
        self._sessions: dict[Optional[str], Callable] = {}
        self.connections: set[ChatWebSocketProtocol] = set()

    def _set_options(self, config: Config) -> None:
        ws = config.websocket
        self.setProtocolOptions(
            maxFramePayloadSize=ws.max_frame_bytes,
            maxMessagePayloadSize=ws.max_message_bytes,
            # the keepalive is the sweeper's (ChatWebSocketProtocol.check_timers)
            autoPingInterval=0,
            openHandshakeTimeout=ws.open_handshake_timeout,
            closeHandshakeTimeout=ws.close_handshake_timeout,
            trustXForwardedFor=ws.trust_x_forwarded_for,
            # on a protocol error (an over-size frame) say why with a close frame (1009),
            # rather than just dropping the TCP connection
            failByDrop=False,
            # The bundled client and IRC clients send small messages; per-message
            # deflate would cost a compression per recipient and rule out prepared frames.
            perMessageCompressionAccept=lambda offers: None,
            # a plain GET of /ws gets 426 Upgrade Required, not Autobahn's status page
            # (which names Autobahn and its version)
            webStatus=False,
        )
        # Autobahn copies each option onto every connection unless the connection's class
        # has it: a class of this factory's holds them once (18 attributes fewer in each
        # open connection's dict). A reload makes a new class, so connections opened from
        # then on take the new options and open ones keep theirs, as before.
        options: dict[str, Any] = {}
        for name in ChatWebSocketProtocol.CONFIG_ATTRS:
            value = getattr(self, name)
            # a function as a class attribute would be called as a method
            options[name] = staticmethod(value) if isinstance(value, types.FunctionType) else value
        self.protocol = type(ChatWebSocketProtocol.__name__, (ChatWebSocketProtocol,), options)

    def reconfigure(self, config: Config) -> None:
        """Take a reloaded config: connections opened from now on get its ``[websocket]``
        settings; hostnames and origins are checked against it at once."""
        self.config = config
        self._set_options(config)
        for protocol in list(self.connections):
            reconfigure = getattr(protocol.session, "reconfigure", None)
            if reconfigure is not None:  # a chathub.v1 session (IRC ones: their IrcServer's)
                reconfigure(config)

    def going_away(self, reason: str = "Server shutting down", timeout: float = 2.0) -> Optional[defer.Deferred]:
        """Tell every open connection why in its own terms (a chathub.v1 ``closing`` event,
        IRC ``ERROR``) and close it with 1001 (going away), so browsers reconnect rather than
        find out from a dropped TCP connection; fires when they are closed, or after
        ``timeout`` seconds at most, so shutdown never hangs on a silent peer.
        ``ChathubService.stopService`` calls it."""
        if not self.connections:
            return None
        waits = []
        for protocol in list(self.connections):
            waits.append(protocol.when_closed())
            farewell = getattr(protocol.session, "farewell", None)
            if farewell is not None:
                farewell(reason)
            protocol.close_with(CLOSE_GOING_AWAY, reason)
        done = defer.DeferredList(waits)
        return done.addTimeout(timeout, self.clock).addErrback(lambda _: None)

    def add_session_type(self, subprotocols, make: Callable) -> None:
        """Use ``make(protocol)`` for connections that chose one of ``subprotocols``."""
        for name in subprotocols:
            self._sessions[name] = make

    @property
    def subprotocols(self) -> tuple[str, ...]:
        """The subprotocols sessions are installed for, in our order of preference."""
        return tuple(name for name in SUBPROTOCOLS if name in self._sessions)

    def make_session(self, protocol: ChatWebSocketProtocol):
        """The session for ``protocol``'s subprotocol (none asked for: IRC as text)."""
        return self._sessions[protocol.subprotocol or IRC_TEXT](protocol)

    def frame(self, payload: bytes, binary: bool = False) -> bytes:
        """Frame ``payload`` once; the bytes can be written to any connection of this factory."""
        return self.prepareMessage(payload, binary).payloadHybi


class ChatWebSocketResource(WebSocketResource):
    """``WebSocketResource`` that also stops the HTTP channel's idle timer before taking
    over, and lets go of the channel and its request once the connection is Autobahn's."""

    def render(self, request):
        channel = request.channel
        channel.setTimeout(None)
        result = super().render(request)
        if channel.transport is None:  # taken over
            # the channel and the request refer to each other, and nothing else refers to
            # either any more: a cycle of some 28 objects per connection that only the
            # garbage collector could free, and under a burst of connections it came too
            # late for the memory to serve the next ones (bench/README.md, idle WebSocket
            # connections). Taken apart, they are freed at once.
            channel.requests = []
            request.channel = None
        return result
