"""``RedisBackplane``: the cluster's doorbell, nick namespace and liveness, in Redis.

PostgreSQL holds the truth; Redis holds only what can be rebuilt: node leases, nick claims
and the pub/sub channel that rings the other nodes when a group of events is committed.

- Two connections through txredisapi 1.6 (with hiredis when installed): one for commands
  and PUBLISH, one subscribed to ``{prefix}:bus``. Each reconnects on its own (0.2 s, then
  backing off to 2 s), through the factory's ``startConnecting(endpoint)``, the only way
  1.6 supports. Commands go straight to the live connection and fail at once without one:
  txredisapi's own handler would queue them until Redis is back, without limit.
- A lease per node (``{prefix}:node:{id}``, ``lease`` s, renewed every ``heartbeat`` s).
  A watchdog (every ``check_interval`` s) marks nodes without a lease as lost
  (``on_node_lost``); ``reap`` then frees their nicks, for exactly one caller. A node that
  finds itself marked lost fences itself (``on_lease_lost``) and rejoins with no nicks.
- Nick claims are Lua scripts (``chathub.cluster.scripts``), refused (fail closed, with
  ``BackplaneUnavailable``) while Redis is unreachable or this node does not hold its lease.
- Redis restarting without its data is seen as a new ``{prefix}:epoch``: every node takes
  its lease again and re-claims the nicks it holds (reporting any another node took first
  through ``on_nick_lost``); for one lease period nobody grants new nicks nor declares
  nodes lost, the time every node needs to notice.

Import this module only in cluster mode: txredisapi installs the global reactor when it
is imported (``chathub.backplane.make_backplane`` imports it lazily).
"""
from __future__ import annotations

import uuid
from typing import Any, Callable, Optional, cast

from zope.interface import implementer

import msgpack  # type: ignore[import-untyped]
import txredisapi  # type: ignore[import-untyped]
from twisted.internet import defer, task
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.endpoints import HostnameEndpoint
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure

from chathub.cluster import scripts
from chathub.config.cluster import NAME, ClusterConfig
from chathub.interfaces import BackplaneUnavailable, IBackplane

Message = dict[str, Any]

#: how long the marks of a reaped node stay (a restarted process with its id clears them)
REAP_MARK_MS = 24 * 3600 * 1000
#: nicks per REASSERT or RELEASE script: each script blocks Redis while it runs
BATCH = 500


def encode_message(message: Message) -> bytes:
    """A backplane message as the channel carries it: MessagePack. Every node reads every
    other node's messages, each committed group of events among them, and MessagePack
    packs and reads one about four times faster than JSON assembled in Python (0.56
    against 2.36 us an event to write, 0.53 against 1.0 to read). Tuples travel as lists.
    ValueError, TypeError or OverflowError when ``message`` is not plain data (strings,
    whole numbers of 64 bits, floats, booleans, None, lists, tuples, dicts with string keys)."""
    return cast(bytes, msgpack.packb(message, use_bin_type=True))


def decode_message(body: bytes) -> Message:
    """``encode_message``'s inverse (lists for tuples); an error when ``body`` is not a
    packed map with string keys."""
    message = msgpack.unpackb(body, raw=False, strict_map_key=True)
    if type(message) is not dict:
        raise ValueError("not a map")
    return cast(Message, message)


def _text(value: Any) -> str:
    """A Redis reply's string (bytes when the connection does not decode)."""
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


class _Tracked:
    """Mixed into txredisapi's factories: prepares each new connection (AUTH, SELECT) and
    tells the backplane when one becomes usable and when it is lost.

    AUTH and SELECT are sent here rather than by txredisapi, which stops reconnecting for
    good when either fails once (a reply timeout against a stalled Redis would do); here a
    failure only drops that connection, and the factory reconnects as after any loss."""

    initialDelay = 0.2
    maxDelay = 2.0

    def _track(self, prepare: Callable, up: Callable, down: Callable, error: Callable) -> None:
        self._prepare, self._up, self._down, self._error = prepare, up, down, error
        self._usable: set = set()

    def addConnection(self, conn) -> None:
        super().addConnection(conn)  # type: ignore[misc]
        if conn not in self.pool:  # type: ignore[attr-defined]
            return

        def usable(_: object) -> None:
            if conn.connected:
                self._usable.add(conn)
                self._up(conn)

        def refused(failure: Failure) -> None:
            self._error(failure.getErrorMessage())
            conn.transport.abortConnection()

        self._prepare(conn).addCallbacks(usable, refused)

    def delConnection(self, conn) -> None:
        super().delConnection(conn)  # type: ignore[misc]
        if conn in self._usable:
            self._usable.discard(conn)
            self._down(conn)


