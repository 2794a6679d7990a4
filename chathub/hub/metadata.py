"""Key/value metadata of users and rooms (IRCv3 ``draft/metadata-3``), held by the hub.

The values live on the hub's objects themselves (``User.metadata``, ``Room.metadata``):
a user keeps its own through a nick change, a room through a rename, and a new user of a
nick, or a new room of a name, starts empty. Protocols hear of each change through
``Metadata.when_changed`` (the IRC server tells the sessions subscribed to the key); who
may set what, and the bounds, are the protocol's (only IRC sets metadata).

In a cluster every node holds the same values. A user's travel with its presence (the
``metadata`` of ``RemoteUser``: every change announces the user again, and a node that
starts learns them from the roster); only the user's own node sets them. A room's travel as
a ``meta`` presence item per change, and with the room's state a starting node takes
(``room_state``). Two operators may set one key of a room at the same moment on two
nodes, so each value carries its stamp (the time it was set, then the node): a node takes
another's change only when its stamp is later than the one it holds, and both nodes end
with the later value rather than each with the other's. An unset key keeps its stamp
(at most ``UNSET_KEPT`` of them a room, the oldest forgotten first), so an older setting
that arrives after it does not bring the value back.
"""
from __future__ import annotations

from typing import Any, Callable, Iterable, Mapping, Optional, Union

from chathub.hub.rooms import Room
from chathub.hub.users import User

#: a room's unset keys whose stamp is kept (beyond its set ones, bounded by the protocol)
UNSET_KEPT = 64

Thing = Union[User, Room]
#: ``(user or room, key, value or None when unset, by)``: ``by`` is what the setter
#: passed (its session), so that a protocol does not tell the setter twice
Listener = Callable[[Thing, str, Optional[str], Any], None]
#: a stamp: the time a value was set, then the node that set it
Stamp = tuple[float, str]

_EMPTY: Mapping[str, str] = {}


