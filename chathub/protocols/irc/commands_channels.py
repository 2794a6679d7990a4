"""Channel commands: JOIN, PART, TOPIC, NAMES, LIST, MODE, KICK, INVITE.

Permissions (ops, voice, +i +k +l +b ...) are the hub's: these handlers translate the
request, call the hub and show the outcome; a refusal comes back as a ``HubError``.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Optional

from twisted.internet import defer

from chathub.events import Event, Kind
from chathub.hub import errors
from chathub.hub.masks import mask_matches
from chathub.hub.modes import parse_room_modes
from chathub.hub.outbox import Receipt
from chathub.hub.rooms import LIST_MODES
from chathub.names import fold, is_room_name
from chathub.protocols.irc import caps as C
from chathub.protocols.irc import numerics as N
from chathub.protocols.irc.commands_history import replay_on_join
from chathub.protocols.irc.commands_metadata import on_join as metadata_on_join
from chathub.protocols.irc.commands_readmarker import on_join as markread_on_join
from chathub.protocols.irc.commands_server import MAX_MODE_PARAMS
from chathub.protocols.irc.render import mode_change_params
from chathub.protocols.irc.table import command
from chathub.protocols.irc.wire import Message

#: list mode (the hub's ``LIST_MODES``) -> (entry numeric, end numeric, end text)
LIST_REPLIES = {
    "b": (N.RPL_BANLIST, N.RPL_ENDOFBANLIST, "End of channel ban list"),
    "e": (N.RPL_EXCEPTLIST, N.RPL_ENDOFEXCEPTLIST, "End of channel exception list"),
    "I": (N.RPL_INVEXLIST, N.RPL_ENDOFINVEXLIST, "End of channel invite exception list"),
}


def own_event(session, kind: str, target: str, text: str = "", data=None):
    """An event id and time for this client's own copy of something the hub did."""
    return session.hub.ids.make(kind, session.user.source, target, text, None, data)


# -- JOIN / PART -----------------------------------------------------------------------------


@command("JOIN", min_params=1)
def join(session, msg: Message, rb) -> Optional[defer.Deferred]:
    """JOIN <#chan>[,<#chan>...] [<key>[,<key>...]], or JOIN 0 to leave every channel."""
    hub, user = session.hub, session.user
    if msg.params[0] == "0":
        for room in list(user.rooms.values()):
            event = hub.part(user, room.name, "")
            rb.add(session.render_own(event))
        return None
    keys = msg.params[1].split(",") if len(msg.params) > 1 else []
    return _join_from(session, rb, msg.params[0].split(","), keys, 0)


def _join_from(session, rb, names: list[str], keys: list[str], start: int) -> Optional[defer.Deferred]:
    """JOIN's rooms from ``names[start]`` on, in order. A room new to a cluster node waits
    for the claim of its name (``ChatHub.claim_and_join``): the rest follow once it is
    answered, and the returned Deferred holds the client's later lines meanwhile."""
    hub, user = session.hub, session.user
    for i in range(start, len(names)):
        name = names[i]
        if not name:
            continue
        key = keys[i] if i < len(keys) and keys[i] else None
        if not is_room_name(name):
            rb.numeric(N.ERR_NOSUCHCHANNEL, name, "No such channel")
            continue
        # in a cluster the join may be found void at its number (a +i set on another node
        # at the same moment): the answer waits for that, and is the refusal instead
        receipt = Receipt() if hub.cluster is not None else None
        joined: list[Event] = []  # the hub's JOIN: its id and time are history's
        if hub.claims_room(name):
            d = hub.claim_and_join(user, name, key, receipt=receipt, joined=joined)
            d.addCallbacks(_answer_join, session._command_failed, callbackArgs=(session, rb, receipt, joined),
                           errbackArgs=("JOIN", rb))
            return d.addCallback(lambda _, i=i: _join_from(session, rb, names, keys, i + 1))
        try:
            room = hub.join(user, name, key, receipt=receipt, joined=joined)
        except errors.HubError as e:
            session.hub_error(rb, e)
            continue
        _answer_join(room, session, rb, receipt, joined)
    return None


