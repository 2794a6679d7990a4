"""Flood control for one connection: a token bucket that delays requests instead of dropping them.

Like an IRC server's "fake lag": a burst of ``burst`` requests is handled at once, after
that one request per ``1/rate`` seconds. Requests over the budget wait in order; when
more than ``max_queued`` are waiting the client is flooding and ``on_flood`` is called
(the connection closes). Costs let expensive requests (a login) weigh more.
"""
from __future__ import annotations

from collections import deque
from typing import Any, Callable, Optional

from twisted.internet.interfaces import IDelayedCall, IReactorTime


class FloodGate:
    """Runs ``handle(item)`` for each submitted item, no faster than the budget allows."""

    def __init__(
        self,
        clock: IReactorTime,
        rate: float,
        burst: int,
        max_queued: int,
        handle: Callable[[Any], None],
        on_flood: Callable[[], None],
    ) -> None:
        self.clock = clock
        self.rate = rate
        self.burst = float(burst)
        self.max_queued = max_queued
        self.handle = handle
        self.on_flood = on_flood
        self.tokens = float(burst)
        self.updated = clock.seconds()
        self.waiting: deque[tuple[Any, float]] = deque()
        self._timer: Optional[IDelayedCall] = None
        self.stopped = False

    def submit(self, item: Any, cost: float = 1.0) -> None:
        """Handle ``item`` now if the budget allows, else queue it (or report a flood)."""
        if self.stopped:
            return
        self.waiting.append((item, min(cost, self.burst)))
        if len(self.waiting) > self.max_queued:
            self.stop()
            self.on_flood()
            return
        if self._timer is None:
            self._run()

    def _refill(self) -> None:
        now = self.clock.seconds()
        self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
        self.updated = now

    def _run(self) -> None:
        self._timer = None
        self._refill()
        while self.waiting and not self.stopped:
            item, cost = self.waiting[0]
            if self.tokens < cost:
                if self._timer is None:
                    delay = (cost - self.tokens) / self.rate
                    self._timer = self.clock.callLater(delay, self._run)
                return
            self.waiting.popleft()
            self.tokens -= cost
            self.handle(item)

    def stop(self) -> None:
        """Drop everything waiting and cancel the timer (connection closing)."""
        self.stopped = True
        self.waiting.clear()
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
