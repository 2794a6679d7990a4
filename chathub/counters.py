"""Plain counters the running server keeps for ``/metrics``: integers bumped in place.

Nothing here knows Prometheus: the hub, the store's writer and the relay keep these, and
the collector built at start-up (``chathub.lifecycle.metrics``) reads them when ``/metrics``
is scraped, so the hot paths pay an attribute increment, never a label lookup.
"""
from __future__ import annotations

from bisect import bisect_left
from typing import Sequence

#: seconds: delivery and commit latencies, from a tenth of a millisecond to ten seconds
LATENCY_BUCKETS: tuple[float, ...] = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)
#: items in one committed batch
BATCH_BUCKETS: tuple[float, ...] = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000)


class Histogram:
    """Observations counted per bucket (each bucket counts values up to its upper bound,
    not cumulative: the collector sums them), with their count and sum."""

    __slots__ = ("bounds", "counts", "count", "total")

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = tuple(bounds)
        self.counts = [0] * (len(self.bounds) + 1)  # the last one: above every bound (+Inf)
        self.count = 0
        self.total = 0.0

    def observe(self, value: float) -> None:
        """Count ``value`` (a value equal to a bound falls in that bound's bucket)."""
        self.counts[bisect_left(self.bounds, value)] += 1
        self.count += 1
        self.total += value

    def cumulative(self) -> list[tuple[str, int]]:
        """(upper bound as Prometheus writes it, observations up to it), "+Inf" last."""
        rows: list[tuple[str, int]] = []
        running = 0
        for bound, n in zip(self.bounds, self.counts, strict=False):
            running += n
            rows.append((repr(float(bound)), running))
        rows.append(("+Inf", self.count))
        return rows


class ProtocolCounts:
    """What one protocol's users sent and were delivered (chat messages, actions, notices)."""

    __slots__ = ("received", "delivered")

    def __init__(self) -> None:
        self.received = 0
        self.delivered = 0


class HubCounts:
    """The hub's counters, made by the hub and read by the metrics collector.

    ``protocol(name)`` is looked up once per message (its sender's) and once per wire format
    a fan-out wrote, never once per recipient."""

    def __init__(self) -> None:
        self.protocols: dict[str, ProtocolCounts] = {}
        #: receipt (the event's time) to the write to its last recipient, in seconds
        self.delivery_latency = Histogram(LATENCY_BUCKETS)
        #: connections closed because their send queue was full (a client not reading)
        self.sendq_drops = 0
        #: connections closed for flooding (too many commands waiting)
        self.flood_disconnects = 0
        #: history requests answered or refused (IRC CHATHISTORY, web scroll-back, replays on join)
        self.history_requests = 0
        #: id of a recipient snapshot fan-out counted -> (the snapshot, how many of it each
        #: protocol has) (``chathub.hub.fanout._count``): worked out once per snapshot
        self.compositions: dict[int, tuple[object, dict[str, int]]] = {}

    def protocol(self, name: str) -> ProtocolCounts:
        """The counts of protocol ``name`` ("line", "irc", "ws")."""
        counts = self.protocols.get(name)
        if counts is None:
            counts = self.protocols[name] = ProtocolCounts()
        return counts
