"""[irc] settings: the IRC server."""
from __future__ import annotations

from dataclasses import dataclass, field

from chathub.config.schema import ConfigError, require_at_least, require_networks, require_positive

#: what an operator may be allowed: "kill" (KILL), "wallops" (WALLOPS)
OPERATOR_PRIVILEGES = ("kill", "wallops")


@dataclass(frozen=True)
class OperatorConfig:
    """[[irc.operators]]: one IRC operator."""

    name: str
    password_hash: str  # argon2 hash, made with `python -m chathub.passwd --hash`
    privileges: list[str] = field(default_factory=lambda: ["kill", "wallops"])
    hostmask: str = "*"

    def validate(self, prefix: str) -> None:
        if not self.name or " " in self.name:
            raise ConfigError(f"setting '{prefix}.name' must be a name without spaces")
        if not self.password_hash.startswith("$argon2"):
            raise ConfigError(
                f"setting '{prefix}.password_hash' must be an argon2 hash (\"$argon2id$...\", "
                "from `python -m chathub.passwd --hash`), never a password"
            )
        for i, privilege in enumerate(self.privileges):
            if privilege not in OPERATOR_PRIVILEGES:
                known = ", ".join(f'"{p}"' for p in OPERATOR_PRIVILEGES)
                raise ConfigError(f"setting '{prefix}.privileges[{i}]' must be one of {known}, not {privilege!r}")


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
    #: replay a room's last [history] join_replay lines after JOIN (not to clients that
    #: negotiated draft/chathistory: they fetch history themselves)
    join_replay: bool = True
    #: join an account's rooms again when it logs in (bouncer-like clients keep their own list)
    autojoin: bool = True
    #: REGISTER before connection registration completes (draft/account-registration
    #: "before-connect"); off: only once connected (COMPLETE_CONNECTION_REQUIRED before)
    register_before_connect: bool = True

    def validate(self, prefix: str) -> None:
        require_positive(
            prefix, ping_interval=self.ping_interval, ping_timeout=self.ping_timeout, flood_rate=self.flood_rate
        )
        require_at_least(
            prefix,
            1,
            flood_burst=self.flood_burst,
            flood_max_lines=self.flood_max_lines,
            user_length=self.user_length,
            kick_length=self.kick_length,
            max_targets=self.max_targets,
            max_bans=self.max_bans,
            monitor_limit=self.monitor_limit,
        )
        require_networks(prefix, "flood_exempt", self.flood_exempt)
