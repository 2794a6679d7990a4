"""JSON log lines (``[logging] format = "json"``) with stable event names.

twisted.logger's own JSON form of each event (``eventAsJSON``), one object per line, with
the rendered ``text`` added and an ``event`` name on the lines a log shipper counts. Call
sites name their event (``log.info(..., event="login")``); a logged failure without a name is
a ``fault``. The names: ready, reload, reload_failed, shutdown, connect, login,
login_failed, logout, kick, kill, fault.
"""
from __future__ import annotations

import sys
from typing import IO, Any, Optional

from zope.interface import implementer

from twisted.logger import ILogObserver, LogEvent, LogLevel, eventAsJSON, formatEvent

#: the stable names a log shipper may count (docs/operator-guide.md, "Logs")
EVENT_NAMES = frozenset(
    {"ready", "reload", "reload_failed", "shutdown", "connect", "disconnect", "login",
     "login_failed", "logout", "kick", "kill", "fault"}
)


@implementer(ILogObserver)
class JsonLines:
    """Writes each log event as one line of JSON to ``out`` (stdout by default)."""

    def __init__(self, out: Optional[IO[str]] = None) -> None:
        self.out = out if out is not None else sys.stdout

    def __call__(self, event: LogEvent) -> None:
        named: dict[str, Any] = dict(event)
        if "event" not in named and ("log_failure" in named or named.get("log_level") == LogLevel.critical):
            named["event"] = "fault"
        # the message as text too, so a reader of the JSON needs no formatter
        named.setdefault("text", formatEvent(event))
        self.out.write(eventAsJSON(named) + "\n")
        self.out.flush()
