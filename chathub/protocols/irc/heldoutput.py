"""A session's output held while the store reads a JOIN replay, so the replay comes first.

The replay of a room's last lines (``commands_history.replay_on_join``) is asked of the store
when the JOIN is handled and answered a few milliseconds later; a line said in the room
meanwhile reached the joiner at once, before the older lines of the replay. While a replay
is read, the session writes through a ``HeldOutput`` instead: it keeps every write in order,
with a place (a ``Slot``) for each replay where its JOIN's reply ended, and writes what it
holds up to the first place still waiting, each replay in its place, as the replays come in.

Each place waits at most ``wait`` seconds from the moment it was made (a second JOIN late in
a hold gets its own full wait), so nothing is held longer than ``wait``: every place before
a write was made before it. Past its wait a place is given up, and what follows it goes on
(its replay then comes late, as it did before). What is held counts against the connection's
send queue bound (``limit``, with what the queue holds already): past it, everything held is
written without the missing replays, and the send queue does with the bytes what it does
with any.
"""
from __future__ import annotations

from collections import deque
from typing import Any, Callable, Optional

from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

#: seconds a session's output waits for a replay the store has not answered (it normally
#: answers within milliseconds; a later replay is written late, after what was held)
REPLAY_WAIT = 1.0


class Slot:
    """The place of one replay in held output: filled with its bytes, or given up."""

    __slots__ = ("data", "done", "deadline")

    def __init__(self, deadline: float) -> None:
        self.data = b""
        self.done = False
        self.deadline = deadline  # given up at this time on the clock, if still waiting


class HeldOutput:
    """Stands in for a session's writer (``IrcWriter``) while replays are read."""

    log = Logger()

    __slots__ = ("writer", "items", "held_bytes", "limit", "_clock", "_wait", "_released", "_timer", "_writing")

    def __init__(
        self,
        writer: Any,
        limit: int,
        clock: IReactorTime,
        released: Callable[[Any], None],
        wait: float = REPLAY_WAIT,
    ) -> None:
        """Hold what is written for ``writer`` (with a ``pending_bytes``: what it holds
        itself); ``released(writer)`` is told once nothing is held any more (the session
        writes to ``writer`` again)."""
        self.writer = writer
        #: (method of ``writer``, bytes) in order, or a ``Slot``
        self.items: deque[Any] = deque()
        self.held_bytes = 0
        self.limit = limit
        self._clock = clock
        self._wait = wait
        self._released = released
        self._timer: Optional[IDelayedCall] = None  # for the first place still waiting
        self._writing = False

    @property
    def pending_bytes(self) -> int:
        """What this connection holds unwritten: here, and in its writer."""
        return self.held_bytes + self.writer.pending_bytes

    def slot(self) -> Slot:
        """A place for one more replay, after everything written so far; given up
        ``wait`` seconds from now if its replay is not in by then."""
        place = Slot(self._clock.seconds() + self._wait)
        self.items.append(place)
        if self._timer is None:
            self._timer = self._clock.callLater(self._wait, self._expire)
        return place

    def fill(self, place: Slot, data: bytes) -> bool:
        """The replay of ``place`` is in (``data``: its lines, maybe none): write what is
        held up to the next place still waiting. False when its place was given up
        (written without it): the caller writes it itself."""
        if place.done:
            return False
        place.data, place.done = data, True
        self._write_ready()
        return True

    def give_up(self) -> None:
        """Write everything held now, without the replays still missing (past the
        bound, or a close that must not wait)."""
        self._let_places_go()
        self._write_ready()

    def drop(self) -> None:
        """The connection is gone: forget what is held, stop waiting, hand the writer back."""
        self._cancel_timer()
        self._let_places_go()
        self.items.clear()
        self.held_bytes = 0
        self._released(self.writer)

    def _let_places_go(self) -> None:
        """Give up every place still waiting (its replay, if it comes, is its caller's)."""
        for item in self.items:
            if type(item) is Slot:
                item.done = True

    def _expire(self) -> None:
        """The first waiting place's time is up: give up every place whose time is."""
        self._timer = None
        now = self._clock.seconds()
        for item in self.items:
            if type(item) is Slot and not item.done:
                if item.deadline > now:
                    break
                item.done = True
        self._write_ready()

    def _write_ready(self) -> None:
        """Write what is held up to the first place still waiting (each replay in its
        place); once nothing is held, hand the session its writer back. A write made
        meanwhile (a write that makes the session say more) is held behind the others, so
        nothing overtakes what was held before it."""
        if self._writing:
            return  # the loop under way writes it too
        self._writing = True
        items = self.items
        try:
            while items:
                item = items[0]
                if type(item) is Slot:
                    if not item.done:
                        break
                    items.popleft()
                    if item.data:
                        self._write(self.writer.write, item.data)
                    continue
                items.popleft()
                self.held_bytes -= len(item[1])
                self._write(item[0], item[1])
        finally:
            self._writing = False
        self._cancel_timer()
        if not items:
            self._released(self.writer)
            return
        first = items[0]  # a place still waiting: wake at its deadline
        self._timer = self._clock.callLater(max(0.0, first.deadline - self._clock.seconds()), self._expire)

    def _write(self, method: Callable[[bytes], None], data: bytes) -> None:
        try:
            method(data)
        except Exception:  # the rest still goes, in order
            self.log.failure("writing held output failed")

    def _cancel_timer(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None

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
        if self.held_bytes + self.writer.pending_bytes > self.limit:
            self.give_up()  # a room too busy to wait for: it all goes now, as to any client
