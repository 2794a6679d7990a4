"""``/metrics`` and ``/healthz`` over the running server (``IOperations``).

The hub, the store's writer, the login limiter, the relay and each listening port keep
plain integer counters (``chathub.counters``); ``ServerFigures`` reads them only when
Prometheus scrapes, so figures cost the chat path an attribute increment and nothing
else. Prometheus' own Twisted module is not used: it imports the reactor when imported
and renders in a thread pool; here a ``CollectorRegistry`` made at start-up is rendered
with ``generate_latest`` on the reactor (a scrape reads a few hundred numbers).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterable, Iterator, Optional

from zope.interface import implementer

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector
from twisted.internet import defer
from twisted.internet.interfaces import IReactorTime
from twisted.python.failure import Failure

from chathub.counters import Histogram
from chathub.interfaces import IOperations

if TYPE_CHECKING:
    from chathub.app import ChathubService

#: seconds a store write check's answer is reused: a load balancer polling /healthz (or
#: anyone else) makes at most one write per this interval, one at a time
HEALTH_CHECK_REUSE = 1.0


def _histogram(name: str, doc: str, histogram: Histogram) -> HistogramMetricFamily:
    return HistogramMetricFamily(name, doc, buckets=histogram.cumulative(), sum_value=histogram.total)


class ServerFigures(Collector):
    """Reads the running server's counters at scrape time into Prometheus metric families."""

    def __init__(self, server: "ChathubService") -> None:
        self.server = server

    def collect(self) -> Iterator[Metric]:
        """Every chathub figure, read now."""
        server = self.server
        hub = server.hub
        counts = hub.counts
        connections = GaugeMetricFamily(
            "chathub_connections", "Open connections per listener kind (line, irc, http; TCP listeners).",
            labels=["listener"],
        )
        per_kind: dict[str, int] = {kind: 0 for kind in ("line", "irc", "http")}
        for listener in server.listeners:
            factory = getattr(listener.port, "factory", None)
            per_kind[listener.kind] = per_kind.get(listener.kind, 0) + getattr(factory, "open", 0)
        for kind, n in sorted(per_kind.items()):
            connections.add_metric([kind], n)
        yield connections
        users = GaugeMetricFamily(
            "chathub_users", "Signed-on users of this node per protocol (line, irc, ws).", labels=["protocol"]
        )
        per_protocol: dict[str, int] = {name: 0 for name in ("line", "irc", "ws")}
        for user in hub.users.values():
            name = user.participant.protocol
            per_protocol[name] = per_protocol.get(name, 0) + 1
        for name, n in sorted(per_protocol.items()):
            users.add_metric([name], n)
        yield users
        yield GaugeMetricFamily("chathub_rooms", "Rooms that exist (persistent ones included).", value=len(hub.rooms))
        received = CounterMetricFamily(
            "chathub_messages_received", "Messages, actions and notices sent by this node's users, per protocol.",
            labels=["protocol"],
        )
        delivered = CounterMetricFamily(
            "chathub_messages_delivered",
            "Messages, actions and notices written to this node's users, per recipient protocol.",
            labels=["protocol"],
        )
        for name in sorted(set(counts.protocols) | {"line", "irc", "ws"}):
            pc = counts.protocols.get(name)
            received.add_metric([name], pc.received if pc else 0)
            delivered.add_metric([name], pc.delivered if pc else 0)
        yield received
        yield delivered
        yield _histogram(
            "chathub_delivery_latency_seconds",
            "Seconds from a message's receipt to its write to the last recipient here.",
            counts.delivery_latency,
        )
        yield CounterMetricFamily(
            "chathub_sendq_drops", "Connections dropped because their send queue was full.", value=counts.sendq_drops
        )
        yield CounterMetricFamily(
            "chathub_flood_disconnects", "Connections closed for flooding.", value=counts.flood_disconnects
        )
        yield CounterMetricFamily(
            "chathub_history_requests", "History requests (CHATHISTORY, scroll-back, replay on join).",
            value=counts.history_requests,
        )
        portal = server.portal
        yield CounterMetricFamily(
            "chathub_failed_logins", "Logins refused for a wrong password.", value=getattr(portal, "failed_logins", 0)
        )
        yield CounterMetricFamily(
            "chathub_login_throttles", "Login attempts refused for too many at once.",
            value=getattr(portal, "throttled_logins", 0),
        )
        writer = getattr(server.store, "writer", None)
        if writer is not None:
            yield _histogram(
                "chathub_store_commit_seconds", "Seconds each transaction of history writes took.",
                writer.commit_seconds,
            )
            yield _histogram(
                "chathub_store_batch_size", "Events written by each history transaction.", writer.batch_sizes
            )
            yield GaugeMetricFamily("chathub_store_pending_writes", "Writes queued, not yet committed.",
                                    value=writer.pending)
        if server.relay is not None and server.backplane is not None:
            yield _histogram(
                "chathub_backplane_lag_seconds",
                "Seconds from an event's receipt on another node to its arrival here.",
                server.relay.lag,
            )
            yield GaugeMetricFamily(
                "chathub_backplane_connected", "1 while the cluster backplane (Redis) is connected.",
                value=1 if server.backplane.connected else 0,
            )
            yield GaugeMetricFamily(
                "chathub_backplane_lease", "1 while this node holds its lease in the cluster (0: fenced).",
                value=1 if server.backplane.lease_held else 0,
            )
            relay = server.relay
            yield _by_outcome(
                "chathub_relay_events",
                "Other nodes' events by what this node's relay did beyond delivering them in order: "
                "passed (chat of a room with no member here: counted, not read), duplicate (came "
                "again: dropped), fetched (read from the database: a gap, or a comparison of heads).",
                (("passed", relay.passed), ("duplicate", relay.duplicates), ("fetched", relay.fetched)),
            )
        claims = hub.room_claims
        if claims is not None:
            yield _by_outcome(
                "chathub_room_claims",
                "Claims of new rooms' names by this node, per outcome: granted (it made the room), "
                "refused (another node was making it), taken_over (a claim whose room never came), "
                "renewed (a room made again by a join that raced its end).",
                (("granted", claims.granted), ("refused", claims.refused),
                 ("taken_over", claims.taken_over), ("renewed", claims.renewed)),
            )


