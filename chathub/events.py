"""Hub events: plain, immutable data with a server-assigned id and UTC time.

Every event that crosses the hub is one of these, so history storage and the Redis
backplane carry it as a dict (``to_dict`` / ``from_dict``) without knowing any wire format.
"""
from __future__ import annotations

import base64
import itertools
import os
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Callable, Mapping, Optional


class Kind:
    """The event kinds the hub emits (string constants, so they serialise as themselves)."""

    MESSAGE = "message"  # text to a room or a nick
    ACTION = "action"  # /me
    NOTICE = "notice"
    TAGMSG = "tagmsg"  # client tags only (typing notices, reactions)
    JOIN = "join"
    PART = "part"
    QUIT = "quit"
    KICK = "kick"
    TOPIC = "topic"
    NICK = "nick"  # data: {"new": newnick}
    AWAY = "away"  # text: away message, "" when back
    MODE = "mode"  # data: {"changes": [[sign+letter, arg or None], ...]}
    INVITE = "invite"  # target: room, data: {"nick": invited}
    CHGHOST = "chghost"  # data: {"user": ..., "host": ...}
    SETNAME = "setname"  # text: new realname
    ACCOUNT = "account"  # data: {"account": name or None}
    PRESENCE = "presence"  # data: {"state": "online"|"away"|"offline"}
    WALLOPS = "wallops"  # text: a message to users with user mode +w
    RENAME = "rename"  # target: the room's old name, data: {"new": new name}, text: reason
    #: a message taken back (IRCv3 draft/message-redaction): target: its room or the other
    #: party, text: the reason, data: {"msgid": its id, "sender": the nick that sent it}
    REDACT = "redact"

    #: the kinds that carry user text (3): committed to history before anyone sees them.
    #: Not ``chathub.records.CHAT_KINDS`` (4), what history gives a client without
    #: draft/event-playback: these and TAGMSG.
    TEXT_KINDS = frozenset({MESSAGE, ACTION, NOTICE})
    #: the kinds a REDACT may take back (the specification's PRIVMSG, NOTICE and TAGMSG)
    REDACTABLE_KINDS = frozenset({MESSAGE, ACTION, NOTICE, TAGMSG})


#: where a message taken back keeps what is left of it: ``data["redacted"]``
REDACTED = "redacted"
#: where a STATUSMSG (``@#room``: to the room's operators; ``+#room``: and its voiced
#: members) keeps its prefix: ``data["statusmsg"]``; its target is the room
STATUSMSG = "statusmsg"


@dataclass(frozen=True, slots=True)
class Source:
    """Who caused an event: a snapshot of the user at that moment."""

    nick: str
    user: str = ""
    host: str = ""
    account: Optional[str] = None
    realname: str = ""
    protocol: str = ""  # "line", "irc", "ws", "server"
    #: a guest's connection id ("" for account holders): scopes a guest's private history
    #: to that connection, so whoever takes the nick later cannot read it
    session: str = ""
    #: ``nick!user@host`` as IRC shows it: made once with the snapshot (a user's is kept, and
    #: every message's lines and checks read it), not on each reading
    mask: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "mask", mask_of(self.nick, self.user, self.host))


def mask_of(nick: str, user: str, host: str) -> str:
    """``nick!user@host`` as IRC shows it (a missing user name is the nick, a missing host
    ``localhost``)."""
    return f"{nick}!{user or nick}@{host or 'localhost'}"


SERVER = Source(nick="", protocol="server")


