"""[irc] settings: the IRC server."""
from __future__ import annotations

from dataclasses import dataclass, field


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

    motd_file: str = ""  # empty: no MOTD (422)
    ping_interval: float = 120.0
    ping_timeout: float = 60.0
    operators: list[OperatorConfig] = field(default_factory=list)
