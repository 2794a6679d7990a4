"""IRCv3 ``draft/chathistory`` (with ``draft/event-playback``): CHATHISTORY.

``CHATHISTORY LATEST|BEFORE|AFTER|AROUND <target> <ref> <limit>``,
``CHATHISTORY BETWEEN <target> <ref> <ref> <limit>`` and
``CHATHISTORY TARGETS <timestamp> <timestamp> <limit>``, where a reference is
``msgid=<id>``, ``timestamp=<ISO 8601>`` or (LATEST only) ``*``.

History comes through the hub from its store (the same history telnet and web users read),
so a message shows with the msgid and time every client saw live. Replies go in a
``chathistory`` batch (``draft/chathistory-targets`` for TARGETS) when the client has
``batch``; without it the same lines come unbatched, as the specification allows.
Refusals are standard-replies ``FAIL CHATHISTORY <code> <subcommand> ...`` lines.

``replay_on_join``: the last ``[history] join_replay`` lines of a room after its JOIN, as
telnet and web users get them (Ergo's autoreplay), for clients that do not fetch history
themselves (docs/irc.md, "History replay on JOIN").
"""
from __future__ import annotations

import dataclasses
import math
import time
from typing import Literal, Optional, Union, overload

from twisted.internet import defer
from twisted.logger import Logger

from chathub.events import REDACTED, Event, Kind, iso_time, parse_iso_time
from chathub.hub import errors
from chathub.hub.names import RESERVED_NICKS
from chathub.hub.outbox import Receipt
from chathub.names import fold, is_room_name, valid_nick
from chathub.protocols.irc import caps as C
from chathub.protocols.irc.render import render, render_lines
from chathub.protocols.irc.table import command
from chathub.protocols.irc.wire import Message

log = Logger()

#: what a client without draft/event-playback gets: PRIVMSG (and ACTION) and NOTICE only
MESSAGE_KINDS = frozenset({Kind.MESSAGE, Kind.ACTION, Kind.NOTICE})
#: subcommands that read one conversation, with the number of references each takes
SUBCOMMANDS = {"LATEST": 1, "BEFORE": 1, "AFTER": 1, "AROUND": 1, "BETWEEN": 2}
MSGREFTYPES = ("msgid", "timestamp")

Ref = Union[tuple[str, str], tuple[str, float]]


class BadParams(Exception):
    """A CHATHISTORY parameter we cannot take: ``code`` and the FAIL's context and text."""

    def __init__(self, code: str, *context_and_text: str) -> None:
        super().__init__(context_and_text[-1])
        self.code = code
        self.context_and_text = context_and_text


def isupport_tokens(config) -> list[str]:
    """``CHATHISTORY=<limit>`` and ``MSGREFTYPES``, when this server keeps history."""
    if not config.history.enabled:
        return []
    return [f"CHATHISTORY={config.history.query_limit}", "MSGREFTYPES=" + ",".join(MSGREFTYPES)]


@overload
def parse_ref(sub: str, text: str, star_ok: Literal[False] = False) -> Ref: ...
@overload
def parse_ref(sub: str, text: str, star_ok: bool) -> Optional[Ref]: ...


def parse_ref(sub: str, text: str, star_ok: bool = False) -> Optional[Ref]:
    """``msgid=x`` / ``timestamp=...`` -> a store reference; ``*`` -> None where allowed."""
    if text == "*" and star_ok:
        return None
    kind, sep, value = text.partition("=")
    kind = kind.lower()
    if not sep or not value:
        raise BadParams("INVALID_PARAMS", sub, text, "Invalid message reference")
    if kind == "msgid":
        return ("msgid", value)
    if kind == "timestamp":
        try:
            when = parse_iso_time(value)
        except (ValueError, OverflowError) as e:
            raise BadParams("INVALID_PARAMS", sub, text, "Invalid timestamp") from e
        if not math.isfinite(when):
            raise BadParams("INVALID_PARAMS", sub, text, "Invalid timestamp")
        return ("timestamp", when)
    raise BadParams("INVALID_MSGREFTYPE", sub, text, f"{kind}-based history requests are not supported")


def parse_limit(sub: str, text: str, maximum: int) -> int:
    """A non-negative integer, capped at ``maximum`` (0 asks for the server's maximum)."""
    if not (text.isascii() and text.isdigit()):  # int() refuses some Unicode digits ('²')
        raise BadParams("INVALID_PARAMS", sub, text, "Invalid limit")
    limit = int(text)
    return maximum if limit == 0 or limit > maximum else limit


