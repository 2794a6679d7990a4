"""Which session class serves each WebSocket subprotocol."""
from __future__ import annotations

from chathub.protocols.web.jsonsession import JsonSession
from chathub.protocols.web.websocket import JSON_V1, ChatWebSocketFactory


def install_sessions(factory: ChatWebSocketFactory) -> None:
    """Register the JSON session and, when the IRC server is present, IRC over WebSocket."""
    factory.add_session_type([JSON_V1], JsonSession)
    try:
        from chathub.protocols.web.ircsession import IrcWebSocketSession
    except ImportError:
        return
    IrcWebSocketSession.install(factory)
