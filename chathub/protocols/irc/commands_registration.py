"""Connection registration: CAP, NICK, USER, PASS, AUTHENTICATE (SASL PLAIN and
SCRAM-SHA-256), PING, PONG, QUIT."""
from __future__ import annotations

import base64
import binascii
import re
from typing import Optional

from twisted.cred.credentials import UsernamePassword
from twisted.cred.error import LoginFailed
from twisted.logger import Logger

from chathub.auth.scram import MECHANISM as SCRAM
from chathub.auth.scram import ScramError, ScramExchange, ScramProof
from chathub.hub import errors
from chathub.interfaces import IChatUser
from chathub.protocols.irc import caps as C
from chathub.protocols.irc import numerics as N
from chathub.protocols.irc.logins import peer_of
from chathub.protocols.irc.multiline import cap_value
from chathub.protocols.irc.table import command, int_param
from chathub.protocols.irc.wire import MAX_BODY, Message

#: characters kept in a USER name (others are dropped)
_USERNAME_JUNK = re.compile(r"[^A-Za-z0-9_.\-\[\]\\`^{|}]")
#: a SASL message chunk is at most this long; a shorter one ends the message
SASL_CHUNK = 400
#: the largest SASL message we accept, decoded
SASL_MAX = 8192

log = Logger()


def _sasl_refused(session, rb, why: str) -> None:
    """A SASL exchange the server refuses before any password check: 904 and a log line."""
    log.info("IRC SASL login by {who} refused: {why}", event="login_failed", who=peer_of(session), nick=session.nick,
             host=session.host, why=why)
    rb.numeric(N.ERR_SASLFAIL, f"SASL authentication failed: {why}")


# -- CAP ----------------------------------------------------------------------------------


def _offered(session):
    registration = C.ACCOUNT_REGISTRATION_VALUE if session.config.irc.register_before_connect else ""
    return C.offered(",".join(session.portal.sasl_mechanisms()), cap_value(session.config.limits), registration)


def _cap_ls_lines(session, version: int) -> list[list[str]]:
    offered = _offered(session)
    words = [f"{k}={v}" if v and version >= 302 else k for k, v in sorted(offered.items())]
    if version < 302:
        # a client before CAP 302 reads one line (no "*" continuation exists for it): the
        # list goes whole on one line, less draft capabilities (last first) if it would not
        # fit: such a client predates them
        room = MAX_BODY - 2 - len(f":{session.server_name} CAP {session.nick or '*'} LS :".encode())
        size = sum(len(word) + 1 for word in words) - 1
        for word in reversed([w for w in words if w.startswith("draft/")]):
            if size <= room:
                break
            words.remove(word)
            size -= len(word) + 1
        return [words]
    lines: list[list[str]] = []
    current: list[str] = []
    size = 0
    for word in words:
        if current and size + len(word) + 1 > 380:
            lines.append(current)
            current, size = [], 0
        current.append(word)
        size += len(word) + 1
    lines.append(current)
    return lines


@command("CAP", before_registration=True, min_params=1)
def cap(session, msg: Message, rb) -> None:
    """CAP LS / LIST / REQ / END (IRCv3 capability negotiation, version 302)."""
    sub = msg.params[0].upper()
    target = session.nick or "*"
    server = session.server_name
    if sub == "LS":
        if not session.registered:
            session.cap_negotiating = True
        version = int_param(msg.params, 1)
        session.cap_version = max(session.cap_version, version)
        if version >= 302:
            session.set_caps(enabled=[C.CAP_NOTIFY])
        lines = _cap_ls_lines(session, session.cap_version)
        for i, words in enumerate(lines):
            more = ["*"] if i < len(lines) - 1 and session.cap_version >= 302 else []
            rb.add(Message("CAP", [target, "LS", *more, " ".join(words)], server))
    elif sub == "LIST":
        rb.add(Message("CAP", [target, "LIST", " ".join(sorted(session.caps))], server))
    elif sub == "REQ":
        if not session.registered:
            session.cap_negotiating = True
        wanted = msg.params[1] if len(msg.params) > 1 else ""
        names = wanted.split()
        offered = _offered(session)
        enable: list[str] = []
        disable: list[str] = []
        ok = bool(names)
        for name in names:
            removing = name.startswith("-")
            bare = name[1:] if removing else name
            if bare not in offered or (removing and bare in C.STICKY):
                ok = False
                break
            (disable if removing else enable).append(bare)
        if ok:
            session.set_caps(enabled=enable, disabled=disable)
            rb.add(Message("CAP", [target, "ACK", wanted.strip()], server))
        else:
            rb.add(Message("CAP", [target, "NAK", wanted], server))
    elif sub == "END":
        if not session.registered:
            session.cap_negotiating = False
            if session.sasl is not None:
                # registration completed while SASL waited for the client's data: the
                # specification has the server abort the exchange (906) and register it as is
                end_sasl(session)
                rb.numeric(N.ERR_SASLABORTED, "SASL authentication aborted")
            return session.try_register(rb)
    else:
        rb.numeric(N.ERR_INVALIDCAPCMD, msg.params[0], "Invalid CAP command")
    return None


