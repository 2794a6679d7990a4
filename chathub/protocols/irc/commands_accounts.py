"""Account registration and login for IRC clients.

- IRCv3 ``draft/account-registration``: ``REGISTER <account> <email|*> <password>`` and
  ``VERIFY``. We offer ``before-connect`` (REGISTER may come between NICK and the end of
  connection registration) but not ``custom-account-name``: an account *is* a nick here
  (holding the account reserves the nick in every protocol), so the account name must be
  the nick in use, or ``*``.
- ``/msg NickServ REGISTER <password> [email]`` and ``/msg NickServ IDENTIFY [account]
  <password>`` for clients without it: NickServ is a virtual service nick (reserved in the
  hub) that answers with NOTICEs. Its messages never reach the hub or the history.

Registration goes through the hub (``hub.create_account``, or ``hub.create_nick_account``
before connection registration), login through the same twisted.cred portal as SASL and PASS.
No password is ever logged: failures are logged by command name only.
"""
from __future__ import annotations

import re
from typing import Callable, Optional

from twisted.cred.credentials import UsernamePassword
from twisted.cred.error import LoginFailed
from twisted.internet import defer
from twisted.logger import Logger

from chathub.events import Kind, iso_time
from chathub.hub import errors
from chathub.interfaces import IChatUser
from chathub.names import fold
from chathub.protocols.irc import caps as C
from chathub.protocols.irc import numerics as N
from chathub.protocols.irc.table import command
from chathub.protocols.irc.wire import Message

log = Logger()

#: longer passwords would not fit a NickServ PRIVMSG or SASL PLAIN comfortably (spec advice)
MAX_PASSWORD_BYTES = 300
#: something@something.tld, no spaces or controls. We send no mail and keep no address (like
#: telnet's /register and the web form, which ask for none): this only catches typos
_EMAIL = re.compile(r"[^@\s\x00-\x1f]+@[^@\s\x00-\x1f]+\.[^@\s\x00-\x1f]+\Z")

NICKSERV = "NickServ"


# -- shared steps ----------------------------------------------------------------------


def password_problem(session, password: str) -> Optional[tuple[str, str]]:
    """``(code, text)`` when ``password`` cannot be used, else None (the hub refuses a
    password shorter than ``[auth] min_password_length`` too: checked here before connect)."""
    if len(password.encode("utf-8")) > MAX_PASSWORD_BYTES:
        return "UNACCEPTABLE_PASSWORD", f"Passwords may be at most {MAX_PASSWORD_BYTES} bytes"
    shortest = session.config.auth.min_password_length
    if len(password) < shortest:
        return "WEAK_PASSWORD", errors.weak_password("", shortest).message
    return None


def refusal(failure) -> tuple[str, str]:
    """A failed registration as ``(standard-replies code, text for people)``."""
    if failure.check(errors.AccountExists):
        return "ACCOUNT_EXISTS", "That account name is already registered"
    if failure.check(errors.WeakPassword):
        return "WEAK_PASSWORD", failure.value.message
    if failure.check(errors.AlreadyRegistered):
        return "ALREADY_AUTHENTICATED", "You are already logged in to an account"
    if failure.check(errors.RegistrationUnavailable):
        return "TEMPORARILY_UNAVAILABLE", "Account registration is not available on this server"
    if failure.check(errors.StorageFailed):
        log.error("account registration failed: {error}", error=failure.value.message)
    elif failure.check(errors.HubError):
        return "BAD_ACCOUNT_NAME", failure.value.message
    else:
        log.failure("account registration failed", failure)
    return "TEMPORARILY_UNAVAILABLE", "Accounts cannot be registered right now; try again later"


def logged_in_numeric(session, account: str) -> Message:
    """900 RPL_LOGGEDIN, as after SASL."""
    if session.registered:
        mask = session.user.mask
    else:
        mask = f"{session.nick or '*'}!~{session.username or '*'}@{session.host}"
    return session.numeric(N.RPL_LOGGEDIN, mask, account, f"You are now logged in as {account}")


# -- REGISTER / VERIFY -----------------------------------------------------------------


