"""The IRC server: RFC 1459/2812 and the Modern IRC client protocol with IRCv3.

Layers, each one module:

- ``wire``: one line <-> ``Message`` (irctokens ``tokenise`` per line, our own serialiser
  with the 512-byte body and 8191-byte tag limits).
- ``table``: the declarative command table (name, allowed before registration, minimum
  parameters, privilege, flood penalty) and the hooks (welcome burst, after registration,
  a user signing off, a room ending); ``commands_*`` modules fill both.
- ``server``: ``IrcServer``, one per chathub, what every session shares: hub, portal,
  config, clock, MOTD, metadata, read markers, the sessions still registering, the
  timer ``sweeper``, batch references and format keys.
- ``session``: ``IrcSession``, one per client, transport-agnostic. It is the hub
  participant, runs registration/CAP/SASL and dispatches commands; each command's
  replies go through a ``responsebuffer.ResponseBuffer`` (labeled-response, batch, ACK).
- ``render``: hub events -> IRC messages for a set of capabilities (fan-out shares bytes
  between sessions with the same ``format_key``).
- ``multiline``: messages longer than a line or holding line breaks, both ways: cut at
  words or characters into several lines, or one IRCv3 ``draft/multiline`` batch; the
  batches clients send.
- ``flood``: penalty clock ("fake lag") and ``Excess Flood``.
- ``protocol``: IRC over TCP (``IrcProtocol``, ``IrcFactory``).

The transport seam (used by IRC over WebSocket): build an ``IrcSession(server, writer,
host, address=..., secure=..., reader=...)`` on the chathub's ``IrcServer``, where
``writer`` has ``write(data: bytes)`` (one or more complete CRLF-terminated lines: a
WebSocket transport sends each line as one message, without its CRLF, as text for
``text.ircv3.net`` / no subprotocol, binary for ``binary.ircv3.net``) and
``lose_connection()``. Feed it each received line without its line ending through
``session.line_received(line: bytes)`` (the transport enforces ``wire.MAX_LINE``; longer
input gets ``session.numeric(ERR_INPUTTOOLONG, ...)``), and call
``session.connection_lost(reason)`` when the connection ends. Put the writer's output
through a ``chathub.protocols.sendqueue.SendQueue``.
"""
from chathub.protocols.irc import (  # noqa: F401  (fill the command table)
    commands_accounts,
    commands_channels,
    commands_history,
    commands_messages,
    commands_metadata,
    commands_queries,
    commands_readmarker,
    commands_registration,
    commands_rename,
    commands_server,
)
from chathub.protocols.irc.protocol import IrcFactory, IrcProtocol
from chathub.protocols.irc.server import IrcServer
from chathub.protocols.irc.session import IrcSession, IrcWriter
from chathub.protocols.irc.wire import MAX_LINE, Message

__all__ = ["IrcFactory", "IrcProtocol", "IrcServer", "IrcSession", "IrcWriter", "Message", "MAX_LINE"]
