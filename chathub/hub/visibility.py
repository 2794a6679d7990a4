"""Visibility: what one user may know of rooms and of other users.

Every protocol's NAMES/WHO/LIST (and their line and JSON counterparts) asks these, through
the ``ChatHub`` methods of the same names, so all of them agree: secret (+s/+p) rooms are
known only to their members, and invisible (+i) users only to those who share a room with
them (RFC 2812 3.2.5, 3.6.1; Modern IRC "invisible" user mode). ``viewer`` None is someone
who is in no room (a client not signed on yet).
"""
from __future__ import annotations

from typing import Mapping, Optional

from chathub.hub.rooms import ASIDE, Member, Room
from chathub.hub.users import User
from chathub.names import fold


def may_see_room(viewer: Optional[User], room: Room) -> bool:
    """True unless ``room`` is secret and ``viewer`` is not in it."""
    return not room.secret or (viewer is not None and viewer.folded in room.members)


def may_see_user(viewer: Optional[User], other: User) -> bool:
    """True unless ``other`` is invisible (+i) and shares no room with ``viewer``."""
    if "i" not in other.modes or other is viewer:
        return True
    return viewer is not None and any(name in other.rooms for name in viewer.rooms)


def visible_room(rooms: Mapping[str, Room], viewer: Optional[User], name: str) -> Optional[Room]:
    """The room of ``rooms`` called ``name`` if it exists and ``viewer`` may know of it."""
    room = rooms.get(fold(name))
    return room if room is not None and may_see_room(viewer, room) else None


def visible_members(viewer: Optional[User], room: Room) -> list[Member]:
    """The members of ``room`` that ``viewer`` may see: all of them to a member; none of a
    secret room to others; otherwise all but invisible users sharing no room with ``viewer``.
    Never a nick's earlier holder listed aside for its new holder (in a cluster, until its
    leaving arrives: ``Room.displace``): a client knows one user per nick."""
    if viewer is not None and viewer.folded in room.members:
        return [m for key, m in room.members.items() if ASIDE not in key]  # (no call per member)
    if room.secret:
        return []
    return [m for key, m in room.members.items() if ASIDE not in key and may_see_user(viewer, m.user)]


def visible_users(users: Mapping[str, User], viewer: Optional[User]) -> list[User]:
    """Every user of ``users`` that ``viewer`` may see (WHO *, the line protocol's /who)."""
    return [u for u in users.values() if may_see_user(viewer, u)]


def listed_rooms(rooms: Mapping[str, Room], viewer: Optional[User]) -> list[Room]:
    """The rooms of ``rooms`` that LIST shows ``viewer``: those with members that it may see
    (an empty persistent room is not listed)."""
    return [r for r in rooms.values() if r.members and may_see_room(viewer, r)]
