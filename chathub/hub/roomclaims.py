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
own). The node whose user left last ends its copy at once, ahead of the leave's number,
so it keeps the claim until the end stands there (``ending``, ``confirm``): another node's
JOIN numbered before the leave keeps the room, and the claim with it. A room made again by
a JOIN that was not a making (joined on a node whose copy had not yet applied the end) is
claimed anew by the nodes that make it so (``rebuilt``). Such a JOIN, numbered just after
the end, reaches the node that kept the claim a doorbell's trip later, and the nodes that
claim anew apply it only then: had the claim gone at the end, a rename (or a making) on
that node in between was granted the name, and the nodes disagreed about which room held
it. So the keeper holds the claim ``hold`` seconds longer, marked as held after an end
(``AFTER_END``), and gives it to such a JOIN (``rebuilt``); a join refused by a held claim
waits at most about that long, a rename elsewhere is refused as for a making. A claim
whose room never arrives within ``wait`` seconds, nor in the other nodes' answer to this
node's request for the rooms it has not heard of (``learn``: their copies hold a room
whose making's doorbell message was lost, or whose commit is slow), is taken over (its
maker's JOIN was refused and the release lost): the next claim names the token it found,
and Redis grants it only while that token still holds the name; a claim whose maker's
process is gone is taken over at once (``chathub.cluster.scripts``). Without Redis the
claim cannot be decided and no room is made (``RoomUnavailable``: IRC 437, a JSON error,
a ``!`` line); rooms that exist go on.
"""
from __future__ import annotations

import uuid
from collections import OrderedDict, deque
from itertools import count
from typing import Callable, Optional

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from chathub.hub import errors
from chathub.hub.rooms import Room
from chathub.interfaces import BackplaneUnavailable, IBackplane

#: what the JOIN that makes a room in a cluster adds to its data: its claim's token
ROOM_CLAIM = "claim"

#: claims a join tries before it is refused: one, one after the holder's room did not come,
#: one more when that holder was replaced meanwhile
ATTEMPTS = 3

#: rooms this node ended ahead of their number whose claims it keeps meanwhile (``ending``);
#: past this many, or this many seconds (ends never numbered: their store writes failed),
#: the oldest is released
MOST_ENDING = 10_000
KEPT_MOST = 300.0

#: what a claim held after its room's end stood carries after its token (``confirm``); a
#: node refused by such a claim waits for it about as long as it is held, not ``wait``
AFTER_END = "/ended"

#: gap waits a claim is held after its room's end stood (``hold``): as long as the relay
#: waits for a room first heard of (a JOIN numbered just after the end is on its way)
HOLD_GAP_WAITS = 4


class RoomClaims:
    """A cluster node's claims of room names (``ChatHub.claim_and_join``)."""

    log = Logger()

    def __init__(
        self,
        backplane: IBackplane,
        rooms: dict[str, Room],
        clock: IReactorTime,
        wait: float,
        learn: Callable[[], Deferred[None]] = lambda: succeed(None),
        hold: float = 1.0,
    ) -> None:
        """``rooms`` is the hub's (folded name -> room); ``wait`` the seconds a join waits
        for a room another node claimed before taking the claim over; ``learn``
        (``ChatHub.learn_rooms``) asks the other nodes for the rooms this node has not
        heard of, before a claim whose room never came is taken over; ``hold`` the seconds
        a claim is held after its room's end stood (``confirm``)."""
        self._backplane = backplane
        self._rooms = rooms
        self._clock = clock
        self.wait = wait
        self._learn = learn
        self._prefix = f"{backplane.node_id}/{uuid.uuid4().hex[:8]}/"
        self._serial = count(1)
        #: folded name -> joins waiting for this node's copy of the room
        self._waiting: dict[str, list[Deferred[bool]]] = {}
        #: folded name -> the claims of rooms of that name this node ended ahead of their
        #: number, oldest first, each with when (the ends are numbered in that order)
        self._ending: OrderedDict[str, deque[tuple[str, float]]] = OrderedDict()
        self._kept = 0  # claims in ``_ending``
        self.hold = hold
        #: folded name -> the claim held after its room's end stood, and its release's timer
        self._held: dict[str, tuple[str, IDelayedCall]] = {}
        #: counters (tests, logs): claims granted, refused, taken over, made anew
        self.granted = self.refused = self.taken_over = self.renewed = 0

    def _token(self) -> str:
        return f"{self._prefix}{next(self._serial)}"

    def claim(
        self, folded: str, name: str, wanted: Callable[[], bool] = lambda: True, others_wait: bool = True
    ) -> Deferred[Optional[str]]:
        """Claim room name ``folded`` (``name`` as the user gave it): fires with the token
        to make the room (or rename one) with, or None when a room of that name is here now
        or the request is no longer ``wanted`` (its user left: the request answers). A claim
        another making holds is waited for (a join: that room is on its way) or, without
        ``others_wait`` (a rename), answered None at once; one this node keeps until the end
        of its last room of the name stands is always waited for. Fails with
        ``RoomUnavailable`` when the claim cannot be decided or kept being refused."""
        return Deferred.fromCoroutine(self._claim(folded, name, wanted, others_wait))

    async def _claim(self, folded: str, name: str, wanted: Callable[[], bool], others_wait: bool) -> Optional[str]:
        token = self._token()
        replacing: Optional[str] = None
        for _ in range(ATTEMPTS):
            if folded in self._rooms or not wanted():
                return None  # a request of a user gone never takes another making's claim over
            try:
                holder = await self._backplane.claim_room(folded, token, replacing)
            except BackplaneUnavailable:
                raise errors.RoomUnavailable(name) from None
            if holder is None:
                self.granted += 1
                if replacing is not None and not replacing.startswith(self._prefix):
                    self.taken_over += 1
                    self.log.warn("room name {room} was claimed by {holder}, whose room never came: taken over",
                                  room=folded, holder=replacing)
                if folded in self._rooms or not wanted():  # made meanwhile, or its user left
                    self.release(folded, token)
                    return None
                return token
            self.refused += 1
            if folded in self._rooms:
                # made here while the claim was on its way (by a join of this node granted
                # just before, or by the maker's JOIN): no waiting
                return None
            own = holder.startswith(self._prefix)
            if own and not self._keeps(folded, holder):
                # this process's own making, whose room is not here: released since (its end
                # stood at its number), or about to be: claim again at once
                replacing = holder
                continue
            if not own and not others_wait:
                return None  # a rename to a name another node is making: refused at once
            if not own and holder.endswith(AFTER_END):
                # held a moment after its room's end stood, for a JOIN that makes it again:
                # that room on its way, or the name free once the hold is over; never taken over
                await self._made(folded, 2 * self.hold)
                if folded in self._rooms:
                    return None
                replacing = None
                continue
            # another making's room on its way, or this node's own claim kept until the end
            # of its last room stands at its number (``confirm`` wakes the request), or held
            # a moment after it (``_let_go`` wakes it)
            came = await self._made(folded)
            if not came and folded not in self._rooms and not own:
                # the making's message may be what was lost (a dropped doorbell, a cut from
                # Redis), not the room: the other nodes' copies say whether it lives
                await self._learn()
            if folded in self._rooms:
                return None
            # it came and went (ended at once), or was released: claim afresh; it never
            # came: take it over
            replacing = None if came else holder
        raise errors.RoomUnavailable(name)

    def _keeps(self, folded: str, token: str) -> bool:
        """Whether ``token`` is a claim of ``folded`` kept until its end stands (``ending``)
        or held a moment after it (``confirm``; Redis may still have it unmarked)."""
        held = self._held.get(folded)
        if held is not None and held[0] in (token, token + AFTER_END):
            return True
        return any(kept == token for kept, _ in self._ending.get(folded, ()))

    def _made(self, folded: str, wait: Optional[float] = None) -> Deferred[bool]:
        """Fires True once this node's copy has room ``folded`` (at once if it has), False
        after ``wait`` (``self.wait`` by default)."""
        if folded in self._rooms:
            return succeed(True)
        d: Deferred[bool] = Deferred()
        waiting = self._waiting.setdefault(folded, [])
        waiting.append(d)
        timer: IDelayedCall = self._clock.callLater(self.wait if wait is None else wait, self._expire, folded, d)
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
        self._wake(room.folded)

    def _wake(self, folded: str) -> None:
        if folded in self._waiting:
            self._clock.callLater(0, self._go_on, folded)

    def _go_on(self, folded: str) -> None:
        for d in self._waiting.pop(folded, ()):
            if not d.called:
                d.callback(True)

    def ending(self, room: Room) -> None:
        """This node's user leaves ``room`` last here: the room ends here at once, ahead of
        the leave's number, where another node's JOIN numbered before it may keep it. Its
        claim is kept until ``confirm`` (or given back to it by ``rebuilt``)."""
        if room.claim is None:
            return
        self._keep(room.folded, room.claim)
        room.claim = None  # so its end does not release it

    def renaming(self, folded: str, token: str) -> None:
        """This node renamed a room away from ``folded`` ahead of the RENAME's number, where
        another node's JOIN of that name numbered before it joins the room: the name's claim
        ``token`` is kept until the RENAME is at its number (``confirm``), as at an end.
        Released at once, it let another node make a room of the name whose JOIN came before
        the RENAME: nodes that had applied the rename put its joiner in the renamed room, the
        others in a new one (a random three-node driver, seed 6779)."""
        self._keep(folded, token)

    def _keep(self, folded: str, token: str) -> None:
        """Keep claim ``token`` of ``folded`` until ``confirm`` (oldest first per name)."""
        now = self._clock.seconds()
        self._ending.setdefault(folded, deque()).append((token, now))
        self._ending.move_to_end(folded)
        self._kept += 1
        # a leave or rename never numbered (its store write failed) would keep its claim for ever
        while self._ending and self._kept > MOST_ENDING or self._oldest_kept(now - KEPT_MOST):
            oldest = next(iter(self._ending))
            kept = self._take_kept(oldest)
            if kept is not None:
                self.release(oldest, kept)

    def _oldest_kept(self, before: float) -> bool:
        if not self._ending:
            return False
        return next(iter(self._ending.values()))[0][1] < before

    def _take_kept(self, folded: str) -> Optional[str]:
        """The oldest claim kept for ``folded`` (``ending``), taken out; None when none is."""
        kept = self._ending.get(folded)
        if not kept:
            return None
        token, _ = kept.popleft()
        self._kept -= 1
        if not kept:
            del self._ending[folded]
        return token

    def confirm(self, folded: str) -> None:
        """A room's end stands at its number (``Admission``; on every node): the oldest
        claim this node kept for it (``ending``) is held ``hold`` seconds more, marked
        (``AFTER_END``), for a JOIN numbered just after the end that makes the room again
        (``rebuilt``), then released; the joins of the name waiting here go on then (one
        refused by that claim claims again)."""
        token = self._take_kept(folded)
        if token is None:
            return
        if self.hold <= 0 or folded in self._held or len(self._held) >= MOST_ENDING:
            self.release(folded, token)
            self._wake(folded)
            return
        held = token + AFTER_END
        self._held[folded] = (held, self._clock.callLater(self.hold, self._let_go, folded, held))

        def answered(holder: Optional[str]) -> None:
            if holder is not None:  # taken over meanwhile (its lease lapsed): not ours to hold
                self._take_held(folded, held)
                self._wake(folded)

        def failed(failure: Failure) -> None:
            # undecided (no Redis): the unmarked claim goes as it did at the end, once connected
            self.log.info("could not hold the claim of room {room}: {why}", room=folded,
                          why=failure.getErrorMessage())
            if self._take_held(folded, held) is not None:
                self.release(folded, token)
                self._wake(folded)

        self._backplane.claim_room(folded, held, token).addCallbacks(answered, failed)

    def _take_held(self, folded: str, token: Optional[str] = None) -> Optional[str]:
        """The claim held for ``folded`` after its room's end (``confirm``; only if it is
        ``token``), taken out with its timer; None when none is."""
        held = self._held.get(folded)
        if held is None or token is not None and held[0] != token:
            return None
        del self._held[folded]
        if held[1].active():
            held[1].cancel()
        return held[0]

    def _let_go(self, folded: str, held: str) -> None:
        """The hold after a room's end is over and no JOIN made it again: released, and
        the joins of the name waiting here go on."""
        if self._take_held(folded, held) is not None:
            self.release(folded, held)
            self._wake(folded)

    def ended(self, room: Room) -> None:
        """``room`` ended here: its claim, if this node knows it, is released."""
        if room.claim is not None:
            self.release(room.folded, room.claim)
            room.claim = None

    def rebuilt(self, room: Room, replacing: Optional[str] = None) -> None:
        """Another node's JOIN that is no making (its node's copy held the room: it had not
        applied the room's end yet) made ``room`` here: the claim this node kept or held for
        it comes back (``ending``, ``confirm``), or else the name is claimed anew, so a node
        that has not yet heard of the JOIN does not make the room a second time. A copy that
        outlived the end (``ChatHub._joined_an_ended_copy``) names its old room's claim as
        ``replacing``: no node whose copy ended may have known it to release it (the copy
        here had taken it from a hold), and the old room is over."""
        folded = room.folded
        token = self._take_kept(folded)
        if token is None:
            token = self._take_held(folded)  # a JOIN numbered just after the end stood
        if token is not None:
            room.claim = token
            return
        token = self._token()

        def answered(holder: Optional[str]) -> None:
            if holder is not None:
                return  # another node claimed it anew first (or made it: a race it lost)
            self.renewed += 1
            if self._rooms.get(folded) is room and room.folded == folded and room.claim is None:
                room.claim = token
            else:
                self.release(folded, token)  # ended, or renamed, meanwhile

        self._backplane.claim_room(folded, token, replacing).addCallbacks(
            answered, lambda f: self.log.info("room {room} made again unclaimed: {why}", room=folded,
                                              why=f.getErrorMessage()))

    def made_here(self) -> list[tuple[str, str]]:
        """(folded name, making token) of each live room this process made, and of each
        claim it keeps until its room's end stands or holds after it (``ending``,
        ``confirm``): claimed again after Redis
        lost its data (``IBackplane.keep_room_claims``)."""
        prefix = self._prefix
        made = [(folded, room.claim) for folded, room in self._rooms.items()
                if room.claim is not None and room.claim.startswith(prefix)]
        made.extend((folded, token) for folded, kept in self._ending.items() for token, _ in kept)
        made.extend((folded, held) for folded, (held, _) in self._held.items())
        return made

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
