"""[storage] and [history] settings."""
from __future__ import annotations

from dataclasses import dataclass

from chathub.config.schema import ConfigError, require_at_least, require_one_of, require_positive


@dataclass(frozen=True)
class StorageConfig:
    """[storage]: where accounts, rooms and history live."""

    backend: str = "sqlite"  # "sqlite" or "postgres"
    sqlite_path: str = "chathub.sqlite3"  # relative to server.data_dir unless absolute
    #: "normal": a commit survives a crash of the server process (kill -9);
    #: "full": it also survives a power loss or an OS crash, at the cost of an fsync per commit
    sqlite_synchronous: str = "normal"
    #: run SQLite's quick integrity check at start-up (reads the whole file once)
    sqlite_check_on_start: bool = True
    postgres_dsn: str = ""  # libpq connection string or URI
    postgres_pool_size: int = 4  # connections (threads) for PostgreSQL

    def validate(self, prefix: str) -> None:
        prefix = prefix or "storage"
        require_one_of(prefix, "backend", self.backend, ("sqlite", "postgres"))
        require_one_of(prefix, "sqlite_synchronous", self.sqlite_synchronous, ("normal", "full"))
        if not self.sqlite_path:
            raise ConfigError(f"setting '{prefix}.sqlite_path' must not be empty")
        if self.backend == "postgres" and not self.postgres_dsn:
            raise ConfigError(
                f"setting '{prefix}.postgres_dsn' is needed when {prefix}.backend is \"postgres\""
            )
        require_at_least(prefix, 1, postgres_pool_size=self.postgres_pool_size)


@dataclass(frozen=True)
class HistoryConfig:
    """[history]: message history kept and replayed."""

    enabled: bool = True
    #: keep private conversations too (off: only rooms have history)
    private: bool = True
    max_age_days: float = 0.0  # 0: keep forever
    max_per_target: int = 0  # 0: no count limit
    #: how often retention (max_age_days, max_per_target) is applied
    prune_interval_seconds: float = 3600.0
    #: rows one retention transaction deletes: appends queued meanwhile commit between two
    #: of them, so a prune of millions of rows never holds messages up for long
    prune_batch: int = 500
    #: lines of a room replayed to telnet, web and IRC users when they join (0: none)
    join_replay: int = 20
    #: most events one history request may return (IRC ISUPPORT CHATHISTORY)
    query_limit: int = 100

    def validate(self, prefix: str) -> None:
        prefix = prefix or "history"
        require_at_least(
            prefix,
            0,
            max_age_days=self.max_age_days,
            max_per_target=self.max_per_target,
            join_replay=self.join_replay,
        )
        require_at_least(prefix, 1, query_limit=self.query_limit, prune_batch=self.prune_batch)
        require_positive(prefix, prune_interval_seconds=self.prune_interval_seconds)