def resolve_target(session, sub: str, target: str) -> str:
    """The conversation ``target`` names, as the batch names it, or ``INVALID_TARGET``.

    A room must exist and the user must be in it (so history never leaks past bans,
    keys or +i); a nick names the private conversation between the user and that nick,
    which only its two parties can read (the store keys it by both nicks).
    """
    if is_room_name(target):
        room = session.hub.find_room(target)
        if room is not None and session.user.folded in room.members:
            return room.name
    elif valid_nick(target, session.config.limits.nick_length) and fold(target) not in RESERVED_NICKS:
        # named as the client named it: the party may have left or be someone else by now
        return target
    raise BadParams("INVALID_TARGET", sub, target, "Messages could not be retrieved")


@command("CHATHISTORY", min_params=0, penalty=2.0)
def chathistory(session, msg: Message, rb) -> Optional[defer.Deferred]:
    """CHATHISTORY <subcommand> ...: a page of a room's or a private conversation's history."""
    params = msg.params
    sub = params[0].upper() if params else "*"
    try:
        if not params:
            raise BadParams("INVALID_PARAMS", "*", "Insufficient parameters")
        hub = session.hub
        if not hub.history_available:
            target = params[1] if len(params) > 1 and sub != "TARGETS" else "*"
            raise BadParams("MESSAGE_ERROR", sub, target, "History is not kept on this server")
        maximum = session.config.history.query_limit
        if sub == "TARGETS":
            return _targets(session, params, maximum, rb)
        refs = SUBCOMMANDS.get(sub)
        if refs is None:
            raise BadParams("INVALID_PARAMS", params[0], "Unknown command")
        wanted = 2 + refs + 1
        if len(params) < wanted:
            raise BadParams("INVALID_PARAMS", sub, "Insufficient parameters")
        if len(params) > wanted:
            raise BadParams("INVALID_PARAMS", sub, "Too many parameters")
        target = params[1]
        # BEFORE * is what Kiwi IRC sends for LATEST *: accept it as such
        first = parse_ref(sub, params[2], star_ok=sub in ("LATEST", "BEFORE"))
        second = parse_ref(sub, params[3]) if refs == 2 else None
        limit = parse_limit(sub, params[-1], maximum)
        name = resolve_target(session, sub, target)
    except BadParams as e:
        rb.fail("CHATHISTORY", e.code, *e.context_and_text)
        return None

    playback = C.EVENT_PLAYBACK in session.caps
    kinds = None if playback else MESSAGE_KINDS
    query = "latest" if sub == "BEFORE" and first is None else sub.lower()
    query_refs = (first,) if second is None else (first, second)
    d = hub.history(session.user, query, name, *query_refs, limit=limit, kinds=kinds)
    d.addCallbacks(
        _replay,
        _query_failed,
        callbackArgs=(session, rb, name),
        errbackArgs=(session, rb, sub, name),
    )
    return d


def _replay(events, session, rb, name: str) -> None:
    """Each event as the line it was, with its msgid and time, in a chathistory batch."""
    _batched(session, rb, ["chathistory", name], _rendered(events, C.rendering(session.caps), session.server_name))


def _batched(session, rb, batch_params: list[str], lines: list[Message]) -> None:
    for line in _batch(session, batch_params, lines):
        rb.add(line)


def _batch(session, batch_params: list[str], lines: list[Message]) -> list[Message]:
    """``lines`` in a batch of ``batch_params`` for a client with ``batch``, else as they are."""
    if C.BATCH not in session.caps:
        return lines
    ref = session.server.batch_ref("h")
    return [
        Message("BATCH", [f"+{ref}", *batch_params], session.server_name),
        # a multiline batch's lines keep their own batch (its opening line joins this one)
        *(line if "batch" in line.tags else line.with_tags(batch=ref) for line in lines),
        Message("BATCH", [f"-{ref}"], session.server_name),
    ]


