"""[logging] settings: the format of the log and which lines it has."""
from __future__ import annotations

from dataclasses import dataclass

from chathub.config.schema import require_one_of

#: ``format`` values: twistd's text lines, or one JSON object per line (twisted.logger's)
LOG_FORMATS = ("text", "json")


@dataclass(frozen=True)
class LoggingConfig:
    """[logging]: log format and the HTTP access log."""

    #: "text": twistd's lines; "json": one JSON object per line on twistd's log output
    #: (stdout with -n), each counted event carrying a stable ``event`` name
    format: str = "text"
    #: one line per HTTP request (static files included); off, only refusals are logged
    access_log: bool = False

    def validate(self, prefix: str) -> None:
        require_one_of(prefix, "format", self.format, LOG_FORMATS)
