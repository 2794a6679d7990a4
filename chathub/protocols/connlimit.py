"""Per-address connection limits for every TCP listener, and the start-up descriptor check.

Every listener of every protocol is started through ``LimitingReactor``: the reactor, except
that the TCP ports it opens (plain, TLS, or adopted from systemd) admit each accepted
connection through one ``ConnectionLimits``. A client address may hold at most
``[limits] max_connections_per_ip`` connections at once and may open new ones at
``connect_rate_per_ip`` per second on average (``connect_burst_per_ip`` at once); addresses
in ``connection_limits_exempt`` are never limited. IPv6 clients are counted per /64, the
block one subscriber usually holds.

A refused connection costs the accept, one short write and the close (a dozen cheap system
calls, about a quarter of the CPU an admitted connection costs): it gets the
listener's refusal in its protocol's own terms (the factory's ``refusal(reason)``: an IRC
``ERROR`` line, an HTTP 503 or 429, a telnet ``!`` line) and no protocol, session or TLS
state is ever made for it. A TLS listener refuses by closing: its words could only be read
after a TLS handshake, which is the cost the refusal is there to avoid.

Why not ``twisted.protocols.policies.LimitConnectionsByPeer``: it indexes the address
object as a tuple (an ``IPv4Address`` is not one), refuses without a word, and as a
``WrappingFactory`` puts a wrapper protocol with its own instance dict on every byte's path:
the protocols would see the wrapper as their transport (no plain-TCP fast path in
``SendQueue``), and Autobahn's take-over of an upgraded HTTP connection would replace the
wrapper and so never report the close. Here the count is kept at the TCP level instead: the
port's factory counts a connection when it is accepted, and the port's transport class
counts it out when its socket closes, whatever protocol ended up owning it; nothing is added
per connection.
"""
from __future__ import annotations

import fcntl
import ipaddress
import os
import resource
import socket
from typing import Callable, Iterable, Optional, Union, cast

from twisted.internet import protocol, tcp
from twisted.internet.interfaces import IReactorTime, ITCPTransport
from twisted.logger import Logger
from twisted.protocols.tls import TLSMemoryBIOFactory

from chathub.protocols.flood import Networks, address_in
from chathub.protocols.tls import SwappableTLS

_log = Logger()

#: refusal reasons, handed to a listener factory's ``refusal(reason)``
TOO_MANY = "too_many"
TOO_FAST = "too_fast"

#: what a refused client is told, in each protocol's framing
REASON_TEXT = {
    TOO_MANY: "Too many connections from your IP",
    TOO_FAST: "Connecting too fast from your IP; try again in a few seconds",
}

#: how the log says it, naming the setting
_LOG_TEXT = {TOO_MANY: "over max_connections_per_ip", TOO_FAST: "faster than connect_rate_per_ip"}

#: keep rate records for at least this many addresses before sweeping the stale ones
_SWEEP_MIN = 1024

Key = Union[str, bytes]  # an IPv4 address, or the packed /64 of an IPv6 one


def address_key(host: str) -> Key:
    """What one client is counted as: an IPv4 address, or the /64 of an IPv6 one.

    An IPv4-mapped IPv6 address (a dual-stack listener) counts as the IPv4 address.
    """
    if ":" not in host:
        return host
    bare = host.split("%", 1)[0]  # a link-local address carries its scope
    try:
        packed = socket.inet_pton(socket.AF_INET6, bare)
    except OSError:
        return host
    if packed[:12] == b"\0" * 10 + b"\xff\xff":
        return socket.inet_ntop(socket.AF_INET, packed[12:])
    return packed[:8]


