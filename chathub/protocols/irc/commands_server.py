"""Server-wide commands: the welcome burst, ISUPPORT, LUSERS, MOTD, VERSION, TIME, INFO,
ADMIN, HELP, LINKS, OPER, KILL and WALLOPS."""
from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import cast

from twisted.logger import Logger

import chathub
from chathub.auth.limiter import LoginThrottled
from chathub.hub.masks import ACCOUNT_EXTBAN, EXTBAN_TYPES, mask_matches
from chathub.hub.modes import CHANMODES
from chathub.protocols.irc import numerics as N
from chathub.protocols.irc.commands_history import isupport_tokens as history_isupport
from chathub.protocols.irc.commands_queries import visible_host
from chathub.protocols.irc.table import COMMANDS, WELCOME, command, hook
from chathub.protocols.irc.wire import Message, NickTemplate, Prerendered, SlotTemplate, slot

_log = Logger()

VERSION = f"chathub-{chathub.__version__}"
USER_MODES = "Biow"
CHANNEL_MODES = "CIbeiklmnopstv"
CHANNEL_MODES_WITH_PARAM = "Ibeklov"
#: the user mode marking bots (IRCv3 bot-mode)
BOT_MODE = "B"
#: ISUPPORT tokens per 005 line (RFC limit is 13)
TOKENS_PER_LINE = 12


def isupport_tokens(config) -> list[str]:
    """Every ISUPPORT token, each true of this server."""
    limits, irc = config.limits, config.irc
    targets = irc.max_targets
    return [
        f"ACCOUNTEXTBAN={ACCOUNT_EXTBAN}",
        f"AWAYLEN={limits.away_length}",
        f"BOT={BOT_MODE}",
        "CASEMAPPING=ascii",
        f"CHANLIMIT=#:{limits.max_rooms_per_user}",
        f"CHANMODES={CHANMODES}",
        f"CHANNELLEN={limits.room_name_length}",
        "CHANTYPES=#",
        *history_isupport(config),  # CHATHISTORY=, MSGREFTYPES=
        "ELIST=MNU",
        "EXCEPTS=e",
        f"EXTBAN=,{EXTBAN_TYPES}",
        "INVEX=I",
        f"KICKLEN={irc.kick_length}",
        f"MAXLIST=beI:{irc.max_bans}",
        f"MAXTARGETS={targets}",
        f"MODES={MAX_MODE_PARAMS}",
        f"MONITOR={irc.monitor_limit}",
        f"NETWORK={config.server.network}",
        f"NICKLEN={limits.nick_length}",
        "PREFIX=(ov)@+",
        "SAFELIST",
        "STATUSMSG=@+",
        "TARGMAX=JOIN:,KICK:,LIST:,MONITOR:,NAMES:,"
        f"NOTICE:{targets},PART:,PRIVMSG:{targets},TAGMSG:{targets},WHOIS:1",
        f"TOPICLEN={limits.topic_length}",
        f"USERLEN={irc.user_length}",
        "UTF8ONLY",
        "WHOX",
    ]


#: mode changes with a parameter per MODE command (ISUPPORT MODES)
MAX_MODE_PARAMS = 4


@hook(WELCOME)
def welcome_burst(session, rb) -> None:
    """001-005, LUSERS and MOTD, sent once registration completes.

    All but 001's mask, the LUSERS counts and the nick are the same for every client: the
    lines are serialised once per config and MOTD with slots for those (``SlotTemplate``),
    so a registration fills them in with one ``bytes %``. A labelled USER (its reply goes
    in a batch, line by line) or values that might not fit a line take them one by one."""
    server = session.server
    template = cast(SlotTemplate, server.rendering("welcome", lambda: _welcome_template(session)))
    mask = session.user.mask
    numbers = _luser_numbers(session)
    if rb.label is None:
        values = dict(zip(_COUNT_KEYS, [b"%d" % n for n in numbers], strict=True))
        values[b"nick"] = session.nick.encode("utf-8")
        values[b"mask"] = mask.encode("utf-8")
        burst = template.fill(values)
        if burst is not None:
            rb.add(Prerendered(N.RPL_WELCOME, [session.nick], session.server_name, burst))
            visible_host(session, rb)
            return
    rb.numeric(N.RPL_WELCOME, _welcome_text(session, mask))
    for code, params in _fixed_lines(session):  # rare: serialised as they go
        rb.numeric(code, *params)
    _luser_lines(session, rb, _named(numbers))
    motd(session, None, rb)
    visible_host(session, rb)


