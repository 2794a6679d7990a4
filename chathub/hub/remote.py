"""Users signed on at other nodes of a cluster, as this node knows them.

A node tells the others who signs on, changes nick and leaves (``presence`` messages on the
backplane: plain data, no wire format); a node that starts or reconnects says ``hello`` and
every other node answers with its whole roster, so the directory is rebuilt after any
loss. A node declared dead takes its users with it. The directory lets a private message
reach a user of another node; which node holds a nick is decided by the backplane's atomic
claims, not here.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Optional

from chathub.names import fold


@dataclass(frozen=True, slots=True)
class RemoteUser:
    """A user signed on at another node."""

    node: str
    nick: str
    user: str
    host: str
    account: Optional[str]
    realname: str
    session: str

    def to_list(self) -> list[Any]:
        """The plain-data form carried in presence messages (without the node)."""
        return [self.nick, self.user, self.host, self.account, self.realname, self.session]

    @classmethod
    def from_list(cls, node: str, item: list[Any]) -> "RemoteUser":
        nick, user, host, account, realname, session = item
        return cls(str(node), str(nick), str(user), str(host), None if account is None else str(account),
                   str(realname), str(session))


class RemoteDirectory:
    """Folded nick -> ``RemoteUser`` for every user of the other nodes."""

    def __init__(self, node_id: str) -> None:
        self.node_id = node_id
        self.users: dict[str, RemoteUser] = {}

    def get(self, nick: str) -> Optional[RemoteUser]:
        """The user of another node holding ``nick`` (any case), or None."""
        return self.users.get(fold(nick))

    def apply(self, message: dict[str, Any]) -> bool:
        """Apply another node's presence message; True when it says ``hello`` (so this node
        answers with its roster)."""
        node = str(message.get("node", ""))
        if not node or node == self.node_id:
            return False
        hello = False
        for item in message.get("presence", ()):
            op, args = item[0], item[1:]
            if op == "on":
                remote = RemoteUser.from_list(node, args[0])
                self.users[fold(remote.nick)] = remote
            elif op == "off":
                self._drop(node, str(args[0]))
            elif op == "nick":
                known = self.users.get(fold(str(args[0])))
                if known is not None and known.node == node:
                    del self.users[fold(known.nick)]
                    renamed = RemoteUser(node, str(args[1]), known.user, known.host, known.account,
                                         known.realname, known.session)
                    self.users[fold(renamed.nick)] = renamed
            elif op == "roster":
                self.drop_node(node)
                for entry in args[0]:
                    remote = RemoteUser.from_list(node, entry)
                    self.users[fold(remote.nick)] = remote
            elif op == "hello":
                hello = True
        return hello

    def _drop(self, node: str, nick: str) -> None:
        remote = self.users.get(fold(nick))
        if remote is not None and remote.node == node:
            del self.users[fold(nick)]

    def drop_node(self, node: str) -> list[RemoteUser]:
        """Forget every user of ``node`` (it left, or was declared dead); returns them."""
        gone = [u for u in self.users.values() if u.node == node]
        for remote in gone:
            del self.users[fold(remote.nick)]
        return gone

    @staticmethod
    def roster(users: Iterable[Any]) -> list[list[Any]]:
        """This node's signed-on users as a ``roster`` item's list."""
        return [presence_of(u) for u in users]


def presence_of(user: Any) -> list[Any]:
    """A local ``User`` in the plain-data form of a ``RemoteUser`` (without the node)."""
    return [user.nick, user.user, user.host, user.account, user.realname, user.session]
