"""[logging] settings: the format of the log and which lines it has."""
from __future__ import annotations

from dataclasses import dataclass

from chathub.config.schema import require_one_of

#: ``format`` values: twistd's text lines, or one JSON object per line (twisted.logger's)
LOG_FORMATS = ("text", "json")
#: ``level`` values: one line per connection (when it closes), or every step of it too
LOG_LEVELS = ("info", "debug")


@dataclass(frozen=True)
class LoggingConfig:
    """[logging]: log format and the HTTP access log."""

    #: "text": twistd's lines; "json": one JSON object per line on twistd's log output
    #: (stdout with -n), each counted event carrying a stable ``event`` name
    format: str = "text"
    #: one line per HTTP request (static files included); off, only refusals are logged
    access_log: bool = False
    #: "info": one line per connection, when it closes (nick, host, why); "debug": also a
    #: line when it opens, when its user signs on and when it quits (four per connection:
    #: formatting and writing them was a quarter of a registration's cost)
    level: str = "info"

    @property
    def detailed(self) -> bool:
        """True when the steps of a connection (open, sign-on, quit) are logged too."""
        return self.level == "debug"

    def validate(self, prefix: str) -> None:
        require_one_of(prefix, "format", self.format, LOG_FORMATS)
        require_one_of(prefix, "level", self.level, LOG_LEVELS)
