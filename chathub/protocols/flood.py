"""Flood control shared by every protocol: telnet, IRC (TCP and WebSocket) and chathub.v1.

``FloodControl`` is a penalty clock ("fake lag") like ircd's, per connection: every
message a client makes the hub deliver adds its cost (``1 / rate`` seconds per unit) to
a virtual clock that never runs behind real time. While that clock is at most ``burst``
units ahead of now, requests run at once; beyond that they wait until it is, so a
flooding client is slowed to ``rate`` messages per second. Exempt connections (bridges,
trusted bots) are never delayed by it.

``FloodGate`` is the queue in front of a connection's handler. It runs items in order as
the budget allows, holds them while the connection waits for something else (an
asynchronous login), and after every ``PER_ROUND`` items it waits a reactor turn and for
the hub to deliver (commit) what they caused. While anything waits the connection is
not read from (TCP backpressure), so what was read and not yet handled is at most one
read's worth, whoever the client is. Past ``max_queued`` waiting items a connection
that is not exempt has exceeded its budget and is called flooded; an exempt one never
is: it is only slowed down.
"""
from __future__ import annotations

import functools
import ipaddress
from collections import deque
from typing import Any, Callable, Iterable, Optional, Protocol, Union

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime

#: items a connection may have handled before its gate waits a reactor turn and for the
#: hub to deliver what they caused: a burst cannot fan out faster than other members'
#: sockets are written, nor leave more than this many of one client's messages waiting
#: for their commit, even from an exempt client
PER_ROUND = 64


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
        """Account for messages costing ``units`` (one per message delivered)."""
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

    def max_held(self) -> Optional[int]:
        """How many items may wait before the client counts as flooding; None (no limit)
        for an exempt connection, which is throttled by not being read from instead."""
        return None if self.exempt else self.max_queued


#: the control every exempt connection uses: it keeps no state (charge and delay do nothing
#: for an exempt control), so one is shared
EXEMPT = FloodControl(1.0, 1.0, 0, lambda: 0.0, exempt=True)


def control_for(
    rate: float, burst: float, max_queued: int, clock: Callable[[], float], exempt: bool = False
) -> FloodControl:
    """A connection's penalty clock with a protocol's settings, or ``EXEMPT``."""
    return EXEMPT if exempt else FloodControl(rate, burst, max_queued, clock)


def is_exempt(host: str, *network_lists: Iterable[str]) -> bool:
    """True when ``host`` (an IP address) lies in a network (CIDR or address) of any list."""
    if not any(network_lists):
        return False
    return address_in(host, _networks(tuple(tuple(networks) for networks in network_lists)))


class Networks:
    """A parsed list of ``ipaddress`` networks, hashed once: ``address_in`` remembers its
    answers per (address, list), and a tuple of networks hashes each of them in Python
    (0.6 us for two) at every connection's question."""

    __slots__ = ("networks", "_hash")

    def __init__(self, networks: Iterable[Any]) -> None:
        self.networks = tuple(networks)
        self._hash = hash(self.networks)

    def __hash__(self) -> int:
        return self._hash

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Networks) and other.networks == self.networks

    def __bool__(self) -> bool:
        return bool(self.networks)


@functools.lru_cache(maxsize=1024)  # every connection asks, mostly from a few addresses
def address_in(host: str, networks: Networks) -> bool:
    """Whether ``host`` (an address as text) lies in one of ``networks``: an IPv4-mapped
    IPv6 address (a dual-stack listener's) as its IPv4 address. Remembered per address: an
    address in a network is ipaddress at work, a microsecond each."""
    address = _unmapped(host)
    return address is not None and any(address in network for network in networks.networks)


def _unmapped(host: str) -> Optional[Union[ipaddress.IPv4Address, ipaddress.IPv6Address]]:
    """``host`` as an address (an IPv4-mapped IPv6 one as the IPv4 one, a zone left out),
    or None when it is none."""
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return None
    if address.version == 6 and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


@functools.lru_cache(maxsize=16)
def _networks(lists: tuple[tuple[str, ...], ...]) -> Networks:
    """The networks of settings' lists, parsed once per lists (every connection asked: a
    third of the ``ipaddress`` work of a registration), the invalid ones left out."""
    parsed = []
    for text in (text for texts in lists for text in texts):
        try:
            parsed.append(ipaddress.ip_network(text, strict=False))
        except ValueError:
            continue
    return Networks(parsed)


