"""Backplanes: what joins hub nodes into one cluster (``IBackplane``).

``LocalBackplane`` is the backplane of a server that is the only node: there is no other
node, so ``publish`` sends nothing, every nick claim is granted (the hub's own user table
is the whole namespace), and no node is ever lost. ``RedisBackplane``
(``chathub.cluster.redis``) is the one for several nodes; ``make_backplane`` picks one from
the ``[cluster]`` settings and imports the Redis client only in cluster mode, because
txredisapi installs the global reactor when it is imported.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Optional

from zope.interface import implementer

from twisted.internet.defer import Deferred, succeed

from chathub.interfaces import IBackplane

if TYPE_CHECKING:
    from chathub.cluster.redis import RedisBackplane
    from chathub.config.cluster import ClusterConfig

Message = dict[str, Any]
Subscriber = Callable[[Message], None]


@implementer(IBackplane)
class LocalBackplane:
    """The backplane of a server that is the only node: no network, no timers."""

    connected = True
    lease_held = True

    def __init__(self, node_id: str = "local") -> None:
        self.node_id = node_id
        self.subscribers: list[Subscriber] = []

    def start(self) -> Deferred:
        """Nothing to join."""
        return succeed(None)

    def stop(self) -> Deferred:
        """Nothing to leave."""
        return succeed(None)

    def publish(self, message: Message) -> None:
        """No other node exists: nothing is sent, and local subscribers are not called
        (this node's own events reach its users through the hub, not the backplane)."""

    def subscribe(self, callback: Subscriber) -> None:
        """Call ``callback(message)`` for every message received from another node."""
        if callback not in self.subscribers:
            self.subscribers.append(callback)

    def unsubscribe(self, callback: Subscriber) -> None:
        """Stop calling ``callback``."""
        if callback in self.subscribers:
            self.subscribers.remove(callback)

    def receive(self, message: Message) -> None:
        """A message from another node: hand it to every subscriber, in subscription order.

        A transport calls this; a lone node never does."""
        for callback in list(self.subscribers):
            callback(message)

    # A lone node never resyncs, changes connection state, loses a node, its lease or a
    # nick, so these callbacks are accepted and never called.

    def on_resync(self, callback: Callable[[bool], None]) -> None:
        """Never called: nothing can be missed."""

    def on_connection(self, callback: Callable[[bool], None]) -> None:
        """Never called: always connected."""

    def on_node_lost(self, callback: Callable[[str], None]) -> None:
        """Never called: there is no other node."""

    def on_lease_lost(self, callback: Callable[[], None]) -> None:
        """Never called: there is no lease."""

    def on_nick_lost(self, callback: Callable[[str, str], None]) -> None:
        """Never called: no one else claims nicks."""

    def claim_nick(self, folded: str, owner: str) -> Deferred:
        """Granted: the hub's own user table already refused nicks in use on this node."""
        return succeed(True)

    def rename_nick(self, old: str, new: str, owner: str) -> Deferred:
        """Granted, as ``claim_nick``."""
        return succeed(True)

    def release_nick(self, folded: str, owner: str) -> Deferred:
        """Nothing is recorded, so nothing to release."""
        return succeed(None)

    def nick_owner(self, folded: str) -> Deferred:
        """None: nicks live in the hub's user table only."""
        return succeed(None)

    def keep_room_claims(self, made: Callable[[], list[tuple[str, str]]]) -> None:
        """Nothing to keep: no claim is recorded."""

    def claim_room(self, folded: str, token: str, replacing: Optional[str] = None) -> Deferred:
        """Granted (None): the hub's own room table is the only one."""
        return succeed(None)

    def release_room(self, folded: str, token: str) -> Deferred:
        """Nothing is recorded, so nothing to release."""
        return succeed(None)

    def peers(self) -> Deferred:
        """None: there is no other node."""
        return succeed([])

    def reap(self, node_id: str) -> Deferred:
        """False: there is no other node to reap."""
        return succeed(False)


def make_backplane(config: "ClusterConfig", reactor: Optional[Any] = None) -> "LocalBackplane | RedisBackplane":
    """The backplane the ``[cluster]`` settings ask for: ``LocalBackplane`` when cluster
    mode is off, else a ``RedisBackplane`` (txredisapi is imported only then)."""
    if not config.enabled:
        return LocalBackplane()
    from chathub.cluster.redis import RedisBackplane

    return RedisBackplane(config, reactor=reactor)
