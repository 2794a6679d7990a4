"""[irc] settings: the IRC server."""
from __future__ import annotations

from dataclasses import dataclass, field

from chathub.config.schema import ConfigError


@dataclass(frozen=True)
class OperatorConfig:
    """[[irc.operators]]: one IRC operator."""

    name: str
    password_hash: str  # argon2 hash, made with `python -m chathub.passwd --hash`
    privileges: list[str] = field(default_factory=lambda: ["kill", "wallops"])
    hostmask: str = "*"


@dataclass(frozen=True)
class IrcConfig:
    """[irc]: IRC server behaviour."""

    motd_file: str = ""  # empty: no MOTD (422); relative to server.data_dir unless absolute
    ping_interval: float = 120.0  # seconds of silence before we PING a client
    ping_timeout: float = 60.0  # seconds to answer that PING before we drop the client
    operators: list[OperatorConfig] = field(default_factory=list)
    # flood protection (penalty clock, like ircd "fake lag")
    flood_protection: bool = True
    flood_rate: float = 2.0  # commands per second allowed on average
    flood_burst: int = 10  # commands allowed at once before fake lag starts
    flood_max_lines: int = 50  # lines waiting in fake lag before ERROR :Excess Flood
    flood_exempt: list[str] = field(default_factory=list)  # IPs/CIDRs never throttled
    # limits advertised in ISUPPORT
    user_length: int = 16  # USERLEN
    kick_length: int = 390  # KICKLEN
    max_targets: int = 4  # TARGMAX for PRIVMSG/NOTICE/TAGMSG
    max_bans: int = 100  # MAXLIST b
    monitor_limit: int = 100  # MONITOR

    def validate(self, prefix: str) -> None:
        for key in ("ping_interval", "ping_timeout", "flood_rate"):
            if getattr(self, key) <= 0:
                raise ConfigError(f"setting '{prefix}.{key}' must be greater than 0")
        for key in ("flood_burst", "flood_max_lines", "user_length", "kick_length", "max_targets", "max_bans", "monitor_limit"):
            if getattr(self, key) < 1:
                raise ConfigError(f"setting '{prefix}.{key}' must be at least 1")
