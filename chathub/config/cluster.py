"""[cluster] settings: several chathub nodes sharing one hub over Redis (docs/cluster.md)."""
from __future__ import annotations

import os
import re
import socket
from dataclasses import dataclass
from typing import Optional
from urllib.parse import unquote, urlsplit

from chathub.config.schema import ConfigError, require_at_least, require_positive

#: what a node id and the key prefix may hold: they become parts of Redis keys, of the
#: owner strings "node_id/session" and of the first line of every published message
NAME = re.compile(r"[A-Za-z0-9._-]{1,64}\Z")


@dataclass(frozen=True)
class RedisAddress:
    """Where Redis is, from a ``redis://[[user]:password@]host[:port][/db]`` URL."""

    host: str
    port: int
    db: int
    username: Optional[str] = None
    password: Optional[str] = None

    def __str__(self) -> str:
        """The URL without the password, for logs and error messages."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"redis://{host}:{self.port}/{self.db}"


def parse_redis_url(url: str) -> RedisAddress:
    """A ``RedisAddress``, or ValueError saying what is wrong with ``url``."""
    try:
        parts = urlsplit(url)
        port = parts.port if parts.port is not None else 6379
    except ValueError as e:  # a port that is not a number or out of range
        raise ValueError(f"is not a valid Redis URL ({e})") from None
    if parts.scheme != "redis":
        raise ValueError('must start with "redis://"')
    if not parts.hostname:
        raise ValueError("names no host")
    if parts.query or parts.fragment:
        raise ValueError("may not have a query or fragment")
    path = parts.path.lstrip("/")
    if path and not path.isdigit():
        raise ValueError(f"has a database {path!r} that is not a number")
    return RedisAddress(
        host=parts.hostname,
        port=port,
        db=int(path or 0),
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password is not None else None,
    )


def default_node_id() -> str:
    """Host name and process id, so two processes on one machine never share a node id."""
    host = re.sub(r"[^A-Za-z0-9._-]", "-", socket.gethostname().split(".")[0]) or "node"
    return f"{host[:50]}-{os.getpid()}"


@dataclass(frozen=True)
class ClusterConfig:
    """[cluster]: several nodes sharing one hub (off: this process is the only node)."""

    enabled: bool = False
    redis_url: str = "redis://127.0.0.1:6379/0"
    node_id: str = ""  # "": host name + "-" + process id
    key_prefix: str = "ch"  # of every Redis key and of the pub/sub channel
    lease: float = 10.0  # seconds a node may go unheard before the others declare it dead
    heartbeat: float = 3.0  # seconds between renewals of this node's lease
    check_interval: float = 2.0  # seconds between checks of the other nodes' leases
    resync_interval: float = 5.0  # seconds between comparisons with the database
    gap_wait: float = 0.25  # seconds a node waits for a missing number's message before reading it from the database
    connect_timeout: float = 5.0  # seconds start-up waits for Redis
    #: idle ended rooms whose place in the order a node keeps in brief (an integer each)
    #: instead of tracking them; past this many the oldest are forgotten
    max_ended_rooms: int = 100_000
    #: seconds a join of a room another node claimed the name of waits for that room to
    #: reach this node before taking the claim over (its room never came)
    room_claim_wait: float = 5.0

    def validate(self, prefix: str) -> None:
        prefix = prefix or "cluster"
        try:
            parse_redis_url(self.redis_url)
        except ValueError as e:
            raise ConfigError(f"setting '{prefix}.redis_url' {e}: {self.redis_url!r}") from None
        for name in ("node_id", "key_prefix"):
            value = getattr(self, name)
            if (value or name == "key_prefix") and not NAME.match(value):
                raise ConfigError(
                    f"setting '{prefix}.{name}' must be 1 to 64 letters, digits, '.', '_' or '-', not {value!r}"
                )
        require_positive(
            prefix,
            lease=self.lease,
            heartbeat=self.heartbeat,
            check_interval=self.check_interval,
            resync_interval=self.resync_interval,
            gap_wait=self.gap_wait,
            connect_timeout=self.connect_timeout,
            room_claim_wait=self.room_claim_wait,
        )
        require_at_least(prefix, 0, max_ended_rooms=self.max_ended_rooms)
        # a renewal must arrive before the lease runs out, with room for one late one
        if self.heartbeat * 2 > self.lease:
            raise ConfigError(
                f"setting '{prefix}.heartbeat' must be at most half of {prefix}.lease "
                f"({self.lease:g} s), not {self.heartbeat:g}"
            )

    @property
    def address(self) -> RedisAddress:
        """``redis_url`` parsed (validated at load)."""
        return parse_redis_url(self.redis_url)

    def resolved_node_id(self) -> str:
        """``node_id``, or host name and process id when it is empty."""
        return self.node_id or default_node_id()
