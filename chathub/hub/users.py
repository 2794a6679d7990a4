"""Users: one per signed-on person, the avatar the realm hands out.

A user is usually one connection. With ``[auth] multiclient``, a second login to an
account whose nick that account's user holds already is attached to it (``ChatHub.sign_on``):
one user, one nick, one set of rooms, with several sessions (``User.sessions``)."""
from __future__ import annotations

import os
import time
from types import MappingProxyType
from typing import TYPE_CHECKING, Mapping, Optional, cast

from zope.interface import implementer

from chathub.events import Source, mask_of
from chathub.interfaces import IChatUser
from chathub.names import fold

if TYPE_CHECKING:
    from chathub.hub.rooms import Room
    from chathub.interfaces import IParticipant


#: no modes, no privileges: shared by most users (both are replaced on change, never mutated)
_NONE: frozenset[str] = frozenset()

#: in no room: shared by every such user (idle connections are most of them); read-only,
#: so nothing adds to it by mistake (``add_room`` gives the user a dict of its own)
_NO_ROOMS: Mapping[str, "Room"] = MappingProxyType({})


@implementer(IChatUser)
class User:
    """A person connected through one protocol (or, attached, several sessions of one
    account); state the hub needs, nothing of the wire.

    ``participant`` is the session that acted last (a protocol calls ``act_as`` before it
    acts for a user with several sessions), so the hub's replies and the fan-out's skipping
    of the actor are about that session; ``others`` are the user's other sessions, empty
    for almost every user, which keeps the fan-out's one-session path as it was."""

    __slots__ = (
        "participant",
        "others",
        "nick",
        "folded",
        "user",
        "host",
        "ip",
        "realname",
        "account",
        "away",
        "modes",
        "privileges",
        "rooms",
        "signon",
        "last_active",
        "_monitoring",
        "invited_to",
        "session",
        "_source",
        "metadata",
    )

    def __init__(
        self,
        participant: "IParticipant",
        account: Optional[str] = None,
        user: str = "",
        host: str = "",
        realname: str = "",
        ip: str = "",
    ) -> None:
        self.participant = participant
        self.others: tuple["IParticipant", ...] = ()  # other sessions of one account (multiclient)
        self.nick: Optional[str] = None
        self.folded: Optional[str] = None
        self.user = user
        self.host = host  # what everyone sees: a cloak of ``ip`` unless cloaking is off
        self.ip = ip  # the connection's real address: for operators, the user, logs; "" unknown
        self.realname = realname
        self.account = account
        self.away: Optional[str] = None
        self.modes: frozenset[str] = _NONE  # user modes: "i" invisible, "o" operator, "w" wallops
        self.privileges: frozenset[str] = _NONE  # operator privileges ("kill", ...)
        self.rooms: Mapping[str, "Room"] = _NO_ROOMS  # folded name -> room (see add_room)
        self.signon = time.time()
        self.last_active = self.signon
        self._monitoring: Optional[set[str]] = None  # made on first use (most users watch nobody)
        self.invited_to: Optional[set[str]] = None  # folded rooms whose ``invited`` may list us
        self.session = os.urandom(6).hex()  # this connection, for guests' private history
        self._source: Optional[Source] = None
        #: draft/metadata-3 key -> value (``chathub.hub.metadata``); None when it has none
        self.metadata: Optional[dict[str, str]] = None

    @property
    def sessions(self) -> tuple["IParticipant", ...]:
        """Every session of this user, the one that acted last first."""
        return (self.participant, *self.others) if self.others else (self.participant,)

    def attach(self, participant: "IParticipant") -> None:
        """Add a session (a login to the same account; ``ChatHub.sign_on`` decides)."""
        self.others = (*self.others, participant)

    def detach(self, participant: "IParticipant") -> bool:
        """Drop a session that closed; False if it is not one of this user's, or is the
        last one (the user quits instead)."""
        if not self.others:
            return False
        if participant is self.participant:
            self.participant, self.others = self.others[0], self.others[1:]
            return True
        if participant not in self.others:
            return False
        self.others = tuple(p for p in self.others if p is not participant)
        return True

    def act_as(self, participant: "IParticipant") -> None:
        """``participant``, one of this user's sessions, acts now: what the hub does next
        is skipped for it (it renders its own confirmations) and reaches the others."""
        if participant is not self.participant and participant in self.others:
            self.others = (self.participant, *(p for p in self.others if p is not participant))
            self.participant = participant

    def add_room(self, room: "Room") -> None:
        """Record that this user is now in ``room``."""
        rooms = self.rooms
        if rooms is _NO_ROOMS:
            rooms = self.rooms = {}
        cast("dict[str, Room]", rooms)[room.folded] = room  # not _NO_ROOMS: our own dict

    def remove_room(self, folded: str) -> None:
        """Record that this user left the room named ``folded`` (folded)."""
        rooms = self.rooms
        if rooms:  # not _NO_ROOMS: our own dict
            cast("dict[str, Room]", rooms).pop(folded, None)
            if not rooms:
                self.rooms = _NO_ROOMS

    @property
    def monitoring(self) -> set[str]:
        """Folded nicks this user watches for presence (MONITOR)."""
        if self._monitoring is None:
            self._monitoring = set()
        return self._monitoring

    @property
    def protocol(self) -> str:
        """Which protocol this user came from."""
        protocol: str = self.participant.protocol
        return protocol

    @property
    def signed_on(self) -> bool:
        """True once the user holds a nick in the hub."""
        return self.nick is not None

    @property
    def is_operator(self) -> bool:
        """True for a server operator."""
        return "o" in self.modes

    @property
    def source(self) -> Source:
        """A snapshot of who this user is, stamped on the events they cause."""
        src = self._source
        if src is None:
            nick, user, host = self._shown()
            src = self._source = Source(
                nick=nick,
                user=user,
                host=host,
                account=self.account,
                realname=self.realname,
                protocol=self.participant.protocol,
                session="" if self.account else self.session,
            )
        return src

    @property
    def history_party(self) -> str:
        """Who this user is in stored private conversations: the account, or for a guest
        ``/connection``: its talk stays with the connection, across its nick changes, and
        whoever takes the nick later is another party."""
        return cast(str, self.folded) if self.account else f"/{self.session}"  # asked of signed-on users

    @property
    def mask(self) -> str:
        """``nick!user@host``."""
        source = self._source
        if source is not None:
            return source.mask
        # no snapshot kept yet (the welcome, an idle user's WHO line): the text alone; the
        # snapshot and its mask are kept once the user causes an event (some 200 bytes
        # a user that 10,000 idle connections need not hold)
        return mask_of(*self._shown())

    def _shown(self) -> tuple[str, str, str]:
        """Nick, user name and host as others are shown them (the snapshot's and the mask's)."""
        nick = self.nick or "*"
        return nick, self.user or nick, self.host or "localhost"

    @property
    def real_mask(self) -> str:
        """``nick!user@ip``: the mask with the real address (operators' views and O-lines)."""
        source = self.source
        return f"{source.nick}!{source.user}@{self.ip}" if self.ip else source.mask

    def identity_changed(self) -> None:
        """Drop the cached source after nick, user, host, realname or account change."""
        self._source = None

    def set_nick(self, nick: Optional[str]) -> None:
        """Record a new nick (the hub keeps its registry in step)."""
        self.nick = nick
        self.folded = fold(nick) if nick is not None else None
        self._source = None

    def __repr__(self) -> str:
        return f"<User {self.nick!r} via {self.participant.protocol}>"