class _NotRedisGuard:
    """Mixed into txredisapi's protocols: bytes that are not Redis's protocol (``redis_url``
    names another kind of server) drop the connection with that reason, for the start-up
    error and the log, instead of an unhandled error's traceback on every attempt."""

    def dataReceived(self, data: bytes) -> None:
        try:
            super().dataReceived(data)  # type: ignore[misc]
        except txredisapi.InvalidData as e:
            self.factory._error(f"the server does not speak Redis's protocol ({e})")  # type: ignore[attr-defined]
            self.transport.abortConnection()  # type: ignore[attr-defined]


class _CommandProtocol(_NotRedisGuard, txredisapi.RedisProtocol):
    pass


class _CommandFactory(_Tracked, txredisapi.RedisFactory):
    protocol = _CommandProtocol


class _SubscriberProtocol(_NotRedisGuard, txredisapi.SubscriberProtocol):
    def messageReceived(self, pattern, channel, message) -> None:
        self.factory.deliver(message)


class _SubscriberFactory(_Tracked, txredisapi.RedisFactory):
    protocol = _SubscriberProtocol


@implementer(IBackplane)
class RedisBackplane:
    """One node's membership of a cluster whose nodes meet in one Redis server.

    ``publish``, ``subscribe`` and the ``on_*`` callbacks are as ``IBackplane`` says. Nick
    owners are "node_id/session" strings, and this node may only claim for its own
    sessions. Counters for tests and metrics: ``published``, ``dropped`` (publishes
    skipped while disconnected or with ``max_pending`` replies outstanding), ``received``,
    ``echoes`` (own messages heard back and dropped).
    """

    log = Logger()

    def __init__(self, config: ClusterConfig, *, max_pending: int = 10_000, reactor: Optional[Any] = None) -> None:
        """A node as ``config`` (the ``[cluster]`` section) describes; ``max_pending``
        bounds the PUBLISH replies awaited before further publishes are dropped."""
        node_id, key_prefix = config.resolved_node_id(), config.key_prefix
        if not NAME.match(node_id) or not NAME.match(key_prefix):
            raise ValueError(f"node id and key prefix must match {NAME.pattern}: {node_id!r}, {key_prefix!r}")
        if reactor is None:
            from twisted.internet import reactor
        self._reactor: Any = reactor
        self.config = config
        self.address = config.address
        self.node_id = node_id
        self.lease = config.lease
        self.heartbeat = config.heartbeat
        self.check_interval = config.check_interval
        self.connect_timeout = config.connect_timeout
        self.max_pending = max_pending
        self._prefix = key_prefix + ":"
        self.channel = f"{key_prefix}:bus"
        #: PUBLISH's words as bytes: txredisapi encodes a str argument on every command
        self._publish_words = (b"PUBLISH", self.channel.encode())
        self._own = node_id.encode() + b"\n"
        self._token = uuid.uuid4().hex  # tells this process's lease from a previous one's
        # a reply slower than this means Redis is stuck: drop the connection and reconnect
        self._reply_timeout = max(self.lease, 5.0)

        self._commands = None  # the command connection, while usable
        self._subscriber = None  # the subscriber connection, while subscribed
        self._was_connected = False
        self._started = False
        self._stopping = False
        self._connect_error: Optional[str] = None
        self._waiting: list[Deferred] = []  # start-up waiting for both connections

        self._epoch: Optional[str] = None
        self._lease_held = False
        self._acquiring = False
        #: after Redis lost its data: claim the names of this node's rooms again
        self._reassert_rooms = False
        self._rooms_made: Callable[[], list[tuple[str, str]]] = list
        self._resync_claims = False  # re-assert claims after the next renewal (reconnect)
        #: True while releases made while down and re-claims after a reconnect are applied
        self.settling = False
        self._claims_closed_until = 0.0  # after Redis lost its data
        self._watch_from = 0.0  # no node is marked lost before (grace after (re)connecting)
        self._claims: dict[str, str] = {}  # folded nick -> owner, as granted to this node
        self._releases: set[tuple[str, str]] = set()  # (nick, owner) to release once connected
        #: (folded room name, claim token) to release once connected (the rooms ended)
        self._room_releases: set[tuple[str, str]] = set()
        self._known: dict[str, str] = {}  # node id -> the epoch it was last seen a member in
        self._reported: set[str] = set()  # nodes already passed to on_node_lost

        self._subscribers: list[Callable[[Message], None]] = []
        self._on_resync: list[Callable[[bool], None]] = []
        self._on_connection: list[Callable[[bool], None]] = []
        self._on_node_lost: list[Callable[[str], None]] = []
        self._on_lease_lost: list[Callable[[], None]] = []
        self._on_nick_lost: list[Callable[[str, str], None]] = []

        self.published = self.dropped = self.received = self.echoes = 0
        self._pending = 0  # PUBLISH replies outstanding

        self._timers: list[task.LoopingCall] = []
        #: renews the lease; tests stop it to play a node that stalls
        self.heartbeat_loop: Optional[task.LoopingCall] = None
        self._command_factory: Optional[_CommandFactory] = None
        self._subscriber_factory: Optional[_SubscriberFactory] = None

    # -- state -------------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        """Both connections usable and the channel subscribed."""
        return self._commands is not None and self._subscriber is not None

    def keep_room_claims(self, made: Callable[[], list[tuple[str, str]]]) -> None:
        """``made()``: (folded room name, making token) of each live room this node made,
        whose names are claimed again after Redis lost its data."""
        self._rooms_made = made

    @property
    def lease_held(self) -> bool:
        """This node holds its lease (not fenced, nor rejoining)."""
        return self._lease_held and not self._acquiring

    @property
    def claims(self) -> dict[str, str]:
        """The nicks this node holds (folded nick -> owner), as the backplane knows them."""
        return dict(self._claims)

    def _emit(self, callbacks: list, *args: Any) -> None:
        for callback in list(callbacks):
            try:
                callback(*args)
            except Exception:
                self.log.failure("backplane callback {callback!r} failed", callback=callback)

    def _changed(self) -> None:
        now = self.connected
        if now == self._was_connected:
            return
        self._was_connected = now
        if now:
            for d in self._take_waiting():
                d.callback(None)
        if self._stopping:
            return
        self._emit(self._on_connection, now)
        if now and self._started:
            self._emit(self._on_resync, True)

    # -- connections -------------------------------------------------------------------------

    def _command_up(self, conn) -> None:
        self._commands = conn
        self._connect_error = None
        # others may still be reconnecting too: give them a lease before marking them lost
        self._watch_from = self._reactor.seconds() + self.lease
        self._resync_claims = True
        self._changed()
        if self._started:
            self._beat()  # at once: notice a lost lease or lost data without waiting

    def _command_down(self, conn) -> None:
        if conn is self._commands:
            self._commands = None
            self._changed()

    def _subscriber_up(self, conn) -> None:
        d = conn.subscribe(self.channel)

        def subscribed(_: object) -> None:
            if conn.connected:
                self._subscriber = conn
                self._changed()

        d.addCallbacks(subscribed, lambda _: conn.transport.loseConnection())

    def _subscriber_down(self, conn) -> None:
        if conn is self._subscriber:
            self._subscriber = None
            self._changed()

    def _prepare(self, conn, select: bool) -> Deferred:
        """AUTH and SELECT on a new connection (pub/sub channels belong to no database)."""
        d = succeed(None)
        if self.address.password is not None:
            d.addCallback(lambda _: conn.auth(self.address.password, self.address.username))
        if select and self.address.db:
            d.addCallback(lambda _: conn.select(self.address.db))
        return d

    def _failed_to_connect(self, why: str) -> None:
        self.log.warn("Redis at {address} refused a new connection: {why}", address=self.address, why=why)
        self._connect_error = why
        for d in self._take_waiting():
            d.errback(BackplaneUnavailable(f"Redis at {self.address}: {why}"))

    def _take_waiting(self) -> list[Deferred]:
        waiting, self._waiting = self._waiting, []
        return waiting

    def _when_connected(self) -> Deferred:
        if self.connected:
            return succeed(None)
        d: Deferred = Deferred()
        self._waiting.append(d)
        return d

    def deliver(self, payload: bytes) -> None:
        """A message from the channel: drop this node's own, decode and pass on the rest."""
        if payload.startswith(self._own):
            self.echoes += 1
            return
        node, _, body = payload.partition(b"\n")
        try:
            message = decode_message(body)
        except Exception:  # msgpack's own errors, or not a map
            self.log.warn("dropped a message from node {node!r} that is not a backplane message", node=node)
            return
        self.received += 1
        self._emit(self._subscribers, message)

    # -- start and stop ----------------------------------------------------------------------

    def start(self) -> Deferred:
        """Connect, take this node's lease, subscribe, start the timers; fires when ready."""
        return Deferred.fromCoroutine(self._start())

    async def _start(self) -> None:
        endpoint = HostnameEndpoint(self._reactor, self.address.host, self.address.port, timeout=self.connect_timeout)
        try:  # one plain connection first, for a clear error when Redis is unreachable
            probe = await endpoint.connect(Factory.forProtocol(Protocol))
            transport = cast(Protocol, probe).transport
            if transport is not None:
                transport.loseConnection()
        except Exception as e:
            raise BackplaneUnavailable(f"cannot connect to Redis at {self.address}: {e}") from None
        commands = _CommandFactory(
            str(self.address), None, 1, isLazy=True, replyTimeout=self._reply_timeout, convertNumbers=False
        )
        commands._track(
            lambda conn: self._prepare(conn, select=True), self._command_up, self._command_down, self._failed_to_connect
        )
        subscriber = _SubscriberFactory(
            str(self.address), None, 1, isLazy=True, charset=None, replyTimeout=self._reply_timeout,
            convertNumbers=False,
        )
        subscriber._track(
            lambda conn: self._prepare(conn, select=False), self._subscriber_up, self._subscriber_down,
            self._failed_to_connect,
        )
        subscriber.deliver = self.deliver
        self._command_factory, self._subscriber_factory = commands, subscriber
        try:
            commands.startConnecting(endpoint)
            subscriber.startConnecting(endpoint)
            ready = self._when_connected()
            ready.addTimeout(self.connect_timeout, self._reactor)
            try:
                await ready
            except defer.TimeoutError:
                why = self._connect_error or "no usable connection"
                raise BackplaneUnavailable(
                    f"Redis at {self.address} did not answer within {self.connect_timeout:g} s ({why})"
                ) from None
            await self._acquire(self._reactor.seconds() + self.lease + self.heartbeat)
        except BaseException:
            await self._disconnect()
            raise
        self._started = True
        self.heartbeat_loop = self._every(self.heartbeat, self._beat)
        self._every(self.check_interval, self._watch)
        self._every(self.config.resync_interval, lambda: self._emit(self._on_resync, False))
        self.log.info(
            "cluster node {node} joined through Redis at {address} (lease {lease:g} s)",
            node=self.node_id, address=self.address, lease=self.lease,
        )

    def _every(self, interval: float, tick: Callable[[], object]) -> task.LoopingCall:
        loop = task.LoopingCall(tick)
        loop.clock = self._reactor
        loop.start(interval, now=False)
        self._timers.append(loop)
        return loop

    async def _acquire(self, deadline: float) -> None:
        """Take this node's lease (a new one: this process holds no nicks yet).

        A live process holding this node id makes it wait until ``deadline``, then fail. A
        previous process with this id that died unreaped is left to the live nodes to reap
        for two checks, so they see its users leave; then it is cleaned up here.
        """
        take_over_at: Optional[float] = None
        while True:
            force = take_over_at is not None and self._reactor.seconds() >= take_over_at
            epoch, _, status = await self._eval(
                scripts.ACQUIRE, self._token, self._ms(self.lease), uuid.uuid4().hex, "1" if force else "0"
            )
            if status == 1:
                self._epoch = epoch
                self._lease_held = True
                self._claims.clear()
                self._releases.clear()
                return
            now = self._reactor.seconds()
            if status == 0 and now >= deadline:
                raise BackplaneUnavailable(
                    f"node id {self.node_id!r} is held by another live process in Redis at {self.address}"
                )
            if status == 3 and take_over_at is None:
                take_over_at = now + 2 * self.check_interval + self.heartbeat
            await task.deferLater(self._reactor, min(self.heartbeat, self.check_interval), lambda: None)

    def stop(self) -> Deferred:
        """Release this node's nicks and lease, unsubscribe and disconnect."""
        return Deferred.fromCoroutine(self._stop())

    async def _stop(self) -> None:
        self._stopping = True
        for loop in self._timers:
            if loop.running:
                loop.stop()
        self._timers = []
        if self._commands is not None and self._lease_held:
            try:
                d = self._eval(scripts.STOP, self._token)
                d.addTimeout(self.connect_timeout, self._reactor)
                await d
            except Exception as e:  # its lease runs out and the others reap it
                self.log.warn("could not leave the cluster cleanly: {error}", error=e)
        self._lease_held = False
        self._claims.clear()
        await self._disconnect()

    async def _disconnect(self) -> None:
        self._stopping = True
        subscriber = self._subscriber
        if subscriber is not None and subscriber.connected:
            try:
                await subscriber.unsubscribe(self.channel)
            except Exception:
                pass  # disconnecting ends the subscription anyway
        for factory in (self._command_factory, self._subscriber_factory):
            if factory is not None:
                await factory.disconnect()
        self._commands = self._subscriber = None
        self._was_connected = False

    # -- commands ----------------------------------------------------------------------------

    @staticmethod
    def _ms(seconds: float) -> int:
        return max(1, int(seconds * 1000))

    def _unavailable(self, failure: Failure) -> Failure:
        if failure.check(txredisapi.RedisError):
            return Failure(BackplaneUnavailable(f"Redis at {self.address}: {failure.getErrorMessage()}"))
        return failure

    def _command(self, call: Callable[[Any], Deferred]) -> Deferred:
        """Run ``call(connection)`` on the command connection, or fail at once without one."""
        conn = self._commands
        if conn is None:
            return fail(BackplaneUnavailable(f"not connected to Redis at {self.address}"))
        try:
            d = call(conn)
        except txredisapi.RedisError:
            return fail(self._unavailable(Failure()))
        return d.addErrback(self._unavailable)

    def _eval(self, script: str, *args: Any) -> Deferred:
        return self._command(lambda conn: conn.eval(script, [], [self._prefix, self.node_id, *args]))

    # -- messages ----------------------------------------------------------------------------

    def publish(self, message: Message) -> None:
        """One PUBLISH of ``message`` (``encode_message``), or nothing when it cannot be sent now."""
        conn = self._commands
        if conn is None or self._pending >= self.max_pending:
            self.dropped += 1
            return
        try:
            payload = self._own + encode_message(message)
        except (TypeError, ValueError, OverflowError):
            self.log.failure("a message that is not plain data was not published")
            self.dropped += 1
            return
        try:
            # no reply timer of its own (a delayed call made and cancelled per group): a
            # Redis that stops answering is found by the lease's timed commands on this
            # connection, whose timeout, or the connection's loss, fails every reply
            # awaited, these too; meanwhile ``max_pending`` bounds them
            d = conn.execute_command(*self._publish_words, payload, apply_timeout=False)
        except txredisapi.RedisError:
            self.dropped += 1
            return
        self.published += 1
        self._pending += 1
        d.addBoth(self._publish_done)

    def _publish_done(self, result: object) -> None:
        self._pending -= 1
        if isinstance(result, Failure):
            self.dropped += 1

    def subscribe(self, callback: Callable[[Message], None]) -> None:
        """Call ``callback(message)`` for each message from another node."""
        if callback not in self._subscribers:
            self._subscribers.append(callback)

    def unsubscribe(self, callback: Callable[[Message], None]) -> None:
        """Stop calling ``callback``."""
        if callback in self._subscribers:
            self._subscribers.remove(callback)

    def on_resync(self, callback: Callable[[bool], None]) -> None:
        """``callback(True)`` once connected again, ``callback(False)`` every resync interval."""
        self._on_resync.append(callback)

    def on_connection(self, callback: Callable[[bool], None]) -> None:
        """``callback(connected)`` on each change of ``connected``."""
        self._on_connection.append(callback)

    def on_node_lost(self, callback: Callable[[str], None]) -> None:
        """``callback(node_id)`` once per node declared dead."""
        self._on_node_lost.append(callback)

    def on_lease_lost(self, callback: Callable[[], None]) -> None:
        """``callback()`` when this node was declared dead by the others."""
        self._on_lease_lost.append(callback)

    def on_nick_lost(self, callback: Callable[[str, str], None]) -> None:
        """``callback(folded, owner)`` for a nick another node took while Redis had lost its data."""
        self._on_nick_lost.append(callback)

    # -- nicks -------------------------------------------------------------------------------

    def _check_owner(self, owner: str) -> None:
        if not owner.startswith(self.node_id + "/"):
            raise ValueError(f"owner {owner!r} is not a session of node {self.node_id!r}")

    def _claims_refused(self) -> Optional[str]:
        if self._commands is None:
            return f"not connected to Redis at {self.address}"
        if not self._lease_held:
            return "this node does not hold its lease (it is rejoining the cluster)"
        wait = self._claims_closed_until - self._reactor.seconds()
        if wait > 0:
            return f"Redis restarted without its data; new claims resume in {wait:.1f} s"
        return None

    def _granted(self, result: int) -> bool:
        if result == -1:
            self._beat()  # find out at once whether this node was declared dead
            raise BackplaneUnavailable("this node's lease is not in Redis")
        return result > 0

    def _claim(self, folded: str, owner: str, script: str, *args: str) -> Deferred:
        self._check_owner(owner)
        refused = self._claims_refused()
        if refused is not None:
            return fail(BackplaneUnavailable(refused))
        d = self._eval(script, self._token, *args)

        def done(granted: int) -> bool:
            if not self._granted(granted):
                return False
            self._releases.discard((folded, owner))
            self._claims[folded] = owner
            return True

        def unsure(failure: Failure) -> Failure:
            # the reply was lost, not necessarily the claim: release it once connected
            # (only if still this owner's); a nick held already is re-asserted then too
            if self._claims.get(folded) != owner:
                self._releases.add((folded, owner))
            return failure

        return d.addCallbacks(done, unsure)

    def claim_nick(self, folded: str, owner: str) -> Deferred:
        """Claim ``folded`` for ``owner``: True, False or ``BackplaneUnavailable``."""
        return self._claim(folded, owner, scripts.CLAIM, folded, owner)

    def rename_nick(self, old: str, new: str, owner: str) -> Deferred:
        """Claim ``new`` and release ``old`` atomically: True, False or ``BackplaneUnavailable``."""
        d = self._claim(new, owner, scripts.RENAME, old, new, owner)

        def renamed(granted: bool) -> bool:
            if granted and old != new and self._claims.get(old) == owner:
                del self._claims[old]
            return granted

        return d.addCallback(renamed)

    def release_nick(self, folded: str, owner: str) -> Deferred:
        """Release ``folded`` if ``owner`` holds it; while disconnected, once reconnected."""
        self._check_owner(owner)
        if self._claims.get(folded) == owner:
            del self._claims[folded]
        if self._commands is None:
            self._releases.add((folded, owner))
            return succeed(None)
        d = self._eval(scripts.RELEASE, folded, owner)

        def unsure(failure: Failure) -> None:
            failure.trap(BackplaneUnavailable)
            self._releases.add((folded, owner))

        return d.addCallbacks(lambda _: None, unsure)

    def claim_room(self, folded: str, token: str, replacing: Optional[str] = None) -> Deferred:
        """Claim room name ``folded`` for the making ``token``: None when granted, else the
        holder's token; ``BackplaneUnavailable`` when it cannot be decided (no connection,
        no lease). A claim whose reply was lost is released once connected: if it was
        granted, no room was made with it."""
        if not token.startswith(self.node_id + "/"):
            return fail(ValueError(f"claim {token!r} is not one of node {self.node_id!r}"))
        # as for nicks: after Redis lost its data, every node first claims again the names
        # of the rooms it made (``keep_room_claims``)
        refused = self._claims_refused()
        if refused is not None:
            return fail(BackplaneUnavailable(refused))
        d = self._eval(scripts.ROOM_CLAIM, self._token, folded, token, replacing or "")

        def done(result: list) -> Optional[str]:
            if result[0] == -1:
                self._beat()  # find out at once whether this node was declared dead
                raise BackplaneUnavailable("this node's lease is not in Redis")
            return None if result[0] == 1 else _text(result[1])

        def unsure(failure: Failure) -> Failure:
            failure.trap(BackplaneUnavailable)
            self._room_releases.add((folded, token))
            return failure

        return d.addCallbacks(done, unsure)

    def release_room(self, folded: str, token: str) -> Deferred:
        """Release room name ``folded`` if ``token`` still holds it; while disconnected,
        once reconnected."""
        if self._commands is None:
            self._room_releases.add((folded, token))
            return succeed(None)
        d = self._eval(scripts.ROOM_RELEASE, folded, token)

        def unsure(failure: Failure) -> None:
            failure.trap(BackplaneUnavailable)
            self._room_releases.add((folded, token))

        return d.addCallbacks(lambda _: None, unsure)

    def nick_owner(self, folded: str) -> Deferred:
        """The owner holding ``folded``, or None."""
        return self._command(lambda conn: conn.get(self._prefix + "nick:" + folded))

    def peers(self) -> Deferred:
        """The other members of ``{prefix}:nodes`` whose lease is held now."""

        async def ask() -> list[str]:
            members = await self._command(lambda conn: conn.smembers(self._prefix + "nodes"))
            others = sorted(str(n) for n in members or () if str(n) != self.node_id)
            if not others:
                return []
            leases = await self._command(lambda conn: conn.mget([self._prefix + "node:" + n for n in others]))
            return [node for node, lease in zip(others, leases, strict=True) if lease]

        return Deferred.fromCoroutine(ask())

    def reap(self, node_id: str) -> Deferred:
        """Free the dead node's nicks: True for exactly one caller in the cluster."""
        if node_id == self.node_id:
            raise ValueError("a node cannot reap itself")
        d = self._eval(scripts.REAP, node_id, self._ms(REAP_MARK_MS / 1000))
        return d.addCallback(lambda won: won == 1)

    async def _settle_claims(self) -> None:
        """After a reconnect: apply releases made while down (nicks and room names), then claim again every nick
        this node holds (a no-op when Redis kept its data), reporting those taken."""
        releases = sorted(self._releases)
        for i in range(0, len(releases), BATCH):
            batch = releases[i : i + BATCH]
            await self._eval(scripts.RELEASE, *[part for pair in batch for part in pair])
            self._releases.difference_update(batch)
        rooms = sorted(self._room_releases)
        for i in range(0, len(rooms), BATCH):
            batch = rooms[i : i + BATCH]
            await self._eval(scripts.ROOM_RELEASE, *[part for pair in batch for part in pair])
            self._room_releases.difference_update(batch)
        held = sorted(self._claims.items())
        for i in range(0, len(held), BATCH):
            batch = held[i : i + BATCH]
            result = await self._eval(scripts.REASSERT, self._token, *[part for pair in batch for part in pair])
            if result[0] == -1:
                return  # lease gone: the next heartbeat fences this node
            for folded in result[1:]:
                owner = self._claims.pop(folded, None)
                if owner is not None:
                    self.log.warn("nick {nick!r} of {owner} was taken by another node", nick=folded, owner=owner)
                    self._emit(self._on_nick_lost, folded, owner)
        if self._reassert_rooms:
            # a room's claim lives as long as the room: the names of the live rooms this
            # node made, claimed again (else a last leaver's node kept no claim, and another
            # node could make the room a second time while its end was on its way)
            made = sorted(self._rooms_made())
            for i in range(0, len(made), BATCH):
                batch = made[i : i + BATCH]
                if await self._eval(scripts.ROOM_REASSERT, self._token, *[p for pair in batch for p in pair]) == -1:
                    return
            self._reassert_rooms = False
            if made:
                self.log.info("{n} names of rooms this node made claimed again", n=len(made))

    # -- timers ------------------------------------------------------------------------------

    def _beat(self) -> Deferred:
        """Renew the lease (a LoopingCall target: never fails)."""
        if self._commands is None or self._acquiring or self._stopping:
            return succeed(None)
        if self._subscriber is not None:  # keepalive: a silent subscriber times out and reconnects
            self._subscriber.ping().addErrback(lambda _: None)
        d = self._eval(scripts.HEARTBEAT, self._token, self._ms(self.lease), uuid.uuid4().hex)
        d.addCallback(lambda result: Deferred.fromCoroutine(self._renewed(*result)))
        d.addErrback(self._timer_failed, "lease renewal")
        return d

    async def _renewed(self, epoch: str, created: int, status: int) -> None:
        data_lost = self._epoch is not None and epoch != self._epoch
        self._epoch = epoch
        if status <= 0:
            self._fence(
                "another process holds this node id" if status == -1 else "the other nodes declared this node dead"
            )
            return
        if data_lost:
            now = self._reactor.seconds()
            self._claims_closed_until = self._watch_from = now + self.lease
            self._resync_claims = self._reassert_rooms = True
            self.log.warn(
                "Redis at {address} lost its data (new epoch): lease taken again, {n} nicks re-claimed, "
                "no new nick for {lease:g} s",
                address=self.address, n=len(self._claims), lease=self.lease,
            )
        elif status == 2:
            self.log.warn("this node's lease had run out without the others noticing: taken again")
        if self._resync_claims and not self.settling:
            self._resync_claims = False
            self.settling = True
            try:
                await self._settle_claims()
            except BackplaneUnavailable:
                self._resync_claims = True  # lost the connection again: next time
            finally:
                self.settling = False

    def _fence(self, why: str) -> None:
        if self._acquiring:
            return
        self.log.error("cluster node {node} fenced: {why}; its clients are dropped", node=self.node_id, why=why)
        self._lease_held = False
        self._claims.clear()
        self._releases.clear()
        self._acquiring = True
        self._emit(self._on_lease_lost)
        Deferred.fromCoroutine(self._rejoin())

    async def _rejoin(self) -> None:
        while not self._stopping:
            try:
                await self._acquire(self._reactor.seconds() + self.lease + self.heartbeat)
            except BackplaneUnavailable as e:
                self.log.warn("cluster node {node} cannot rejoin yet: {error}", node=self.node_id, error=e)
                await task.deferLater(self._reactor, self.heartbeat, lambda: None)
            else:
                self.log.info("cluster node {node} rejoined with a new lease", node=self.node_id)
                break
        self._acquiring = False

    def _watch(self) -> Deferred:
        """Look for nodes whose lease ran out (a LoopingCall target: never fails)."""
        if self._commands is None or not self._lease_held or self._acquiring:
            return succeed(None)
        epoch = self._epoch
        mark = self._reactor.seconds() >= self._watch_from
        # besides the members, the nodes known here: one known from before Redis lost its
        # data (marked lost when it has no lease), and one another node declared dead and
        # reaped already, which is no member any more and must still be found lost here
        # (its users leave this node's rooms too); a node that left has no mark to find
        older = [node for node, seen in self._known.items() if seen != epoch]
        others = [node for node, seen in self._known.items() if seen == epoch]
        d = self._eval(scripts.WATCH, "1" if mark else "0", str(len(older)), *older, *others)

        def checked(result: list) -> None:
            if self._epoch != epoch:
                # Redis lost its data while this check was on its way (the renewal's answer
                # came first): its result would forget the nodes known from before as if they
                # had left, so one that died in the outage was never declared lost here
                return
            members, found = set(result[0]), set(result[1])
            members.discard(self.node_id)
            for node in members:
                self._known[node] = epoch
            for node in list(self._known):
                if node not in members and node not in found and self._known[node] == epoch:
                    del self._known[node]  # left the cluster, or reaped
            self._reported &= found  # a node back with a lease may be lost again later
            for node in sorted(found - self._reported):
                self._reported.add(node)
                if node not in members:
                    self._known.pop(node, None)  # known only from before Redis lost its data
                self.log.info("cluster node {node} is lost (its lease ran out)", node=node)
                self._emit(self._on_node_lost, node)

        d.addCallback(checked)
        d.addErrback(self._timer_failed, "watchdog")
        return d

    def _timer_failed(self, failure: Failure, what: str) -> None:
        if failure.check(BackplaneUnavailable):
            return None  # disconnected: the reconnect runs it again
        self.log.failure("cluster {what} failed", failure, what=what)
        return None
