"""[metrics] settings: whether ``/metrics`` is served on the HTTP listener, and to whom."""
from __future__ import annotations

from dataclasses import dataclass

from chathub.config.schema import ConfigError

#: a bearer token shorter than this is refused: it is all that keeps the figures private
MIN_TOKEN_LENGTH = 16


@dataclass(frozen=True)
class MetricsConfig:
    """[metrics]: Prometheus figures at ``/metrics`` of the HTTP listener."""

    #: serve ``/metrics`` (false: 404, and nothing is collected at scrape time)
    enabled: bool = True
    #: "" (the default): only loopback peers that came through no proxy may scrape; set,
    #: any peer sending ``Authorization: Bearer <token>`` may, and no one else
    token: str = ""

    def validate(self, prefix: str) -> None:
        token = self.token
        if token and (
            len(token) < MIN_TOKEN_LENGTH or not all("!" <= c <= "~" for c in token)
        ):
            name = f"{prefix}.token" if prefix else "token"
            raise ConfigError(
                f"setting '{name}' must be at least {MIN_TOKEN_LENGTH} printable ASCII characters "
                "without spaces (or empty: loopback only)"
            )