class ConnectionLimits:
    """How many connections each client address holds, and how fast it opens new ones.

    The rate is a GCRA (a token bucket kept as one time per address): each admitted
    connection moves the address's time ``1 / rate`` ahead; a connection is refused while
    that time is more than ``(burst - 1) / rate`` ahead of now. A record whose time has
    passed says nothing and is swept when the table has doubled since the last sweep, so
    it holds only the addresses that connected in the last ``burst / rate`` seconds.
    """

    def __init__(
        self,
        max_per_address: int,
        rate: float,
        burst: int,
        exempt: Iterable[str] = (),
        clock: Optional[IReactorTime] = None,
    ) -> None:
        if clock is None:
            from twisted.internet import reactor

            clock = reactor
        self.clock = clock
        self.set_limits(max_per_address, rate, burst, exempt)
        #: connections held, per key (no entry: none)
        self.held: dict[Key, int] = {}
        #: next "theoretical arrival time" per key (the rate)
        self._next: dict[Key, float] = {}
        self._sweep_at = _SWEEP_MIN

    def set_limits(self, max_per_address: int, rate: float, burst: int, exempt: Iterable[str] = ()) -> None:
        """Change the limits (a config reload); the connections held stay counted."""
        self.max_per_address = max_per_address
        self._interval = 1.0 / rate
        self._tolerance = (burst - 1) * self._interval
        self._exempt = Networks(ipaddress.ip_network(n, strict=False) for n in exempt)

    def reconfigure(self, limits) -> None:
        """Take the limits of a new ``[limits]`` section."""
        self.set_limits(
            limits.max_connections_per_ip,
            limits.connect_rate_per_ip,
            limits.connect_burst_per_ip,
            limits.connection_limits_exempt,
        )

    @classmethod
    def from_config(cls, limits, clock: Optional[IReactorTime] = None) -> "ConnectionLimits":
        """Built from a ``[limits]`` section."""
        return cls(
            limits.max_connections_per_ip,
            limits.connect_rate_per_ip,
            limits.connect_burst_per_ip,
            limits.connection_limits_exempt,
            clock,
        )

    def exempt(self, host: str) -> bool:
        """Whether ``host`` is in ``connection_limits_exempt``."""
        if not self._exempt:
            return False
        return address_in(host, self._exempt)

    def admit(self, host: str) -> Optional[str]:
        """Count a new connection from ``host``; None if it may stay, else why it is refused.

        A refused connection is counted too (its socket is held until it closes): every
        ``admit`` is matched by one ``release`` when the socket closes.
        """
        if self._exempt and self.exempt(host):
            return None
        key = address_key(host)
        held = self.held.get(key, 0)
        self.held[key] = held + 1
        if held >= self.max_per_address:
            return TOO_MANY
        now = self.clock.seconds()
        due = self._next.get(key, now)
        if due < now:
            due = now
        if due - now > self._tolerance:
            return TOO_FAST
        self._next[key] = due + self._interval
        if len(self._next) > self._sweep_at:
            self._sweep(now)
        return None

    def release(self, host: str) -> None:
        """A connection from ``host`` that ``admit`` counted has closed."""
        if self._exempt and self.exempt(host):
            return
        key = address_key(host)
        held = self.held.get(key, 0) - 1
        if held > 0:
            self.held[key] = held
        else:
            self.held.pop(key, None)

    def _sweep(self, now: float) -> None:
        self._next = {key: due for key, due in self._next.items() if due > now}
        self._sweep_at = max(_SWEEP_MIN, 2 * len(self._next))


class _Refused(protocol.Protocol):
    """A refused connection: says why (if its protocol has words for it) and closes."""

    def __init__(self, message: bytes) -> None:
        self.message = message

    def connectionMade(self) -> None:
        transport = cast(ITCPTransport, self.transport)  # accepted by a TCP port
        if not self.message:
            transport.abortConnection()
            return
        transport.write(self.message)
        transport.loseConnection()

    def dataReceived(self, data: bytes) -> None:
        pass  # nothing a refused client says is read


class AdmissionFactory(protocol.ServerFactory):
    """A limited port's factory: admits each connection through ``limits`` and builds the
    listener's protocol for it, or a refusal. Made by ``LimitingReactor``, never shared."""

    noisy = False  # the listener's own factory logs its start and stop

    def __init__(
        self,
        wrapped: protocol.Factory,
        limits: ConnectionLimits,
        refusal: Optional[Callable[[str], bytes]],
    ) -> None:
        self.wrapped = wrapped
        self.limits = limits
        self.refusal = refusal
        self.refused = 0  # connections refused so far (a log line per burst, not per refusal)
        self.open = 0  # admitted connections not yet closed (read by /metrics)

    def logPrefix(self) -> str:
        # the port's "... starting on PORT" line names the listener, not this wrapper
        return _log_prefix(self.wrapped)

    def doStart(self) -> None:
        self.wrapped.doStart()
        super().doStart()

    def doStop(self) -> None:
        self.wrapped.doStop()
        super().doStop()

    def buildProtocol(self, addr):
        host = addr.host
        reason = self.limits.admit(host)
        if reason is None:
            try:
                built = self.wrapped.buildProtocol(addr)
            except BaseException:
                self.limits.release(host)
                raise
            if built is None:  # the port closes the socket without a transport
                self.limits.release(host)
            else:
                self.open += 1
            return built
        self.refused += 1
        if self.refused == 1 or self.refused % 1000 == 0:
            _log.warn(
                "refusing connections from {host}: {why} ({count} refused on this listener so far)",
                host=host, why=_LOG_TEXT[reason], count=self.refused,
            )
        return _Refused(self.refusal(reason) if self.refusal is not None else b"")


def _log_prefix(factory) -> str:
    prefix = getattr(factory, "logPrefix", None)
    return prefix() if prefix is not None else factory.__class__.__name__


class _CountedServer(tcp.Server):
    """An accepted TCP connection that tells its port's ``AdmissionFactory`` when it closes."""

    def connectionLost(self, reason) -> None:
        # read now: Twisted drops the protocol as the connection ends
        admitted = not isinstance(getattr(self, "protocol", None), _Refused)
        try:
            super().connectionLost(reason)
        finally:
            factory = cast(AdmissionFactory, self.server.factory)  # a LimitedPort's
            factory.limits.release(cast(str, self.client[0]))  # (host, port) of an IP socket
            if admitted:
                factory.open -= 1