# -- NICK, USER, PASS ---------------------------------------------------------------------


@command("NICK", before_registration=True)
def nick(session, msg: Message, rb):
    """Choose a nick, or change it once registered."""
    if not msg.params or not msg.params[0]:
        rb.numeric(N.ERR_NONICKNAMEGIVEN, "No nickname given")
        return None
    new = msg.params[0]
    hub = session.hub
    if not session.registered:
        try:
            hub.check_nick(new, session.user)
        except errors.NickRegistered:
            pass  # SASL or PASS may still log in to it: checked when registration ends
        except errors.NickInUse:
            account = session.user.account if session.user is not None else None
            if not hub.may_attach(new, account):
                session.nick_in_use = new  # a REGISTER of it next is a land grab (ACCOUNT_EXISTS)
                raise
            # held by an account's user this login may join as one more session (multiclient)
        session.nick = new
        return session.try_register(rb)
    def renamed(event) -> None:
        if event is not None:
            session.nick = session.user.nick
            rb.add(session.render_own(event))

    # in a cluster, once the nick is claimed on every node (later lines wait); the
    # session answers a refusal (433, 437) as for any hub error
    return hub.claim_and_change_nick(session.user, new).addCallback(renamed)


@command("USER", before_registration=True, only_before_registration=True, min_params=4)
def user(session, msg: Message, rb):
    """USER <username> <mode> <unused> :<realname>."""
    if session.username is not None:
        rb.numeric(N.ERR_ALREADYREGISTERED, "You may not reregister")
        return None
    name = _USERNAME_JUNK.sub("", msg.params[0])[: session.config.irc.user_length]
    if not msg.params[0] or not msg.params[3]:
        rb.numeric(N.ERR_NEEDMOREPARAMS, "USER", "Not enough parameters")
        return None
    session.username = name or "user"
    session.realname = msg.params[3]
    return session.try_register(rb)


@command("PASS", before_registration=True, only_before_registration=True, min_params=1)
def pass_(session, msg: Message, rb) -> None:
    """PASS <password> or PASS <account>:<password>: log in for clients without SASL."""
    session.password = msg.params[0]


# -- SASL -----------------------------------------------------------------------------------


class SaslExchange:
    """An AUTHENTICATE exchange in progress. ``discarding``: the client's message passed
    ``SASL_MAX`` and was refused (904); the rest of its chunks are dropped unanswered.
    For SCRAM-SHA-256, ``scram`` is the exchange's state and ``accepted`` the login held
    (``(interface, user, logout)``) between the server's last message and the client's ``+``."""

    __slots__ = ("mechanism", "data", "discarding", "scram", "accepted")

    def __init__(self, mechanism: str) -> None:
        self.mechanism = mechanism
        self.data = ""
        self.discarding = False
        self.scram: Optional[ScramExchange] = ScramExchange() if mechanism == SCRAM else None
        self.accepted: Optional[tuple] = None

    def drop(self) -> None:
        """The exchange ends unfinished: a login it holds is let go."""
        accepted, self.accepted = self.accepted, None
        if accepted is not None:
            accepted[2]()


