"""Core settings: server identity, listeners, authentication, connection limits, line protocol."""
from __future__ import annotations

from dataclasses import dataclass, field

from chathub.config.schema import ConfigError, require_at_least, require_networks, require_positive


@dataclass(frozen=True)
class ServerConfig:
    """[server]: who this server is and where it keeps its files."""

    name: str = "chathub.local"
    network: str = "chathub"
    data_dir: str = "./var"
    admin_name: str = "chathub operator"
    admin_email: str = "root@localhost"
    description: str = "chathub, a multi-protocol chat hub"
    #: seconds a SIGTERM waits for users to be told and the store to be flushed before the
    #: process exits anyway
    shutdown_timeout: float = 10.0

    def validate(self, prefix: str) -> None:
        if not self.name or " " in self.name:
            raise ConfigError(f"setting '{prefix}.name' must be a host-like name without spaces")
        require_positive(prefix, shutdown_timeout=self.shutdown_timeout)


@dataclass(frozen=True)
class ListenersConfig:
    """[listeners]: Twisted endpoint descriptions, several per protocol allowed."""

    line: list[str] = field(default_factory=lambda: ["tcp:2323:interface=127.0.0.1"])
    irc: list[str] = field(default_factory=lambda: ["tcp:6667:interface=127.0.0.1"])
    http: list[str] = field(default_factory=lambda: ["tcp:8080:interface=127.0.0.1"])


@dataclass(frozen=True)
class AuthConfig:
    """[auth]: which credential checkers, whether guests may chat, and how failed logins
    are throttled (``chathub.auth.limiter``)."""

    #: tried in order: "store" (database accounts), "argon2file" (passwords_file)
    checkers: list[str] = field(default_factory=lambda: ["store", "argon2file"])
    passwords_file: str = "passwd"  # relative to server.data_dir unless absolute
    allow_guests: bool = True
    # failed logins: the next attempt waits login_delay * 2**(failures-1) s, at most
    # login_delay_max, per connection, per address and per account name
    login_delay: float = 1.0
    login_delay_max: float = 60.0
    failed_login_memory: float = 900.0  # seconds after its last failure a key is forgotten
    failed_login_table_size: int = 10000  # addresses, and account names, tracked at most
    # attempts waiting or being checked at once; more are refused at once
    login_checks_per_ip: int = 3
    login_checks_per_account: int = 2  # from addresses with failed logins of their own
    login_checks_max: int = 500
    hash_concurrency: int = 2  # argon2 runs at once, server-wide
    token_lifetime: float = 30 * 86400.0  # seconds a session token logs in after it was issued
    max_tokens: int = 10  # session tokens one account holds; a new one revokes the oldest
    #: a login to an account whose nick its user holds already joins that user as one more
    #: session (Ergo's multiclient), at most max_sessions_per_account of them; off: refused
    multiclient: bool = True
    max_sessions_per_account: int = 8
    #: the shortest password a new account (or a password change) may have, in characters
    min_password_length: int = 4

    def validate(self, prefix: str) -> None:
        for name in self.checkers:
            if name not in ("store", "argon2file"):
                raise ConfigError(
                    f"setting '{prefix}.checkers' may hold \"store\" and \"argon2file\", not {name!r}"
                )
        require_at_least(prefix, 0, login_delay=self.login_delay)
        require_at_least(prefix, self.login_delay, login_delay_max=self.login_delay_max)
        require_at_least(prefix, self.login_delay_max, failed_login_memory=self.failed_login_memory)
        require_positive(
            prefix,
            failed_login_memory=self.failed_login_memory,
            failed_login_table_size=self.failed_login_table_size,
            login_checks_per_ip=self.login_checks_per_ip,
            login_checks_per_account=self.login_checks_per_account,
            login_checks_max=self.login_checks_max,
            hash_concurrency=self.hash_concurrency,
            token_lifetime=self.token_lifetime,
            max_tokens=self.max_tokens,
            max_sessions_per_account=self.max_sessions_per_account,
            min_password_length=self.min_password_length,
        )


