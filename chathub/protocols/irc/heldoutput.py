"""A session's output held while the store reads a JOIN replay, so the replay comes first.

The replay of a room's last lines (``commands_history.replay_on_join``) is asked of the store
when the JOIN is handled and answered a few milliseconds later; a line said in the room
meanwhile reached the joiner at once, before the older lines of the replay. While a replay
is read, the session writes through a ``HeldOutput`` instead: it keeps every write in order,
with a place (a ``Slot``) for each replay where its JOIN's reply ended, and writes it all,
each replay in its place, once every replay is in. It waits at most ``wait`` seconds for a
replay and holds at most ``limit`` bytes (the send queue's bound); past either, it writes
what it holds without the replays still missing (each then comes late, as it did before),
and the send queue does with the bytes what it does with any.
"""
from __future__ import annotations

from typing import Any, Callable, Optional

from twisted.internet.interfaces import IDelayedCall, IReactorTime

#: seconds a session's output waits for a replay the store has not answered (it normally
#: answers within milliseconds; a later replay is written late, after what was held)
REPLAY_WAIT = 1.0


class Slot:
    """The place of one replay in held output: filled with its bytes, or given up."""

    __slots__ = ("data", "done")

    def __init__(self) -> None:
        self.data = b""
        self.done = False


class HeldOutput:
    """Stands in for a session's writer (``IrcWriter``) while replays are read."""

    __slots__ = ("writer", "items", "held_bytes", "limit", "waiting", "_released", "_timer")

    def __init__(
        self,
        writer: Any,
        limit: int,
        clock: IReactorTime,
        released: Callable[[Any], None],
        wait: float = REPLAY_WAIT,
    ) -> None:
        """Hold what is written for ``writer``; ``released(writer)`` is told before it is
        all written (the session writes to ``writer`` again)."""
        self.writer = writer
        #: (method of ``writer``, bytes) in order, or a ``Slot``
        self.items: list[Any] = []
        self.held_bytes = 0
        self.limit = limit
        self.waiting = 0
        self._released = released
        self._timer: Optional[IDelayedCall] = clock.callLater(wait, self.give_up)

    def slot(self) -> Slot:
        """A place for one more replay, after everything written so far."""
        place = Slot()
        self.items.append(place)
        self.waiting += 1
        return place

    def fill(self, place: Slot, data: bytes) -> bool:
        """The replay of ``place`` is in (``data``: its lines, maybe none); once every
        replay is in, write everything held. False when its place was given up (written
        without it): the caller writes it itself."""
        if place.done:
            return False
        place.data, place.done = data, True
        self.waiting -= 1
        if not self.waiting:
            self.release()
        return True

    def give_up(self) -> None:
        """A replay took too long (or the output cannot wait): write what is held without
        the missing ones."""
        for item in self.items:
            if isinstance(item, Slot):
                item.done = True
        self.waiting = 0
        self.release()

    def release(self) -> None:
        """Write everything held, in order, and hand the session its writer back."""
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        items, self.items = self.items, []
        self.held_bytes = 0
        self._released(self.writer)
        for item in items:
            if isinstance(item, Slot):
                if item.data:
                    self.writer.write(item.data)
            else:
                item[0](item[1])

    def drop(self) -> None:
        """The connection is gone: forget what is held, stop waiting, hand the writer back."""
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        for item in self.items:
            if isinstance(item, Slot):
                item.done = True
        self.items, self.held_bytes, self.waiting = [], 0, 0
        self._released(self.writer)

    # -- IrcWriter ---------------------------------------------------------------------

    def write(self, data: bytes) -> None:
        self._keep(self.writer.write, data)

    def write_frames(self, data: bytes) -> None:
        """Already framed bytes (IRC over WebSocket: what fan-out encoded)."""
        self._keep(self.writer.write_frames, data)

    def lose_connection(self) -> None:
        """Close once everything held is written (a close is never held up by a replay)."""
        self.items.append((lambda _: self.writer.lose_connection(), b""))
        self.give_up()

    def _keep(self, method: Callable[[bytes], None], data: bytes) -> None:
        self.items.append((method, data))
        self.held_bytes += len(data)
        if self.held_bytes > self.limit:  # a room too busy to wait for: it all goes now
            self.give_up()
