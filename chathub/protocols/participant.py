"""What every participant that delivers by encoding shares (``IParticipant.deliver``), and
what a connection whose joins a cluster answers at their number keeps meanwhile."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional

from chathub.events import Event, Kind
from chathub.hub.outbox import Receipt
from chathub.names import fold

if TYPE_CHECKING:
    from chathub.hub.users import User


class EncodingParticipant:
    """``deliver`` for a participant whose single-recipient delivery is ``encode`` + ``send``."""

    __slots__ = ()

    if TYPE_CHECKING:
        # what the class this is mixed into provides (``IParticipant``)
        def encode(self, event: Event) -> Optional[bytes]: ...

        def send(self, data: bytes) -> None: ...

    def deliver(self, event: Event) -> None:
        """Encode ``event`` in this participant's format and send it, unless it is not shown."""
        data = self.encode(event)
        if data is not None:
            self.send(data)


class JoinsUnderWay:
    """A connection's joins on a cluster node that wait for their number (the hub answers a
    JOIN once every node reached it: ``Receipt.shown``), for a protocol whose answer tells
    the room as it stands then (chathub.v1's room snapshot, the line protocol's names and
    history). The member is in the room's copy at once, so the room's lines reach it before
    its JOIN: those numbered before the JOIN are not shown (``hides``): the answer has them
    (chat in the history the client reads after it, changes in the state it lists). Before,
    a chathub.v1 client shown another node's messages ahead of its join's answer asked
    history only for what came after them, and never showed what the room said before it
    joined. Meanwhile the connection encodes its rooms' events for itself alone (its own
    format key). IRC, whose answer is made when the JOIN is, keeps its own
    (``IrcSession.joining``)."""

    __slots__ = ("_rooms",)

    def __init__(self) -> None:
        self._rooms: dict[str, Receipt] = {}

    def begin(self, folded: str, receipt: Receipt) -> None:
        """The join of room ``folded`` waits for its number (``receipt``)."""
        self._rooms[folded] = receipt

    def end(self, folded: str) -> bool:
        """The join of room ``folded`` is answered; True when no join is under way now."""
        self._rooms.pop(folded, None)
        return not self._rooms

    def hides(self, event: Event, user: "User") -> bool:
        """Whether ``event`` is of a room joined and numbered before the JOIN of this
        connection's ``user``, which is shown (to a protocol that echoes its own)."""
        target = event.target
        if not target:
            return False
        receipt = self._rooms.get(fold(target))
        if receipt is None or receipt.shown:
            return False
        if event.kind != Kind.JOIN:
            return True
        # its own JOIN: a guest's names its connection, an account holder's its nick only
        source = event.source
        return not (fold(source.nick) == user.folded or (source.session and source.session == user.session))


class JoinAnswering:
    """A connection's side of ``JoinsUnderWay``, for a protocol session that answers a join
    at its number (chathub.v1, the line protocol): the joins under way, the events they hide,
    and the connection's format key meanwhile (one of its own: its rooms' events are encoded
    for it alone) and after (``own_format_key``)."""

    if TYPE_CHECKING:
        # what the session this is mixed into keeps
        _joins: Optional[JoinsUnderWay]
        user: Optional[User]
        format_key: Any

    def own_format_key(self) -> Any:
        """The key the fan-out shares this connection's encodings under when no join of
        it is under way: its class's, unless the session's options change it."""
        return type(self).format_key

    def join_waits(self, folded: str, receipt: Receipt) -> None:
        """The join of room ``folded`` is answered at its number (``receipt``)."""
        if self._joins is None:
            self._joins = JoinsUnderWay()
            self.format_key = ("joining", hex(id(self)))
        self._joins.begin(folded, receipt)

    def join_answered(self, folded: str) -> None:
        """The join of room ``folded`` was answered: once none is under way, the
        connection's encodings are shared again."""
        if self._joins is not None and self._joins.end(folded):
            self._joins = None
            self.format_key = self.own_format_key()

    def hidden_while_joining(self, event: Event) -> bool:
        """Whether ``event`` is one a join under way hides (``JoinsUnderWay.hides``)."""
        return self._joins is not None and self.user is not None and self._joins.hides(event, self.user)