@command("REGISTER", before_registration=True, min_params=3, penalty=5.0)
def register(session, msg: Message, rb) -> Optional[defer.Deferred]:
    """REGISTER <account|*> <email|*> <password> (IRCv3 draft/account-registration)."""
    wanted, email, password = msg.params[0], msg.params[1], msg.params[2]
    hub = session.hub
    if not session.registered and not session.config.irc.register_before_connect:
        rb.fail("REGISTER", "COMPLETE_CONNECTION_REQUIRED", "*", "Register your account once connected")
        return None
    nick = session.user.nick if session.registered else session.nick
    if nick is None and not session.registered and session.nick_in_use is not None:
        # the NICK was refused as someone else's: registering it would take it from them
        in_use = session.nick_in_use
        rb.fail("REGISTER", "ACCOUNT_EXISTS", in_use, "That nick is in use or registered; choose another")
        return None
    if nick is None:
        rb.fail("REGISTER", "NEED_NICK", "*", "Choose a nick with NICK before registering it")
        return None
    if wanted != "*" and fold(wanted) != fold(nick):
        rb.fail("REGISTER", "ACCOUNT_NAME_MUST_BE_NICK", wanted, "Your account name must be your current nick")
        return None
    if session.user is not None and session.user.account is not None:
        rb.fail("REGISTER", "ALREADY_AUTHENTICATED", session.user.account, "You are already logged in to an account")
        return None
    if hub.account_creator is None:
        rb.fail("REGISTER", "TEMPORARILY_UNAVAILABLE", nick, "Account registration is not available on this server")
        return None
    if email != "*" and _EMAIL.match(email) is None:
        rb.fail("REGISTER", "INVALID_EMAIL", nick, "That is not an email address")
        return None
    problem = password_problem(session, password)
    if problem is not None:
        rb.fail("REGISTER", problem[0], nick, problem[1])
        return None
    if session.registered:
        d = hub.create_account(session.user, password)
    else:
        d = _register_before_connect(session, nick, password)
        if d is None:
            rb.fail("REGISTER", "ACCOUNT_EXISTS", nick, "That nick is in use or registered; choose another")
            return None

    def registered(account: str):
        rb.add(Message("REGISTER", ["SUCCESS", account, "Account successfully registered"], session.server_name))
        rb.add(logged_in_numeric(session, account))
        return session.try_register(rb)

    def refused(failure) -> None:
        code, text = refusal(failure)
        rb.fail("REGISTER", code, nick, text)

    return d.addCallbacks(registered, refused)


def _register_before_connect(session, nick: str, password: str) -> Optional[defer.Deferred]:
    """Create the account for the nick chosen so far and log the connection in to it.

    None when the nick is taken (by a connected user or an account): no land grabs.
    """
    hub = session.hub
    if hub.find_user(nick) is not None or hub.accounts.is_account(nick):
        return None
    d = hub.create_nick_account(nick, password)

    def created(account) -> defer.Deferred:
        name = getattr(account, "name", nick)
        login = session.portal.login(
            UsernamePassword(name.encode("utf-8"), password.encode("utf-8")), session, IChatUser
        )
        return login.addCallback(adopt, name)

    def adopt(result, name: str) -> str:
        _iface, user, logout = result
        if session.closed or session.registered:
            logout()
        else:
            session.adopt_user(user, logout)
        return user.account or name

    return d.addCallback(created)


@command("VERIFY", before_registration=True, min_params=2)
def verify(session, msg: Message, rb) -> None:
    """VERIFY <account> <code>: we never ask for verification, so no code is valid."""
    account = msg.params[0]
    if session.user is not None and session.user.account is not None:
        rb.fail("VERIFY", "ALREADY_AUTHENTICATED", session.user.account, "You are already logged in to an account")
        return
    rb.fail("VERIFY", "INVALID_CODE", account, "No registration is waiting for verification")


# -- NickServ ----------------------------------------------------------------------------

#: virtual service nicks (folded) -> handler(session, kind, text, rb); see commands_messages
SERVICES: dict[str, Callable] = {}

NICKSERV_HELP = (
    "NickServ lets you register your nick as an account and log in to it.",
    "REGISTER <password> [email]  register the nick you are using; you are logged in at once",
    "IDENTIFY [account] <password>  log in to your account",
    "Clients with SASL or draft/account-registration do not need NickServ.",
)


