"""chathub configuration: ``conf/chathub.toml`` read with tomllib into validated sections.

With no file at all the embedded defaults apply (everything on 127.0.0.1). Command-line
options of the twistd plugin override the file through ``Config.with_overrides``.
"""
from __future__ import annotations

import dataclasses
import os
import tomllib
from dataclasses import dataclass, field
from typing import Any, Optional

from chathub.config.cluster import ClusterConfig
from chathub.config.core import (
    AuthConfig,
    LimitsConfig,
    LineConfig,
    ListenersConfig,
    ServerConfig,
)
from chathub.config.irc import IrcConfig, OperatorConfig
from chathub.config.logs import LoggingConfig
from chathub.config.metrics import MetricsConfig
from chathub.config.privacy import PrivacyConfig
from chathub.config.schema import ConfigError, build
from chathub.config.storage import HistoryConfig, StorageConfig
from chathub.config.web import WebSocketConfig

__all__ = [
    "Config",
    "ConfigError",
    "load_config",
    "OperatorConfig",
]


@dataclass(frozen=True)
class Config:
    """The whole configuration, one attribute per TOML table."""

    server: ServerConfig = field(default_factory=ServerConfig)
    listeners: ListenersConfig = field(default_factory=ListenersConfig)
    auth: AuthConfig = field(default_factory=AuthConfig)
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    line: LineConfig = field(default_factory=LineConfig)
    irc: IrcConfig = field(default_factory=IrcConfig)
    websocket: WebSocketConfig = field(default_factory=WebSocketConfig)
    storage: StorageConfig = field(default_factory=StorageConfig)
    history: HistoryConfig = field(default_factory=HistoryConfig)
    privacy: PrivacyConfig = field(default_factory=PrivacyConfig)
    cluster: ClusterConfig = field(default_factory=ClusterConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    #: the file this was read from, or None for embedded defaults
    source: Optional[str] = None

    def validate(self, prefix: str) -> None:
        """Rules that span sections (``build`` calls this after each section's own)."""
        if self.cluster.enabled and not (self.history.enabled and self.storage.backend == "postgres"):
            # the nodes number every event in one database and carry it from there (a commit
            # rings the doorbell, a gap is read back): without it no room event or message
            # crosses nodes (with history off nothing was committed, and nothing crossed)
            raise ConfigError(
                "setting 'cluster.enabled' needs history.enabled = true and storage.backend = "
                f"\"postgres\" (history.enabled is {str(self.history.enabled).lower()}, "
                f"storage.backend is {self.storage.backend!r})"
            )

    def data_path(self, name: str) -> str:
        """A path under ``server.data_dir`` unless ``name`` is absolute."""
        return name if os.path.isabs(name) else os.path.join(self.server.data_dir, name)

    def with_overrides(self, **sections: dict[str, Any]) -> "Config":
        """A copy with some settings replaced: ``with_overrides(listeners={"irc": [...]})``."""
        changed = {}
        for name, values in sections.items():
            if values:
                current = getattr(self, name)
                table = {f.name: getattr(current, f.name) for f in dataclasses.fields(current)}
                table.update(values)
                changed[name] = build(type(current), table, name)
        config = dataclasses.replace(self, **changed)
        config.validate("")
        return config


def parse_config(text: str, source: Optional[str] = None) -> Config:
    """Validate TOML text into a ``Config``; raise ``ConfigError`` naming the bad key."""
    try:
        table = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{source or 'config'}: not valid TOML: {e}") from None
    if "source" in table:
        raise ConfigError("unknown setting 'source'")
    config = build(Config, table)
    return dataclasses.replace(config, source=source)


def load_config(path: Optional[str] = None) -> Config:
    """Read ``path`` (or return embedded defaults when ``path`` is None)."""
    if path is None:
        return Config()
    try:
        with open(path, "rb") as f:
            text = f.read().decode("utf-8")
    except OSError as e:
        raise ConfigError(f"cannot read config file {path}: {e.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"config file {path} is not UTF-8") from None
    try:
        return parse_config(text, path)
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None
