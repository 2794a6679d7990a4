"""Queries about users: WHO (and WHOX), WHOIS, WHOWAS, ISON, USERHOST, MONITOR."""
from __future__ import annotations

import time

from chathub.auth.cloak import as_host
from chathub.hub.masks import mask_matches
from chathub.hub.remote import RemoteParticipant
from chathub.names import fold, is_room_name
from chathub.protocols.irc import caps as C
from chathub.protocols.irc import numerics as N
from chathub.protocols.irc.commands_metadata import whois_lines as whois_metadata
from chathub.protocols.irc.table import command, int_param

#: WHOX fields in the order they are sent
WHOX_FIELDS = "tcuihsnfdlaor"


def sees_address(me, user) -> bool:
    """Whether ``me`` may see ``user``'s real address: operators and the user themself do;
    everyone else sees only the (cloaked) host."""
    return user is me or me.is_operator


def of_another_node(user) -> bool:
    """Whether ``user`` is signed on at another node of a cluster: its idle time is not
    known here (no server says it for a user of another server without asking it)."""
    return isinstance(user.participant, RemoteParticipant)


def real_host(user) -> str:
    """``user``'s real address as an IRC host (the host when the address is unknown)."""
    return as_host(user.ip) if user.ip else user.host


def _flags(session, user, member) -> str:
    flags = "G" if user.away else "H"
    if "B" in user.modes:
        flags += "B"  # bot-mode
    if user.is_operator:
        flags += "*"
    if member is not None:
        flags += member.prefixes(C.MULTI_PREFIX in session.caps)
    return flags


def _who_line(session, rb, user, room, member, fields: str | None, token: str) -> None:
    channel = room.name if room is not None else "*"
    if fields is None:
        rb.numeric(
            N.RPL_WHOREPLY,
            channel,
            user.user,
            user.host,
            session.server_name,
            user.nick,
            _flags(session, user, member),
            f"0 {user.realname}",
        )
        return
    values = {
        "t": token or "0",
        "c": channel,
        "u": user.user,
        "i": real_host(user) if sees_address(session.user, user) else "255.255.255.255",
        "h": user.host,
        "s": session.server_name,
        "n": user.nick,
        "f": _flags(session, user, member),
        "d": "0",
        "l": str(int(time.time() - user.last_active)) if not of_another_node(user) else "0",
        "a": user.account or "0",
        "o": "n/a",
        "r": user.realname,
    }
    rb.numeric(N.RPL_WHOSPCRPL, *(values[f] for f in WHOX_FIELDS if f in fields))


@command("WHO")
def who(session, msg, rb) -> None:
    """WHO <mask> [%fields[,token]]: users in a channel or matching a mask (WHOX)."""
    hub, me = session.hub, session.user
    mask = msg.params[0] if msg.params else "*"
    fields = None
    token = ""
    if len(msg.params) > 1 and "%" in msg.params[1]:
        spec = msg.params[1].split("%", 1)[1]
        fields, _, token = spec.partition(",")
        token = token[:3]
    if is_room_name(mask):
        room = hub.visible_room(me, mask)
        if room is not None:
            for member in hub.visible_members(me, room):
                _who_line(session, rb, member.user, room, member, fields, token)
    elif len(mask) > session.config.limits.mask_length:
        rb.fail("WHO", "INVALID_PARAMS", f"Mask is too long (at most {session.config.limits.mask_length} characters)")
        mask = "*"
    else:
        everyone = mask in ("*", "0", "")
        exact = hub.find_user(mask)
        if exact is not None:
            candidates = [exact]
        else:
            candidates = [
                u
                for u in hub.visible_users(me)
                if everyone or any(mask_matches(mask, v) for v in _who_matched(me, u))
            ]
        for user in candidates:
            _who_line(session, rb, user, None, None, fields, token)
    rb.numeric(N.RPL_ENDOFWHO, mask, "End of WHO list")


def visible_host(session, rb) -> None:
    """396 after the welcome: the host everyone else sees, when it hides the address."""
    user = session.user
    if user.ip and user.host != as_host(user.ip):
        rb.numeric(N.RPL_VISIBLEHOST, user.host, "is now your displayed host")


def _who_matched(me, user) -> tuple[str, ...]:
    """What a WHO mask is tried against: never the real address, unless ``me`` may see it
    (else a WHO per guessed address would tell anyone where a user connects from)."""
    if sees_address(me, user):
        return (user.nick, user.mask, user.host, user.realname, user.real_mask, user.ip)
    return (user.nick, user.mask, user.host, user.realname)