def _answer_join(room, session, rb, receipt: Optional[Receipt], joined: list[Event]) -> None:
    if room is None:
        return  # already there: nothing to say
    start = len(rb.messages)
    if receipt is not None:  # answered at its number: the room's lines wait for the answer
        session.joining(room.folded, receipt)
    show_joined(session, room, rb, receipt, joined[-1] if joined else None)
    if receipt is not None:  # (after the replay's place, when the replay is still being read)
        rb.after_flush(lambda folded=room.folded: session.joined(folded))
    if receipt is not None:
        answer = rb.messages[start:]
        del rb.messages[start:]
        rb.later(lambda answer=answer, r=receipt: _joined(session, answer, r))


def show_joined(session, room, rb, receipt: Optional[Receipt] = None, joined: Optional[Event] = None) -> None:
    """This client's JOIN of ``room`` and what follows it (topic, names, read marker,
    metadata, replay): after its own JOIN ``joined``, the hub's (with its ``receipt`` in a
    cluster, where the join may be found void), its msgid and time the ones history and the
    other members have; or for each room of the user a session joins as one more session
    (``[auth] multiclient``), where there is no JOIN of its own."""
    data = {"account": session.user.account}
    event = (replace(joined, data=data) if joined is not None
             else own_event(session, Kind.JOIN, room.name, data=data))
    rb.add(session.render_own(event))
    if room.topic:
        topic_numerics(session, room, rb)
    names_of(session, room, rb, end=False)
    markread_on_join(session, room, rb)
    rb.numeric(N.RPL_ENDOFNAMES, room.name, "End of /NAMES list")
    metadata_on_join(session, room, rb)
    replay_on_join(session, room.name, event, rb, receipt)


def _joined(session, answer: list, receipt: Receipt) -> list[Message]:
    """The answer to a JOIN made in a cluster: as made, or the refusal when the join was
    found void at its number."""
    error = receipt.error
    if error is not None:
        return [session.numeric(N.HUB_ERRORS.get(error.code, N.ERR_UNKNOWNERROR), error.target, error.message)]
    return [line for part in answer for line in (part() if callable(part) else (part,))]


@command("PART", min_params=1)
def part(session, msg: Message, rb) -> None:
    """PART <#chan>[,<#chan>...] [:reason]."""
    reason = msg.params[1] if len(msg.params) > 1 else ""
    for name in msg.params[0].split(","):
        if not name:
            continue
        try:
            event = session.hub.part(session.user, name, reason)
        except errors.HubError as e:
            session.hub_error(rb, e)
            continue
        rb.add(session.render_own(event))


# -- TOPIC -----------------------------------------------------------------------------------


def topic_numerics(session, room, rb) -> None:
    rb.numeric(N.RPL_TOPIC, room.name, room.topic)
    if room.topic_setter:
        rb.numeric(N.RPL_TOPICWHOTIME, room.name, room.topic_setter, str(int(room.topic_time)))


@command("TOPIC", min_params=1)
def topic(session, msg: Message, rb) -> None:
    """TOPIC <#chan> [:new topic]: show or set (an empty topic clears it)."""
    name = msg.params[0]
    hub, user = session.hub, session.user
    room = hub.find_room(name)
    if room is None:
        rb.numeric(N.ERR_NOSUCHCHANNEL, name, "No such channel")
        return
    if len(msg.params) > 1:
        event = hub.set_topic(user, room.name, msg.params[1])
        rb.add(session.render_own(event))
        return
    if not hub.may_see_room(user, room):
        rb.numeric(N.ERR_NOTONCHANNEL, room.name, "You're not on that channel")
        return
    if room.topic:
        topic_numerics(session, room, rb)
    else:
        rb.numeric(N.RPL_NOTOPIC, room.name, "No topic is set")


# -- NAMES and LIST ---------------------------------------------------------------------------


def names_of(session, room, rb, end: bool = True) -> None:
    """353 lines (split to fit) and, unless ``end`` is false, 366 for one room."""
    multi = C.MULTI_PREFIX in session.caps
    full = C.USERHOST_IN_NAMES in session.caps
    # RFC 2812 353: "@" secret (+s), "*" private (+p), "=" public
    symbol = "@" if "s" in room.modes else "*" if "p" in room.modes else "="
    entries = []
    for member in session.hub.visible_members(session.user, room):
        who = member.user.mask if full else member.user.nick
        entries.append(member.prefixes(multi) + who)
    head = len(session.server_name) + len(session.nick or "*") + len(room.name) + 20
    line: list[str] = []
    size = head
    for entry in entries:
        if line and size + len(entry) + 1 > 500:
            rb.numeric(N.RPL_NAMREPLY, symbol, room.name, " ".join(line))
            line, size = [], head
        line.append(entry)
        size += len(entry) + 1
    if line:
        rb.numeric(N.RPL_NAMREPLY, symbol, room.name, " ".join(line))
    if end:
        rb.numeric(N.RPL_ENDOFNAMES, room.name, "End of /NAMES list")


