"""One IRC client: registration, capability state and command dispatch.

An ``IrcSession`` knows nothing of sockets. A transport feeds it complete lines
(``line_received``) and tells it when the connection is gone (``connection_lost``);
the session writes through an ``IrcWriter`` (see ``chathub.protocols.irc``), so the
same session serves raw TCP and IRC over WebSocket. What every session shares (hub,
portal, config, MOTD, metadata, the timer sweep) is the ``IrcServer``'s; each command's
replies are held in a ``ResponseBuffer`` (``responsebuffer.py``) until it is done.
"""
from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Callable, Iterable, Optional, Protocol, cast

from zope.interface import implementer

from twisted.cred.credentials import UsernamePassword
from twisted.cred.error import LoginFailed
from twisted.internet import defer
from twisted.logger import Logger

from chathub.auth.credentials import GuestNick
from chathub.events import Event, Kind
from chathub.hub import errors
from chathub.hub.outbox import Receipt
from chathub.interfaces import IChatUser, IParticipant
from chathub.names import fold
from chathub.protocols.flood import FloodGate
from chathub.protocols.irc import caps as C
from chathub.protocols.irc import numerics as N
from chathub.protocols.irc.flood import exempt_host
from chathub.protocols.irc.flood import for_connection as flood_control
from chathub.protocols.irc.heldoutput import HeldOutput, Slot
from chathub.protocols.irc.multiline import BATCHED_LINE_PENALTY, ClientBatch, take_batched
from chathub.protocols.irc.render import one_text_line, render_lines
from chathub.protocols.irc.responsebuffer import ResponseBuffer
from chathub.protocols.irc.table import COMMANDS, FAST_PATHS, REGISTERED, RENAME_SHOWN, SIGNED_OFF, WELCOME, run_hooks
from chathub.protocols.irc.wire import LineError, Message, parse

if TYPE_CHECKING:
    from twisted.internet.interfaces import IReactorTime

    from chathub.config import Config
    from chathub.hub.service import ChatHub
    from chathub.hub.users import User
    from chathub.protocols.irc.server import IrcServer

#: capabilities of a session that negotiated none (shared: sessions replace, never mutate)
_NO_CAPS: frozenset = frozenset()
#: identity changes the hub sends to watchers one by one (shown with extended-monitor)
_IDENTITY_KINDS = frozenset({Kind.AWAY, Kind.CHGHOST, Kind.SETNAME, Kind.ACCOUNT})


class IrcWriter(Protocol):
    """Where a session's output goes: a TCP connection or a WebSocket."""

    def write(self, data: bytes) -> None:
        """Send one or more complete CRLF-terminated lines."""

    def lose_connection(self) -> None:
        """Close once what was written is flushed."""

    @property
    def pending_bytes(self) -> int:
        """Bytes written and not yet taken by the connection (bound by ``[limits] sendq_bytes``)."""