class GateOwner(Protocol):
    """The connection a ``FloodGate`` stands in front of."""

    def handle_gated(self, item: Any) -> None:
        """Handle one item whose turn has come."""

    def flooded(self) -> None:
        """Too many items waited: the gate has stopped; close the connection."""

    def pause_reading(self) -> None:
        """Items wait: stop reading from the connection (``transport.pauseProducing``)."""

    def resume_reading(self) -> None:
        """Nothing waits any more: read again (``transport.resumeProducing``)."""

    def when_delivered(self, fn: Callable[[], None]) -> None:
        """Call ``fn`` once the hub has delivered what the handled items caused."""


class FloodGate:
    """Runs ``owner.handle_gated(item)`` for each submitted item, in order, as ``control`` allows.

    ``submit(item, cost)`` charges ``cost`` when the item runs; a handler that only knows
    the cost once it has parsed the item submits with cost 0 and charges ``control``
    itself. Most connections never wait: then an item runs at once and no queue is made.
    While items wait, the owner is told to stop reading and, once none do, to read again.
    Past the limit of waiting items (none for exempt connections) the gate stops and
    calls ``owner.flooded()``.

    The gate keeps its owner, not bound methods: there is one gate per connection.
    """

    __slots__ = (
        "control",
        "clock",
        "owner",
        "limit",
        "_waiting",
        "_timer",
        "_holds",
        "_handled",
        "_reading_paused",
        "_running",
        "stopped",
    )

    def __init__(self, control: FloodControl, clock: IReactorTime, owner: GateOwner) -> None:
        self.control = control
        self.clock = clock
        self.owner = owner
        self.limit = control.max_held()
        self._waiting: Optional[deque[tuple[Any, float]]] = None
        self._timer: Optional[IDelayedCall] = None
        self._holds = 0  # reasons to hold items: a login under way, the end of a round
        self._handled = 0  # items handled in this round (see PER_ROUND)
        self._reading_paused = False
        self._running = False  # in _run: a handler that releases a hold must not nest a second loop
        self.stopped = False

    def retune(self, control: FloodControl) -> None:
        """Use ``control`` from now on (a config reload's new settings): the penalty already
        run up carries over, and items already waiting stay, whatever the new limit."""
        if control is not EXEMPT and self.control is not EXEMPT:
            control.lag_until = self.control.lag_until
        self.control = control
        self.limit = control.max_held()

    @property
    def waiting(self) -> int:
        """How many items wait."""
        return len(self._waiting) if self._waiting else 0

    @property
    def reading_paused(self) -> bool:
        """True while the owner was told to stop reading."""
        return self._reading_paused

    def submit(self, item: Any, cost: float = 1.0) -> None:
        """Handle ``item`` now if nothing waits and the budget allows, else queue it
        (or, past the limit, stop and report a flood)."""
        if self.stopped:
            return
        waiting = self._waiting
        if waiting is None:
            if not self._holds and self.control.delay() <= 0:
                self._handle(item, cost)
                return
            waiting = self._waiting = deque()
            self._pause_reading()
        elif self.limit is not None and len(waiting) >= self.limit:
            self.stop()
            self.owner.flooded()
            return
        waiting.append((item, cost))
        self._run()

    def _handle(self, item: Any, cost: float) -> None:
        if cost:
            self.control.charge(cost)
        self._handled += 1
        if self._handled >= PER_ROUND:
            # what comes next waits for the next turn and for what this round caused
            self._handled = 0
            self._holds += 1
            self.clock.callLater(0, self._end_round)
        self.owner.handle_gated(item)

    def _end_round(self) -> None:
        if self.stopped:
            return
        self.owner.when_delivered(self._release)

    def pause_until(self, d: Deferred) -> None:
        """Hold further items until ``d`` fires (an asynchronous login), then carry on."""
        self._holds += 1

        def resume(result):
            self._release()
            return result

        d.addBoth(resume)

    def _release(self) -> None:
        self._holds -= 1
        if not self.stopped:
            self._run()

    def _run(self) -> None:
        timer = self._timer
        if self._running or (timer is not None and timer.active()):
            return
        self._timer = None
        control = self.control
        self._running = True
        try:
            while self._waiting and not self._holds and not self.stopped:
                wait = control.delay()
                if wait > 0:
                    self._timer = self.clock.callLater(wait, self._run)
                    return
                item, cost = self._waiting.popleft()
                self._handle(item, cost)
        finally:
            self._running = False
        if self._waiting is not None and not self._waiting and not self.stopped:
            self._waiting = None  # most connections wait for nothing: keep no empty deque
            self._resume_reading()

    def _pause_reading(self) -> None:
        if not self._reading_paused:
            self._reading_paused = True
            self.owner.pause_reading()

    def _resume_reading(self) -> None:
        if self._reading_paused:
            self._reading_paused = False
            self.owner.resume_reading()

    def stop(self) -> None:
        """Drop everything waiting and cancel the timer (connection closing)."""
        self.stopped = True
        self._waiting = None
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None

