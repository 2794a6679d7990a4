"""IRCv3 ``draft/metadata-3``: key/value metadata on users and channels (METADATA).

``METADATA <target> GET|LIST|SET|CLEAR|SUB|UNSUB|SUBS|SYNC ...``. Users set their own
metadata (``*`` or their nick), channel operators their channel's; anyone who could see
the user or channel may read it. Subscribers (``SUB``) sharing a channel hear of changes
and get the metadata of channels they join and of those already in them.

Metadata is the hub's (``chathub.hub.metadata``), held in memory on the hub's user and room
objects for as long as its user is connected or its channel exists (a new user of the same
nick, or a new channel of the same name, starts empty), and in a cluster on every node. Who
may set what, and the bounds, are checked here.
"""
from __future__ import annotations

import re
from functools import partial
from typing import TYPE_CHECKING, Mapping, Optional

from chathub.names import is_room_name
from chathub.protocols.irc import caps as C
from chathub.protocols.irc.table import METADATA_CHANGED, REGISTERED, command, hook
from chathub.protocols.irc.wire import Message

if TYPE_CHECKING:
    from chathub.protocols.irc.server import IrcServer

RPL_WHOISKEYVALUE = "760"
RPL_KEYVALUE = "761"
RPL_KEYNOTSET = "766"
RPL_METADATASUBOK = "770"
RPL_METADATAUNSUBOK = "771"
RPL_METADATASUBS = "772"

MAX_KEYS = C.METADATA_MAX_KEYS
MAX_SUBS = C.METADATA_MAX_SUBS
MAX_VALUE_BYTES = C.METADATA_MAX_VALUE_BYTES
_KEY = re.compile(r"[a-z0-9_./\-]+\Z")


@hook(METADATA_CHANGED)
def tell_subscribers(server: "IrcServer", thing, key: str, value: Optional[str], by) -> None:
    """A key of a user's or channel's metadata changed (here or on another node of a
    cluster): the other sessions subscribed to it that share a channel with it are told."""
    name = thing.name if hasattr(thing, "members") else thing.nick
    for other in _subscribers(thing, key, by):
        if value is None:
            message = other.numeric(RPL_KEYNOTSET, name, key, "key not set")
        else:
            message = other.numeric(RPL_KEYVALUE, name, key, "*", value)
        server.hub.after_delivery(partial(other.write_messages, [message]), other.user)


class _Target:
    __slots__ = ("name", "thing", "room")

    def __init__(self, name, thing, room) -> None:
        self.name = name
        self.thing = thing
        self.room = room


def _resolve(session, target: str) -> Optional[_Target]:
    hub = session.hub
    if target == "*":
        return _Target(session.nick or "*", session.user if session.registered else None, None)
    if is_room_name(target):
        room = hub.find_room(target)
        if room is None:
            return None
        if room.secret or "i" in room.modes:
            if session.user is None or session.user not in room:
                return None
        return _Target(room.name, room, room)
    user = hub.find_user(target)
    if user is None:
        return None
    return _Target(user.nick, user, None)


def _values(session, target: _Target) -> Mapping[str, str]:
    if target.thing is None:
        return session.pending_metadata  # before registration
    return session.hub.metadata.values(target.thing)


def _set(session, target: _Target, key: str, value: Optional[str]) -> None:
    """Set (or with None unset) ``key`` of ``target``: the hub's, which tells the
    subscribers (``tell_subscribers``), or the client's own before registration."""
    if target.thing is None:
        if value is None:
            session.pending_metadata.pop(key, None)
        else:
            session.pending_metadata[key] = value
        return
    session.hub.metadata.set(target.thing, key, value, by=session)


def _batch(session, rb, target_name: str, messages: list[Message]) -> None:
    """Replies to GET/LIST/CLEAR/SYNC go in a ``metadata`` batch (with ``batch``)."""
    if C.BATCH not in session.caps:
        for m in messages:
            rb.add(m)
        return
    ref = session.server.batch_ref("M")
    rb.add(Message("BATCH", [f"+{ref}", "metadata", target_name], session.server_name))
    for m in messages:
        rb.add(m.with_tags(batch=ref))
    rb.add(Message("BATCH", [f"-{ref}"], session.server_name))


def _keyvalue(session, target_name: str, key: str, value: str) -> Message:
    return session.numeric(RPL_KEYVALUE, target_name, key, "*", value)


def _notset(session, target_name: str, key: str) -> Message:
    return session.numeric(RPL_KEYNOTSET, target_name, key, "key not set")


def _may_edit(session, target: _Target) -> bool:
    if target.room is not None:
        member = target.room.member(session.user) if session.user is not None else None
        return member is not None and member.is_operator
    return target.thing is session.user


def _subscribers(thing, key: str, by):
    """This node's sessions subscribed to ``key`` that share a channel with ``thing`` (a
    hub user or room), but ``thing``'s own and the setter's session ``by``."""
    if hasattr(thing, "members"):
        users = list(thing.users())
    else:
        users = []
        seen = set()
        for room in thing.rooms.values():
            for u in room.users():
                if id(u) not in seen:
                    seen.add(id(u))
                    users.append(u)
    for user in users:
        if user is thing:
            continue
        for other in user.sessions:  # each session of a user with several (multiclient)
            if other is by:
                continue
            subs = getattr(other, "metadata_subs", None)
            if subs and key in subs and "draft/metadata-3" in getattr(other, "caps", ()):
                yield other


