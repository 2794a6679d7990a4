"""Fan-out: encode an event once per wire format, send the same bytes to every recipient.

Inside a ``batching()`` block (the outbox releasing a committed group, or a protocol
handling one read), consecutive chat events from one sender to one unchanged set of
recipients are held and then written with one ``send`` per recipient: a burst of N lines
into a room of M members costs M sends, not N x M. Anything else flushes the held batch
first, so every recipient still sees events in hub order.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator, Optional, Sequence

from twisted.logger import Logger

from chathub.events import Event

log = Logger()

#: most events written as one blob: big enough to amortise the per-recipient cost, small
#: enough that one blob never eats a slow reader's whole send queue at once
MAX_BATCH = 32


def deliver(events: Sequence[Event], recipients, actor=None) -> None:
    """Send ``events`` to ``recipients`` (except ``actor``), encoding once per format key."""
    encoded: dict = {}
    for user in recipients:
        if user is actor:
            continue
        participant = user.participant
        key = participant.format_key
        try:
            data = encoded[key]
        except KeyError:
            data = encoded[key] = _encode(participant, events)
        if data:
            try:
                participant.send(data)
            except Exception:
                log.failure("sending to {nick} failed", nick=user.nick)


def _encode(participant, events: Sequence[Event]) -> bytes:
    parts = []
    for event in events:
        try:
            data = participant.encode(event)
        except Exception:
            log.failure("encoding {kind} {id} failed", kind=event.kind, id=event.id)
            continue
        if data:
            parts.append(data)
    return b"".join(parts)


class Fanout:
    """Delivers events, coalescing consecutive batchable ones within a ``batching()`` block."""

    __slots__ = ("_depth", "_events", "_recipients", "_actor")

    def __init__(self) -> None:
        self._depth = 0
        self._events: list[Event] = []
        self._recipients = None
        self._actor = None

    def publish(self, event: Event, recipients, actor=None, batchable: bool = False) -> None:
        """Deliver ``event``; hold it for a joint write when batching allows."""
        if batchable and self._depth:
            if (
                self._events
                and recipients is self._recipients
                and actor is self._actor
                and len(self._events) < MAX_BATCH
            ):
                self._events.append(event)
                return
            self.flush()
            self._events = [event]
            self._recipients = recipients
            self._actor = actor
            return
        self.flush()
        deliver((event,), recipients, actor)

    def flush(self) -> None:
        """Write out the held batch, if any."""
        if self._events:
            events, recipients, actor = self._events, self._recipients, self._actor
            self._events, self._recipients, self._actor = [], None, None
            deliver(events, recipients, actor)

    @contextmanager
    def batching(self) -> Iterator[None]:
        """Hold batchable events until the outermost block ends."""
        self._depth += 1
        try:
            yield
        finally:
            self._depth -= 1
            if not self._depth:
                self.flush()
