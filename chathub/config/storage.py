"""[storage] and [history] settings."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class StorageConfig:
    """[storage]: where accounts, rooms and history live."""

    backend: str = "sqlite"  # "sqlite" or "postgres"
    sqlite_path: str = "chathub.sqlite3"  # relative to server.data_dir unless absolute
    postgres_dsn: str = ""


@dataclass(frozen=True)
class HistoryConfig:
    """[history]: message history kept and replayed."""

    enabled: bool = True
    max_age_days: float = 0.0  # 0: keep forever
    max_per_target: int = 0  # 0: no count limit