class LimitedPort(tcp.Port):
    """A TCP listening port whose factory is an ``AdmissionFactory``."""

    transport = _CountedServer


class LimitingReactor:
    """The reactor, for ``serverFromString``: every TCP port it listens on (``tcp:``, ``tcp6:``,
    ``ssl:``, ``systemd:`` with an INET socket) admits connections through ``limits``.
    Everything else (``unix:`` listeners, timers, ...) is the reactor's own."""

    def __init__(self, reactor, limits: ConnectionLimits) -> None:
        self._reactor = reactor
        self.limits = limits

    def __getattr__(self, name):
        return getattr(self._reactor, name)

    def _admission(self, factory, refusal) -> AdmissionFactory:
        return AdmissionFactory(factory, self.limits, refusal)

    def listenTCP(self, port: int, factory, backlog: int = 50, interface: str = "") -> LimitedPort:
        """``IReactorTCP.listenTCP`` with admission. A refused client gets the bytes of the
        factory's ``refusal(reason)`` (``TOO_MANY`` or ``TOO_FAST``) if it has one."""
        listening = LimitedPort(
            port, self._admission(factory, getattr(factory, "refusal", None)), backlog, interface, self._reactor
        )
        listening.startListening()
        return listening

    def listenSSL(self, port: int, factory, contextFactory, backlog: int = 50, interface: str = "") -> LimitedPort:
        """``IReactorSSL.listenSSL`` (TLS in memory over a limited TCP port), refusing by closing
        before any TLS state is made."""
        # the certificate can be replaced while the port runs (chathub.protocols.tls)
        creator = SwappableTLS(contextFactory)
        tls = TLSMemoryBIOFactory(creator, False, factory)
        listening = LimitedPort(port, self._admission(tls, None), backlog, interface, self._reactor)
        listening._type = "TLS"  # as the reactor's own listenSSL names it in logs
        listening.tls = creator  # type: ignore[attr-defined]  # read by chathub.lifecycle.reload
        listening.startListening()
        return listening

    def adoptStreamPort(self, fileDescriptor: int, addressFamily: int, factory):
        """``IReactorSocket.adoptStreamPort``: an INET socket (systemd) gets admission too."""
        if addressFamily not in (socket.AF_INET, socket.AF_INET6):
            return self._reactor.adoptStreamPort(fileDescriptor, addressFamily, factory)
        listening = LimitedPort._fromListeningDescriptor(
            self._reactor,
            fileDescriptor,
            addressFamily,
            self._admission(factory, getattr(factory, "refusal", None)),
        )
        listening.startListening()
        return listening


def raise_open_files_limit() -> tuple[int, int, int]:
    """Raise the soft RLIMIT_NOFILE to the hard limit (or as near as the kernel allows).

    Every connection holds a descriptor: at the usual soft limit of 1,024 a few hundred held
    connections refuse everyone else. Returns ``(before, after, hard)``.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard
    if target == resource.RLIM_INFINITY:
        target = _nr_open()
    if soft != resource.RLIM_INFINITY and soft < target:
        for wanted in (target, 1 << 20, 65536):
            if wanted <= soft:
                break
            try:
                resource.setrlimit(resource.RLIMIT_NOFILE, (min(wanted, target), hard))
                break
            except (ValueError, OSError):
                continue
    after = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    return soft, after, hard


#: descriptors the table is made to hold at start-up (at most the open files limit): 8 bytes
#: of kernel memory each
DESCRIPTOR_TABLE = 65536


def reserve_descriptor_table(count: int = DESCRIPTOR_TABLE) -> int:
    """Make the process's descriptor table hold ``count`` descriptors (at most the soft open
    files limit) now, once; returns the size asked for (0: nothing done).

    The kernel doubles the table as descriptors are opened, and in a process with threads
    (the store's, the reactor's pool) each doubling waits for an RCU grace period: the
    reactor stood still 5-20 ms at each of the 2,048th, 4,096th, 8,192nd ... connection
    (`perf trace` of the idle benchmark: slow ``accept4`` calls at exactly those numbers),
    some 80 ms over 10,000 registrations. The table never shrinks, so one doubling to the
    size wanted at start-up takes those waits out of a burst of connections.
    """
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if soft != resource.RLIM_INFINITY:
        count = min(count, soft)
    if count <= 3:
        return 0
    try:
        null = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return 0
    try:
        # the lowest free descriptor at or above count - 1 (never one in use), closed at once
        os.close(fcntl.fcntl(null, fcntl.F_DUPFD_CLOEXEC, count - 1))
    except OSError:
        return 0
    finally:
        os.close(null)
    return count


def _nr_open() -> int:
    # the kernel's ceiling for RLIMIT_NOFILE when the hard limit says "unlimited"
    try:
        with open("/proc/sys/fs/nr_open") as f:
            return int(f.read())
    except (OSError, ValueError):
        return 1 << 20
