"""Hub events as IRC messages, for a given set of negotiated capabilities.

``render(event, caps, server_name)`` is pure: its result depends only on the event and
on ``caps`` (a frozenset drawn from ``caps.RENDERING``), which is exactly what a
session's ``format_key`` captures, so fan-out can share the bytes between clients.
"""
from __future__ import annotations

from typing import Optional

from chathub.events import STATUSMSG, Event, Kind
from chathub.protocols.irc import caps as C
from chathub.protocols.irc.multiline import SOFT_BREAKS, text_messages
from chathub.protocols.irc.wire import MAX_BODY, MAX_TAGS, Message, format_tags


def source_of(event: Event, server_name: str) -> str:
    """The IRC prefix of an event: the server's name, or ``nick!user@host``."""
    src = event.source
    if src.protocol == "server" or not src.nick:
        return server_name
    return src.mask


def wire_target(event: Event) -> str:
    """The target a message shows: its room, with the STATUSMSG prefix it was sent to
    (``@#room``) for one that reached only the room's operators (or voiced members)."""
    data = event.data  # in a cluster a room message's data is never empty (``ChatHub._spoke``)
    return f"{data[STATUSMSG]}{event.target}" if data and STATUSMSG in data else event.target


def event_tags(event: Event, caps: frozenset) -> dict[str, str]:
    """The tags an event carries for a client with ``caps``."""
    tags: dict[str, str] = {}
    if C.MESSAGE_TAGS in caps:
        # client-only tags are relayed as given; msgid identifies the message
        for key, value in event.tags.items():
            if key.startswith("+") or key == "bot":
                tags[key] = value
        tags["msgid"] = event.id
    if C.SERVER_TIME in caps:
        tags["time"] = event.iso_time
    if C.ACCOUNT_TAG in caps and event.source.account:
        tags["account"] = event.source.account
    return tags


def render_lines(event: Event, caps: frozenset, server_name: str, direct: bool = False) -> list[Message]:
    """Every IRC message showing ``event``: a message too long for one line in several
    lines or a ``draft/multiline`` batch (``multiline.py``); a JOIN of someone away
    followed by AWAY."""
    if event.kind in Kind.TEXT_KINDS:
        target = wire_target(event) or "*" if event.kind == Kind.NOTICE else wire_target(event)
        return text_messages(event, caps, source_of(event, server_name), event_tags(event, caps), target)
    message = render(event, caps, server_name, direct)
    if message is None:
        return []
    if event.kind == Kind.JOIN and event.data.get("away") and C.AWAY_NOTIFY in caps:
        away = Message("AWAY", [event.data["away"]], message.source, event_tags(event, caps))
        return [message, away]
    return [message]


def one_text_line(event: Event, caps: frozenset, server_name: str) -> Optional[bytes]:
    """The wire form of a message or notice that is one line as it stands (no line break,
    no cut, no text UTF-8 cannot carry, tags within their limit): exactly the bytes of
    ``render_lines``' one message, made without building it. None for anything else (an
    action, a long or multi-line text, a taken-back message): ``render_lines`` shows it.

    Fan-out renders each message once per format, and on each node of a cluster: the
    general path (``text_messages``, a ``Message``, ``serialise``) took 1.7 us of it."""
    kind = event.kind
    if kind == Kind.MESSAGE:
        command = "PRIVMSG"
    elif kind == Kind.NOTICE:
        command = "NOTICE"
    else:
        return None
    text = event.text
    data = event.data
    if not text or "\n" in text or "\r" in text or (data and SOFT_BREAKS in data):
        return None
    target = wire_target(event)
    if kind == Kind.NOTICE:
        target = target or "*"
    source = source_of(event, server_name)
    try:
        body = f":{source} {command} {target} :{text}".encode() if source else f"{command} {target} :{text}".encode()
        if len(body) > MAX_BODY - 2:
            return None
        tags = event_tags(event, caps)
        if not tags:
            return body + b"\r\n"
        tag_bytes = b"@" + format_tags(tags).encode()
    except UnicodeEncodeError:
        return None
    if len(tag_bytes) + 1 > MAX_TAGS:
        return None
    return tag_bytes + b" " + body + b"\r\n"


