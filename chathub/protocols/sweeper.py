"""One timer for every session of a server: IRC's registration deadline and ping check, and the
WebSocket keepalive (chathub/protocols/web/websocket.py)."""
from __future__ import annotations

from typing import Optional, Protocol

from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

log = Logger()


class TimedSession(Protocol):
    """What the sweeper checks: an IRC session, a WebSocket connection."""

    def check_timers(self, now: float) -> None:
        """Act on whatever deadline has passed at ``now``."""


class Sweeper:
    """Checks every session's timers once a second: one LoopingCall per server (or
    WebSocket factory) instead of a DelayedCall per connection (10,000 idle clients are
    10,000 timers less).
    Deadlines are therefore kept to within a second. The sweep runs only while there are
    sessions to check."""

    __slots__ = ("clock", "sessions", "_call")

    INTERVAL = 1.0

    def __init__(self, clock: IReactorTime) -> None:
        self.clock = clock
        self.sessions: set[TimedSession] = set()
        self._call: Optional[LoopingCall] = None

    def add(self, session: TimedSession) -> None:
        """Check ``session`` from now on."""
        self.sessions.add(session)
        if self._call is None:
            self._call = LoopingCall(self.sweep)
            self._call.clock = self.clock
            self._call.start(self.INTERVAL, now=False)

    def discard(self, session: TimedSession) -> None:
        """Stop checking ``session`` (it is gone)."""
        self.sessions.discard(session)
        if not self.sessions and self._call is not None:
            if self._call.running:
                self._call.stop()
            self._call = None

    def sweep(self) -> None:
        """Check every session's timers against the clock."""
        now = self.clock.seconds()
        for session in list(self.sessions):
            try:
                session.check_timers(now)
            except Exception:
                log.failure("session timer check failed")
