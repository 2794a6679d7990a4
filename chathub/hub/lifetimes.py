"""Room lifetimes: creation limits, founders, saving and restoring, the end of a room.

A room made by an account holder is persistent, founded by that account (its founder): it is
stored, kept while empty and restored after a restart. A room made by a guest is not, and
vanishes with its last member, unless the guest who made it logs in to an account while
still its operator: the account then becomes its founder (``RoomLifetimes.claim``).
Operator status given by a founder to an account persists; any other is for as long as
the member stays.

Making rooms is bounded three ways ([limits]): rooms on the server (``max_rooms``), rooms
one account founds (``max_owned_rooms``) and rooms one user makes a minute
(``room_creations_per_minute``).
"""
from __future__ import annotations

import math
from collections import deque
from typing import Callable, Iterable, Optional

from twisted.internet.defer import Deferred
from twisted.logger import Logger

from chathub.config import Config
from chathub.hub import errors
from chathub.hub.rooms import BanEntry, Room
from chathub.hub.users import User
from chathub.names import fold
from chathub.records import Ban, RoomRecord
from chathub.store.interfaces import IStore

#: what the JOIN that makes a room carries in a cluster when an account holder makes it: the
#: founder's folded account, so every node's copy is registered as the maker's is (kept
#: while empty, saved when it changes, operator status back to the founder on every node)
ROOM_FOUNDER = "founder"


def room_record(room: Room) -> RoomRecord:
    """The stored form of a persistent room."""
    return RoomRecord(
        name=room.name,
        topic=room.topic,
        topic_setter=room.topic_setter,
        topic_time=room.topic_time,
        modes="".join(room.modes),
        key=room.key,
        limit=room.limit,
        bans=tuple(Ban(b.mask, b.setter, b.time) for b in room.bans),
        operators=tuple(sorted(room.operators)),
        created=room.created,
        founder=room.founder,
    )


def persistent_operator(room: Room, user: User) -> bool:
    """True when ``user``'s account gets operator status in ``room`` on joining: it is the
    founder or one the founder made an operator. Being first into an empty persistent room
    gives nothing."""
    if user.account is None:
        return False
    account = fold(user.account)
    return account == room.founder or account in room.operators


def is_founder(room: Room, user: User) -> bool:
    """True when ``user`` may change who is a persistent operator of ``room``: its
    founder, or on a room registered before founders were kept, any stored operator."""
    if not room.persistent or user.account is None:
        return False
    if room.founder is None:
        return fold(user.account) in room.operators
    return fold(user.account) == room.founder


