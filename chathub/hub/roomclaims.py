"""Room names claimed across a cluster: one node makes a room, the others join it.

Every node holds a copy of every live room, so a node makes a room only when its copy has
none of that name. Two nodes can both find none when their users join a new name within a
doorbell's trip of each other; each then made the room, each user got operator status,
each node began a new incarnation of the name's history (the later hiding the other's
first events) and started the room's order at its own first number. So a node claims the
name first (``IBackplane.claim_room``, an atomic step in Redis, as for nicks): granted,
it makes the room, and the JOIN that makes it carries the claim's token (``ROOM_CLAIM``);
refused, the room is being made elsewhere, and the join waits until the node's copy has
it (the making JOIN came through the relay), then joins it as any member does.

The claim lives as long as the room: when a room ends, every node that knows its token
releases it (only if it still holds that token, so a newer room of the name keeps its
own). A claim whose room never arrives within ``wait`` seconds (its node died before the
JOIN was stored, or every node that knew the token was gone when the room ended) is taken
over: the next claim names the token it found, and Redis grants it only while that token
still holds the name. Without Redis the claim cannot be decided and no room is made
(``RoomUnavailable``: IRC 437, a JSON error, a ``!`` line); rooms that exist go on.
"""
from __future__ import annotations

import uuid
from itertools import count
from typing import Callable, Optional

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

from chathub.hub import errors
from chathub.hub.rooms import Room
from chathub.interfaces import BackplaneUnavailable, IBackplane

#: what the JOIN that makes a room in a cluster adds to its data: its claim's token
ROOM_CLAIM = "claim"

#: claims a join tries before it is refused: one, one after the holder's room did not come,
#: one more when that holder was replaced meanwhile
ATTEMPTS = 3


class RoomClaims:
    """A cluster node's claims of room names (``ChatHub.claim_and_join``)."""

    log = Logger()

    def __init__(
        self,
        backplane: IBackplane,
        rooms: dict[str, Room],
        clock: IReactorTime,
        wait: float,
    ) -> None:
        """``rooms`` is the hub's (folded name -> room); ``wait`` the seconds a join waits
        for a room another node claimed before taking the claim over."""
        self._backplane = backplane
        self._rooms = rooms
        self._clock = clock
        self.wait = wait
        self._prefix = f"{backplane.node_id}/{uuid.uuid4().hex[:8]}/"
        self._serial = count(1)
        #: folded name -> joins waiting for this node's copy of the room
        self._waiting: dict[str, list[Deferred[bool]]] = {}
        #: counters (tests, logs): claims granted, refused, taken over
        self.granted = self.refused = self.taken_over = 0

    def claim(self, folded: str, name: str) -> Deferred[Optional[str]]:
        """Claim room name ``folded`` (``name`` as the user gave it) for a join: fires with
        the token to make the room with, or None when the room is here now (a plain join);
        fails with ``RoomUnavailable`` when the claim cannot be decided or kept being refused."""
        return Deferred.fromCoroutine(self._claim(folded, name))

    async def _claim(self, folded: str, name: str) -> Optional[str]:
        token = f"{self._prefix}{next(self._serial)}"
        replacing: Optional[str] = None
        for _ in range(ATTEMPTS):
            if folded in self._rooms:
                return None
            try:
                holder = await self._backplane.claim_room(folded, token, replacing)
            except BackplaneUnavailable:
                raise errors.RoomUnavailable(name) from None
            if holder is None:
                self.granted += 1
                if replacing is not None:
                    self.taken_over += 1
                    self.log.warn("room name {room} was claimed by {holder}, whose room never came: taken over",
                                  room=folded, holder=replacing)
                if folded in self._rooms:  # made meanwhile (a join numbered after its end)
                    self.release(folded, token)
                    return None
                return token
            self.refused += 1
            came = await self._made(folded)
            if folded in self._rooms:
                return None
            # it came and went (ended at once): claim afresh; it never came: take it over
            replacing = None if came else holder
        raise errors.RoomUnavailable(name)

    def _made(self, folded: str) -> Deferred[bool]:
        """Fires True once this node's copy has room ``folded``, False after ``wait``."""
        d: Deferred[bool] = Deferred()
        waiting = self._waiting.setdefault(folded, [])
        waiting.append(d)
        timer: IDelayedCall = self._clock.callLater(self.wait, self._expire, folded, d)
        d.addBoth(_cancelling(timer))
        return d

    def _expire(self, folded: str, d: Deferred[bool]) -> None:
        waiting = self._waiting.get(folded)
        if waiting is not None and d in waiting:
            waiting.remove(d)
            if not waiting:
                del self._waiting[folded]
        if not d.called:
            d.callback(False)

    def made(self, room: Room) -> None:
        """``room`` exists here now (made by a join here, or by another node's JOIN): the
        joins waiting for it go on, in the next reactor turn, once the event that made it
        has been applied and shown (a join run inside it would be checked, and shown,
        before the maker's own JOIN)."""
        if room.folded in self._waiting:
            self._clock.callLater(0, self._go_on, room.folded)

    def _go_on(self, folded: str) -> None:
        for d in self._waiting.pop(folded, ()):
            if not d.called:
                d.callback(True)

    def ended(self, room: Room) -> None:
        """``room`` ended here: its claim, if this node knows it, is released."""
        if room.claim is not None:
            self.release(room.folded, room.claim)
            room.claim = None

    def release(self, folded: str, token: str) -> None:
        """Release the claim ``token`` of ``folded`` if it still holds the name."""
        self._backplane.release_room(folded, token).addErrback(
            lambda f: self.log.warn("could not release the claim of room {room}: {why}", room=folded,
                                    why=f.getErrorMessage())
        )


def _cancelling(timer: IDelayedCall) -> Callable[[object], object]:
    def cancel(result: object) -> object:
        if timer.active():
            timer.cancel()
        return result

    return cancel
