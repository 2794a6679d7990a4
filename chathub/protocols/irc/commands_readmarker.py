"""IRCv3 ``draft/read-marker``: MARKREAD, the last-read time of a channel or conversation.

The markers are the hub's (``ChatHub.read_marker``, ``mark_read``: the account's, shared
by its connections, else the connection's; only ever forward), shared with chathub.v1's
``markread``. When one moves, the user's other sessions with the capability get a
``MARKREAD`` (``IrcSession.read_marker_moved``).
"""
from __future__ import annotations

from typing import Optional

from chathub.events import iso_time, parse_iso_time
from chathub.protocols.irc import caps as C
from chathub.protocols.irc.table import command
from chathub.protocols.irc.wire import Message


def marker_message(session, target: str, when: Optional[float]) -> Message:
    """``MARKREAD <target> timestamp=...`` (or ``*`` when nothing is marked)."""
    value = "*" if when is None else f"timestamp={iso_time(when)}"
    return Message("MARKREAD", [target, value], session.server_name)


def on_join(session, room, rb) -> None:
    """The marker of a channel just joined (sent before 366)."""
    if C.READ_MARKER in session.caps:
        rb.add(marker_message(session, room.name, session.hub.read_marker(session.user, room.name)))


@command("MARKREAD", penalty=0.5)
def markread(session, msg: Message, rb):
    """MARKREAD <target> [timestamp=<time>]: read or move forward a read marker (once the
    account's stored markers, read at login, are in: later lines wait meanwhile)."""
    if not msg.params or not msg.params[0]:
        rb.fail("MARKREAD", "NEED_MORE_PARAMS", "Missing parameters")
        return None
    target = msg.params[0]
    hub, user = session.hub, session.user
    when: Optional[float] = None
    if len(msg.params) > 1:
        when = _parse(msg.params[1])
        if when is None:
            rb.fail("MARKREAD", "INVALID_PARAMS", msg.params[1], "Invalid timestamp")
            return None

    def answer(_: object = None) -> None:
        if when is not None:
            hub.mark_read(user, target, when)
        rb.add(marker_message(session, target, hub.read_marker(user, target)))

    return hub.markers_loaded(user).addCallback(answer)  # fired at once, nearly always


def _parse(value: str) -> Optional[float]:
    if not value.startswith("timestamp="):
        return None
    try:
        return parse_iso_time(value[len("timestamp=") :])
    except ValueError:
        return None