def end_sasl(session) -> None:
    """End the session's exchange, if any, without a reply (the caller sends one)."""
    exchange, session.sasl = session.sasl, None
    if exchange is not None:
        exchange.drop()


def _send_challenge(rb, payload: bytes) -> None:
    """``AUTHENTICATE`` with ``payload`` in base64, in 400-byte chunks (``+`` after a full one)."""
    encoded = base64.b64encode(payload).decode("ascii")
    chunks = [encoded[i:i + SASL_CHUNK] for i in range(0, len(encoded), SASL_CHUNK)] or ["+"]
    if len(chunks[-1]) == SASL_CHUNK:
        chunks.append("+")
    for chunk in chunks:
        rb.add(Message("AUTHENTICATE", [chunk]))


@command("AUTHENTICATE", before_registration=True, min_params=1, penalty=0.5)
def authenticate(session, msg: Message, rb):
    """SASL PLAIN and SCRAM-SHA-256 through the same portal as every other login."""
    arg = msg.params[0]
    if C.SASL not in session.caps:
        rb.numeric(N.ERR_SASLFAIL, "SASL authentication failed: the sasl capability is not enabled")
        return None
    if arg == "*":
        if session.sasl is None:
            rb.numeric(N.ERR_SASLFAIL, "SASL authentication failed: nothing to abort")
        else:
            end_sasl(session)
            rb.numeric(N.ERR_SASLABORTED, "SASL authentication aborted")
            return session.try_register(rb)
        return None
    if session.sasl is None:
        if session.sasl_done and not session.registered:
            rb.numeric(N.ERR_SASLALREADY, "You have already authenticated using SASL")
            return None
        mechanism = arg.upper()
        mechanisms = session.portal.sasl_mechanisms()
        if mechanism not in mechanisms:
            rb.numeric(N.RPL_SASLMECHS, ",".join(mechanisms), "are available SASL mechanisms")
            rb.numeric(N.ERR_SASLFAIL, "SASL authentication failed")
            return None
        session.sasl = SaslExchange(mechanism)
        rb.add(Message("AUTHENTICATE", ["+"]))
        return None
    exchange = session.sasl
    if exchange.discarding:
        # the rest of a message already refused: nothing is kept, nothing answered, until
        # its last chunk (shorter than SASL_CHUNK) ends it
        if len(arg) != SASL_CHUNK:
            session.sasl = None
        return None
    if len(arg) > SASL_CHUNK:
        end_sasl(session)
        rb.numeric(N.ERR_SASLTOOLONG, "SASL message too long")
        return None
    if arg != "+":
        exchange.data += arg
        if len(exchange.data) > SASL_MAX * 4 // 3 + 4:
            # one refusal however many chunks follow (a client may send a thousand)
            exchange.data = ""
            exchange.discarding = len(arg) == SASL_CHUNK
            if not exchange.discarding:
                end_sasl(session)
            _sasl_refused(session, rb, "message too long")
            return None
        if len(arg) == SASL_CHUNK:
            return None  # more to come
    data, exchange.data = exchange.data, ""
    try:
        raw = base64.b64decode(data, validate=True) if data else b""
    except (binascii.Error, ValueError):
        end_sasl(session)
        _sasl_refused(session, rb, "invalid base64")
        return None
    if exchange.scram is not None:
        return _scram_step(session, exchange, exchange.scram, raw, rb)
    session.sasl = None
    parts = raw.split(b"\x00")
    if len(parts) != 3 or not parts[1] or (parts[0] and parts[0] != parts[1]):
        _sasl_refused(session, rb, "invalid PLAIN message")
        return None
    authcid, password = parts[1], parts[2]
    try:
        authcid.decode("utf-8")
        password.decode("utf-8")
    except UnicodeDecodeError:
        _sasl_refused(session, rb, "invalid UTF-8")
        return None
    # hold registration until the (threaded) password check is done
    session.sasl = exchange
    d = session.portal.login(UsernamePassword(authcid, password), session, IChatUser)
    d.addCallbacks(_sasl_success, _sasl_failure, callbackArgs=(session, rb), errbackArgs=(session, rb))
    return d


