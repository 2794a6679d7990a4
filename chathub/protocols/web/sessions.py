"""Which session class serves each WebSocket subprotocol."""
from __future__ import annotations

from chathub.protocols.web.ircsession import IrcWebSocketSession
from chathub.protocols.web.jsonsession import JsonSession
from chathub.protocols.web.websocket import IRC_BINARY, IRC_TEXT, JSON_V1, ChatWebSocketFactory


def install_sessions(factory: ChatWebSocketFactory) -> None:
    """chathub.v1 JSON, and IRC over WebSocket (text and binary) with the IRC server's session."""
    factory.add_session_type([JSON_V1], JsonSession)
    factory.add_session_type([IRC_TEXT, IRC_BINARY], IrcWebSocketSession)