def replay_on_join(session, name: str, joined: Event, rb, receipt: Optional[Receipt] = None) -> None:
    """After the JOIN ``joined`` of room ``name``, the room's last ``[history] join_replay``
    chat lines numbered before it (history's BEFORE that JOIN: the latest lines, read once
    the join is answered, may all be later ones in a busy room, and the replay came out
    short or empty; in a cluster, the lines numbered before it are not shown live to the
    joiner, ``IrcSession.joining``, and come here, whatever their times): in a
    ``chathistory`` batch with their times for a client with ``batch`` and
    ``server-time``, else as plain lines whose text starts with
    the time. Skipped with ``[irc] join_replay`` off and for clients that negotiated
    ``draft/chathistory``: they ask for what they want (CHATHISTORY LATEST) and would
    otherwise get every line twice. With the join's ``receipt`` (a cluster's join, checked
    at its number), none when the join is found void: the client gets the refusal alone."""
    hub, config = session.hub, session.config
    limit = config.history.join_replay
    if not config.irc.join_replay or limit <= 0 or C.CHATHISTORY in session.caps or not hub.history_available:
        return
    # until the JOIN's reply is written the replay goes into it; from then until the replay
    # is in, the connection's output is held behind the replay's place (``HeldOutput``), so
    # a line said in the room meanwhile comes after the replay, not before it
    state: dict = {"answered": False, "written": False, "place": None}

    def void() -> bool:
        # known once the reply is written: the buffer waits for the join's verdict
        return receipt is not None and receipt.error is not None

    def replay(events) -> None:
        state["answered"] = True
        try:
            lines = _replay_lines(session, name, events)
        except Exception:
            log.failure("join replay of {room} failed", room=name)
            lines = []  # its place is let go at once: nothing else waits for it
        place = state["place"]
        if not state["written"]:  # into the JOIN's reply, unless the verdict voids the join
            rb.later(lambda: [] if void() else lines)
        elif place is not None:
            if void():
                lines = []
            if not place[0].fill(place[1], b"".join([line.to_bytes() for line in lines])) and lines:
                if not session.closed:  # too late for its place (``HeldOutput.give_up``)
                    hub.after_delivery(lambda: session.write_messages(lines), session.user)

    def failed(failure) -> None:
        log.failure("join replay of {room} failed", failure, room=name)
        replay([])

    def written() -> None:
        state["written"] = True
        if not state["answered"] and not session.closed and not void():
            state["place"] = session.output_slot()

    rb.after_flush(written)
    hub.recent_history(session.user, name, limit, before=joined).addCallbacks(replay, failed)


def _replay_lines(session, name: str, events) -> list[Message]:
    """The lines replaying ``events``: none at all when nothing shows (no empty batch,
    which could only reach the client after the room's first live lines)."""
    caps = C.rendering(session.caps)
    server = session.server_name
    if C.BATCH in session.caps and C.SERVER_TIME in session.caps:
        lines = _rendered(events, caps, server)
        return _batch(session, ["chathistory", name], lines) if lines else []
    stamped = [
        dataclasses.replace(event, text=f"[{time.strftime('%Y-%m-%d %H:%M', time.gmtime(event.time))}] {event.text}")
        for event in events
    ]
    return _rendered(stamped, caps, server)


def _rendered(events, caps, server: str) -> list[Message]:
    """Each event as the line (a long message: the lines) it was live; a message taken back
    (REDACT) is left out entirely, one of the specification's choices (a client with
    draft/event-playback gets the REDACT itself)."""
    lines: list[Message] = []
    for event in events:
        if REDACTED in event.data:
            continue
        if event.kind in Kind.TEXT_KINDS:
            lines.extend(render_lines(event, caps, server))
        else:
            line = render(event, caps, server)
            if line is not None:
                lines.append(line)
    return lines


def _query_failed(failure, session, rb, sub: str, target: str) -> None:
    if failure.check(errors.NoSuchMessage):
        rb.fail("CHATHISTORY", "MESSAGE_ERROR", sub, target, "No such message in this conversation")
    elif failure.check(ValueError):
        rb.fail("CHATHISTORY", "INVALID_PARAMS", sub, target, "Invalid message reference")
    else:
        if failure.check(errors.StorageFailed):
            log.error("history query failed: {error}", error=failure.value.message)
        else:
            log.failure("history query failed", failure)
        rb.fail("CHATHISTORY", "MESSAGE_ERROR", sub, target, "Messages could not be retrieved")


def _targets(session, params: list[str], maximum: int, rb) -> defer.Deferred:
    """TARGETS <timestamp> <timestamp> <limit>: conversations active between the two times."""
    if len(params) < 4:
        raise BadParams("INVALID_PARAMS", "TARGETS", "Insufficient parameters")
    if len(params) > 4:
        raise BadParams("INVALID_PARAMS", "TARGETS", "Too many parameters")
    times = []
    for text in params[1:3]:
        ref = parse_ref("TARGETS", text)
        if ref[0] != "timestamp":
            raise BadParams("INVALID_PARAMS", "TARGETS", text, "TARGETS takes timestamps")
        times.append(ref[1])
    limit = parse_limit("TARGETS", params[3], maximum)
    playback = C.EVENT_PLAYBACK in session.caps
    d = session.hub.history_targets(session.user, times[0], times[1], limit, None if playback else MESSAGE_KINDS)

    def listed(found) -> None:
        lines = [
            Message("CHATHISTORY", ["TARGETS", name, iso_time(latest)], session.server_name)
            for name, latest in found
        ]
        _batched(session, rb, ["draft/chathistory-targets"], lines)

    d.addCallbacks(listed, _query_failed, errbackArgs=(session, rb, "TARGETS", "*"))
    return d
