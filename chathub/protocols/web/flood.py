"""Flood control for a chathub.v1 connection: the IRC server's penalty clock, with a queue.

The accounting is ``chathub.protocols.irc.flood.FloodControl`` (ircd-style "fake lag"),
so JSON and IRC clients are held to the same rules: a burst is handled at once, after
that requests run no faster than ``rate`` per second. Requests over the budget wait in
order; when more than ``max_queued`` are waiting the client is flooding and ``on_flood``
is called (the connection closes). Costs let expensive requests (a login) weigh more.
"""
from __future__ import annotations

from collections import deque
from types import SimpleNamespace
from typing import Any, Callable, Optional

from twisted.internet.interfaces import IDelayedCall, IReactorTime

from chathub.protocols.irc.flood import FloodControl


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
        settings = SimpleNamespace(
            flood_rate=rate, flood_burst=burst, flood_max_lines=max_queued, flood_protection=True
        )
        self.control = FloodControl(settings, clock=clock.seconds)
        self.clock = clock
        self.max_queued = max_queued
        self.handle = handle
        self.on_flood = on_flood
        self.waiting: deque[tuple[Any, float]] = deque()
        self._timer: Optional[IDelayedCall] = None
        self.stopped = False

    def submit(self, item: Any, cost: float = 1.0) -> None:
        """Handle ``item`` now if the budget allows, else queue it (or report a flood)."""
        if self.stopped:
            return
        if len(self.waiting) >= self.max_queued:
            self.stop()
            self.on_flood()
            return
        self.waiting.append((item, cost))
        if self._timer is None:
            self._run()

    def _run(self) -> None:
        self._timer = None
        while self.waiting and not self.stopped:
            wait = self.control.delay()
            if wait > 0:
                self._timer = self.clock.callLater(wait, self._run)
                return
            item, cost = self.waiting.popleft()
            self.control.charge(cost)
            self.handle(item)

    def stop(self) -> None:
        """Drop everything waiting and cancel the timer (connection closing)."""
        self.stopped = True
        self.waiting.clear()
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
