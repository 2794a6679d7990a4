"""Plain data that the hub and the store both use: a leaf module (no chathub imports but
``chathub.events``), so neither layer imports the other for its types.

- ``RoomRecord`` and ``Ban``: what must survive a restart of a persistent room; the hub
  makes them (``room_record``) and restores rooms from them, the store keeps them.
- ``CHAT_KINDS``: the event kinds a history reader without ``draft/event-playback`` gets.
- ``Ref``: a history reference, as protocols make them and the store reads them.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, NamedTuple, Optional, Union

from chathub.events import Kind

#: the kinds a client without ``draft/event-playback`` gets from history
CHAT_KINDS = frozenset({Kind.MESSAGE, Kind.ACTION, Kind.NOTICE, Kind.TAGMSG})

#: ``("msgid", "0abc...")`` or ``("timestamp", 1764431589.123)``
Ref = Union[tuple[Literal["msgid"], str], tuple[Literal["timestamp"], float]]


class Ban(NamedTuple):
    """One room ban as stored."""

    mask: str
    setter: str
    time: float


@dataclass(frozen=True)
class RoomRecord:
    """A persistent room as stored: what must survive a restart.

    ``modes`` holds the flag letters only (``"nt"``); the key and the limit have their
    own fields. ``founder`` is the folded account that owns the room (None for rooms
    stored before founders were kept); ``operators`` are the folded accounts its founder
    made operators, given ops on join.
    """

    name: str
    topic: str = ""
    topic_setter: str = ""
    topic_time: float = 0.0
    modes: str = ""
    key: Optional[str] = None
    limit: Optional[int] = None
    bans: tuple[Ban, ...] = ()
    operators: tuple[str, ...] = ()
    created: float = 0.0
    founder: Optional[str] = None

    def __post_init__(self) -> None:
        # accept any sequences, keep immutable, comparable values
        object.__setattr__(self, "bans", tuple(Ban(*b) for b in self.bans))
        object.__setattr__(self, "operators", tuple(self.operators))
        object.__setattr__(self, "modes", "".join(sorted(set(self.modes))))
