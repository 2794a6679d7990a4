"""Users signed on at other nodes of a cluster, as this node knows them.

A node tells the others who signs on, changes nick, changes identity (away, account, host,
real name, user modes) and leaves (``presence`` messages on the backplane: plain data, no
wire format); a node that starts or reconnects says ``hello`` and every other node answers
with its whole roster, so the directory is rebuilt after any loss. A node declared dead
takes its users with it. Which node holds a nick is decided by the backplane's atomic
claims, not here.

Each user of another node is a ``User`` whose participant sends nothing
(``RemoteParticipant``): WHOIS, WHO, ISON, USERHOST, MONITOR, LUSERS, WHOWAS and the
naming of private history read it like a local one. What changed is reported to a
``listener`` (the hub), which tells this node's users as it would for a local change.
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, replace
from typing import Any, Iterable, Optional, Protocol

from zope.interface import implementer

from chathub.events import Event, EventIds
from chathub.hub.metadata import read_user_metadata
from chathub.hub.users import User
from chathub.interfaces import IParticipant
from chathub.names import fold

#: the id tags of lost nodes' processes remembered (``RemoteDirectory.lost``): one per
#: declared death, kept for events of theirs read from the store long after it
LOST_KEPT = 1_000


@implementer(IParticipant)
class RemoteParticipant:
    """The participant of a user signed on at another node: its own node writes to it."""

    format_key = None  # nothing to write here: Room.recipients leaves it out
    address = ""
    echo_own = False

    def __init__(self, node: str, protocol: str = "remote") -> None:
        self.node = node
        self.protocol = protocol  # the protocol it uses at its node (WHOIS tells it)

    def encode(self, event: Event) -> Optional[bytes]:
        return None

    def send(self, data: bytes) -> None:
        """Nothing: the user's own node delivers to it."""

    def deliver(self, event: Event) -> None:
        """Nothing: the user's own node delivers to it."""

    def close(self, reason: str) -> None:
        """Nothing: only its own node can disconnect it."""


@dataclass(frozen=True, slots=True)
class RemoteUser:
    """What a node says of one of its users (the plain data of a presence message)."""

    node: str
    nick: str
    user: str
    host: str
    account: Optional[str]
    realname: str
    session: str
    away: Optional[str] = None
    modes: str = ""
    protocol: str = "remote"
    signon: float = 0.0
    #: the real address, shown only to IRC operators (WHOIS 378/338, WHOX ``%i``, USERHOST)
    #: as for a user of their own node; "" when its node did not say
    ip: str = ""
    #: its draft/metadata-3 values (``chathub.hub.metadata``), as sorted pairs; None for none
    metadata: Optional[tuple[tuple[str, str], ...]] = None

    def to_list(self) -> list[Any]:
        """The plain-data form carried in presence messages (without the node)."""
        return [self.nick, self.user, self.host, self.account, self.realname, self.session, self.away,
                self.modes, self.protocol, self.signon, self.ip, dict(self.metadata) if self.metadata else None]

    @classmethod
    def from_list(cls, node: str, item: list[Any]) -> "RemoteUser":
        nick, user, host, account, realname, session = item[:6]
        away, modes, protocol, signon, ip, metadata = (
            list(item[6:12]) + [None, "", "remote", 0.0, "", None][len(item[6:12]):]
        )
        return cls(str(node), str(nick), str(user), str(host), None if account is None else str(account),
                   str(realname), str(session), None if away is None else str(away), str(modes or ""),
                   str(protocol or "remote"), float(signon or 0.0), str(ip or ""), read_user_metadata(metadata))

    def make_user(self) -> User:
        """A ``User`` standing for this user here."""
        user = User(RemoteParticipant(self.node, self.protocol))
        self.update(user)
        user.metadata = dict(self.metadata) if self.metadata else None
        user.session = self.session
        user.ip = self.ip
        user.set_nick(self.nick)
        if self.signon:
            user.signon = user.last_active = self.signon
        return user

    def update(self, user: User) -> None:
        """Give ``user`` (this user's stand-in here) what this says of its identity."""
        user.user, user.host, user.account, user.realname = self.user, self.host, self.account, self.realname
        user.away = self.away
        user.modes = frozenset(self.modes)
        user.identity_changed()


def presence_of(user: Any) -> list[Any]:
    """A local ``User`` in the plain-data form of a ``RemoteUser`` (without the node)."""
    return [user.nick, user.user, user.host, user.account, user.realname, user.session, user.away,
            "".join(sorted(user.modes)), user.protocol, user.signon, user.ip, user.metadata]


class PresenceListener(Protocol):
    """What the directory tells of the changes it applies (the hub)."""

    def remote_online(self, user: User) -> None:
        """``user`` of another node signed on (or took a new nick)."""

    def remote_offline(self, user: User) -> None:
        """``user`` of another node left (or dropped its nick): called before it is gone."""

    def remote_changed(self, user: User, before: RemoteUser, after: RemoteUser) -> None:
        """``user``'s identity changed (already applied to ``user``)."""

    def remote_recased(self, user: User) -> None:
        """``user`` of another node changes the case of its nick (called before it does)."""