def _welcome_text(session, mask: str) -> str:
    return f"Welcome to the {session.config.server.network} IRC Network {mask}"


def _welcome_template(session) -> SlotTemplate:
    """The whole burst but 396, with slots for the nick, 001's mask and the counts."""
    nick = slot("nick")
    lines: list[tuple[str, list[str]]] = [(N.RPL_WELCOME, [nick, _welcome_text(session, slot("mask"))])]
    for code, params in [
        *_fixed_lines(session), *_luser_params({k: slot(k) for k in _COUNTS}), *_motd_params(session.server)
    ]:
        lines.append((code, [nick, *params]))
    return SlotTemplate(session.server_name, lines)


def _fixed_lines(session) -> list[tuple[str, list[str]]]:
    """002-005 after the nick: what the server and its config are."""
    started = datetime.fromtimestamp(session.hub.started, tz=UTC)
    name = session.server_name
    lines: list[tuple[str, list[str]]] = [
        (N.RPL_YOURHOST, [f"Your host is {name}, running version {VERSION}"]),
        (N.RPL_CREATED, [f"This server was created {started:%a %b %d %Y at %H:%M:%S UTC}"]),
        (N.RPL_MYINFO, [name, VERSION, USER_MODES, CHANNEL_MODES, CHANNEL_MODES_WITH_PARAM]),
    ]
    lines.extend((N.RPL_ISUPPORT, params) for params in _isupport_lines(session.config))
    return lines


def _isupport_lines(config) -> list[list[str]]:
    tokens = isupport_tokens(config)
    return [
        [*tokens[i : i + TOKENS_PER_LINE], "are supported by this server"]
        for i in range(0, len(tokens), TOKENS_PER_LINE)
    ]


def isupport(session, rb) -> None:
    for params in _isupport_lines(session.config):
        rb.numeric(N.RPL_ISUPPORT, *params)


@command("LUSERS")
def lusers(session, msg, rb) -> None:
    """Counts of users, operators and channels."""
    _luser_lines(session, rb, _named(_luser_numbers(session)))


#: the counts LUSERS shows (``_luser_numbers``), by name
_COUNTS = ("visible", "invisible", "opers", "unknown", "rooms", "local", "local_max", "total", "total_max")
#: the same names as a ``SlotTemplate``'s keys
_COUNT_KEYS = tuple(name.encode() for name in _COUNTS)


def _luser_numbers(session) -> tuple[int, ...]:
    """The counts LUSERS shows, in ``_COUNTS`` order."""
    hub = session.hub
    # in a cluster, the users of every node (a cluster shows itself as one server); the
    # local counts are this node's
    total = hub.global_user_count()
    invisible = hub.users_with_mode("i")
    local = len(hub.users)
    return (
        total - invisible, invisible, hub.users_with_mode("o"), len(session.server.unregistered), len(hub.rooms),
        local, hub.max_users_seen, total, hub.max_global_seen,
    )


def _named(numbers: tuple[int, ...]) -> dict[str, str]:
    return dict(zip(_COUNTS, map(str, numbers), strict=True))


def _luser_params(c: dict[str, str]) -> list[tuple[str, list[str]]]:
    """251-255, 265 and 266 after the nick, with counts ``c`` (values, or slots)."""
    return [
        (N.RPL_LUSERCLIENT, [f"There are {c['visible']} users and {c['invisible']} invisible on 1 servers"]),
        (N.RPL_LUSEROP, [c["opers"], "operator(s) online"]),
        (N.RPL_LUSERUNKNOWN, [c["unknown"], "unknown connection(s)"]),
        (N.RPL_LUSERCHANNELS, [c["rooms"], "channels formed"]),
        (N.RPL_LUSERME, [f"I have {c['local']} clients and 0 servers"]),
        # the optional count parameters are left out: the text carries them
        (N.RPL_LOCALUSERS, [f"Current local users {c['local']}, max {c['local_max']}"]),
        (N.RPL_GLOBALUSERS, [f"Current global users {c['total']}, max {c['total_max']}"]),
    ]