@implementer(IParticipant)
class IrcSession:
    """The IRC side of one connection (an ``IParticipant`` for the hub)."""

    protocol = "irc"
    echo_own = False
    log = Logger()

    # 10,000 idle connections are 10,000 of these: no per-instance dict, containers made
    # only when first used (see the properties below)
    __slots__ = (
        "server",
        "_login_address",
        "_logins",
        "writer",
        "host",
        "secure",
        "caps",
        "cap_version",
        "cap_negotiating",
        "_render_caps",
        "format_key",
        "_nick",
        "username",
        "realname",
        "password",
        "user",
        "_logout",
        "_unwatch_token",
        "registered",
        "closed",
        "sasl",
        "sasl_done",
        "nick_in_use",
        "_metadata_subs",
        "_pending_metadata",
        "client_batch",
        "flood",
        "gate",
        "reader",
        "connected_at",
        "last_activity",
        "idle_since",
        "_awaiting_pong",
        "_joining",
        "__weakref__",
    )

    def __init__(
        self,
        server: "IrcServer",
        writer: IrcWriter,
        host: str = "localhost",
        *,
        address: Optional[str] = None,
        secure: bool = False,
        reader=None,
    ) -> None:
        """The session of one connection to ``server``, writing to ``writer``.

        ``host`` is the peer's host as users see it; ``address`` its address as the
        socket gives it (``host`` when not given): its logins are throttled by it and
        ``[limits]``/``[irc] flood_exempt`` are matched against it. ``reader`` is the
        transport to pause while lines wait (``pauseProducing``)."""
        if address is None:
            address = host
        config = server.config
        reactor = server.clock
        self.server = server
        self._login_address = address  # what its logins are throttled by
        self._logins: Optional[Any] = None  # made at the first login (``portal``)
        self.writer = writer
        self.host = host
        self.secure = secure

        self.caps: frozenset[str] = _NO_CAPS
        self.cap_version = 0
        self.cap_negotiating = False
        self._render_caps: frozenset = _NO_CAPS
        self.format_key = server.format_key(_NO_CAPS)

        self._nick: Optional[str] = None
        self.username: Optional[str] = None
        self.realname = ""
        self.password: Optional[str] = None
        self.user: Optional[User] = None  # hub User once logged in (guest or account)
        self._logout: Optional[Callable[[], None]] = None
        self._unwatch_token: Optional[Callable[[], None]] = None  # see hold_token
        self.registered = False
        self.closed = False
        self.sasl = None  # SASL exchange state (see commands_registration)
        self.sasl_done = False
        self.nick_in_use: Optional[str] = None  # the last NICK refused before registration as held
        self._metadata_subs: Optional[set[str]] = None
        self._pending_metadata: Optional[dict[str, str]] = None
        self.client_batch: Optional[ClientBatch] = None  # an open draft/multiline batch
        #: in a cluster, the rooms whose JOIN this client waits to be answered for: folded
        #: name -> (the join's receipt, the lines of the room held for after the answer,
        #: their bytes)
        self._joining: Optional[dict[str, tuple[Receipt, list[bytes], list[int]]]] = None

        self.flood = flood_control(config.irc, clock=reactor.seconds, exempt=exempt_host(config, address))
        # lines waiting (flood control, a login); each line's penalty is charged by dispatch
        self.gate = FloodGate(self.flood, reactor, self)
        self.reader = reader
        self.connected_at = reactor.seconds()
        self.last_activity = self.connected_at
        self.idle_since = time.time()  # for WHOIS idle (wall clock)
        self._awaiting_pong: Optional[float] = None
        # the registration deadline, then the ping check: one sweep per server checks them all
        server.session_opened(self)

    # What every session shares is read from the server, not kept by each of 10,000.

    @property
    def hub(self) -> "ChatHub":
        """The server's hub."""
        return self.server.hub

    @property
    def config(self) -> "Config":
        """The server's configuration."""
        return self.server.config

    @property
    def reactor(self) -> "IReactorTime":
        """The server's clock (the reactor)."""
        return self.server.clock

    @property
    def server_name(self) -> str:
        """The server's name (``[server] name``), the source of its lines."""
        return self.server.server_name

    @property
    def nick(self) -> Optional[str]:
        """This client's nick: the one it asked for until registered, then its hub user's
        (which another session of the same account may change: ``[auth] multiclient``)."""
        user = self.user
        if self.registered and user is not None and user.nick is not None:
            return user.nick
        return self._nick

    @nick.setter
    def nick(self, nick: Optional[str]) -> None:
        self._nick = nick

    @property
    def metadata_subs(self) -> set[str]:
        """draft/metadata-3 keys this client subscribed to."""
        if self._metadata_subs is None:
            self._metadata_subs = set()
        return self._metadata_subs

    @property
    def pending_metadata(self) -> dict[str, str]:
        """``METADATA * SET`` values given before registration."""
        if self._pending_metadata is None:
            self._pending_metadata = {}
        return self._pending_metadata

    @property
    def has_pending_metadata(self) -> bool:
        """True when ``METADATA * SET`` gave values before registration."""
        return bool(self._pending_metadata)

    def retune_flood(self, config: "Config") -> None:
        """Take a reloaded config's flood settings (the server's config is read live)."""
        self.flood = flood_control(config.irc, clock=self.server.clock.seconds, exempt=exempt_host(config, self.host))
        self.gate.retune(self.flood)

    # -- IParticipant --------------------------------------------------------------------

    @property
    def address(self) -> str:
        """The peer's address (``IParticipant.address``)."""
        return self.host

    def encode(self, event: Event) -> Optional[bytes]:
        if self._joining is not None and event.target and fold(event.target) in self._joining:
            return self._while_joining(event)
        server_name = self.server.server_name  # once per message and format: not through the property
        wire = one_text_line(event, self._render_caps, server_name)
        if wire is not None:
            return wire
        messages = render_lines(event, self._render_caps, server_name)
        if not messages:
            return None
        return messages[0].to_bytes() if len(messages) == 1 else b"".join([m.to_bytes() for m in messages])

    def send(self, data: bytes) -> None:
        if not self.closed:
            self.writer.write(data)

    # -- a JOIN answered once it is at its number (a cluster's) ---------------------------

    def joining(self, folded: str, receipt: Receipt) -> None:
        """This client joined room ``folded`` on a cluster node: the member is in the room
        here at once, its JOIN (and the answer: JOIN, names, replay) waits for its number.
        Meanwhile the room's lines are encoded for this client alone (``encode``): chat
        shown before the JOIN is numbered before it (the replay's, or history's), not shown
        live; the rest waits for the answer (``joined``), at most ``[limits] sendq_bytes``. Before, the client got
        the room's lines before its own JOIN line (a two-node probe: 1 to 32 of them, in 4
        of 9 joins in a busy room), and again in the replay."""
        if self._joining is None:
            self._joining = {}
        self._joining[folded] = (receipt, [], [0])
        self.format_key = ("joining", id(self))  # one of its own: encoded for it alone

    def joined(self, folded: str) -> None:
        """The answer to the JOIN of room ``folded`` is written: what came after the JOIN
        follows it, and the room's lines reach this client as everyone's again."""
        entry = self._joining.pop(folded, None) if self._joining is not None else None
        if not self._joining:
            self._joining = None
            self.format_key = self.server.format_key(self._render_caps)
        if entry is not None and entry[1] and not self.closed:
            self.writer.write(b"".join(entry[1]))

    def _while_joining(self, event: Event) -> Optional[bytes]:
        assert self._joining is not None
        receipt, later, size = self._joining[fold(event.target)]
        if not receipt.shown and event.kind in Kind.TEXT_KINDS:
            return None  # chat numbered before the JOIN: the replay's (or history's)
        # a change numbered before it (a part, a topic) follows the answer too: its names and
        # topic are this node's copy's when the JOIN was made
        messages = render_lines(event, self._render_caps, self.server_name)
        if messages:
            data = b"".join([m.to_bytes() for m in messages])
            later.append(data)
            size[0] += len(data)
            if size[0] > self.server.config.limits.sendq_bytes:
                self.close("SendQ exceeded")  # as a send queue that long would be
        return None

    def deliver(self, event: Event) -> None:
        if event.kind == Kind.PRESENCE:
            if event.data.get("state") == "online":
                message = self.numeric(N.RPL_MONONLINE, event.source.mask)
            else:
                message = self.numeric(N.RPL_MONOFFLINE, event.target or event.source.nick)
        elif event.kind in _IDENTITY_KINDS:
            # someone we MONITOR but share no channel with (extended-monitor)
            if C.EXTENDED_MONITOR in self.caps:
                self.write_messages(render_lines(event, self._render_caps, self.server_name))
            return
        elif event.kind == Kind.RENAME:
            rb = ResponseBuffer(self, None)
            run_hooks(RENAME_SHOWN, self, event, rb)
            rb.flush()
            return
        elif event.kind == Kind.NOTICE and event.source.protocol == "server":
            code = N.HUB_ERRORS.get(event.data.get("error", "")) if event.data.get("room") else None
            if code is not None:  # a request refused after it was accepted (void in a cluster)
                message = self.numeric(code, event.data["room"], event.data.get("reason") or event.text)
            else:
                message = Message("NOTICE", [self.nick or "*", event.text], self.server_name)
        else:
            self.write_messages(render_lines(event, self._render_caps, self.server_name, direct=True))
            return
        self.write_messages([message])

    def read_marker_moved(self, target: str, when: float) -> None:
        """Another session of this user moved a read marker (``ChatHub.mark_read``)."""
        if C.READ_MARKER in self.caps:
            from chathub.protocols.irc.commands_readmarker import marker_message

            self.write_messages([marker_message(self, target, when)])

    def close(self, reason: str) -> None:
        """Tell the client why and hang up (used by KILL and send-queue overflow)."""
        if self.closed:
            return
        self.farewell(reason)
        self._shutdown(reason)
        self.writer.lose_connection()

    def hold_token(self, token: str, account: str) -> None:
        """This connection logged in with session token ``token`` of ``account`` (SASL PLAIN
        or PASS): when the token is revoked ("log out everywhere", a changed password) the
        connection is closed, as the web sessions holding it are."""
        tokens = getattr(self.hub, "session_tokens", None)
        if tokens is None or self.closed:
            return
        if self._unwatch_token is not None:
            self._unwatch_token()
        self._unwatch_token = tokens.watch(token, account, self._token_revoked)

    def _token_revoked(self) -> None:
        self._unwatch_token = None
        self.close("Logged out: the session token this connection logged in with was revoked")

    def farewell(self, reason: str) -> None:
        """Tell the client the server is closing its link (``ERROR``), without closing it."""
        self.write_messages([Message("ERROR", [reason])])

    # -- output ----------------------------------------------------------------------------

    def numeric(self, code: str, *params: str) -> Message:
        """A numeric reply from the server to this client."""
        return Message(code, [self.nick or "*", *params], self.server_name)

    def write_messages(self, messages: Iterable[Message]) -> None:
        if self.closed:
            return
        self.writer.write(b"".join(m.to_bytes() for m in messages))

    def output_slot(self) -> tuple[HeldOutput, Slot]:
        """Hold this connection's output from now on until a replay fills the place
        returned (``HeldOutput``): what is written meanwhile goes after it."""
        held = self.writer
        if not isinstance(held, HeldOutput):
            held = self.writer = HeldOutput(
                self.writer, self.server.config.limits.sendq_bytes, self.server.clock, self._output_released
            )
        return held, held.slot()

    def _output_released(self, writer: Any) -> None:
        self.writer = writer

    def set_caps(self, enabled: Iterable[str] = (), disabled: Iterable[str] = ()) -> None:
        """Change the negotiated capabilities and the format key that follows from them."""
        self.caps = frozenset(self.caps.union(enabled).difference(disabled))
        self._render_caps = C.rendering(self.caps)
        if self._joining is None:  # (else its own, until its JOINs are answered)
            self.format_key = self.server.format_key(self._render_caps)

    def render_own(self, event: Event) -> list[Message]:
        """This client's copy of an event it caused (echo, JOIN, NICK ...)."""
        return render_lines(event, self._render_caps, self.server_name, direct=True)

    # -- input -----------------------------------------------------------------------------

    def line_received(self, line: bytes) -> None:
        """Take one line (without its line ending) from the transport."""
        if self.closed:
            return
        self.last_activity = self.server.clock.seconds()  # once a line: not through the property
        self._awaiting_pong = None
        self.gate.submit(line, 0)

    def flooded(self) -> None:
        """Too many lines waited for the flood gate (never for an exempt client)."""
        self.hub.counts.flood_disconnects += 1
        self.close("Excess Flood")

    def pause_reading(self) -> None:
        """Lines wait: read no more from the connection until they are handled."""
        if self.reader is not None:
            self.reader.pauseProducing()

    def resume_reading(self) -> None:
        """No line waits: read again."""
        if self.reader is not None:
            self.reader.resumeProducing()

    def when_delivered(self, fn: Callable[[], None]) -> None:
        """Call ``fn`` once the hub delivered what our lines so far caused."""
        self.hub.after_delivery(fn, self.user)

    def hold(self, d: defer.Deferred) -> None:
        """Hold further lines until ``d`` fires (an async login), then carry on."""
        self.gate.pause_until(d)

    def handle_gated(self, line: bytes) -> None:
        """Handle one line whose turn at the flood gate has come."""
        if self.registered:
            user = self.user
            if user is not None and user.participant is not self:  # one of several sessions
                user.act_as(self)  # before the fast path too: it sends as this session
            fast = FAST_PATHS.get(line[:8])
            if fast is not None and fast(self, line):
                return
        try:
            message = parse(line)
        except LineError as e:
            if e.reason == "empty":
                return
            self.flood.charge(1.0)
            label = e.tags.get("label") if C.LABELED_RESPONSE in self.caps else None
            rb = ResponseBuffer(self, label)
            if e.reason == "too_long":
                rb.numeric(N.ERR_INPUTTOOLONG, "Input line too long")
            else:
                rb.fail(e.command, "INVALID_UTF8", "Message rejected: it is not valid UTF-8")
            rb.flush()
            return
        self.dispatch(message)

    def dispatch(self, message: Message) -> None:
        """Run one parsed command through the table and send its replies."""
        name = message.command.upper()
        label = message.tags.get("label") if C.LABELED_RESPONSE in self.caps else None
        rb = ResponseBuffer(self, label)
        if "batch" in message.tags and name != "BATCH" and self.registered:
            # a line of the client's multiline batch: kept until the batch closes
            self.flood.charge(BATCHED_LINE_PENALTY)
            take_batched(self, message, rb, self.config.limits)
            self._flush(rb)
            return
        cmd = COMMANDS.get(name)
        self.flood.charge(cmd.penalty if cmd is not None else 1.0)
        user = self.user
        if user is not None and user.participant is not self:  # one of several sessions
            user.act_as(self)
        if name not in ("PING", "PONG"):
            self.idle_since = time.time()
        result = None
        if cmd is None:
            if self.registered:
                rb.numeric(N.ERR_UNKNOWNCOMMAND, name, "Unknown command")
            else:
                rb.numeric(N.ERR_NOTREGISTERED, "You have not registered")
        elif not self.registered and not cmd.before_registration:
            rb.numeric(N.ERR_NOTREGISTERED, "You have not registered")
        elif self.registered and cmd.only_before_registration:
            rb.numeric(N.ERR_ALREADYREGISTERED, "You may not reregister")
        elif len(message.params) < cmd.min_params:
            rb.numeric(N.ERR_NEEDMOREPARAMS, name, "Not enough parameters")
        elif cmd.privilege is not None and not self._has_privilege(cmd.privilege):
            rb.numeric(N.ERR_NOPRIVILEGES, "Permission Denied- You're not an IRC operator")
        else:
            result = self.run_handler(name, cmd.handler, message, rb)
        if isinstance(result, defer.Deferred):
            result.addErrback(self._command_failed, name, rb)
            if not result.called or result.paused:
                result.addBoth(lambda _: self._flush(rb))
                self.hold(result)
                return
            # answered already (a guest's login on a lone node): no later lines to hold
        self._flush(rb)

    def run_handler(self, name: str, handler: Callable, message: object, rb: ResponseBuffer):
        """``handler(self, message, rb)``, a refusal answered with its numeric and a crash
        with ``FAIL <name> INTERNAL_ERROR`` (and logged); its result."""
        try:
            return handler(self, message, rb)
        except errors.HubError as e:
            self.hub_error(rb, e)
        except Exception:
            self.log.failure("IRC command {command} failed", command=name)
            rb.fail(name, "INTERNAL_ERROR", "The server could not run this command")
        return None

    def _command_failed(self, failure, name: str, rb: ResponseBuffer) -> None:
        if failure.check(errors.HubError):
            self.hub_error(rb, failure.value)
            return
        self.log.failure("IRC command {command} failed", failure, command=name)
        rb.fail(name, "INTERNAL_ERROR", "The server could not run this command")

    def _flush(self, rb: ResponseBuffer) -> None:
        if rb.label is None and not rb.messages:
            return  # nothing to write: queueing it would only split the fan-out batch
        if rb.at_once or not self.registered:
            # a connection with no user in the hub yet (CAP, SASL, a refused NICK) or a new
            # user's welcome: nothing the outbox holds is for it, and a cluster node's
            # outbox holds every reply while a room waits for another node's event (a new
            # connection then got no CAP answer until the room went on)
            rb.flush()
            return
        # after everything the hub has accepted that concerns us is delivered, so our own
        # copies (echoes, JOIN, NICK) and our rooms' events reach us in hub order (what
        # only others are shown does not hold it: ``Outbox.after``)
        self.hub.after_delivery(rb.flush, self.user)

    def _has_privilege(self, privilege: str) -> bool:
        user = self.user
        if user is None or not user.is_operator:
            return False
        return privilege == "oper" or privilege in user.privileges

    def hub_error(self, rb: ResponseBuffer, error: errors.HubError, *context: str) -> None:
        """Report a refused hub request with the numeric IRC uses for it."""
        code = N.HUB_ERRORS.get(error.code, N.ERR_UNKNOWNERROR)
        target = error.target or "*"
        message = error.message
        if isinstance(error, errors.ModeParamError):
            # 478 <channel> <char> :text; 696 <target> <char> <parameter> :text
            params = (error.mode,) if code == N.ERR_BANLISTFULL else (error.mode, error.param)
            rb.numeric(code, target, *params, message)
        elif code in (N.ERR_USERNOTINCHANNEL, N.ERR_USERONCHANNEL):
            rb.numeric(code, target, *(context or ("*",)), message)
        elif code in (N.ERR_NOPRIVILEGES, N.ERR_INPUTTOOLONG):
            rb.numeric(code, message)
        elif code == N.ERR_UNKNOWNMODE:
            rb.numeric(code, target, message)
        elif code == N.ERR_UNKNOWNERROR:
            rb.numeric(code, "*", target, message)
        else:
            rb.numeric(code, target, message)

    # -- registration ------------------------------------------------------------------------

    def try_register(self, rb: ResponseBuffer) -> Optional[defer.Deferred]:
        """Complete registration once NICK, USER, CAP END and SASL allow it."""
        if self.registered or self.closed or self.cap_negotiating or self.sasl is not None:
            return None
        if self.nick is None or self.username is None:
            return None
        if self.user is not None:
            return self._welcome(rb)
        credentials = self._login_credentials()
        d = self.portal.login(credentials, self, IChatUser)
        d.addCallbacks(self._logged_in, self._login_failed, callbackArgs=(rb,), errbackArgs=(rb,))
        return d

    def _login_credentials(self):
        if self.password is None:
            return GuestNick(self.nick)
        name, sep, password = self.password.partition(":")
        if sep and name:
            return UsernamePassword(name.encode("utf-8"), password.encode("utf-8"))
        return UsernamePassword(self.nick.encode("utf-8"), self.password.encode("utf-8"))

    def _logged_in(self, result, rb: ResponseBuffer) -> Optional[defer.Deferred]:
        _iface, user, logout = result
        if self.closed:
            # the connection went while the password was checked: nothing runs for it
            logout()
            self.log.info("login of {nick} from {peer} completed after the connection closed; logged out",
                          nick=self.nick, peer=self.host)
            return None
        self.adopt_user(user, logout)
        return self._welcome(rb)

    def adopt_user(self, user, logout) -> None:
        """Bind the hub avatar from the portal to this connection."""
        self.user = user
        self._logout = logout

    def _login_failed(self, failure, rb: ResponseBuffer) -> None:
        failure.trap(LoginFailed)  # UnhandledCredentials: PASS on a server without password checkers
        if self.password is not None:
            rb.numeric(N.ERR_PASSWDMISMATCH, "Password incorrect")
            rb.flush()
            self.close("Bad password")
            return
        if not self.config.auth.allow_guests:
            rb.fail("NICK", "ACCOUNT_REQUIRED", "This server needs a password: use SASL or PASS")
            rb.flush()
            self.close("An account is required")
            return
        rb.numeric(N.ERR_NICKNAMEINUSE, self.nick or "*", "Nickname is registered; log in with its password")
        self.nick = None

    def _welcome(self, rb: ResponseBuffer) -> defer.Deferred:
        """Sign on (in a cluster, once the nick is claimed on every node: until then later
        lines wait), then send the welcome burst."""
        user = self.user
        assert user is not None  # adopted once the login succeeded
        user.user = "~" + (self.username or "user")[: self.config.irc.user_length]
        user.realname = self.realname
        user.identity_changed()
        d = self.hub.claim_and_sign_on(user, cast(str, self.nick))  # the login was for this nick
        return d.addCallbacks(self._signed_on, self._sign_on_refused, callbackArgs=(rb,), errbackArgs=(rb,))

    @property
    def portal(self) -> Any:
        """This connection's logins (``LoggedLogins`` over the login limiter's view of its
        address), made when first needed."""
        if self._logins is None:
            self._logins = self.server.portal.client(self._login_address)
        return self._logins

    def _forget_logins(self) -> None:
        """Registered: drop the logins' objects unless they count a failure (a later login,
        OPER or SASL, makes new ones). 10,000 idle connections kept 112 bytes each of them."""
        logins = self._logins
        if logins is not None and not logins.failures:
            self._logins = None

    def _sign_on_refused(self, failure, rb: ResponseBuffer) -> None:
        failure.trap(errors.HubError)
        if failure.value.code == "too_many_sessions":
            # another nick would not be the account's user either: the connection ends
            rb.fail("NICK", "TOO_MANY_SESSIONS", self.nick or "*", failure.value.message)
            rb.flush()
            self.close("Too many sessions")
            return
        self.hub_error(rb, failure.value)
        self.nick = None

    def _signed_on(self, signed: User, rb: ResponseBuffer) -> None:
        fresh = self.user
        assert fresh is not None
        attached = signed is not fresh  # one more session of the account's user
        if attached:
            self.user = user = signed
            if self._logout is not None:
                self._logout = self._logout.for_user(user)  # type: ignore[attr-defined]
        else:
            user = fresh
        if self.closed:  # the connection went while the nick was claimed (its logout came first)
            self.hub.quit(user, "Connection closed", self)
            return
        self.registered = True
        self._forget_logins()
        self.server.session_registered(self)
        self.nick = user.nick
        run_hooks(WELCOME, self, rb)
        run_hooks(REGISTERED, self, rb)
        if attached:
            self._show_rooms(rb)  # in hub order, after what its account's user was sent
            return
        rb.at_once = True  # a new user: nothing the hub holds is for it yet
        if self.config.irc.autojoin and user.account is not None:
            # once the welcome is written, whenever the account's rooms are read
            rb.after_flush(lambda: self.hub.kept_rooms(user).addCallback(self._rejoin))

    def _show_rooms(self, rb: ResponseBuffer) -> None:
        """A session that joined its account's user: the rooms that user is in, each as
        a JOIN would show it (topic, names, replay), as Ergo does on attach."""
        from chathub.protocols.irc.commands_channels import show_joined

        user = self.user
        assert user is not None
        for room in list(user.rooms.values()):
            show_joined(self, room, rb)

    def _rejoin(self, rooms: list[tuple[str, Optional[str]]]) -> None:
        """Join the rooms the account is in ([irc] autojoin), as a JOIN of each (with its
        key, if kept with one) would; one JOIN per room, as a key may hold a comma."""
        from chathub.protocols.irc.commands_channels import join

        if self.closed or not self.registered or not rooms:
            return
        rb = ResponseBuffer(self, None)
        waiting = list(reversed(rooms))

        def rest(_: object = None) -> Optional[defer.Deferred]:
            # in order; a room new to a cluster node waits for its name's claim, and the
            # next rooms (and the client's later lines) wait for it
            while waiting and not self.closed:
                name, key = waiting.pop()
                claimed = join(self, Message("JOIN", [name] if key is None else [name, key]), rb)
                if isinstance(claimed, defer.Deferred):
                    return claimed.addErrback(self._command_failed, "JOIN", rb).addCallback(rest)
            return None

        d = rest()
        if d is None:
            self._flush(rb)
            return
        d.addErrback(self._command_failed, "JOIN", rb).addBoth(lambda _: self._flush(rb))
        self.hold(d)

    # -- timers ------------------------------------------------------------------------------

    def check_timers(self, now: float) -> None:
        """Registration deadline, then PING after ``irc.ping_interval`` of silence and
        drop after ``irc.ping_timeout`` without an answer (called by the sweep)."""
        if self.closed:
            return
        if not self.registered:
            if now - self.connected_at >= self.config.limits.registration_timeout:
                self.close("Registration timed out")
            return
        irc = self.config.irc
        if self._awaiting_pong is not None:
            if now - self._awaiting_pong >= irc.ping_timeout:
                seconds = int(now - self.last_activity)
                self.close(f"Ping timeout: {seconds} seconds")
        elif now - self.last_activity >= irc.ping_interval:
            self._awaiting_pong = now
            self.write_messages([Message("PING", [self.server_name])])

    # -- teardown ----------------------------------------------------------------------------

    def quit(self, reason: str) -> None:
        """The client asked to leave (QUIT)."""
        if self.user is not None and self.registered:
            self.hub.quit(self.user, reason, self)
        self.close(f"Quit: {reason}" if reason else "Quit")

    def connection_lost(self, reason: str = "Connection closed") -> None:
        """The transport is gone: leave the hub, stop timers."""
        held = self.writer
        if isinstance(held, HeldOutput):  # nobody left to write it to
            held.drop()
        self._shutdown(reason)

    def _shutdown(self, reason: str) -> None:
        self.server.session_closed(self)
        self.gate.stop()
        if not self.closed and self.user is not None and self.registered:
            self.hub.quit(self.user, reason, self)
            if self.hub.users.get(self.user.folded or "") is not self.user:
                run_hooks(SIGNED_OFF, self, self.user)  # the user is gone, not just this session
        self.closed = True
        unwatch, self._unwatch_token = self._unwatch_token, None
        if unwatch is not None:
            unwatch()
        sasl, self.sasl = self.sasl, None
        if sasl is not None:
            sasl.drop()  # a SCRAM login accepted but not yet completed by the client
        logout, self._logout = self._logout, None
        if logout is not None:
            logout()