class RemoteDirectory:
    """Folded nick -> ``User`` for every user of the other nodes."""

    def __init__(self, node_id: str, listener: Optional[PresenceListener] = None) -> None:
        self.node_id = node_id
        self.listener = listener
        self.users: dict[str, User] = {}
        self._said: dict[str, RemoteUser] = {}  # folded nick -> what its node said last
        self.mode_counts: dict[str, int] = {}  # user mode letter -> users of other nodes with it
        #: node -> the tag of its process's event ids (``EventIds.tag``), as its presence says
        self._tags: dict[str, str] = {}
        #: the tags of processes declared dead, latest last (``lost``)
        self._lost: OrderedDict[str, None] = OrderedDict()

    def get(self, nick: str) -> Optional[User]:
        """The user of another node holding ``nick`` (any case), or None."""
        return self.users.get(fold(nick))

    def said(self, nick: str) -> Optional[RemoteUser]:
        """What its node said last of the user holding ``nick``, or None."""
        return self._said.get(fold(nick))

    def apply(self, message: dict[str, Any]) -> bool:
        """Apply another node's presence message; True when it says ``hello`` (so this node
        answers with its roster)."""
        node = str(message.get("node", ""))
        if not node or node == self.node_id:
            return False
        tag = message.get("ids")
        if isinstance(tag, str):
            self._tags[node] = tag
            # a process declared dead that speaks was only cut off: it quits its users itself
            self._lost.pop(tag, None)
        hello = False
        for item in message.get("presence", ()):
            op, args = item[0], item[1:]
            if op in ("on", "id"):
                self._put(RemoteUser.from_list(node, args[0]))
            elif op == "off":
                self._drop(node, str(args[0]))
            elif op == "nick":
                self._rename(node, str(args[0]), str(args[1]))
            elif op == "roster":
                listed = [RemoteUser.from_list(node, entry) for entry in args[0]]
                keep = {fold(r.nick) for r in listed}
                for folded in [f for f, r in self._said.items() if r.node == node and f not in keep]:
                    self._drop(node, folded)
                for remote in listed:
                    self._put(remote)
            elif op == "hello":
                hello = True
        return hello

    def _put(self, said: RemoteUser) -> None:
        folded = fold(said.nick)
        before = self._said.get(folded)
        if before is not None and (before.node != said.node or before.session != said.session):
            self._drop(before.node, folded)  # the nick changed hands: the old holder is gone
            before = None
        self._said[folded] = said
        if before is None:
            user = self.users[folded] = said.make_user()
            self._count(said.modes, 1)
            if self.listener is not None:
                self.listener.remote_online(user)
            return
        if before == said:
            return
        user = self.users[folded]
        self._count(before.modes, -1)
        self._count(said.modes, 1)
        said.update(user)
        if self.listener is not None:
            self.listener.remote_changed(user, before, said)

    def _rename(self, node: str, old: str, new: str) -> None:
        said = self._said.get(fold(old))
        if said is None or said.node != node:
            return
        user = self.users[fold(old)]
        if fold(old) != fold(new):
            if self.listener is not None:
                self.listener.remote_offline(user)
            del self.users[fold(old)], self._said[fold(old)]
        elif self.listener is not None:
            self.listener.remote_recased(user)
        said = replace(said, nick=new)
        user.set_nick(new)
        self.users[fold(new)], self._said[fold(new)] = user, said
        if fold(old) != fold(new) and self.listener is not None:
            self.listener.remote_online(user)

    def _drop(self, node: str, nick: str) -> None:
        folded = fold(nick)
        said = self._said.get(folded)
        if said is None or said.node != node:
            return
        user = self.users[folded]
        if self.listener is not None:
            self.listener.remote_offline(user)
        del self.users[folded], self._said[folded]
        self._count(said.modes, -1)

    def _count(self, modes: str, step: int) -> None:
        for letter in modes:
            self.mode_counts[letter] = self.mode_counts.get(letter, 0) + step

    def drop_node(self, node: str) -> list[User]:
        """Forget every user of ``node`` (it left, or was declared dead); returns them.
        Its process's events read later are ``lost``."""
        tag = self._tags.pop(node, None)
        if tag is not None:
            self._lost[tag] = None
            if len(self._lost) > LOST_KEPT:
                self._lost.popitem(last=False)
        gone = [self.users[f] for f, r in self._said.items() if r.node == node]
        for user in gone:
            self._drop(node, user.nick or "")
        return gone

    def node_of(self, event: Event) -> Optional[str]:
        """The node whose process made ``event``, as its presence says (``"ids"``); None
        when this node has not heard of that process."""
        tag = EventIds.node_of(event.id)
        for node, known in self._tags.items():
            if known == tag:
                return node
        return None

    def lost(self, event: Event) -> bool:
        """Whether ``event`` was made by the process of a node declared dead here (its users
        taken out of every room then): one of its events committed before it died and read
        from the store after (its doorbell never rang)."""
        return bool(self._lost) and EventIds.node_of(event.id) in self._lost

    @staticmethod
    def roster(users: Iterable[Any]) -> list[list[Any]]:
        """This node's signed-on users as a ``roster`` item's list."""
        return [presence_of(u) for u in users]
