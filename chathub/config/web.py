"""[websocket] settings: the HTTP listener's WebSocket endpoint and the bundled web client."""
from __future__ import annotations

from dataclasses import dataclass, field

from chathub.config.schema import ConfigError, require_at_least, require_positive
from chathub.names import valid_room_name

#: most rooms ``default_rooms`` may name (each is joined at every first login of a page)
MAX_DEFAULT_ROOMS = 10

#: what a listener on loopback is reached as
DEFAULT_HOSTNAMES = ("localhost", "127.0.0.1", "[::1]")


@dataclass(frozen=True)
class WebSocketConfig:
    """[websocket]: limits and security of /ws."""

    #: host names the HTTP listener answers to (the Host header without its port; "*.example.org"
    #: globs, "*" for any): a request for another name is refused (403 on /ws, 421 for pages), so
    #: a DNS-rebinding page (evil.example resolving to 127.0.0.1) cannot reach the server
    hostnames: list[str] = field(default_factory=lambda: list(DEFAULT_HOSTNAMES))
    #: extra page origins allowed to open /ws ("https://chat.example.org", "*.example.org",
    #: "*" for any); the page's own origin (same scheme, host and port, the host one of
    #: ``hostnames``) is always allowed, and a handshake without an Origin header (non-browser
    #: clients) is accepted
    allowed_origins: list[str] = field(default_factory=list)
    max_message_bytes: int = 16384  # a bigger message closes the connection with 1009
    max_frame_bytes: int = 16384  # a bigger single frame closes the connection with 1009
    ping_interval: float = 30.0  # seconds between WebSocket pings (0: never)
    ping_timeout: float = 30.0  # seconds without a pong before the peer is dropped
    open_handshake_timeout: float = 10.0  # seconds to finish the HTTP upgrade
    close_handshake_timeout: float = 5.0  # seconds to wait for the peer's close frame
    #: chathub.v1 flood control: requests per second allowed on average, and how many may
    #: come at once; requests beyond that wait, and past ``flood_max_queued`` waiting the
    #: connection is closed with 4008 "Excess flood"
    flood_rate: float = 5.0
    flood_burst: int = 20
    flood_max_queued: int = 50
    #: how many proxies in front of us may set X-Forwarded-For (0: ignore the header)
    trust_x_forwarded_for: int = 0
    #: rooms the bundled web client joins after a login that has none of its own to rejoin
    #: (empty: it opens the room list instead, so the page is never an empty pane)
    default_rooms: list[str] = field(default_factory=list)

    def validate(self, prefix: str) -> None:
        require_positive(
            prefix,
            max_message_bytes=self.max_message_bytes,
            max_frame_bytes=self.max_frame_bytes,
            flood_burst=self.flood_burst,
            flood_max_queued=self.flood_max_queued,
            flood_rate=self.flood_rate,
            open_handshake_timeout=self.open_handshake_timeout,
            close_handshake_timeout=self.close_handshake_timeout,
        )
        require_at_least(
            prefix,
            0,
            ping_interval=self.ping_interval,
            ping_timeout=self.ping_timeout,
            trust_x_forwarded_for=self.trust_x_forwarded_for,
        )
        if len(self.default_rooms) > MAX_DEFAULT_ROOMS:
            raise ConfigError(f"setting '{prefix}.default_rooms' may name at most {MAX_DEFAULT_ROOMS} rooms")
        for i, name in enumerate(self.default_rooms):
            if not isinstance(name, str) or not valid_room_name(name, 200):
                raise ConfigError(
                    f"setting '{prefix}.default_rooms[{i}]' must be a room name like \"#lobby\", not {name!r}"
                )
        if self.ping_interval > 0 and 0 < self.ping_timeout < 0.5:
            # autobahn's timers run in 0.2 s buckets: shorter timeouts drop healthy peers
            raise ConfigError(f"setting '{prefix}.ping_timeout' must be at least 0.5 seconds")
        if not self.hostnames:
            raise ConfigError(f"setting '{prefix}.hostnames' must name at least one host (\"*\": any)")
        for name in self.hostnames:
            if not name or " " in name or "/" in name:
                raise ConfigError(f"setting '{prefix}.hostnames' has an invalid host name {name!r}")
        for origin in self.allowed_origins:
            if not origin or " " in origin:
                raise ConfigError(f"setting '{prefix}.allowed_origins' has an invalid origin {origin!r}")