def _by_outcome(name: str, documentation: str, counts: Iterable[tuple[str, int]]) -> CounterMetricFamily:
    """A counter family labelled ``outcome``, one sample per ``(outcome, count)``."""
    family = CounterMetricFamily(name, documentation, labels=["outcome"])
    for outcome, n in counts:
        family.add_metric([outcome], n)
    return family


def build_registry(server: "ChathubService") -> CollectorRegistry:
    """A registry of this server's figures and of the process' (CPU, memory, open files)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ServerFigures(server))
    ProcessCollector(registry=registry)
    return registry


@implementer(IOperations)
class Operations:
    """``IOperations`` over the running server: its registry (None when ``[metrics]
    enabled`` is false) and its health checks."""

    def __init__(self, server: "ChathubService", clock: IReactorTime) -> None:
        self.server = server
        self.clock = clock
        self.registry: Optional[CollectorRegistry] = (
            build_registry(server) if server.config.metrics.enabled else None
        )
        self._write_check: Optional[defer.Deferred[None]] = None  # the one running
        self._write_waiters: list[defer.Deferred[Optional[str]]] = []
        #: seconds a store check's answer is reused (``HEALTH_CHECK_REUSE``)
        self.reuse = HEALTH_CHECK_REUSE
        self._write_checked = -HEALTH_CHECK_REUSE
        self._write_error: Optional[str] = None

    def metrics_text(self) -> bytes:
        """The registry's figures in the Prometheus text format (empty when disabled)."""
        return generate_latest(self.registry) if self.registry is not None else b""

    def health(self) -> defer.Deferred[tuple[bool, dict[str, Any]]]:
        """Process up, every listener listening, the store taking a write, the backplane
        connected (in a cluster)."""
        server = self.server
        listeners = {listener.name: listener.port is not None for listener in server.listeners}
        checks: dict[str, Any] = {
            "listeners": all(listeners.values()) and bool(listeners) and server.listeners.running == 1,
            "listener_detail": listeners,
        }
        if server.backplane is not None:
            checks["backplane"] = bool(server.backplane.connected)
            # fenced, a node grants no nick: behind one port, the connections the kernel gives
            # it could not sign on, so it is not healthy (its watchdog restarts it)
            checks["lease"] = bool(server.backplane.lease_held)

        def done(error: Optional[str]) -> tuple[bool, dict[str, Any]]:
            checks["store"] = error is None
            if error is not None:
                checks["store_error"] = error
            healthy = all(v for k, v in checks.items() if k in ("listeners", "store", "backplane", "lease"))
            return healthy, {"status": "ok" if healthy else "failing", "checks": checks}

        return self._store_writable().addCallback(done)

    def _store_writable(self) -> defer.Deferred[Optional[str]]:
        """None when the store took a write, else why not; one write at a time, its answer
        reused for ``HEALTH_CHECK_REUSE`` seconds."""
        if self._write_check is None and self.clock.seconds() - self._write_checked < self.reuse:
            return defer.succeed(self._write_error)
        waiting: defer.Deferred[Optional[str]] = defer.Deferred()
        self._write_waiters.append(waiting)
        if self._write_check is None:
            check: defer.Deferred[None] = defer.maybeDeferred(self.server.store.check_writable)
            self._write_check = check
            check.addBoth(self._write_settled)
        return waiting

    def _write_settled(self, result: object) -> None:
        self._write_check = None
        self._write_checked = self.clock.seconds()
        self._write_error = result.getErrorMessage() if isinstance(result, Failure) else None
        waiters, self._write_waiters = self._write_waiters, []
        for waiting in waiters:
            waiting.callback(self._write_error)