def _luser_lines(session, rb, counts: dict[str, str]) -> None:
    for code, params in _luser_params(counts):
        rb.numeric(code, *params)


@command("MOTD")
def motd(session, msg, rb) -> None:
    """The message of the day, or 422 when there is none (rendered once per MOTD)."""
    server = session.server
    rb.add(cast(NickTemplate, server.rendering("motd", lambda: _motd_lines(server))).for_nick(session.nick or "*"))


def _motd_lines(server) -> NickTemplate:
    return NickTemplate(server.server_name, _motd_params(server))


def _motd_params(server) -> list[tuple[str, list[str]]]:
    lines = server.motd.lines
    if lines is None:
        return [(N.ERR_NOMOTD, ["MOTD File is missing"])]
    return [
        (N.RPL_MOTDSTART, [f"- {server.server_name} Message of the day - "]),
        *((N.RPL_MOTD, [f"- {line}"]) for line in lines),
        (N.RPL_ENDOFMOTD, ["End of /MOTD command."]),
    ]


def _other_server(session, msg, rb) -> bool:
    """True (after a 402) when the command names a server other than this one."""
    if msg is not None and msg.params and msg.params[0].lower() != session.server_name.lower():
        if not mask_matches(msg.params[0], session.server_name):
            rb.numeric(N.ERR_NOSUCHSERVER, msg.params[0], "No such server")
            return True
    return False


@command("VERSION")
def version(session, msg, rb) -> None:
    """Software version and ISUPPORT again."""
    if _other_server(session, msg, rb):
        return
    rb.numeric(N.RPL_VERSION, VERSION, session.server_name, "A Twisted multi-protocol chat hub")
    isupport(session, rb)


@command("TIME")
def time_(session, msg, rb) -> None:
    """The server's local time."""
    if _other_server(session, msg, rb):
        return
    now = time.time()
    text = datetime.fromtimestamp(now, tz=UTC).strftime("%A %B %d %Y -- %H:%M:%S +00:00")
    rb.numeric(N.RPL_TIME, session.server_name, str(int(now)), "0", text)


INFO_TEXT = (
    f"{VERSION}: a multi-protocol chat hub built on Twisted.",
    "IRC, telnet and WebSocket users share one set of rooms and nicks.",
    "Modelled on Twisted Words, Matrix Synapse and Ergo.",
)


@command("INFO")
def info(session, msg, rb) -> None:
    """This server's description ([server] description) and a few lines about the software."""
    if _other_server(session, msg, rb):
        return
    rb.numeric(N.RPL_INFO, session.config.server.description)
    for line in INFO_TEXT:
        rb.numeric(N.RPL_INFO, line)
    rb.numeric(N.RPL_ENDOFINFO, "End of INFO list")


@command("ADMIN")
def admin(session, msg, rb) -> None:
    """Who runs this server."""
    if _other_server(session, msg, rb):
        return
    server = session.config.server
    rb.numeric(N.RPL_ADMINME, session.server_name, "Administrative info")
    rb.numeric(N.RPL_ADMINLOC1, server.description)
    rb.numeric(N.RPL_ADMINLOC2, server.admin_name)
    rb.numeric(N.RPL_ADMINEMAIL, server.admin_email)


@command("LINKS")
def links(session, msg, rb) -> None:
    """One server: this one."""
    rb.numeric(N.RPL_LINKS, session.server_name, session.server_name, f"0 {session.config.server.description}")
    rb.numeric(N.RPL_ENDOFLINKS, "*", "End of /LINKS list")


@command("HELP", aliases=("HELPOP",))
def help_(session, msg, rb) -> None:
    """HELP [command]: the handler's own description."""
    topic = msg.params[0].upper() if msg.params else ""
    if not topic:
        rb.numeric(N.RPL_HELPSTART, "*", f"{session.server_name} help")
        rb.numeric(N.RPL_HELPTXT, "*", "Commands: " + " ".join(sorted(COMMANDS)))
        rb.numeric(N.RPL_ENDOFHELP, "*", "End of /HELP")
        return
    cmd = COMMANDS.get(topic)
    if cmd is None:
        rb.numeric(N.ERR_HELPNOTFOUND, topic, "No help available on this topic")
        return
    doc = (cmd.handler.__doc__ or topic).strip().splitlines()
    rb.numeric(N.RPL_HELPSTART, topic, f"** Help for {topic} **")
    for line in doc:
        rb.numeric(N.RPL_HELPTXT, topic, line.strip())
    rb.numeric(N.RPL_ENDOFHELP, topic, "End of /HELP")


