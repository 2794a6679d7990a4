"""Checking a room event again at its place in the room's numbered order (cluster mode).

The node where a user acts checks the request against its copy of the room, which may not
have applied another node's change numbered just before it: a KICK of the sender, a ``+i``
set at the moment of a JOIN. Every node sees the room's events in one numbered order, so
each one checks each event again at its number, from what the events before it in that
order established, and all of them come to the same verdict: an event refused there is
void, shown to no one and deleted from history (docs/cluster.md, "Checked at its number").

Only what the order itself proves is used, never a node's copy of the room (which has its
own users' later changes applied early):

- a room message from a user removed from the room (kicked, parted, quit, or whose join
  was void) by an earlier number, and not joined again since, is void, unless its node
  sent it as a non-member's (an external message to a ``-n`` room: it needed no membership);
- a JOIN is void when ``+i`` was set by a number its node had not applied when it checked
  the join (the join carries that position), the room is still ``+i`` at the join's
  number, and the joiner was neither invited nor invite-excepted there.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Optional

from chathub.events import Event, Kind
from chathub.hub import errors
from chathub.names import fold

#: removed members remembered per room, oldest forgotten first: a message of a removed
#: user is numbered soon after the removal, and every node forgets in the same order
GONE_LIMIT = 256

#: what a node adds to a JOIN's data: the number up to which it had applied the room's
#: events when it checked the join, and whether the joiner passed ``+i`` by invitation
JOIN_SEEN, JOIN_EXEMPT = "seen", "exempt"
#: what a node adds to a room message's data when its sender was not a member
EXTERNAL = "external"


class _RoomOrder:
    """What a room's numbered events have established so far on this node."""

    __slots__ = ("gone", "invite_only_since")

    def __init__(self) -> None:
        self.gone: OrderedDict[str, int] = OrderedDict()  # folded nick -> number of its removal
        self.invite_only_since = 0  # the number of the ``+i`` in force, 0 when none is


class Admission:
    """Per room, the facts of its numbered order that decide whether an event stands."""

    def __init__(self) -> None:
        self._rooms: dict[str, _RoomOrder] = {}

    def check(self, conv: str, seq: int, event: Event) -> Optional[errors.HubError]:
        """Check ``event``, numbered ``seq`` in room conversation ``conv``, and take in what
        it changes; the error to tell its sender when it is void, else None."""
        order = self._rooms.get(conv)
        kind = event.kind
        data = event.data
        if kind in Kind.TEXT_KINDS:
            if order is not None and order.gone and fold(event.source.nick) in order.gone and not data.get(EXTERNAL):
                return errors.CannotSend(event.target, "Cannot send to room (you are no longer in it)")
            return None
        if order is None:
            order = self._rooms[conv] = _RoomOrder()
        if kind == Kind.JOIN:
            nick = fold(event.source.nick)
            seen = data.get(JOIN_SEEN)
            if (order.invite_only_since and isinstance(seen, int) and order.invite_only_since > seen
                    and not data.get(JOIN_EXEMPT)):
                self._remove(order, nick, seq)  # what it says next in the room is void too
                return errors.InviteOnly(event.target)
            order.gone.pop(nick, None)
        elif kind in (Kind.PART, Kind.QUIT):
            self._remove(order, fold(event.source.nick), seq)
        elif kind == Kind.KICK:
            self._remove(order, fold(str(data.get("nick", ""))), seq)
        elif kind == Kind.NICK:
            order.gone.pop(fold(str(data.get("new", ""))), None)
        elif kind == Kind.MODE:
            for change in data.get("changes", ()):
                if change and change[0] == "+i":
                    order.invite_only_since = seq
                elif change and change[0] == "-i":
                    order.invite_only_since = 0
        if not order.gone and not order.invite_only_since:
            del self._rooms[conv]  # nothing to remember: most rooms keep no entry
        return None

    @staticmethod
    def _remove(order: _RoomOrder, nick: str, seq: int) -> None:
        order.gone[nick] = seq
        order.gone.move_to_end(nick)
        if len(order.gone) > GONE_LIMIT:
            order.gone.popitem(last=False)