@dataclass(frozen=True, slots=True, init=False)
class Event:
    """One thing that happened in the hub."""

    id: str
    time: float  # seconds since the epoch, UTC
    kind: str
    source: Source
    target: str = ""  # room name, nick, or "" for user-wide events (quit, nick, away)
    text: str = ""
    tags: Mapping[str, str] = field(default_factory=dict)  # client-only tags, relayed as given
    data: Mapping[str, Any] = field(default_factory=dict)  # kind-specific extras

    def __init__(
        self,
        id: str,
        time: float,
        kind: str,
        source: Source,
        target: str = "",
        text: str = "",
        tags: Optional[Mapping[str, str]] = None,
        data: Optional[Mapping[str, Any]] = None,
    ) -> None:
        # a frozen dataclass's own __init__ sets each field through object.__setattr__
        # (0.87 us an event; every message makes one, and in a cluster every other node
        # one more): the slots' own setters do the same in half the time
        _set_id(self, id)
        _set_time(self, time)
        _set_kind(self, kind)
        _set_source(self, source)
        _set_target(self, target)
        _set_text(self, text)
        _set_tags(self, {} if tags is None else tags)
        _set_data(self, {} if data is None else data)

    @property
    def iso_time(self) -> str:
        """The time as IRCv3 server-time wants it: ``2026-11-29T15:53:09.123Z``."""
        return iso_time(self.time)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able form."""
        s = self.source
        return {
            "id": self.id,
            "time": self.time,
            "kind": self.kind,
            "source": {
                "nick": s.nick,
                "user": s.user,
                "host": s.host,
                "account": s.account,
                "realname": s.realname,
                "protocol": s.protocol,
                "session": s.session,
            },
            "target": self.target,
            "text": self.text,
            "tags": dict(self.tags),
            "data": dict(self.data),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Event":
        """Inverse of ``to_dict``."""
        return cls(
            id=d["id"],
            time=float(d["time"]),
            kind=d["kind"],
            source=Source(**d.get("source") or {"nick": ""}),
            target=d.get("target", ""),
            text=d.get("text", ""),
            tags=dict(d.get("tags") or {}),
            data=dict(d.get("data") or {}),
        )


# the slots' setters, which a frozen class's instances are built with (``Event.__init__``)
_set_id, _set_time, _set_kind, _set_source, _set_target, _set_text, _set_tags, _set_data = (
    Event.__dict__[name].__set__ for name in ("id", "time", "kind", "source", "target", "text", "tags", "data")
)


def redacted(event: Event, redaction: Event) -> Event:
    """``event`` as history keeps it once ``redaction`` (a REDACT) took it back: its id,
    time, kind, sender and conversation stay, so every protocol can show where it was;
    its text and client tags are gone, and ``data["redacted"]`` says who took it back,
    when and why."""
    data = dict(event.data)
    data[REDACTED] = {
        "id": redaction.id,
        "time": redaction.time,
        "by": redaction.source.nick,
        "reason": redaction.text,
    }
    return Event(event.id, event.time, event.kind, event.source, event.target, "", {}, data)


def iso_time(t: float) -> str:
    """Format epoch seconds as ISO 8601 UTC with milliseconds (truncated, as ``to_ms``)."""
    global _iso_second
    sec, micro = divmod(round(t * 1_000_000), 1_000_000)
    cached_sec, prefix = _iso_second
    if cached_sec != sec:
        # every event is stamped, and one second holds thousands of them: format the
        # date and time once per second, only the milliseconds per call
        prefix = time.strftime("%Y-%m-%dT%H:%M:%S.", time.gmtime(sec))
        _iso_second = (sec, prefix)
    return f"{prefix}{micro // 1000:03d}Z"


_iso_second: tuple[Optional[int], str] = (None, "")


def parse_iso_time(s: str) -> float:
    """Parse an ISO 8601 timestamp (``Z`` or offset) into epoch seconds."""
    if s.endswith("Z"):
        s = s[:-1] + "+00:00"
    dt = datetime.fromisoformat(s)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.timestamp()


def _b32hex(raw: bytes) -> str:
    return base64.b32hexencode(raw).decode("ascii").rstrip("=").lower()


_B32 = "0123456789abcdefghijklmnopqrstuv"  # base32hex, lower case
_B32_PAIRS = tuple(a + b for a in _B32 for b in _B32)  # every 10-bit value as 2 characters


class EventIds:
    """Makes unique, time-ordered ids (base32hex, so string order is time order): 48-bit
    milliseconds, 32-bit node, 32-bit sequence.

    Ids from one node sort in creation order; the node part keeps ids from several
    nodes (Redis backplane) distinct without coordination.
    """

    __slots__ = ("_node", "_node_chars", "_seq", "_clock", "_ms", "_prefix")

    def __init__(self, node: Optional[bytes] = None, clock: Callable[[], float] = time.time) -> None:
        self._node = node if node is not None else os.urandom(4)
        self._node_chars = _b32hex(bytes(6) + self._node)[10:16]
        self._seq = itertools.count(int.from_bytes(os.urandom(2), "big"))
        self._clock = clock
        self._ms: Optional[int] = None
        self._prefix = ""

    def next(self) -> tuple[str, float]:
        """Return a fresh ``(id, time)`` pair."""
        now = self._clock()
        ms = int(now * 1000)
        if ms != self._ms:
            # The 23 base32hex characters of ms(48) | node(32) | seq(32) | 3 zero bits
            # split at bit 80, a character boundary: the first 16 depend on the
            # millisecond and node only, the last 7 on the sequence number only.
            self._ms = ms
            self._prefix = _b32hex(ms.to_bytes(6, "big") + self._node + bytes(4))[:16]
        v = (next(self._seq) & 0xFFFFFFFF) << 3
        suffix = _B32_PAIRS[v >> 25] + _B32_PAIRS[(v >> 15) & 1023] + _B32_PAIRS[(v >> 5) & 1023] + _B32[v & 31]
        return self._prefix + suffix, now

    @property
    def tag(self) -> str:
        """The part of this node's ids that tells them from other nodes' (``node_of``)."""
        return self._node_chars

    def made_here(self, event_id: str) -> bool:
        """Whether ``event_id`` was made by this ``EventIds`` (``node_of``)."""
        return event_id[10:16] == self._node_chars

    @staticmethod
    def node_of(event_id: str) -> str:
        """The part of ``event_id`` that tells which ``EventIds`` (which node) made it:
        characters 10 to 15 hold the node's bits 2 to 31, which tells two nodes apart
        unless their random node parts share 30 bits."""
        return event_id[10:16]

    def make(
        self,
        kind: str,
        source: Source,
        target: str = "",
        text: str = "",
        tags: Optional[Mapping[str, str]] = None,
        data: Optional[Mapping[str, Any]] = None,
    ) -> Event:
        """Build an event stamped with a new id and the current time."""
        eid, now = self.next()
        return Event(eid, now, kind, source, target, text, tags, data)