@command("NAMES")
def names(session, msg: Message, rb) -> None:
    """NAMES <#chan>[,<#chan>...]: who is in a channel."""
    if not msg.params:
        rb.numeric(N.RPL_ENDOFNAMES, "*", "End of /NAMES list")
        return
    for name in msg.params[0].split(","):
        room = session.hub.visible_room(session.user, name)
        if room is not None:
            names_of(session, room, rb, end=False)
    # one end for the whole request, naming it as the client did
    rb.numeric(N.RPL_ENDOFNAMES, msg.params[0], "End of /NAMES list")


def _list_filters(args: list[str]):
    """Channel masks and ELIST=U user-count conditions from LIST's parameters."""
    masks: list[str] = []
    conditions = []  # (callable on the member count) or ("!", mask) for ELIST=N
    for arg in args:
        for part in arg.split(","):
            if not part:
                continue
            if part[0] in "<>" and part[1:].isascii() and part[1:].isdigit():
                n = int(part[1:])
                conditions.append(
                    (lambda c, name, n=n: c < n) if part[0] == "<" else (lambda c, name, n=n: c > n)
                )
            elif part.startswith("!") and len(part) > 1:
                mask = part[1:]
                conditions.append(lambda c, name, mask=mask: not mask_matches(mask, name))
            else:
                masks.append(part)
    return masks, conditions


@command("LIST")
def list_(session, msg: Message, rb) -> None:
    """LIST [#chan|mask[,...]] [<n|>n]: visible channels with member count and topic."""
    masks, conditions = _list_filters(msg.params[:2])
    limit = session.config.limits.mask_length
    if any(len(part) > limit for arg in msg.params[:2] for part in arg.split(",")):
        rb.fail("LIST", "INVALID_PARAMS", f"Mask is too long (at most {limit} characters)")
        rb.numeric(N.RPL_LISTEND, "End of /LIST")
        return
    rb.numeric(N.RPL_LISTSTART, "Channel", "Users  Name")
    hub = session.hub
    for room in hub.list_rooms(session.user):
        if masks and not any(mask_matches(m, room.name) for m in masks):
            continue
        count = len(hub.visible_members(session.user, room))
        if any(not cond(count, room.name) for cond in conditions):
            continue
        modes, _ = room.mode_string(with_params=False)
        rb.numeric(N.RPL_LIST, room.name, str(count), f"[{modes}] {room.topic}")
    rb.numeric(N.RPL_LISTEND, "End of /LIST")


# -- MODE -------------------------------------------------------------------------------------


def _mode_chunks(applied, per_line: int = MAX_MODE_PARAMS):
    """Split applied changes so no line carries more than ``MODES`` parameters."""
    chunk: list = []
    params = 0
    for change in applied:
        if change[1] is not None and params >= per_line:
            yield chunk
            chunk, params = [], 0
        chunk.append(change)
        if change[1] is not None:
            params += 1
    if chunk:
        yield chunk


@command("MODE", min_params=1)
def mode(session, msg: Message, rb) -> None:
    """MODE <#chan> [modes [params]] or MODE <nick> [modes]."""
    target = msg.params[0]
    if is_room_name(target):
        room_mode(session, msg, rb)
    else:
        user_mode(session, msg, rb)


