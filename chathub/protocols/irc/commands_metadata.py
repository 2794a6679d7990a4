"""IRCv3 ``draft/metadata-3``: key/value metadata on users and channels (METADATA).

``METADATA <target> GET|LIST|SET|CLEAR|SUB|UNSUB|SUBS|SYNC ...``. Users set their own
metadata (``*`` or their nick), channel operators their channel's; anyone who could see
the user or channel may read it. Subscribers (``SUB``) sharing a channel hear of changes
and get the metadata of channels they join and of those already in them.

Metadata lives in memory, in the ``IrcServer`` (``server.metadata``), for as long as its
user is connected or its channel exists (the hub says when a channel ends: the
``ROOM_ENDED`` hook); it is kept per hub object (a new user of the same nick, or a new
channel of the same name, starts empty).
"""
from __future__ import annotations

import re
from typing import TYPE_CHECKING, Optional, cast

from chathub.names import is_room_name
from chathub.protocols.irc import caps as C
from chathub.protocols.irc.table import REGISTERED, ROOM_ENDED, ROOM_RENAMED, SIGNED_OFF, command, hook
from chathub.protocols.irc.wire import Message

if TYPE_CHECKING:
    from chathub.hub.rooms import Room
    from chathub.hub.users import User
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


@hook(ROOM_ENDED)
def forget_room(server: "IrcServer", room: "Room") -> None:
    """A channel's metadata ends with the channel."""
    store = server.metadata
    entry = store.get(("room", room.folded))
    if entry is not None and entry[0] is room:
        del store[("room", room.folded)]


@hook(ROOM_RENAMED)
def follow_rename(server: "IrcServer", room: "Room", old_folded: str) -> None:
    """A channel's metadata goes with it to its new name."""
    store = server.metadata
    entry = store.get(("room", old_folded))
    if entry is not None and entry[0] is room:
        del store[("room", old_folded)]
        store[("room", room.folded)] = entry


def metadata_of(server: "IrcServer", thing) -> dict[str, str]:
    """The metadata dict of a hub ``User`` or ``Room`` (created empty)."""
    kind = "room" if hasattr(thing, "members") else "user"
    name = thing.folded
    store = server.metadata
    entry = store.get((kind, name))
    if entry is None or entry[0] is not thing:
        entry = store[(kind, name)] = (thing, {})
    return entry[1]


def peek_metadata(server: "IrcServer", thing) -> dict[str, str]:
    """The metadata of ``thing`` without creating any."""
    kind = "room" if hasattr(thing, "members") else "user"
    entry = server.metadata.get((kind, thing.folded))
    return entry[1] if entry is not None and entry[0] is thing else {}


@hook(SIGNED_OFF)
def forget_user(session, user) -> None:
    """Drop a user's metadata (they left)."""
    session.server.metadata.pop(("user", user.folded), None)


def follow_nick_change(server: "IrcServer", user: "User", old_folded: str) -> None:
    """Keep a user's metadata under their new nick."""
    store = server.metadata
    entry = store.pop(("user", old_folded), None)
    if entry is not None and entry[0] is user:
        store[("user", cast(str, user.folded))] = entry  # renamed: signed on


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


def _values(session, target: _Target) -> dict[str, str]:
    if target.thing is None:
        return session.pending_metadata  # before registration
    return metadata_of(session.server, target.thing)


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


def _subscribers(session, target: _Target, key: str):
    """Other sessions subscribed to ``key`` that share a channel with the target."""
    if target.room is not None:
        users = list(target.room.users())
    else:
        users = []
        seen = set()
        for room in target.thing.rooms.values():
            for u in room.users():
                if id(u) not in seen:
                    seen.add(id(u))
                    users.append(u)
    for user in users:
        if user is target.thing:
            continue
        for other in user.sessions:  # each session of a user with several (multiclient)
            if other is session:
                continue
            subs = getattr(other, "metadata_subs", None)
            if subs and key in subs and "draft/metadata-3" in getattr(other, "caps", ()):
                yield other


def _notify(session, target: _Target, key: str, value: Optional[str]) -> None:
    for other in _subscribers(session, target, key):
        if value is None:
            message = other.numeric(RPL_KEYNOTSET, target.name, key, "key not set")
        else:
            message = other.numeric(RPL_KEYVALUE, target.name, key, "*", value)
        session.hub.after_delivery(lambda o=other, m=message: o.write_messages([m]))


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
            values.pop(key, None)
            rb.add(_notset(session, target.name, key))
            if target.thing is not None:
                _notify(session, target, key, None)
            return
        value = args[1]
        if len(value.encode("utf-8")) > MAX_VALUE_BYTES:
            rb.fail("METADATA", "INVALID_VALUE", key, "Value too long")
            return
        if key not in values and len(values) >= MAX_KEYS:
            rb.fail("METADATA", "LIMIT_REACHED", target.name, "Too many keys")
            return
        values[key] = value
        rb.add(_keyvalue(session, target.name, key, value))
        if target.thing is not None:
            _notify(session, target, key, value)
    elif sub == "CLEAR":
        if target.thing is not None and not _may_edit(session, target):
            rb.fail("METADATA", "KEY_NO_PERMISSION", target.name, "*", "You may not change this")
            return
        keys = sorted(values)
        values.clear()
        _batch(session, rb, target.name, [_notset(session, target.name, k) for k in keys])
        if target.thing is not None:
            for key in keys:
                _notify(session, target, key, None)
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
    server = session.server
    replies = []
    for key, value in sorted(peek_metadata(server, room).items()):
        if key in subs:
            replies.append(_keyvalue(session, room.name, key, value))
    for user in room.users():
        if user is session.user:
            continue
        for key, value in sorted(peek_metadata(server, user).items()):
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
    values = metadata_of(session.server, session.user)
    values.update(pending)
    pending.clear()
    _batch(
        session,
        rb,
        session.user.nick,
        [_keyvalue(session, session.user.nick, k, v) for k, v in sorted(values.items())],
    )


def whois_lines(session, user, rb) -> None:
    """760 lines for WHOIS."""
    for key, value in sorted(peek_metadata(session.server, user).items()):
        rb.numeric(RPL_WHOISKEYVALUE, user.nick, key, "*", value)
