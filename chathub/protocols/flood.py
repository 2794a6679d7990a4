"""Flood control shared by the IRC server and the chathub.v1 WebSocket protocol.

``FloodControl`` is a penalty clock ("fake lag") like ircd's, per connection: every
request adds its cost (``1 / rate`` seconds per unit) to a virtual clock that never runs
behind real time. While that clock is at most ``burst`` requests ahead of now, requests
run at once; beyond that they wait until it is, so a flooding client is slowed to
``rate`` requests per second. Exempt connections (loopback harnesses, trusted bouncers)
are never delayed.

``FloodGate`` is the queue in front of a connection's handler: it runs items in order as
the budget allows, holds them while the connection waits for something else (an
asynchronous login), and past ``max_queued`` waiting items calls the connection flooded.
"""
from __future__ import annotations

import ipaddress
from collections import deque
from typing import Any, Callable, Iterable, Optional, Protocol

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime


class FloodControl:
    """Penalty accounting for one connection."""

    __slots__ = ("rate", "burst", "max_queued", "exempt", "clock", "lag_until")

    def __init__(
        self,
        rate: float,
        burst: float,
        max_queued: int,
        clock: Callable[[], float],
        exempt: bool = False,
    ) -> None:
        self.rate = rate
        self.burst = burst
        self.max_queued = max_queued
        self.exempt = exempt
        self.clock = clock
        self.lag_until = 0.0

    def charge(self, units: float) -> None:
        """Account for one request costing ``units``."""
        if self.exempt:
            return
        now = self.clock()
        self.lag_until = max(self.lag_until, now) + units / self.rate

    def delay(self) -> float:
        """Seconds to wait before the next request may run (0 when it may run now)."""
        if self.exempt:
            return 0.0
        ahead = self.lag_until - self.clock()
        allowed = self.burst / self.rate
        return max(0.0, ahead - allowed)

    def max_held(self, hard_limit: Optional[int] = None) -> int:
        """How many requests may wait before the client counts as flooding.

        ``hard_limit`` bounds what even an exempt connection may queue (memory)."""
        if hard_limit is None:
            return self.max_queued
        return hard_limit if self.exempt else min(self.max_queued, hard_limit)


def is_exempt(host: str, networks: Iterable[str]) -> bool:
    """True when ``host`` (an IP address) lies in one of ``networks`` (CIDR or address)."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    for network in networks:
        try:
            if address in ipaddress.ip_network(network, strict=False):
                return True
        except ValueError:
            continue
    return False


class GateOwner(Protocol):
    """The connection a ``FloodGate`` stands in front of."""

    def handle_gated(self, item: Any) -> None:
        """Handle one item whose turn has come."""

    def flooded(self) -> None:
        """Too many items waited: the gate has stopped; close the connection."""


class FloodGate:
    """Runs ``owner.handle_gated(item)`` for each submitted item, in order, as ``control`` allows.

    ``submit(item, cost)`` charges ``cost`` when the item runs; a handler that only knows
    the cost once it has parsed the item submits with cost 0 and charges ``control``
    itself. Most connections never wait: then an item runs at once and no queue is made.
    Past the limit of waiting items the gate stops and calls ``owner.flooded()``.

    The gate keeps its owner, not two bound methods: there is one gate per connection.
    """

    __slots__ = ("control", "clock", "owner", "limit", "_waiting", "_timer", "_paused", "stopped")

    def __init__(
        self,
        control: FloodControl,
        clock: IReactorTime,
        owner: GateOwner,
        hard_limit: Optional[int] = None,
    ) -> None:
        self.control = control
        self.clock = clock
        self.owner = owner
        self.limit = control.max_held(hard_limit)
        self._waiting: Optional[deque[tuple[Any, float]]] = None
        self._timer: Optional[IDelayedCall] = None
        self._paused = False
        self.stopped = False

    @property
    def waiting(self) -> int:
        """How many items wait."""
        return len(self._waiting) if self._waiting else 0

    def submit(self, item: Any, cost: float = 1.0) -> None:
        """Handle ``item`` now if nothing waits and the budget allows, else queue it
        (or, past the limit, stop and report a flood)."""
        if self.stopped:
            return
        waiting = self._waiting
        if waiting is None:
            if not self._paused and self.control.delay() <= 0:
                if cost:
                    self.control.charge(cost)
                self.owner.handle_gated(item)
                return
            waiting = self._waiting = deque()
        elif len(waiting) >= self.limit:
            self.stop()
            self.owner.flooded()
            return
        waiting.append((item, cost))
        self._run()

    def pause_until(self, d: Deferred) -> None:
        """Hold further items until ``d`` fires (an asynchronous login), then carry on."""
        self._paused = True

        def resume(result):
            self._paused = False
            if not self.stopped:
                self._run()
            return result

        d.addBoth(resume)

    def _run(self) -> None:
        timer = self._timer
        if timer is not None and timer.active():
            return
        self._timer = None
        control = self.control
        while self._waiting and not self._paused and not self.stopped:
            wait = control.delay()
            if wait > 0:
                self._timer = self.clock.callLater(wait, self._run)
                return
            item, cost = self._waiting.popleft()
            if cost:
                control.charge(cost)
            self.owner.handle_gated(item)
        if not self._waiting:
            self._waiting = None  # most connections wait for nothing: keep no empty deque

    def stop(self) -> None:
        """Drop everything waiting and cancel the timer (connection closing)."""
        self.stopped = True
        self._waiting = None
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
