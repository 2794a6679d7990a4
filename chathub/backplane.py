"""Backplanes: how one hub node's events reach the others (``IBackplane``).

``LocalBackplane`` is the single-node implementation every server uses today: there is no
other node, so ``publish`` sends nothing anywhere, and subscribers hear only what the
transport hands to ``receive`` (nothing, for a lone node). The multi-node implementation
to come is Redis pub/sub: its ``publish`` will PUBLISH the event's plain data on a channel
and its subscription will call ``receive`` for each message from another node.
"""
from __future__ import annotations

from typing import Callable

from zope.interface import implementer

from chathub.events import Event
from chathub.interfaces import IBackplane

Subscriber = Callable[[Event], None]


@implementer(IBackplane)
class LocalBackplane:
    """The backplane of a server that is the only node."""

    def __init__(self) -> None:
        self.subscribers: list[Subscriber] = []

    def publish(self, event: Event) -> None:
        """No other node exists: nothing is sent, and local subscribers are not called
        (this node's own events reach its users through the hub, not the backplane)."""

    def subscribe(self, callback: Subscriber) -> None:
        """Call ``callback(event)`` for every event received from another node."""
        if callback not in self.subscribers:
            self.subscribers.append(callback)

    def unsubscribe(self, callback: Subscriber) -> None:
        """Stop calling ``callback``."""
        if callback in self.subscribers:
            self.subscribers.remove(callback)

    def receive(self, event: Event) -> None:
        """An event from another node: hand it to every subscriber, in subscription order.

        A transport (Redis) calls this; a lone node never does."""
        for callback in list(self.subscribers):
            callback(event)