def render(event: Event, caps: frozenset, server_name: str, direct: bool = False) -> Optional[Message]:
    """The IRC message showing ``event``, or None when a client with ``caps`` skips it.

    A message, action or notice is one line here, cut at the line limit when it is
    longer: ``render_lines`` is what shows it whole.

    ``direct`` is set for events delivered to one recipient only (an INVITE to its target),
    which are shown whatever the capabilities.
    """
    kind = event.kind
    source = source_of(event, server_name)
    tags = event_tags(event, caps)
    target = wire_target(event) if kind in Kind.REDACTABLE_KINDS else event.target
    if kind == Kind.MESSAGE:
        return Message("PRIVMSG", [target, event.text], source, tags)
    if kind == Kind.ACTION:
        return Message("PRIVMSG", [target, f"\x01ACTION {event.text}\x01"], source, tags)
    if kind == Kind.NOTICE:
        return Message("NOTICE", [target or "*", event.text], source, tags)
    if kind == Kind.TAGMSG:
        if C.MESSAGE_TAGS not in caps:
            return None
        return Message("TAGMSG", [target], source, tags)
    if kind == Kind.JOIN:
        if C.EXTENDED_JOIN in caps:
            account = event.data.get("account") or event.source.account or "*"
            return Message("JOIN", [target, account, event.source.realname], source, tags)
        return Message("JOIN", [target], source, tags)
    if kind == Kind.PART:
        params = [target, event.text] if event.text else [target]
        return Message("PART", params, source, tags)
    if kind == Kind.QUIT:
        return Message("QUIT", [event.text or "Quit"], source, tags)
    if kind == Kind.KICK:
        return Message("KICK", [target, event.data["nick"], event.text], source, tags)
    if kind == Kind.TOPIC:
        return Message("TOPIC", [target, event.text], source, tags)
    if kind == Kind.NICK:
        return Message("NICK", [event.data["new"]], source, tags)
    if kind == Kind.MODE:
        letters, args = mode_change_params(event.data.get("changes", ()))
        return Message("MODE", [target, letters, *args], source, tags)
    if kind == Kind.AWAY:
        if C.AWAY_NOTIFY not in caps:
            return None
        return Message("AWAY", [event.text] if event.text else [], source, tags)
    if kind == Kind.INVITE:
        if not direct and C.INVITE_NOTIFY not in caps:
            return None
        return Message("INVITE", [event.data["nick"], target], source, tags)
    if kind == Kind.CHGHOST:
        if C.CHGHOST not in caps:
            return None
        return Message("CHGHOST", [event.data["user"], event.data["host"]], source, tags)
    if kind == Kind.SETNAME:
        if C.SETNAME not in caps:
            return None
        return Message("SETNAME", [event.text], source, tags)
    if kind == Kind.RENAME:
        # without the capability a live rename is a PART and a JOIN naming the client
        # (``commands_rename``); in history it is not shown
        if C.CHANNEL_RENAME not in caps:
            return None
        return Message("RENAME", [target, event.data.get("new", ""), event.text], source, tags)
    if kind == Kind.REDACT:
        if not direct and C.MESSAGE_REDACTION not in caps:
            return None  # the specification: never to a client without the capability
        params = [target, str(event.data.get("msgid", ""))]
        return Message("REDACT", [*params, event.text] if event.text else params, source, tags)
    if kind == Kind.WALLOPS:
        return Message("WALLOPS", [event.text], source, tags)
    if kind == Kind.ACCOUNT:
        if C.ACCOUNT_NOTIFY not in caps:
            return None
        return Message("ACCOUNT", [event.data.get("account") or "*"], source, tags)
    return None


def mode_change_params(changes) -> tuple[str, list[str]]:
    """``[("+o", "bob"), ("+m", None), ("-v", "al")]`` -> ``("+om-v", ["bob", "al"])``."""
    letters = ""
    sign = ""
    args: list[str] = []
    for change, arg in changes:
        if change[0] != sign:
            sign = change[0]
            letters += sign
        letters += change[1]
        if arg is not None:
            args.append(arg)
    return letters, args