def _scram_step(session, exchange: SaslExchange, scram: ScramExchange, raw: bytes, rb):
    """One client message of a SCRAM-SHA-256 exchange (RFC 5802): client-first, client-final,
    then the empty response to the server's signature."""
    if exchange.accepted is not None:
        accepted, exchange.accepted = exchange.accepted, None
        session.sasl = None
        if raw:
            accepted[2]()
            _sasl_refused(session, rb, "unexpected SCRAM message")
            return None
        return _sasl_success(accepted, session, rb)
    try:
        if not scram.username:
            name = scram.first(raw)
            source = session.portal.scram_keys()
            if source is None:  # the store went away with a reload
                raise ScramError("SCRAM is not available")
            d = source.scram_parameters(name)
            d.addCallbacks(_scram_challenge, _scram_unavailable, callbackArgs=(session, exchange, rb),
                           errbackArgs=(session, exchange, rb))
            return d
        proof = scram.final(raw)
    except ScramError as e:
        end_sasl(session)
        _sasl_refused(session, rb, str(e))
        return None
    d = session.portal.login(proof, session, IChatUser)
    d.addCallbacks(_scram_accepted, _sasl_failure, callbackArgs=(session, exchange, proof, rb),
                   errbackArgs=(session, rb))
    return d


def _scram_challenge(parameters: tuple, session, exchange: SaslExchange, rb) -> None:
    if session.sasl is not exchange:
        return
    assert exchange.scram is not None  # a SCRAM exchange
    _send_challenge(rb, exchange.scram.server_first(*parameters))


def _scram_unavailable(failure, session, exchange: SaslExchange, rb) -> None:
    failure.trap(LoginFailed)  # the store could not be read (LoginUnavailable)
    if session.sasl is exchange:
        end_sasl(session)
    rb.numeric(N.ERR_SASLFAIL, "SASL authentication failed")


def _scram_accepted(result, session, exchange: SaslExchange, proof: ScramProof, rb) -> None:
    if session.sasl is not exchange or session.closed:
        result[2]()  # aborted or gone meanwhile
        return
    # the server proves it knows the keys too; the login completes on the client's "+"
    exchange.accepted = result
    _send_challenge(rb, ScramExchange.server_final(proof))


def _sasl_success(result, session, rb):
    _iface, user, logout = result
    session.sasl = None
    account = user.account
    if session.closed:
        logout()
        return None
    if session.registered:
        # the connection keeps its hub user; only the account changes
        logout()
        session.hub.set_account(session.user, account)
    else:
        if session.user is not None and session._logout is not None:
            session._logout()
        session.adopt_user(user, logout)
    session.sasl_done = True
    mask = f"{session.nick or '*'}!~{session.username or '*'}@{session.host}"
    if session.user is not None and session.registered:
        mask = session.user.mask
    rb.numeric(N.RPL_LOGGEDIN, mask, account, f"You are now logged in as {account}")
    rb.numeric(N.RPL_SASLSUCCESS, "SASL authentication successful")
    return session.try_register(rb)


def _sasl_failure(failure, session, rb):
    # UnhandledCredentials too: a server with no password checker ([auth] checkers = []
    # and no --auth) refuses every SASL login the same way
    failure.trap(LoginFailed)
    session.sasl = None
    rb.numeric(N.ERR_SASLFAIL, "SASL authentication failed")
    return None


# -- liveness and leaving ----------------------------------------------------------------


@command("PING", before_registration=True, penalty=0.5)
def ping(session, msg: Message, rb) -> None:
    """PING <token>: answered with PONG <server> :<token>, the token echoed exactly."""
    if not msg.params:
        rb.numeric(N.ERR_NOORIGIN, "No origin specified")
        return
    rb.add(Message("PONG", [session.server_name, msg.params[0]], session.server_name))


@command("PONG", before_registration=True, penalty=0.5)
def pong(session, msg: Message, rb) -> None:
    """PONG: proof of life (any line is; nothing to answer)."""


@command("QUIT", before_registration=True)
def quit_(session, msg: Message, rb) -> None:
    """QUIT [:reason]."""
    rb.flush()
    session.quit(msg.params[0] if msg.params else "")