# -- operators -------------------------------------------------------------------------------

def _oper_refused(session, name: str, why: str) -> None:
    _log.info("OPER as {operator} by {nick} from {host} refused: {why}", event="login_failed",
              operator=name, nick=session.nick, host=session.host, why=why)


@command("OPER", min_params=2)
def oper(session, msg, rb):
    """OPER <name> <password>: become an IRC operator (passwords are argon2 hashes in the config)."""
    name, password = msg.params[0], msg.params[1]
    operators = session.config.irc.operators
    entry = next((o for o in operators if o.name == name), None)
    # The same argon2 work whatever the name (a dummy hash with the parameters of a real one
    # for an unknown name) and the host checked only after the password: no reply and no
    # delay tells which operator names exist. In a thread, under the login limiter.
    like = operators[0].password_hash if operators else None
    d = session.portal.verify(
        "operator", name, entry.password_hash if entry is not None else None, password, like
    )

    def checked(ok: bool) -> None:
        if session.closed:
            return
        if not ok:
            _oper_refused(session, name, "no such operator" if entry is None else "wrong password")
            rb.numeric(N.ERR_PASSWDMISMATCH, "Password incorrect")
            return
        if not any(mask_matches(entry.hostmask, m) for m in (session.user.mask, session.user.real_mask)):
            _oper_refused(session, name, f"{session.user.mask} does not match {entry.hostmask}")
            rb.numeric(N.ERR_NOOPERHOST, "No O-lines for your host")
            return
        session.hub.make_operator(session.user, entry.privileges)
        rb.numeric(N.RPL_YOUREOPER, "You are now an IRC operator")
        rb.add(Message("MODE", [session.user.nick, "+o"], session.server_name))

    def throttled(failure) -> None:
        failure.trap(LoginThrottled)
        if not session.closed:
            _oper_refused(session, name, failure.getErrorMessage())
            rb.numeric(N.ERR_NOOPERHOST, f"No O-lines for your host: {failure.getErrorMessage()}")

    return d.addCallbacks(checked, throttled)


#: RPL_REHASHING
RPL_REHASHING = "382"


@command("REHASH", privilege="oper")
def rehash(session, msg, rb):
    """REHASH: re-read the config file and the MOTD (operators), as SIGHUP does, and say
    what changed, what needs a restart, or why the file was refused (nothing changed then);
    without a config file to re-read (a bare IrcServer), only the MOTD."""
    _log.info("{nick} asked for a REHASH", nick=session.nick)
    server = session.server
    if server.rehash is None:
        d = server.motd.reload().addCallback(lambda _: (True, []))
    else:
        d = server.rehash()
    name = session.config.source or session.config.irc.motd_file or "motd"

    def done(result) -> None:
        ok, lines = result
        if session.closed:
            return
        if ok:
            rb.numeric(RPL_REHASHING, name, "Rehashing")
        else:
            rb.fail("REHASH", "INVALID_CONFIG", "The config file was refused; nothing changed")
        for line in lines:
            rb.add(Message("NOTICE", [session.nick, f"*** REHASH: {line}"], session.server_name))

    return d.addCallback(done)


@command("KILL", min_params=1)
def kill(session, msg, rb) -> None:
    """KILL <nick> [:reason]: disconnect a user (operators with the kill privilege)."""
    reason = msg.params[1] if len(msg.params) > 1 else "No reason given"
    session.hub.kill(session.user, msg.params[0], reason)


@command("WALLOPS", min_params=1, privilege="wallops")
def wallops(session, msg, rb) -> None:
    """WALLOPS :text: a message to every user with user mode +w."""
    event = session.hub.wallops(session.user, msg.params[0])
    rb.add(session.render_own(event))
