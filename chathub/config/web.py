"""[websocket] settings: the HTTP listener's WebSocket endpoint."""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class WebSocketConfig:
    """[websocket]: limits and security of /ws."""

    allowed_origins: list[str] = field(default_factory=list)  # empty: the page's own origin
    max_message_bytes: int = 16384
    ping_interval: float = 30.0
    ping_timeout: float = 30.0