class RoomLifetimes:
    """Makes rooms within the limits, keeps count of what each account founded, saves
    persistent rooms to the store and forgets rooms that end.

    It shares the hub's ``rooms`` dict (folded name -> room) and logs as the hub.
    """

    __slots__ = ("_rooms", "_config", "_store", "_seconds", "_log", "_owned", "_creations", "_on_end", "shared")

    def __init__(
        self,
        rooms: dict[str, Room],
        config: Config,
        store: Optional[IStore],
        seconds: Callable[[], float],
        log: Logger,
    ) -> None:
        """``store`` is the hub's ``IStore`` (or None: nothing is saved); ``seconds`` is the
        clock the room-creation rate is measured with."""
        self._rooms = rooms
        self._config = config
        self._store = store
        self._seconds = seconds
        self._log = log
        self._owned: dict[str, int] = {}  # folded account -> persistent rooms it founded
        self._creations: dict[User, deque[float]] = {}  # user -> when it made its last rooms
        self._on_end: list[Callable[[Room], None]] = []
        #: in a cluster: other nodes change (and rename) the stored rooms too
        self.shared = False

    def reconfigure(self, config: Config) -> None:
        """Take a reloaded config's room limits."""
        self._config = config

    # -- beginning -----------------------------------------------------------------------

    def check_create(self, user: User, name: str) -> None:
        """Raise as ``create`` would for these limits, changing nothing (a cluster node
        asks before it claims the name: a refusal needs no round trip, nor holds the name)."""
        self._check_limits(user, name)
        self._check_rate(user, name, self._seconds())

    def _check_limits(self, user: User, name: str) -> None:
        limits = self._config.limits
        account = fold(user.account) if user.account is not None else None
        if len(self._rooms) >= limits.max_rooms:
            raise errors.RoomLimitReached(
                name, f"Cannot create a room: the server already holds its maximum of {limits.max_rooms} rooms"
            )
        if account is not None and self._owned.get(account, 0) >= limits.max_owned_rooms:
            raise errors.TooManyOwnedRooms(
                name,
                f"Cannot create a room: your account already owns {limits.max_owned_rooms} rooms, the most one may",
            )

    def create(self, user: User, name: str) -> Room:
        """Make room ``name`` for ``user`` within the [limits] on rooms, or raise."""
        self._check_limits(user, name)
        account = fold(user.account) if user.account is not None else None
        self._note_creation(user, name)
        room = Room(name)
        self._rooms[room.folded] = room
        if self._store is not None:
            # a new incarnation of the name: what an earlier room of that name said is not
            # this room's history (a vanished private room's talk stays unreadable)
            self._store.begin_room(room.name).addErrback(
                lambda f: self._log.failure("could not start the history of room {room}", f, room=room.name)
            )
        if account is not None:
            self._make_founder(room, account)
        else:
            room.creator = user.session
        return room

    def _check_rate(self, user: User, name: str, now: float) -> None:
        """Raise if ``user`` made too many rooms in the minute before ``now``."""
        limit = self._config.limits.room_creations_per_minute
        made = self._creations.get(user)
        if made is not None and len(made) == limit and now - made[0] < 60.0:
            wait = math.ceil(60.0 - (now - made[0]))
            raise errors.RoomCreationThrottled(
                name, f"Cannot create a room: you created {limit} in the last minute; try again in {wait} s"
            )

    def _note_creation(self, user: User, name: str) -> None:
        """Count a room ``user`` makes now; raise if it made too many in the last minute."""
        now = self._seconds()
        self._check_rate(user, name, now)
        made = self._creations.get(user)
        if made is None:
            made = self._creations[user] = deque(maxlen=self._config.limits.room_creations_per_minute)
        made.append(now)

    def forget(self, user: User) -> None:
        """``user`` quit: drop its room-creation times."""
        self._creations.pop(user, None)

    # -- founders ------------------------------------------------------------------------

    def _make_founder(self, room: Room, account: str) -> None:
        """Make ``account`` (folded) the founder of ``room``: it is stored from now on."""
        room.persistent = True
        room.founder = account
        room.creator = None
        self._owned[account] = self._owned.get(account, 0) + 1
        self.save(room)

    def adopt(self, room: Room, account: str) -> None:
        """Another node of a cluster registered ``room`` to ``account`` (folded): this
        node's copy is registered alike (its maker saved it)."""
        if room.persistent:
            return
        room.persistent = True
        room.founder = account
        room.creator = None
        self._owned[account] = self._owned.get(account, 0) + 1

    def took_state(self, room: Room, founder_before: Optional[str]) -> None:
        """``room``'s state was taken from another node's copy (a snapshot), which may
        register it, or to another founder, than this node's copy did (``founder_before``,
        folded, None when it was not registered): what each account owns follows, so
        ``max_owned_rooms`` counts the rooms this node learned that way too."""
        founder_after = room.founder if room.persistent else None
        if founder_after == founder_before:
            return
        if founder_before is not None:
            left = self._owned.get(founder_before, 0) - 1
            if left > 0:
                self._owned[founder_before] = left
            else:
                self._owned.pop(founder_before, None)
        if founder_after is not None:
            self._owned[founder_after] = self._owned.get(founder_after, 0) + 1

    def claim(self, user: User) -> list[Room]:
        """``user`` just logged in to an account: rooms it made as a guest, and still
        operates, become registered to that account (while it owns fewer than the limit);
        returns them."""
        if user.account is None:
            return []
        account = fold(user.account)
        limit = self._config.limits.max_owned_rooms
        registered = []
        for room in list(user.rooms.values()):
            if room.persistent or room.creator != user.session:
                continue
            member = room.members.get(user.folded or "")
            if member is None or not member.is_operator or self._owned.get(account, 0) >= limit:
                continue
            self._make_founder(room, account)
            registered.append(room)
            self._log.info("room {room} is now registered to {account}", room=room.name, account=account)
        return registered

    def owned(self, account: str) -> int:
        """How many persistent rooms ``account`` (any case) is the founder of."""
        return self._owned.get(fold(account), 0)

    # -- the store -----------------------------------------------------------------------

    def save(self, room: Room) -> None:
        """Store a persistent room's state (topic, modes, key, limit, bans, operators): when
        it is registered, and under its new name after a rename."""
        if self._store is None or not room.persistent:
            return
        d = self._store.save_room(room_record(room))
        d.addErrback(lambda f: self._log.failure("could not save room {room}", f, room=room.name))

    def update(self, room: Room) -> None:
        """Store a persistent room's changed state. In a cluster (``shared``), only if the
        store holds that room: a save made on one node after another node renamed the room
        (and deleted its record under the old name) must not bring the old name back. A
        lone node stores it whole if it is not stored (its first save failed)."""
        if self._store is None or not room.persistent:
            return
        record = room_record(room)
        store = self._store
        d = store.update_room(record)

        def updated(stored: bool) -> Optional[Deferred[None]]:
            return store.save_room(record) if not stored and not self.shared else None

        d.addCallback(updated).addErrback(lambda f: self._log.failure("could not save room {room}", f, room=room.name))

    def renamed(self, room: Room, old_name: str) -> None:
        """A persistent room took a new name: its stored record moves to it (the old one
        is deleted, then the room saved, in this order among the store's writes)."""
        if self._store is None or not room.persistent:
            return
        self._store.delete_room(old_name).addErrback(
            lambda f: self._log.failure("could not forget the old name {old} of room {room}", f, old=old_name,
                                        room=room.name)
        )
        self.save(room)

    def restore(self, records: Iterable[RoomRecord]) -> None:
        """Recreate persistent rooms from stored ``RoomRecord``s (at start-up).

        Every stored room comes back, even past [limits] max_rooms or max_owned_rooms
        (lowered since): those bound new rooms only."""
        rooms = self._rooms
        for record in records:
            room = Room(record.name, created=record.created or None)
            room.topic = record.topic
            room.topic_setter = record.topic_setter
            room.topic_time = record.topic_time
            room.modes = set(record.modes)
            room.key = record.key
            room.limit = record.limit
            room.bans = [BanEntry(b.mask, b.setter, b.time) for b in record.bans]
            room.operators = set(record.operators)
            room.persistent = True
            room.founder = record.founder
            if room.founder is not None:
                self._owned[room.founder] = self._owned.get(room.founder, 0) + 1
            rooms[room.folded] = room
        if len(rooms) >= self._config.limits.max_rooms:
            self._log.warn(
                "{count} persistent rooms restored, at or past [limits] max_rooms = {limit}: "
                "no new room can be created",
                count=len(rooms),
                limit=self._config.limits.max_rooms,
            )

    # -- the end -------------------------------------------------------------------------

    def end(self, room: Room) -> None:
        """Forget ``room`` (its last member left and it is not registered) and tell
        whoever asked (``when_room_ends``)."""
        if self._rooms.get(room.folded) is not room:
            # not the room this node holds under that name (none, or another): a cluster
            # node's copy that came apart from the others'. Nothing of it is held here to
            # forget, and whoever left it (a QUIT leaving each of its rooms) goes on
            self._log.warn("room {room} emptied, but it is not the room of that name here: nothing ended",
                           room=room.name)
            return
        del self._rooms[room.folded]
        for callback in self._on_end:
            try:
                callback(room)
            except Exception:
                self._log.failure("a callback for the end of room {room} failed", room=room.name)

    def when_room_ends(self, callback: Callable[[Room], None]) -> None:
        """Call ``callback(room)`` each time a room stops existing, so whatever is kept
        per room can go with it."""
        self._on_end.append(callback)