def room_mode(session, msg: Message, rb) -> None:
    hub, user = session.hub, session.user
    room = hub.find_room(msg.params[0])
    if room is None:
        rb.numeric(N.ERR_NOSUCHCHANNEL, msg.params[0], "No such channel")
        return
    if len(msg.params) < 2:
        letters, params = room.mode_string(with_params=user in room)
        rb.numeric(N.RPL_CHANNELMODEIS, room.name, letters, *params)
        rb.numeric(N.RPL_CREATIONTIME, room.name, str(int(room.created)))
        return
    changes, queries, unknown = parse_room_modes(msg.params[1], msg.params[2:], MAX_MODE_PARAMS)
    for letter in unknown:
        rb.numeric(N.ERR_UNKNOWNMODE, letter, "is an unknown mode char to me")
    for letter in queries:
        entry_numeric, end_numeric, end_text = LIST_REPLIES[letter]
        for entry in getattr(room, LIST_MODES[letter]):
            rb.numeric(entry_numeric, room.name, entry.mask, entry.setter, str(int(entry.time)))
        rb.numeric(end_numeric, room.name, end_text)
    if not changes:
        return
    applied, refused = hub.change_room_modes(user, room.name, changes)
    for error in refused:
        session.hub_error(rb, error, room.name)
    for chunk in _mode_chunks(applied):
        event = own_event(session, Kind.MODE, room.name, data={"changes": chunk})
        rb.add(session.render_own(event))


def user_mode(session, msg: Message, rb) -> None:
    hub, user = session.hub, session.user
    nick = msg.params[0]
    if fold(nick) != user.folded:
        if hub.find_user(nick) is None:
            rb.numeric(N.ERR_NOSUCHNICK, nick, "No such nick/channel")
        else:
            rb.numeric(N.ERR_USERSDONTMATCH, "Can't change mode for other users")
        return
    if len(msg.params) < 2:
        rb.numeric(N.RPL_UMODEIS, "+" + "".join(sorted(user.modes)))
        return
    changes = []
    sign = "+"
    unknown = False
    for letter in msg.params[1]:
        if letter in "+-":
            sign = letter
        elif letter in "iwoB":
            if letter == "o" and sign == "+":
                continue  # only OPER grants +o
            changes.append((sign + letter, None))
        else:
            unknown = True
    if unknown:
        rb.numeric(N.ERR_UMODEUNKNOWNFLAG, "Unknown MODE flag")
    applied = hub.change_user_modes(user, changes)
    if applied:
        letters, _ = mode_change_params(applied)
        rb.add(Message("MODE", [user.nick, letters], user.nick))


# -- KICK and INVITE -----------------------------------------------------------------------------


@command("KICK", min_params=2)
def kick(session, msg: Message, rb) -> None:
    """KICK <#chan>[,<#chan>...] <nick>[,<nick>...] [:reason] (one channel, or one per nick)."""
    reason = msg.params[2] if len(msg.params) > 2 else ""
    rooms = [r for r in msg.params[0].split(",") if r]
    nicks = [n for n in msg.params[1].split(",") if n]
    if len(rooms) == 1:
        pairs = [(rooms[0], nick) for nick in nicks]
    elif len(rooms) == len(nicks):
        pairs = list(zip(rooms, nicks, strict=True))
    else:
        rb.numeric(N.ERR_NEEDMOREPARAMS, "KICK", "Give one channel, or one channel per nick")
        return
    for name, nick in pairs:
        try:
            event = session.hub.kick(session.user, name, nick, reason)
        except errors.HubError as e:
            session.hub_error(rb, e, name)
            continue
        rb.add(session.render_own(event))


@command("INVITE")
def invite(session, msg: Message, rb) -> None:
    """INVITE <nick> <#chan>; INVITE alone lists the channels you are invited to."""
    if not msg.params:
        me = session.user.folded
        for room in session.hub.rooms.values():
            if me in room.invited:
                rb.numeric(N.RPL_INVITELIST, room.name)
        rb.numeric(N.RPL_ENDOFINVITELIST, "End of /INVITE list")
        return
    if len(msg.params) < 2:
        rb.numeric(N.ERR_NEEDMOREPARAMS, "INVITE", "Not enough parameters")
        return
    nick, name = msg.params[0], msg.params[1]
    hub = session.hub
    if hub.find_room(name) is None:
        rb.numeric(N.ERR_NOSUCHCHANNEL, name, "No such channel")
        return
    try:
        event = hub.invite(session.user, name, nick)
    except errors.HubError as e:
        session.hub_error(rb, e, name)
        return
    target = hub.find_user(nick)
    rb.numeric(N.RPL_INVITING, event.data["nick"], event.target)
    if target is not None and target.away:
        rb.numeric(N.RPL_AWAY, target.nick, target.away)
