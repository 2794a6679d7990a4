"""IRCv3 ``draft/read-marker``: MARKREAD, the last-read time of a channel or conversation.

Markers belong to the account when the user is logged in (shared by its connections,
kept by the ``IrcServer``: ``server.read_markers``), else to the connection. A marker
only ever moves forward. They are kept in memory.
"""
from __future__ import annotations

from typing import Optional

from chathub.events import iso_time, parse_iso_time
from chathub.names import fold
from chathub.protocols.irc import caps as C
from chathub.protocols.irc.table import command
from chathub.protocols.irc.wire import Message


def _markers(session) -> dict[str, float]:
    account = session.user.account if session.user is not None else None
    if account is None:
        return session.read_markers
    return session.server.read_markers.setdefault(fold(account), {})


def marker_message(session, target: str) -> Message:
    """``MARKREAD <target> timestamp=...`` (or ``*`` when nothing is marked)."""
    when = _markers(session).get(fold(target))
    value = "*" if when is None else f"timestamp={iso_time(when)}"
    return Message("MARKREAD", [target, value], session.server_name)


def on_join(session, room, rb) -> None:
    """The marker of a channel just joined (sent before 366)."""
    if C.READ_MARKER in session.caps:
        rb.add(marker_message(session, room.name))


@command("MARKREAD", penalty=0.5)
def markread(session, msg: Message, rb) -> None:
    """MARKREAD <target> [timestamp=<time>]: read or move forward a read marker."""
    if not msg.params or not msg.params[0]:
        rb.fail("MARKREAD", "NEED_MORE_PARAMS", "Missing parameters")
        return
    target = msg.params[0]
    if len(msg.params) > 1:
        when = _parse(msg.params[1])
        if when is None:
            rb.fail("MARKREAD", "INVALID_PARAMS", msg.params[1], "Invalid timestamp")
            return
        markers = _markers(session)
        key = fold(target)
        if when > markers.get(key, float("-inf")):
            markers[key] = when
            _tell_other_sessions(session, target)
    rb.add(marker_message(session, target))


def _tell_other_sessions(session, target: str) -> None:
    """A marker moved: the user's other IRC sessions with the capability hear of it
    (``[auth] multiclient``), as the specification asks for every client of the user."""
    user = session.user
    if user is None or not user.others:
        return
    for other in user.sessions:
        if other is not session and _wants_markers(other):
            other.write_messages([marker_message(other, target)])


def _wants_markers(participant) -> bool:
    """Whether ``participant`` is an IRC session that asked for draft/read-marker."""
    return C.READ_MARKER in getattr(participant, "caps", ()) and hasattr(participant, "write_messages")


def _parse(value: str) -> Optional[float]:
    if not value.startswith("timestamp="):
        return None
    try:
        return parse_iso_time(value[len("timestamp=") :])
    except ValueError:
        return None