class _NickServReplies:
    """NickServ's answers to one command: NOTICEs (and 900), sent together."""

    def __init__(self, session) -> None:
        self.session = session
        self.source = f"{NICKSERV}!{NICKSERV}@{session.server_name}"
        self.messages: list[Message] = []

    def notice(self, text: str) -> None:
        self.messages.append(Message("NOTICE", [self.session.nick or "*", text], self.source))

    def add(self, message: Message) -> None:
        self.messages.append(message)

    def send(self, _result=None) -> None:
        messages, self.messages = self.messages, []
        self.session.write_messages(messages)


def nickserv(session, kind: str, text: str, rb) -> None:
    """A PRIVMSG to NickServ: REGISTER, IDENTIFY or HELP (others get a hint)."""
    if kind != Kind.MESSAGE or text.startswith("\x01"):
        return  # notices, tag-only messages and CTCP get no answer, like from any service
    _echo(session, text, rb)
    words = text.split()
    verb = words[0].upper() if words else "HELP"
    replies = _NickServReplies(session)
    d = None
    if verb == "HELP":
        for line in NICKSERV_HELP:
            replies.notice(line)
    elif verb == "REGISTER":
        d = _nickserv_register(session, words[1:], replies)
    elif verb in ("IDENTIFY", "LOGIN"):
        d = _nickserv_identify(session, words[1:], replies)
    else:
        replies.notice(f"Unknown command {verb}. /msg {NICKSERV} HELP lists the commands.")
    if d is None:
        for message in replies.messages:
            rb.add(message)
    else:
        # later commands wait for the answer (a password check runs in a thread)
        d.addBoth(replies.send)
        if not d.called:
            session.hold(d)


SERVICES[fold(NICKSERV)] = nickserv


def _echo(session, text: str, rb) -> None:
    """echo-message clients see what they sent (to them only; it holds their password)."""
    if C.ECHO_MESSAGE not in session.caps:
        return
    msgid, now = session.hub.ids.next()
    tags = {}
    if C.MESSAGE_TAGS in session.caps:
        tags["msgid"] = msgid
    if C.SERVER_TIME in session.caps:
        tags["time"] = iso_time(now)
    rb.add(Message("PRIVMSG", [NICKSERV, text], session.user.mask, tags))


def _nickserv_register(session, args: list[str], replies) -> Optional[defer.Deferred]:
    """REGISTER <password> [email]: register the nick in use."""
    if not args or len(args) > 2:
        replies.notice(f"Usage: /msg {NICKSERV} REGISTER <password> [email]")
        return None
    password = args[0]
    if len(args) == 2 and _EMAIL.match(args[1]) is None:
        replies.notice(f"{args[1]} is not an email address")
        return None
    if session.user.account is not None:
        replies.notice(f"You are already logged in as {session.user.account}")
        return None
    problem = password_problem(session, password)
    if problem is not None:
        replies.notice(problem[1])
        return None

    def registered(account: str) -> None:
        replies.notice(f"Account {account} registered; you are now logged in to it")
        replies.add(logged_in_numeric(session, account))

    def refused(failure) -> None:
        _code, text = refusal(failure)
        replies.notice(f"{session.user.nick} could not be registered: {text}")

    return session.hub.create_account(session.user, password).addCallbacks(registered, refused)


def _nickserv_identify(session, args: list[str], replies) -> Optional[defer.Deferred]:
    """IDENTIFY [account] <password>: log in through the portal, keep the connection's user."""
    if not args or len(args) > 2:
        replies.notice(f"Usage: /msg {NICKSERV} IDENTIFY [account] <password>")
        return None
    user = session.user
    account, password = (args[0], args[1]) if len(args) == 2 else (user.nick, args[0])
    if user.account is not None:
        replies.notice(f"You are already logged in as {user.account}")
        return None
    credentials = UsernamePassword(account.encode("utf-8"), password.encode("utf-8"))
    d = session.portal.login(credentials, session, IChatUser)

    def logged_in(result) -> None:
        _iface, avatar, logout = result
        logout()  # the connection keeps its hub user; only the account changes
        name = avatar.account or account
        if session.closed:
            return
        session.hub.set_account(user, name)
        replies.notice(f"You are now identified for {name}")
        replies.add(logged_in_numeric(session, name))

    def refused(failure) -> None:
        if not failure.check(LoginFailed):  # UnhandledCredentials: no password checker
            log.failure("NickServ IDENTIFY failed", failure)
        replies.notice("Invalid account or password")

    return d.addCallbacks(logged_in, refused)