class Metadata:
    """The metadata of the hub's users and rooms, and who hears of its changes."""

    def __init__(self, clock: Callable[[], float], node_id: str = "") -> None:
        self._clock = clock
        self.node_id = node_id
        self._listeners: list[Listener] = []
        #: a room's change to tell the other nodes of (``ChatHub``): the ``meta`` item
        self.on_room_change: Optional[Callable[[list[Any]], None]] = None
        #: a user's change to tell the other nodes of (``ChatHub``: its presence again)
        self.on_user_change: Optional[Callable[[User], None]] = None

    def when_changed(self, listener: Listener) -> None:
        """Call ``listener(thing, key, value, by)`` for each change, here or another node's."""
        self._listeners.append(listener)

    @staticmethod
    def values(thing: Thing) -> Mapping[str, str]:
        """The metadata of ``thing`` (read only; empty when it has none)."""
        return thing.metadata or _EMPTY

    def set(self, thing: Thing, key: str, value: Optional[str], by: Any = None) -> bool:
        """Set ``key`` of ``thing`` to ``value`` (None: unset it); False when that changes
        nothing. Told to the listeners, and in a cluster to the other nodes."""
        return bool(self.update(thing, [(key, value)], by))

    def update(self, thing: Thing, changes: Iterable[tuple[str, Optional[str]]], by: Any = None) -> list[str]:
        """Set (or with None unset) each key of ``changes`` on ``thing``; returns the keys
        that changed. A user is announced to the other nodes once for all of them (its
        presence carries every key: once per key, a client's 50 keys set before registration
        sent 50 presences of up to 15 KB), a room once per key (each with its stamp)."""
        changed = []
        for key, value in changes:
            if not self._put(thing, key, value):
                continue
            changed.append(key)
            if isinstance(thing, Room):
                stamp = self._stamp(thing, key)
                if self.on_room_change is not None:
                    self.on_room_change(["meta", thing.name, key, value, stamp[0], stamp[1]])
            self._tell(thing, key, value, by)
        if changed and isinstance(thing, User) and self.on_user_change is not None:
            self.on_user_change(thing)
        return changed

    def clear(self, thing: Thing, by: Any = None) -> list[str]:
        """Unset every key of ``thing``; returns them, in order."""
        return self.update(thing, [(key, None) for key in sorted(self.values(thing))], by)

    def _put(self, thing: Thing, key: str, value: Optional[str]) -> bool:
        values = thing.metadata
        if value is None:
            if not values or key not in values:
                return False
            del values[key]
            if not values:
                thing.metadata = None  # most users and rooms: none, at the cost of a slot
            return True
        if values is None:
            values = thing.metadata = {}
        elif values.get(key) == value:
            return False
        values[key] = value
        return True

    def _tell(self, thing: Thing, key: str, value: Optional[str], by: Any) -> None:
        for listener in self._listeners:
            listener(thing, key, value, by)

    # -- a room's stamps ---------------------------------------------------------------

    def _stamp(self, room: Room, key: str) -> Stamp:
        """A new stamp for this node's change of ``key``: now, or just after the stamp the
        key holds when that is later (another node's clock ahead of this one's), so the
        other nodes take it."""
        stamps = room.metadata_stamps
        if stamps is None:
            stamps = room.metadata_stamps = {}
        held = stamps.pop(key, None)
        now = self._clock()
        if held is not None and held[0] >= now:
            now = held[0] + 0.001
        stamp = stamps[key] = (now, self.node_id)
        self._forget_unset(room)
        return stamp

    def _forget_unset(self, room: Room) -> None:
        stamps, values = room.metadata_stamps, room.metadata or _EMPTY
        if stamps is None or len(stamps) <= len(values) + UNSET_KEPT:
            return
        unset = sorted((stamp, key) for key, stamp in stamps.items() if key not in values)
        for _, key in unset[: len(stamps) - len(values) - UNSET_KEPT]:
            del stamps[key]

    def apply_room(self, room: Room, key: str, value: Optional[str], stamp: Stamp) -> bool:
        """Another node's change of ``key`` of ``room`` (its ``meta`` item): taken when its
        stamp is later than the one held, and told to the listeners. False when not."""
        stamps = room.metadata_stamps
        held = stamps.get(key) if stamps is not None else None
        if held is not None and held >= stamp:
            return False
        if stamps is None:
            stamps = room.metadata_stamps = {}
        stamps.pop(key, None)
        stamps[key] = stamp
        changed = self._put(room, key, value)
        self._forget_unset(room)
        if changed:
            self._tell(room, key, value, None)
        return changed

    def reset(self, room: Room, before: float) -> None:
        """``room``'s copy here outlived the room, and a new room of the name, made at
        ``before``, takes its place: what was set before that goes (told to the listeners,
        not to the other nodes, whose new room never had it)."""
        stamps = room.metadata_stamps or {}
        for key in [k for k, stamp in stamps.items() if stamp[0] < before]:
            del stamps[key]
            if self._put(room, key, None):
                self._tell(room, key, None, None)

    @staticmethod
    def room_state(room: Room) -> list[list[Any]]:
        """``room``'s metadata and stamps as plain data, for the room's state another node
        takes: ``[[key, value or None, time, node], ...]``."""
        stamps, values = room.metadata_stamps or {}, room.metadata or _EMPTY
        return [[key, values.get(key), stamp[0], stamp[1]] for key, stamp in stamps.items()]

    def take_room_state(self, room: Room, items: Any) -> None:
        """Take another node's ``room_state`` of ``room`` (each entry as ``apply_room``)."""
        for item in read_room_state(items):
            self.apply_room(room, item[0], item[1], (item[2], item[3]))

    # -- a user of another node --------------------------------------------------------

    def took_user(self, user: User, values: Mapping[str, str]) -> None:
        """The metadata another node says its ``user`` holds now (its presence): what
        differs from what this node held is taken and told to the listeners."""
        before = dict(user.metadata or _EMPTY)
        user.metadata = dict(values) or None
        for key in sorted(before.keys() | values.keys()):
            if before.get(key) != values.get(key):
                self._tell(user, key, values.get(key), None)


def read_room_state(items: Any) -> list[tuple[str, Optional[str], float, str]]:
    """A ``room_state`` (or a ``meta`` item's fields) read and checked: ValueError when it
    is not one."""
    read = []
    for key, value, time, node in items:
        if type(key) is not str or (value is not None and type(value) is not str) or type(node) is not str \
                or type(time) not in (int, float):
            raise ValueError("not room metadata")
        read.append((key, value, float(time), node))
    return read


def read_user_metadata(data: Any) -> Optional[tuple[tuple[str, str], ...]]:
    """A user's metadata as its presence carries it (a map, or nil for none), read and
    checked: sorted pairs, or None; ValueError when it is not one."""
    if data is None:
        return None
    if not isinstance(data, dict) or not all(type(k) is str and type(v) is str for k, v in data.items()):
        raise ValueError("not user metadata")
    return tuple(sorted(data.items())) or None
