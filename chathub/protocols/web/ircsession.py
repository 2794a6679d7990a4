"""IRC over WebSocket (IRCv3 ``text.ircv3.net`` / ``binary.ircv3.net``): the IRC server's own session.

The same ``IrcSession`` as the TCP listener runs here; only the framing differs: every
IRC line is one WebSocket message without its CRLF (a trailing CRLF or LF from the
client is tolerated), sent as text for ``text.ircv3.net`` and for clients that asked for
no subprotocol, as binary for ``binary.ircv3.net``.
"""
from __future__ import annotations

from typing import Optional, Protocol

from twisted.internet.interfaces import ISSLTransport

from chathub.events import Event
from chathub.protocols.irc import numerics as N
from chathub.protocols.irc.session import IrcSession
from chathub.protocols.irc.wire import MAX_LINE
from chathub.protocols.web.websocket import CLOSE_NORMAL, IRC_BINARY, IRC_TEXT


class _WebSocketLines:
    """The session's ``IrcWriter``: CRLF-terminated lines in, one WebSocket message per line out."""

    def __init__(self, ws, binary: bool) -> None:
        self.ws = ws
        self.binary = binary

    def frames(self, data: bytes) -> bytes:
        frame = self.ws.factory.frame
        return b"".join(frame(line, self.binary) for line in data.split(b"\r\n") if line)

    def write(self, data: bytes) -> None:
        self.ws.send_frame(self.frames(data))

    def write_frames(self, data: bytes) -> None:
        """Bytes framed already (``IrcWebSocketSession.encode``)."""
        self.ws.send_frame(data)

    def lose_connection(self) -> None:
        self.ws.close_with(CLOSE_NORMAL, "Closing link")

    @property
    def pending_bytes(self) -> int:
        """What the connection's send queue holds."""
        queue = self.ws.sendqueue
        return queue.pending_bytes if queue is not None else 0


class FramedWriter(Protocol):
    """The writer of an IRC session over WebSocket: its lines (``_WebSocketLines``), or
    a ``HeldOutput`` holding them; takes WebSocket frames made already too."""

    def write(self, data: bytes) -> None: ...

    def write_frames(self, data: bytes) -> None: ...

    def lose_connection(self) -> None: ...

    @property
    def pending_bytes(self) -> int: ...


class IrcWebSocketSession(IrcSession):
    """An ``IrcSession`` whose lines travel as WebSocket messages."""

    writer: FramedWriter

    def __init__(self, ws) -> None:
        """The session of WebSocket connection ``ws``, on its factory's ``IrcServer``."""
        binary = ws.subprotocol == IRC_BINARY
        self.ws = ws
        self.lines = _WebSocketLines(ws, binary)
        self._wire = IRC_BINARY if binary else IRC_TEXT
        host = ws.client_host or "localhost"
        super().__init__(
            ws.factory.irc,
            self.lines,
            host,
            secure=ISSLTransport.providedBy(ws.transport),
            reader=ws.real_transport,
        )

    # The IRC session sets ``format_key`` from its capabilities; ours must also say the
    # bytes are WebSocket frames (text or binary), or fan-out would share TCP bytes with us.
    @property
    def format_key(self):
        return ("ws", self._wire, self._irc_format_key)

    @format_key.setter
    def format_key(self, value) -> None:
        self._irc_format_key = value

    def encode(self, event: Event) -> Optional[bytes]:
        data = super().encode(event)
        return None if data is None else self.lines.frames(data)

    def send(self, data: bytes) -> None:
        # ``data`` comes from ``encode``: already framed; through the writer, which may be
        # holding the output while a JOIN replay is read (``HeldOutput``)
        if not self.closed:
            self.writer.write_frames(data)

    # -- from the WebSocket --------------------------------------------------------------

    def opened(self) -> None:
        """Nothing to say first: IRC clients speak first."""

    def message_received(self, payload: bytes, is_binary: bool) -> None:
        """One WebSocket message is one IRC line; tolerate a trailing CRLF (or several lines)."""
        for line in payload.split(b"\n"):
            if line.endswith(b"\r"):
                line = line[:-1]
            if not line:
                continue
            if len(line) > MAX_LINE:
                self.write_messages([self.numeric(N.ERR_INPUTTOOLONG, "Input line too long")])
                continue
            self.line_received(line)
            if self.closed:
                return
