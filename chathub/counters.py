"""Plain counters the running server keeps for ``/metrics``: integers bumped in place.

Nothing here knows Prometheus: the hub, the store's writer and the relay keep these, and
the collector built at start-up (``chathub.lifecycle.metrics``) reads them when ``/metrics``
is scraped, so the hot paths pay an attribute increment, never a label lookup.
"""
from __future__ import annotations

from bisect import bisect_left
from typing import Iterable, Sequence

#: seconds: delivery and commit latencies, from a tenth of a millisecond to ten seconds
LATENCY_BUCKETS: tuple[float, ...] = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)
#: items in one committed batch
BATCH_BUCKETS: tuple[float, ...] = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000)


class Histogram:
    """Observations counted per bucket (each bucket counts values up to its upper bound,
    not cumulative), with their sum: an observation is one increment of a list item found
    by ``bisect``, and what Prometheus wants (cumulative counts, the total count) is worked
    out only when it is scraped (``cumulative``, ``count``)."""

    __slots__ = ("bounds", "counts", "total")

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = tuple(bounds)
        self.counts = [0] * (len(self.bounds) + 1)  # the last one: above every bound (+Inf)
        self.total = 0.0

    @property
    def count(self) -> int:
        """Observations so far (read at scrape time, not kept per observation)."""
        return sum(self.counts)

    def observe(self, value: float) -> None:
        """Count ``value`` (a value equal to a bound falls in that bound's bucket)."""
        self.counts[bisect_left(self.bounds, value)] += 1
        self.total += value

    def observe_ages(self, now: float, times: Iterable[float]) -> None:
        """Count ``now - t`` for each of ``times`` (at least 0: another node's clock may be
        ahead): a whole batch for one read of the clock and one call."""
        counts, bounds = self.counts, self.bounds
        total = 0.0
        for t in times:
            age = now - t
            if age < 0.0:
                age = 0.0
            counts[bisect_left(bounds, age)] += 1
            total += age
        self.total += total

    def cumulative(self) -> list[tuple[str, int]]:
        """(upper bound as Prometheus writes it, observations up to it), "+Inf" last."""
        rows: list[tuple[str, int]] = []
        running = 0
        for bound, n in zip(self.bounds, self.counts, strict=False):
            running += n
            rows.append((repr(float(bound)), running))
        rows.append(("+Inf", running + self.counts[-1]))
        return rows


class ProtocolCounts:
    """What one protocol's users sent and were delivered (chat messages, actions, notices)."""

    __slots__ = ("received", "delivered")

    def __init__(self) -> None:
        self.received = 0
        self.delivered = 0


class ByProtocol(dict[str, ProtocolCounts]):
    """Protocol name -> its counts, made on first use: ``counts.protocols[name].received += 1``
    is a dict subscript and an increment, with no call."""

    def __missing__(self, name: str) -> ProtocolCounts:
        counts = self[name] = ProtocolCounts()
        return counts


class HubCounts:
    """The hub's counters, made by the hub and read by the metrics collector.

    ``protocols[name]`` is looked up once per message (its sender's); the fan-out keeps each
    recipient snapshot's make-up as the ``ProtocolCounts`` themselves, so it looks nothing up
    per recipient."""

    def __init__(self) -> None:
        self.protocols = ByProtocol()
        #: receipt (the event's time) to the write to its last recipient, in seconds
        self.delivery_latency = Histogram(LATENCY_BUCKETS)
        #: connections closed because their send queue was full (a client not reading)
        self.sendq_drops = 0
        #: connections closed for flooding (too many commands waiting)
        self.flood_disconnects = 0
        #: history requests answered or refused (IRC CHATHISTORY, web scroll-back, replays on join)
        self.history_requests = 0
        #: id of a recipient snapshot fan-out counted -> (the snapshot, (counts, members) of
        #: each protocol it has, members in all) (``chathub.hub.fanout._count``): worked out once per snapshot
        self.compositions: dict[int, tuple[object, tuple[tuple[ProtocolCounts, int], ...], int]] = {}