@command("WHOIS", min_params=1)
def whois(session, msg, rb) -> None:
    """WHOIS [<server>] <nick>: who someone is, where they are, how long idle."""
    hub, me = session.hub, session.user
    nick = msg.params[-1]
    user = hub.find_user(nick)
    if user is None:
        rb.numeric(N.ERR_NOSUCHNICK, nick, "No such nick/channel")
        rb.numeric(N.RPL_ENDOFWHOIS, nick, "End of /WHOIS list")
        return
    n = user.nick
    rb.numeric(N.RPL_WHOISUSER, n, user.user, user.host, "*", user.realname)
    rooms = []
    multi = C.MULTI_PREFIX in session.caps
    for room in user.rooms.values():
        if not hub.may_see_room(me, room):
            continue
        member = room.member(user)
        rooms.append(member.prefixes(multi) + room.name)
    if rooms:
        rb.numeric(N.RPL_WHOISCHANNELS, n, " ".join(rooms))
    rb.numeric(N.RPL_WHOISSERVER, n, session.server_name, session.config.server.description)
    if user.is_operator:
        rb.numeric(N.RPL_WHOISOPERATOR, n, "is an IRC operator")
    if "B" in user.modes:
        rb.numeric(N.RPL_WHOISBOT, n, "is a bot")
    if user.account:
        rb.numeric(N.RPL_WHOISACCOUNT, n, user.account, "is logged in as")
    if sees_address(me, user):
        # both forms other servers send: 378 (InspIRCd, UnrealIRCd) and 338 (Ergo, Hybrid)
        ip = real_host(user)
        rb.numeric(N.RPL_WHOISHOST, n, f"is connecting from *@{ip} {ip}")
        rb.numeric(N.RPL_WHOISACTUALLY, n, f"{user.user}@{ip}", ip, "Actual user@host, actual IP")
    if user.protocol != "irc":
        rb.numeric(N.RPL_WHOISSPECIAL, n, f"is connected via the {user.protocol} protocol")
    if user.away:
        rb.numeric(N.RPL_AWAY, n, user.away)
    if not of_another_node(user):  # its node alone knows when it last spoke
        idle = getattr(user.participant, "idle_since", user.last_active)
        idle_seconds = str(max(0, int(time.time() - idle)))
        rb.numeric(N.RPL_WHOISIDLE, n, idle_seconds, str(int(user.signon)), "seconds idle, signon time")
    whois_metadata(session, user, rb)
    rb.numeric(N.RPL_ENDOFWHOIS, n, "End of /WHOIS list")


@command("WHOWAS", min_params=1)
def whowas(session, msg, rb) -> None:
    """WHOWAS <nick> [count]: who last used a nick."""
    nick = msg.params[0]
    count = int_param(msg.params, 1)
    entries = session.hub.whowas(nick)
    if count > 0:
        entries = entries[:count]
    if not entries:
        rb.numeric(N.ERR_WASNOSUCHNICK, nick, "There was no such nickname")
    for e in entries:
        rb.numeric(N.RPL_WHOWASUSER, e.nick, e.user, e.host, "*", e.realname)
        rb.numeric(N.RPL_WHOISSERVER, e.nick, session.server_name, time.ctime(e.time))
        if e.account:
            rb.numeric(N.RPL_WHOISACCOUNT, e.nick, e.account, "was logged in as")
    rb.numeric(N.RPL_ENDOFWHOWAS, nick, "End of WHOWAS")


@command("ISON", min_params=1)
def ison(session, msg, rb) -> None:
    """ISON <nick> [<nick>...]: which of these nicks are online."""
    hub = session.hub
    online = []
    for param in msg.params:
        for nick in param.split():
            user = hub.find_user(nick)
            if user is not None:
                online.append(user.nick)
    rb.numeric(N.RPL_ISON, " ".join(online))


@command("USERHOST", min_params=1)
def userhost(session, msg, rb) -> None:
    """USERHOST <nick> [<nick>...] (up to 5): nick=+user@host replies; the real address for
    yourself (clients learn their own address so, e.g. for DCC) and for operators."""
    hub, me = session.hub, session.user
    replies = []
    for nick in msg.params[:5]:
        user = hub.find_user(nick)
        if user is None:
            continue
        oper = "*" if user.is_operator else ""
        away = "-" if user.away else "+"
        host = real_host(user) if sees_address(me, user) else user.host
        replies.append(f"{user.nick}{oper}={away}{user.user}@{host}")
    rb.numeric(N.RPL_USERHOST, " ".join(replies))


@command("MONITOR", min_params=1)
def monitor(session, msg, rb) -> None:
    """MONITOR + nicks | - nicks | C | L | S: presence notifications (IRCv3 monitor)."""
    hub, me = session.hub, session.user
    sub = msg.params[0].upper()
    limit = session.config.irc.monitor_limit
    if sub in ("+", "-"):
        if len(msg.params) < 2:
            rb.numeric(N.ERR_NEEDMOREPARAMS, "MONITOR", "Not enough parameters")
            return
        nicks = [n for n in msg.params[1].split(",") if n]
        if sub == "-":
            hub.unmonitor(me, nicks)
            return
        new = [n for n in nicks if fold(n) not in me.monitoring]
        room_left = limit - len(me.monitoring)
        accepted = new[: max(room_left, 0)]
        if len(accepted) < len(new):
            rb.numeric(N.ERR_MONLISTFULL, str(limit), ",".join(new[len(accepted):]), "Monitor list is full")
        _status(session, rb, hub.monitor(me, accepted))
    elif sub == "C":
        hub.unmonitor(me)
    elif sub == "L":
        folded = sorted(me.monitoring)
        for i in range(0, len(folded), 20):
            rb.numeric(N.RPL_MONLIST, ",".join(folded[i : i + 20]))
        rb.numeric(N.RPL_ENDOFMONLIST, "End of MONITOR list")
    elif sub == "S":
        _status(session, rb, [(n, hub.find_user(n)) for n in sorted(me.monitoring)])
    else:
        rb.numeric(N.ERR_UNKNOWNCOMMAND, "MONITOR", f"Unknown MONITOR subcommand {sub}")


def _status(session, rb, results) -> None:
    online = [u.mask for _, u in results if u is not None]
    offline = [n for n, u in results if u is None]
    for i in range(0, len(online), 10):
        rb.numeric(N.RPL_MONONLINE, ",".join(online[i : i + 10]))
    for i in range(0, len(offline), 20):
        rb.numeric(N.RPL_MONOFFLINE, ",".join(offline[i : i + 20]))