@command("METADATA", before_registration=True, min_params=2)
def metadata(session, msg: Message, rb) -> None:
    """METADATA <target> GET|LIST|SET|CLEAR|SUB|UNSUB|SUBS|SYNC [...] (draft/metadata-3)."""
    target_name, sub = msg.params[0], msg.params[1].upper()
    args = msg.params[2:]
    if sub in ("SUB", "UNSUB", "SUBS"):
        _subscriptions(session, rb, sub, args)
        return
    if not session.registered and target_name != "*":
        rb.fail("METADATA", "INVALID_TARGET", target_name, "Only * before registration")
        return
    target = _resolve(session, target_name)
    if target is None:
        rb.fail("METADATA", "INVALID_TARGET", target_name, "Invalid target")
        return
    values = _values(session, target)
    if sub == "GET":
        if not args:
            rb.fail("METADATA", "INVALID_PARAMS", "GET", "No keys given")
            return
        replies = []
        for key in args:
            if not _KEY.match(key):
                rb.fail("METADATA", "KEY_INVALID", key, "Invalid key")
            elif key in values:
                replies.append(_keyvalue(session, target.name, key, values[key]))
            else:
                replies.append(_notset(session, target.name, key))
        _batch(session, rb, target.name, replies)
    elif sub in ("LIST", "SYNC"):
        keys = sorted(values) if sub == "LIST" else sorted(k for k in values if k in session.metadata_subs)
        _batch(session, rb, target.name, [_keyvalue(session, target.name, k, values[k]) for k in keys])
    elif sub == "SET":
        if not args:
            rb.fail("METADATA", "INVALID_PARAMS", "SET", "No key given")
            return
        key = args[0]
        if not _KEY.match(key):
            rb.fail("METADATA", "KEY_INVALID", key, "Invalid key")
            return
        if target.thing is not None and not _may_edit(session, target):
            rb.fail("METADATA", "KEY_NO_PERMISSION", target.name, key, "You may not change this")
            return
        if len(args) < 2:
            _set(session, target, key, None)
            rb.add(_notset(session, target.name, key))
            return
        value = args[1]
        if len(value.encode("utf-8")) > MAX_VALUE_BYTES:
            rb.fail("METADATA", "INVALID_VALUE", key, "Value too long")
            return
        if key not in values and len(values) >= MAX_KEYS:
            rb.fail("METADATA", "LIMIT_REACHED", target.name, "Too many keys")
            return
        _set(session, target, key, value)
        rb.add(_keyvalue(session, target.name, key, value))
    elif sub == "CLEAR":
        if target.thing is not None and not _may_edit(session, target):
            rb.fail("METADATA", "KEY_NO_PERMISSION", target.name, "*", "You may not change this")
            return
        keys = sorted(values)
        if target.thing is None:
            session.pending_metadata.clear()
        else:
            session.hub.metadata.clear(target.thing, by=session)
        _batch(session, rb, target.name, [_notset(session, target.name, k) for k in keys])
    else:
        rb.fail("METADATA", "SUBCOMMAND_INVALID", msg.params[1], "Unknown METADATA subcommand")


def _subscriptions(session, rb, sub: str, keys: list[str]) -> None:
    subs = session.metadata_subs
    if sub == "SUBS":
        listed = sorted(subs)
        for i in range(0, len(listed), 10):
            rb.numeric(RPL_METADATASUBS, *listed[i : i + 10])
        return
    if not keys:
        rb.fail("METADATA", "INVALID_PARAMS", sub, "No keys given")
        return
    done = []
    for key in keys:
        if not _KEY.match(key):
            rb.fail("METADATA", "KEY_INVALID", key, "Invalid key")
            continue
        if sub == "SUB":
            if key not in subs and len(subs) >= MAX_SUBS:
                rb.fail("METADATA", "TOO_MANY_SUBS", key, "Too many subscriptions")
                continue
            subs.add(key)
        else:
            subs.discard(key)
        done.append(key)
    if done:
        rb.numeric(RPL_METADATASUBOK if sub == "SUB" else RPL_METADATAUNSUBOK, *done)


def on_join(session, room, rb) -> None:
    """After our JOIN: the room's and its members' subscribed metadata."""
    subs = session.metadata_subs
    if not subs or "draft/metadata-3" not in session.caps:
        return
    values = session.hub.metadata.values
    replies = []
    for key, value in sorted(values(room).items()):
        if key in subs:
            replies.append(_keyvalue(session, room.name, key, value))
    for user in room.users():
        if user is session.user:
            continue
        for key, value in sorted(values(user).items()):
            if key in subs:
                replies.append(_keyvalue(session, user.nick, key, value))
    if replies:
        _batch(session, rb, room.name, replies)


@hook(REGISTERED)
def on_registered(session, rb) -> None:
    """At the end of registration: adopt what was SET before it, and show it."""
    if not session.has_pending_metadata:
        return  # (without making an empty dict for every connection)
    pending = session.pending_metadata
    metadata = session.hub.metadata
    metadata.update(session.user, sorted(pending.items()), by=session)
    pending.clear()
    values = metadata.values(session.user)
    _batch(
        session,
        rb,
        session.user.nick,
        [_keyvalue(session, session.user.nick, k, v) for k, v in sorted(values.items())],
    )


def whois_lines(session, user, rb) -> None:
    """760 lines for WHOIS."""
    for key, value in sorted(session.hub.metadata.values(user).items()):
        rb.numeric(RPL_WHOISKEYVALUE, user.nick, key, "*", value)
