"""Which conversation an event belongs to, and how history references compare.

Pure functions shared by every backend. A conversation is keyed by a string: a room's
folded name (``#chat``), or two parties in sorted order joined by a space for a private
conversation (``alice bob``). A party is a folded nick for an account holder and
``/connection`` for a guest (``/3f2a...``), so a guest's private history stays with the
connection that made it, across its nick changes, and nobody who takes the nick later can
read it. Nicks and room names never contain spaces or ``/``, so the keys cannot collide.

Times are compared in whole milliseconds, the precision of IRCv3 ``server-time``, so a
client that echoes the ``time`` tag of a message as ``timestamp=`` excludes exactly the
messages of that millisecond.
"""
from __future__ import annotations

import functools
from typing import Any, Iterable, NamedTuple, Optional, Sequence, TypeVar, Union

from chathub.events import STATUSMSG, Event
from chathub.names import fold, is_room_name


class Conversation(NamedTuple):
    """A room (``peer_b`` is None) or the private conversation of ``peer_a`` and ``peer_b``."""

    key: str
    peer_a: str  # folded room name, or the first folded nick
    peer_b: Optional[str]  # second folded nick, None for a room

    @property
    def private(self) -> bool:
        return self.peer_b is not None


@functools.lru_cache(maxsize=4096)
def room_conversation(name: str) -> Conversation:
    """The conversation of room ``name`` (made once per busy room: every message needs it)."""
    folded = fold(name)
    return Conversation(folded, folded, None)


def private_conversation(nick1: str, nick2: str) -> Conversation:
    """The private conversation between two nicks (either order gives the same key)."""
    a, b = sorted((fold(nick1), fold(nick2)))
    return Conversation(f"{a} {b}", a, b)


def source_party(event: Event) -> str:
    """Who sent a private ``event``: the folded nick of an account holder, ``/connection``
    for a guest (``User.history_party``)."""
    session = event.source.session
    return f"/{session}" if session else fold(event.source.nick)


def target_party(event: Event) -> str:
    """Who a private ``event`` went to, in the same terms as ``source_party``."""
    session = event.data.get("to_session") if event.data else None
    return f"/{session}" if session else fold(event.target)


def peer_name(event: Event, viewer: str) -> str:
    """The nick of the other party of a private ``event``, as ``viewer`` (a party) sees it."""
    if source_party(event) == viewer or fold(event.source.nick) == viewer:
        return event.target
    return event.source.nick


def conversation_for(viewer: str, target: str) -> Conversation:
    """The conversation ``viewer`` means by ``target``: a room, or its talk with that nick."""
    if is_room_name(target):
        return room_conversation(target)
    return private_conversation(viewer, target)


def conversations_of(event: Event, rooms: Iterable[str] = (), private: bool = True) -> list[Conversation]:
    """Every conversation ``event`` is part of, without repeats.

    A room target gives that room (a STATUSMSG: its own ``@#room`` or ``+#room``); a nick
    target gives the private conversation with the sender (unless ``private`` is false, or
    the sender is the server itself); ``rooms`` adds rooms for user-wide events (quit, nick
    change).
    """
    target = event.target
    if not rooms and target and is_room_name(target):
        if event.data and STATUSMSG in event.data:
            # to a room's operators (or voiced members) only: a conversation of its own,
            # ``@#room``, which no history request names (a room's history never shows it)
            return [room_conversation(str(event.data[STATUSMSG]) + target)]
        return [room_conversation(target)]  # a room message: by far the most common
    found: dict[str, Conversation] = {}
    if target:
        if is_room_name(target):
            conv = room_conversation(target)
            found[conv.key] = conv
        elif private and event.source.nick:
            # keyed by parties, not bare nicks: a guest's talk stays with that connection
            conv = private_conversation(source_party(event), target_party(event))
            found[conv.key] = conv
    for room in rooms:
        if is_room_name(room):
            conv = room_conversation(room)
            found.setdefault(conv.key, conv)
    return list(found.values())


def to_ms(t: float) -> int:
    """Epoch seconds to whole milliseconds, the way ``chathub.events.iso_time`` shows them."""
    return round(t * 1_000_000) // 1000


def check_ref(ref: Sequence[Any]) -> tuple[str, Union[str, float]]:
    """Validate a ``("msgid", str)`` or ``("timestamp", float)`` reference."""
    try:
        kind, value = ref
    except (TypeError, ValueError) as e:
        raise ValueError(f"a history reference is (\"msgid\", id) or (\"timestamp\", t), not {ref!r}") from e
    if kind == "msgid" and isinstance(value, str) and value:
        return kind, value
    if kind == "timestamp" and isinstance(value, (int, float)) and not isinstance(value, bool):
        return kind, float(value)
    raise ValueError(f"a history reference is (\"msgid\", id) or (\"timestamp\", t), not {ref!r}")


_Item = TypeVar("_Item")


def centred_window(items: list[_Item], pivot: int, limit: int, pivot_is_item: bool = True) -> list[_Item]:
    """``limit`` consecutive items of ``items`` centred on ``pivot``, shifted to fit.

    ``pivot`` is the index of the reference item, or (``pivot_is_item`` false) of the
    first item after a reference that falls between items. An odd ``limit`` puts the
    reference item in the middle, an even one gives the extra item to the later side;
    when one side runs short the window takes more from the other.
    """
    if limit <= 0:
        return []
    start = pivot - ((limit - 1) // 2 if pivot_is_item else limit // 2)
    start = max(0, min(start, len(items) - limit))
    return items[start : start + limit]