@dataclass(frozen=True)
class LimitsConfig:
    """[limits]: bounds shared by every protocol: per connection, per account and server-wide."""

    sendq_bytes: int = 256 * 1024
    registration_timeout: float = 60.0
    max_line_bytes: int = 4096  # line protocol; IRC has its own fixed limits
    nick_length: int = 30
    room_name_length: int = 50
    topic_length: int = 390
    away_length: int = 200
    #: longest message, action or notice, in UTF-8 bytes (a line break counts one), and
    #: most lines in one: every protocol refuses more, IRC advertises both (draft/multiline)
    message_bytes: int = 4096
    message_lines: int = 100
    #: longest PART and QUIT reason (a KICK reason is bounded by [irc] kick_length, KICKLEN)
    reason_length: int = 390
    max_rooms_per_user: int = 50
    #: longest ban/exception/invite mask, WHO and LIST mask, matched against every message
    mask_length: int = 300
    #: rooms that may exist at once (persistent ones, kept while empty, included)
    max_rooms: int = 10_000
    #: persistent rooms one account may be the founder of
    max_owned_rooms: int = 20
    #: rooms one connection may create within any 60 seconds
    room_creations_per_minute: int = 60
    #: read markers (MARKREAD, chathub.v1 markread) one account, or guest, keeps
    read_markers: int = 1000
    #: IPs/CIDRs (bridges, trusted bots) never delayed by flood control nor disconnected
    #: for volume on any protocol; they are only slowed by not being read from
    flood_exempt: list[str] = field(default_factory=list)
    # -- connections, on every listener of every protocol (chathub/protocols/connlimit.py) --
    #: connections one client address may hold at once (IPv6: per /64)
    max_connections_per_ip: int = 32
    #: new connections one address may open per second on average, and at once
    connect_rate_per_ip: float = 2.0
    connect_burst_per_ip: int = 20
    #: addresses or CIDR networks the two limits above never apply to
    connection_limits_exempt: list[str] = field(default_factory=list)
    #: seconds an HTTP request (head and body) has to arrive whole, from the connection or
    #: the previous response: bytes trickling in do not extend it
    http_request_timeout: float = 10.0

    def validate(self, prefix: str) -> None:
        require_networks(prefix, "flood_exempt", self.flood_exempt)
        require_positive(
            prefix,
            sendq_bytes=self.sendq_bytes,
            registration_timeout=self.registration_timeout,
            max_line_bytes=self.max_line_bytes,
            nick_length=self.nick_length,
            room_name_length=self.room_name_length,
            topic_length=self.topic_length,
            away_length=self.away_length,
            message_bytes=self.message_bytes,
            message_lines=self.message_lines,
            reason_length=self.reason_length,
            max_rooms_per_user=self.max_rooms_per_user,
            mask_length=self.mask_length,
            max_rooms=self.max_rooms,
            max_owned_rooms=self.max_owned_rooms,
            room_creations_per_minute=self.room_creations_per_minute,
            read_markers=self.read_markers,
            max_connections_per_ip=self.max_connections_per_ip,
            connect_rate_per_ip=self.connect_rate_per_ip,
            connect_burst_per_ip=self.connect_burst_per_ip,
            http_request_timeout=self.http_request_timeout,
        )
        require_networks(prefix, "connection_limits_exempt", self.connection_limits_exempt)


@dataclass(frozen=True)
class LineConfig:
    """[line]: the telnet line protocol."""

    tcp_keepalive: bool = True
    # flood control, the penalty clock of every protocol (chathub/protocols/flood.py)
    flood_rate: float = 2.0  # messages per second allowed on average
    flood_burst: int = 10  # messages allowed at once before lines wait
    flood_max_lines: int = 50  # lines waiting before the connection is closed

    def validate(self, prefix: str) -> None:
        require_positive(prefix, flood_rate=self.flood_rate)
        require_at_least(prefix, 1, flood_burst=self.flood_burst, flood_max_lines=self.flood_max_lines)
