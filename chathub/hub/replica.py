"""Applying other nodes' room events to this node's rooms (cluster mode).

The node where a user acts checks the request against its copy of the room and stores the
event; every other node gets it from the cluster relay, in the room's committed order, and
applies it here without checking again: a join adds the member (with the privileges it got
there), a part, kick or quit removes one, a nick change renames one, a topic or mode event
changes the room. Then the event goes to this node's users it concerns, as a local one
would. A user of another node sits in a room as a ``User`` whose participant sends nothing
(``RemoteParticipant``): NAMES, WHO and the fan-out treat it like any member.
"""
from __future__ import annotations

import time
from typing import TYPE_CHECKING, Callable, Optional, Sequence

from zope.interface import implementer

from chathub.events import Event, Kind
from chathub.hub.roommodes import apply_room_modes
from chathub.hub.rooms import Member, Room
from chathub.hub.users import User
from chathub.interfaces import IParticipant
from chathub.names import fold

if TYPE_CHECKING:
    from chathub.hub.service import ChatHub


@implementer(IParticipant)
class RemoteParticipant:
    """The participant of a user signed on at another node: its own node writes to it."""

    protocol = "remote"
    format_key = None  # nothing to write here: Room.recipients leaves it out
    address = ""
    echo_own = False

    def __init__(self, node: str) -> None:
        self.node = node

    def encode(self, event: Event) -> Optional[bytes]:
        return None

    def send(self, data: bytes) -> None:
        """Nothing: the user's own node delivers to it."""

    def deliver(self, event: Event) -> None:
        """Nothing: the user's own node delivers to it."""

    def close(self, reason: str) -> None:
        """Nothing: only its own node can disconnect it."""


class RemoteRooms:
    """This node's copies of other nodes' users in its rooms."""

    def __init__(self, hub: "ChatHub", publish: Callable[[Event, Sequence[User]], None]) -> None:
        self.hub = hub
        self.publish = publish  # deliver to local recipients, in hub order
        self.users: dict[str, User] = {}  # folded nick -> a user of another node in some room here

    def user_for(self, event: Event, node: str = "") -> User:
        """The member standing for the sender of ``event`` (made on its first join)."""
        source = event.source
        folded = fold(source.nick)
        user = self.users.get(folded)
        if user is None:
            user = User(RemoteParticipant(node), account=source.account, user=source.user, host=source.host,
                        realname=source.realname)
            user.session = source.session or user.session
            user.set_nick(source.nick)
            self.users[folded] = user
        return user

    def apply(self, event: Event) -> None:
        """Apply another node's room event, then deliver it to the local members it concerns."""
        kind = event.kind
        handler = _HANDLERS.get(kind)
        if handler is not None:
            handler(self, event)

    def _room(self, event: Event, create: bool = False) -> Optional[Room]:
        folded = fold(event.target)
        room = self.hub.rooms.get(folded)
        if room is None and create:
            room = Room(event.target)  # made at the node where it was joined: within its limits
            self.hub.rooms[folded] = room
        return room

    def _join(self, event: Event) -> None:
        room = self._room(event, create=True)
        assert room is not None
        known = self.hub.remote.get(event.source.nick) if self.hub.remote is not None else None
        user = self.user_for(event, known.node if known is not None else "")
        if user.folded in room.members:
            return
        privileges = str((event.data or {}).get("privileges", ""))
        room.add(Member(user, privileges))
        user.add_room(room)
        user.away = (event.data or {}).get("away")
        self.publish(event, room.recipients())

    def _leave(self, event: Event, nick: str) -> None:
        room = self._room(event)
        if room is None:
            return
        member = room.members.get(fold(nick))
        recipients = room.recipients()
        if member is not None:
            self.hub.leave_room(member.user, room)
            if isinstance(member.user.participant, RemoteParticipant) and not member.user.rooms:
                self.users.pop(fold(nick), None)
        self.publish(event, recipients)

    def _part(self, event: Event) -> None:
        self._leave(event, event.source.nick)

    def _kick(self, event: Event) -> None:
        # the kicked may be a user of this node: it leaves the room here too
        self._leave(event, str((event.data or {}).get("nick", "")))

    def _quit(self, event: Event) -> None:
        user = self.users.pop(fold(event.source.nick), None)
        if user is None:
            return
        recipients = self.hub.neighbours(user)
        for room in list(user.rooms.values()):
            self.hub.leave_room(user, room)
        self.publish(event, recipients)

    def _nick(self, event: Event) -> None:
        old = fold(event.source.nick)
        user = self.users.pop(old, None)
        new = str((event.data or {}).get("new", ""))
        if user is None or not new:
            return
        recipients = self.hub.neighbours(user)
        user.set_nick(new)
        self.users[fold(new)] = user
        for room in user.rooms.values():
            room.rekey(old, fold(new))
        self.publish(event, recipients)

    def _topic(self, event: Event) -> None:
        room = self._room(event)
        if room is None:
            return
        room.topic = event.text
        room.topic_setter = f"{event.source.nick}!{event.source.user}@{event.source.host}"
        room.topic_time = event.time if isinstance(event.time, float) else time.time()
        self.publish(event, room.recipients())

    def _mode(self, event: Event) -> None:
        room = self._room(event)
        if room is None:
            return
        changes = [tuple(change) for change in (event.data or {}).get("changes", ())]
        setter = self.users.get(fold(event.source.nick))
        if setter is None:
            return
        members: dict[str, User] = {**self.hub.users, **self.users}
        # checked at the setter's node; here a change this copy cannot apply is skipped
        apply_room_modes(setter, room, changes, members, self.hub.config)
        self.publish(event, room.recipients())

    def drop_users(self, nicks: Sequence[str], reason: str) -> int:
        """Users of a node that is gone leave every room here, as a quit each (shown to
        this node's members, not stored: no node speaks for them). Returns how many."""
        gone = [u for u in (self.users.get(fold(n)) for n in nicks) if u is not None]
        for user in gone:
            event = self.hub.ids.make(Kind.QUIT, user.source, "", reason)
            recipients = self.hub.neighbours(user)
            for room in list(user.rooms.values()):
                self.hub.leave_room(user, room)
            self.users.pop(fold(user.nick or ""), None)
            self.publish(event, recipients)
        return len(gone)


_HANDLERS: dict[str, Callable[[RemoteRooms, Event], None]] = {
    Kind.JOIN: RemoteRooms._join,
    Kind.PART: RemoteRooms._part,
    Kind.KICK: RemoteRooms._kick,
    Kind.QUIT: RemoteRooms._quit,
    Kind.NICK: RemoteRooms._nick,
    Kind.TOPIC: RemoteRooms._topic,
    Kind.MODE: RemoteRooms._mode,
}
