"""The ``chathub.v1`` JSON subprotocol: one JSON object per WebSocket text message.

Requests are checked against a declarative table (name, whether it is allowed before
login, required and optional fields with their types, flood cost) before a handler runs.
Anything wrong with a request, and anything the hub refuses, is answered with an
``error`` object carrying a stable code; the connection stays usable. docs/protocol.md
describes every message.
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Optional, Union

from zope.interface import implementer

from twisted.cred.credentials import UsernamePassword
from twisted.cred.error import UnauthorizedLogin, UnhandledCredentials
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IDelayedCall
from twisted.logger import Logger

from chathub.auth.credentials import GuestNick, SessionToken
from chathub.auth.limiter import LoginThrottled, client_portal
from chathub.events import Event, Kind, iso_time, parse_iso_time
from chathub.hub import errors
from chathub.hub.errors import HubError
from chathub.hub.outbox import Receipt
from chathub.hub.rooms import Member, Room
from chathub.hub.users import User
from chathub.interfaces import IChatUser, IParticipant
from chathub.names import fold, is_room_name, nick_problem
from chathub.protocols.autojoin import fired, join_in_turn
from chathub.protocols.flood import FloodGate, control_for, is_exempt
from chathub.protocols.participant import EncodingParticipant, JoinAnswering, JoinsUnderWay
from chathub.protocols.web.events import TYPING_STATES, TYPING_TAG, dumps, event_json
from chathub.protocols.web.history import BadReference, HistoryUnavailable, fetch_history
from chathub.protocols.web.websocket import (
    CLOSE_BY_SERVER,
    CLOSE_FLOOD,
    CLOSE_LOGIN_TIMEOUT,
    CLOSE_NORMAL,
    JSON_V1,
)
from chathub.text import is_valid_text

PROTOCOL_VERSION = 1


class RequestError(Exception):
    """A request we refuse before it reaches the hub; ``code`` is stable."""

    def __init__(self, code: str, message: str, field_name: Optional[str] = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.field = field_name


#: what a request field must be an instance of (``isinstance``'s second argument)
FieldType = Union[type, tuple[type, ...]]


@dataclass(frozen=True)
class Request:
    """One entry of the request table."""

    handler: str  # method name on JsonSession
    before_login: bool = False  # allowed before login
    required: dict[str, FieldType] = field(default_factory=dict)
    optional: dict[str, FieldType] = field(default_factory=dict)
    cost: float = 1.0  # flood budget it uses


_STR = str
_INT = int
REQUESTS: dict[str, Request] = {
    "login": Request(
        "do_login",
        before_login=True,
        required={"nick": _STR},
        optional={"password": _STR, "account": _STR, "token": _STR},
        cost=5,
    ),
    "logout": Request("do_logout", optional={"everywhere": bool}, cost=3),
    "register": Request("do_register", required={"password": _STR}, cost=10),
    "password": Request("do_password", required={"password": _STR, "new_password": _STR}, cost=10),
    "ping": Request("do_ping", before_login=True, optional={"token": _STR}),
    "join": Request("do_join", required={"room": _STR}, optional={"key": _STR}),
    "part": Request("do_part", required={"room": _STR}, optional={"reason": _STR}),
    "message": Request("do_message", required={"target": _STR, "text": _STR}),
    "action": Request("do_action", required={"target": _STR, "text": _STR}),
    "notice": Request("do_notice", required={"target": _STR, "text": _STR}),
    "typing": Request("do_typing", required={"target": _STR}, optional={"state": _STR}, cost=0.5),
    "redact": Request("do_redact", required={"target": _STR, "msgid": _STR}, optional={"reason": _STR}, cost=2),
    "topic": Request("do_topic", required={"room": _STR, "text": _STR}),
    "rename": Request("do_rename", required={"room": _STR, "new": _STR}, optional={"reason": _STR}, cost=5),
    "members": Request("do_members", required={"room": _STR}),
    "rooms": Request("do_rooms", cost=2),
    "nick": Request("do_nick", required={"nick": _STR}, cost=3),
    "away": Request("do_away", optional={"text": _STR}),
    "history": Request(
        "do_history",
        required={"target": _STR},
        optional={"before": (str, int, float), "after": (str, int, float), "limit": _INT},
        cost=2,
    ),
    "conversations": Request("do_conversations", optional={"limit": _INT}, cost=2),
    "markread": Request("do_markread", required={"target": _STR}, optional={"time": _STR}, cost=0.5),
    "quit": Request("do_quit", before_login=True, optional={"reason": _STR}),
}

_MESSAGE = REQUESTS["message"]

_TYPE_NAMES = {str: "a string", int: "an integer", bool: "true or false"}


def _type_name(tp) -> str:
    if isinstance(tp, tuple):
        return "a string or a number"
    return _TYPE_NAMES.get(tp, tp.__name__)


def plain_message(msg: dict) -> bool:
    """True when a ``message`` request has what ``_check_fields`` asks of it: a ``target``
    and a ``text`` that are strings of valid text (it would let it through). The commonest
    request, checked without the field table."""
    target, text = msg.get("target"), msg.get("text")
    return type(target) is str and type(text) is str and is_valid_text(target) and is_valid_text(text)


def _check_fields(msg: dict, spec: Request) -> None:
    for name in spec.required:
        if name not in msg or msg[name] is None:
            raise RequestError("missing_field", f"'{name}' is required", name)
    for name, tp in {**spec.required, **spec.optional}.items():
        value = msg.get(name)
        if value is None:
            continue
        if (isinstance(value, bool) and tp is not bool) or not isinstance(value, tp):
            raise RequestError("invalid_field", f"'{name}' must be {_type_name(tp)}", name)
        if isinstance(value, str) and not is_valid_text(value):  # a lone surrogate, e.g. "\ud800"
            raise RequestError("invalid_text", f"'{name}' is not valid Unicode text", name)


def _valid_ref(ref: Any) -> bool:
    """True for what a request's ``ref`` may be: a finite number, a short string, a boolean."""
    if isinstance(ref, str):
        return len(ref) <= 64
    if isinstance(ref, float):
        return math.isfinite(ref)
    return isinstance(ref, (bool, int)) and abs(ref) < 2**63


def member_json(room: Room, user: User) -> dict[str, Any]:
    """One member of a room: who, how connected, present or away, room privileges."""
    member = room.members.get(user.folded or "")
    return {
        "nick": user.nick,
        "account": user.account,
        "protocol": user.protocol,
        "presence": "away" if user.away else "online",
        "away": user.away,
        "op": bool(member and member.is_operator),
        "voice": bool(member and "v" in member.privileges),
    }


def room_json(room: Room, members: Iterable[Member]) -> dict[str, Any]:
    """A room snapshot: topic, modes and the members the asker may see."""
    modes, _ = room.mode_string(with_params=False)
    return {
        "type": "room",
        "room": room.name,
        "topic": room.topic,
        "topic_by": room.topic_setter.split("!", 1)[0] if room.topic_setter else None,
        "topic_time": room.topic_time or None,
        "modes": modes,
        "members": sorted((member_json(room, m.user) for m in members), key=lambda m: fold(m["nick"])),
    }


@implementer(IParticipant)
class JsonSession(EncodingParticipant, JoinAnswering):
    """The participant behind one chathub.v1 connection."""

    protocol = "ws"
    format_key = ("ws", JSON_V1)
    echo_own = True  # every event, our own included, comes back with the server's id and time
    log = Logger()

    def __init__(self, ws) -> None:
        self.ws = ws
        factory = ws.factory
        self.factory = factory
        self.hub = factory.hub
        self.portal = client_portal(factory.portal, ws.client_host)
        self.config = factory.config
        self.clock = factory.clock
        wsconf = self.config.websocket
        self.user: Optional[User] = None
        self._logout: Optional[Callable[[], None]] = None
        self._logging_in = False
        self._closed = False
        self._token: Optional[str] = None  # the session token this login used or was given
        self._unwatch: Optional[Callable[[], None]] = None  # stops hearing of its revocation
        self._joins: Optional[JoinsUnderWay] = None  # in a cluster, while a join waits for its number
        exempt = is_exempt(ws.client_host, self.config.limits.flood_exempt)
        control = control_for(
            wsconf.flood_rate, wsconf.flood_burst, wsconf.flood_max_queued, self.clock.seconds, exempt
        )
        self.gate = FloodGate(control, self.clock, self)
        self._login_timer: Optional[IDelayedCall] = self.clock.callLater(
            self.config.limits.registration_timeout, self._login_timed_out
        )

    def _stop_login_timer(self) -> None:
        # and let go of it: a logged-in session holds no timer (about 300 bytes each)
        timer, self._login_timer = self._login_timer, None
        if timer is not None and timer.active():
            timer.cancel()

    # -- IParticipant ------------------------------------------------------------------

    @property
    def address(self) -> str:
        """The peer's address (``IParticipant.address``)."""
        return self.ws.client_host

    def encode(self, event: Event) -> Optional[bytes]:
        if self.hidden_while_joining(event):
            return None
        obj = event_json(event)
        return None if obj is None else self.factory.frame(dumps(obj))

    def encode_own(self, event: Event) -> Optional[bytes]:
        """``event`` as this user's other session caused it (``[auth] multiclient``): as
        ``encode``, and a room joined there is followed by its snapshot, as a ``join``
        request's own answer is (the client learns its members from it)."""
        data = self.encode(event)
        user = self.user
        if data is None or event.kind != Kind.JOIN or user is None:
            return data
        room = self.hub.find_room(event.target)
        if room is None or user.folded not in room.members:
            return data
        return data + self.factory.frame(dumps(room_json(room, self.hub.visible_members(user, room))))

    def send(self, data: bytes) -> None:
        self.ws.send_frame(data)

    def close(self, reason: str) -> None:
        self.farewell(reason)
        self.ws.close_with(CLOSE_BY_SERVER, reason)

    def farewell(self, reason: str) -> None:
        """Tell the client why the server is closing the connection, without closing it."""
        self.reply({"type": "closing", "reason": reason})

    # -- connection --------------------------------------------------------------------

    def reply(self, obj: dict) -> None:
        """Send one JSON object to this connection only."""
        self.ws.send_frame(self.factory.frame(dumps(obj)))

    def answer(self, request: dict, obj: dict) -> None:
        """Reply to ``request``, carrying its ``ref`` over (unless the connection is gone)."""
        if self._closed:
            return
        if "ref" in request:
            obj["ref"] = request["ref"]
        self.reply(obj)

    def error(self, code: str, message: str, request: Optional[dict] = None, **extra: Any) -> None:
        obj: dict[str, Any] = {"type": "error", "code": code, "message": message}
        if request is not None:
            if isinstance(request.get("type"), str):
                obj["request"] = request["type"]
            if "ref" in request:
                obj["ref"] = request["ref"]
        obj.update({k: v for k, v in extra.items() if v is not None})
        self.reply(obj)

    def opened(self) -> None:
        limits = self.config.limits
        self.reply(
            {
                "type": "hello",
                "protocol": JSON_V1,
                "version": PROTOCOL_VERSION,
                "server": self.config.server.name,
                "network": self.config.server.network,
                "features": {
                    "guests": self.config.auth.allow_guests,
                    "history": self.hub.history_available,
                    "register": self._can_register(),
                },
                "default_rooms": list(self.config.websocket.default_rooms),
                "limits": {
                    "nick_length": limits.nick_length,
                    "room_name_length": limits.room_name_length,
                    "topic_length": limits.topic_length,
                    "away_length": limits.away_length,
                    "password_min_length": self.config.auth.min_password_length,
                    "message_bytes": self.config.websocket.max_message_bytes,
                    "text_bytes": limits.message_bytes,
                    "text_lines": limits.message_lines,
                    "history_page": self.config.history.query_limit,
                },
            }
        )

    def connection_lost(self, reason: str) -> None:
        self._finish(reason)

    def _finish(self, reason: str) -> None:
        """Leave the hub: nothing more runs for this session (not a request waiting at the
        gate or behind a login, nor an answer), whether it quit or its connection went."""
        self._closed = True
        self.gate.stop()
        self._stop_login_timer()
        self._use_token(None)
        user, logout = self.user, self._logout
        self.user = self._logout = None
        if user is not None:
            self.hub.quit(user, reason, self)
        if logout is not None:
            logout()

    def _login_timed_out(self) -> None:
        if self.user is None and not self._closed:
            self.error("login_timeout", "no login in time")
            self.ws.close_with(CLOSE_LOGIN_TIMEOUT, "Login timeout")

    def reconfigure(self, config) -> None:
        """Take a reloaded config: its limits, and its flood settings for this connection."""
        self.config = config
        ws = config.websocket
        exempt = is_exempt(self.ws.client_host, config.limits.flood_exempt)
        self.gate.retune(control_for(ws.flood_rate, ws.flood_burst, ws.flood_max_queued, self.clock.seconds, exempt))

    def flooded(self) -> None:
        """Too many requests waited for the flood gate."""
        self.hub.counts.flood_disconnects += 1
        self.error("flood", "too many requests; closing")
        self._finish("Excess flood")
        self.ws.close_with(CLOSE_FLOOD, "Excess flood")

    def pause_reading(self) -> None:
        """Requests wait at the gate: read no more from the connection meanwhile."""
        self.ws.real_transport.pauseProducing()

    def resume_reading(self) -> None:
        """No request waits: read again."""
        self.ws.real_transport.resumeProducing()

    def when_delivered(self, fn: Callable[[], None]) -> None:
        """Call ``fn`` once the hub delivered what our requests so far caused."""
        self.hub.after_delivery(fn, self.user)

    # -- requests ----------------------------------------------------------------------

    def message_received(self, payload: bytes, is_binary: bool) -> None:
        """Parse one WebSocket message and queue it behind the flood gate."""
        if self._closed:
            return  # after a quit, even requests that came in the same packet are dropped
        if is_binary:
            self.error("bad_json", "chathub.v1 messages are JSON text, not binary")
            return
        try:
            msg = json.loads(payload.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as e:
            self.error("bad_json", f"not valid JSON: {e}")
            return
        except RecursionError:
            # the C parser gives up at the interpreter's recursion limit, cleanly
            self.error("bad_json", "not valid JSON: nested too deeply")
            return
        if not isinstance(msg, dict):
            self.error("bad_request", "a request is a JSON object with a \"type\"")
            return
        ref = msg.get("ref")
        if ref is not None and not _valid_ref(ref):
            # a ref is copied into answers: only small scalars, so no answer can fail to encode
            del msg["ref"]
            self.error(
                "invalid_field",
                "'ref' must be a number, a string of at most 64 characters, true or false",
                msg,
                field="ref",
            )
            return
        kind = msg.get("type")
        if not isinstance(kind, str):
            self.error("missing_field", "'type' is required", msg, field="type")
            return
        spec = REQUESTS.get(kind)
        if spec is None:
            self.error("unknown_type", f"unknown request type {kind[:40]!r}", msg)
            return
        self.gate.submit((msg, spec), spec.cost)

    def handle_gated(self, item) -> None:
        """Run one request whose turn at the flood gate has come."""
        msg, spec = item
        if self._closed:
            return
        try:
            user = self.user
            if user is None:
                if not spec.before_login:
                    raise RequestError("not_logged_in", "log in first")
            elif user.participant is not self:  # one of several sessions of the user
                user.act_as(self)
            if spec is _MESSAGE and user is not None and plain_message(msg):
                self._talk(msg, Kind.MESSAGE)  # what the general path below does with it
                return
            _check_fields(msg, spec)
            getattr(self, spec.handler)(msg)
        except RequestError as e:
            self.error(e.code, e.message, msg, field=e.field)
        except HubError as e:
            self.error(e.code, e.message, msg, target=e.target or None)
        except Exception:
            self.log.failure("chathub.v1 request {type} failed", type=msg.get("type"))
            self.error("internal_error", "the server could not handle that request", msg)

    def _request_crashed(self, failure, msg: dict) -> None:
        """A request answered later failed unexpectedly: logged, and answered as any is."""
        self.log.failure("chathub.v1 request {type} failed", failure, type=msg.get("type"))
        if not self._closed:
            self.error("internal_error", "the server could not handle that request", msg)

    def _ok(self, msg: dict, **extra: Any) -> None:
        """Acknowledge a request that asked for it (has a ``ref``), after its events went out."""
        if "ref" not in msg:
            return

        self.hub.after_delivery(lambda: self.answer(msg, {"type": "ok", "request": msg["type"], **extra}), self.user)

    # -- login -------------------------------------------------------------------------

    def do_login(self, msg: dict) -> None:
        if self.user is not None:
            raise RequestError("already_logged_in", "already logged in; use \"nick\" to change nick")
        if self._logging_in:
            raise RequestError("login_in_progress", "a login is already under way")
        nick = msg["nick"]
        problem = nick_problem(nick, self.config.limits.nick_length)
        if problem is not None:
            raise RequestError("erroneous_nick", f"that nick is not allowed: {problem}", "nick")
        password = msg.get("password")
        credentials: Union[GuestNick, UsernamePassword, SessionToken]
        if "token" in msg and password is None:
            credentials = SessionToken(msg["token"])
        elif password is None:
            credentials = GuestNick(nick)
        else:
            account = msg.get("account") or nick
            credentials = UsernamePassword(account.encode("utf-8"), password.encode("utf-8"))
        self._logging_in = True
        d = self.portal.login(credentials, self, IChatUser)
        d.addCallbacks(self._logged_in, self._login_failed, (msg, nick), None, (msg,))
        d.addErrback(self._login_crashed, msg)
        self.gate.pause_until(d)  # requests sent after the login wait for its answer

    def _logged_in(self, result, msg: dict, nick: str) -> Optional[Deferred]:
        self._logging_in = False
        _, user, logout = result
        if self._closed:
            # the connection went (or quit) while the password was checked: nothing runs for it
            logout()
            self.log.info("login of {nick} from {peer} completed after the connection closed; logged out",
                          nick=nick, peer=self.ws.client_host)
            return None
        user.user = "web"
        user.realname = "chathub web user"
        # in a cluster, once the nick is claimed on every node (the login's gate waits)
        return self.hub.claim_and_sign_on(user, nick).addCallbacks(
            self._signed_on, self._sign_on_refused, callbackArgs=(user, logout, msg, nick), errbackArgs=(logout, msg)
        )

    def _sign_on_refused(self, failure, logout, msg: dict) -> None:
        failure.trap(HubError)
        logout()
        e = failure.value
        self.error(e.code, e.message, msg, target=e.target or None)

    def _signed_on(self, signed, fresh, logout, msg: dict, nick: str) -> None:
        attached = signed is not fresh  # one more session of the account's user
        user, logout = signed, logout.for_user(signed)
        if self._closed:  # the connection went while the nick was claimed
            logout()
            return
        self.user, self._logout = user, logout
        self._stop_login_timer()
        if self.config.logging.detailed:
            self.log.debug("{nick} logged in over WebSocket from {host}", nick=nick, host=user.ip)
        welcome: dict[str, Any] = {"type": "welcome", "nick": user.nick, "account": user.account}
        d: Deferred
        if user.account is not None and "password" in msg:
            # a password login gets a session token to log in again with
            d = self._with_token(user.account, msg, welcome)
        else:
            if "token" in msg and user.account is not None:
                self._use_token(msg["token"], user.account)  # the client keeps the token it logged in with
            d = succeed(None)
            self.answer(msg, welcome)
        if attached:  # then the rooms its user is in (after the welcome)
            d.addCallback(lambda _: self._show_rooms())
            return
        # then the rooms the account is in, joined again (after the welcome)
        d.addCallback(lambda _: self.hub.kept_rooms(user)).addCallback(self._rejoin)

    def _show_rooms(self) -> None:
        """A session that joined its account's user: each room that user is in, as a
        ``join`` shows it (its own ``join`` event, then the snapshot)."""
        user = self.user
        if self._closed or user is None:
            return
        for room in list(user.rooms.values()):
            self.deliver(self.hub.ids.make(Kind.JOIN, user.source, room.name, data={"account": user.account}))
            self.reply(room_json(room, self.hub.visible_members(user, room)))

    def _with_token(self, account: str, msg: dict, answer: dict[str, Any]) -> Deferred:
        """Answer ``msg`` with ``answer`` plus a new session token of ``account`` (``token``,
        ``token_expires``; without them when the server has no tokens or cannot store one).
        The token is never logged."""
        tokens = getattr(self.hub, "session_tokens", None)
        if tokens is None:
            self.answer(msg, answer)
            return succeed(None)

        def issued(result: tuple[str, float]) -> None:
            answer["token"], answer["token_expires"] = result
            if not self._closed:
                self._use_token(result[0], account)

        def not_issued(failure) -> None:
            self.log.error("no session token for {account}: {why}", account=account, why=failure.getErrorMessage())

        d = tokens.issue(account).addCallbacks(issued, not_issued)
        return d.addCallback(lambda _: None if self._closed else self.answer(msg, answer))

    def _use_token(self, token: Optional[str], account: Optional[str] = None) -> None:
        """This session now holds ``token`` of ``account`` (None: none): when the token is
        revoked elsewhere ("log out everywhere" from another device, a changed password)
        the session is logged out."""
        if self._unwatch is not None:
            self._unwatch()
            self._unwatch = None
        self._token = token
        tokens = getattr(self.hub, "session_tokens", None)
        if token is not None and account is not None and tokens is not None:
            self._unwatch = tokens.watch(token, account, self._revoked)

    def _revoked(self) -> None:
        """The token this session holds was revoked: tell the client (``logged_out`` with a
        ``reason``, then close 4000), so it forgets the token and shows its login form."""
        self._unwatch = self._token = None
        if self._closed:
            return
        reason = "Logged out: this session was ended from another device"
        self.reply({"type": "logged_out", "revoked": 0, "reason": reason})
        self._finish("Logged out")
        self.ws.close_with(CLOSE_BY_SERVER, reason)

    def _rejoin(self, rooms: list[tuple[str, Optional[str]]]) -> None:
        """Join the rooms the account is in, as a ``join`` request of each (with its key, if
        kept with one) would (no ``ok``), in order (``join_in_turn``)."""

        def join(name: str, key: Optional[str]) -> Optional[Deferred]:
            try:
                return self.do_join({"room": name} if key is None else {"room": name, "key": key})
            except HubError as e:
                self.error(e.code, e.message, target=e.target or None)
                return None

        join_in_turn(rooms, join, lambda: self._closed or self.user is None)

    def _login_failed(self, failure, msg: dict) -> None:
        self._logging_in = False
        if self._closed:
            return
        failure.trap(UnauthorizedLogin, UnhandledCredentials)
        self.log.info(
            "WebSocket login as {account} ({nick}) from {peer} refused: {why}",
            event="login_failed",
            peer=self.ws.client_host,
            nick=msg.get("nick"),
            account=msg.get("account") or msg.get("nick"),
            why=failure.getErrorMessage(),
        )
        code = "login_throttled" if failure.check(LoginThrottled) else "login_failed"
        self.error(code, failure.getErrorMessage() or "login refused", msg)

    def _login_crashed(self, failure, msg: dict) -> None:
        self._logging_in = False
        self.log.failure("WebSocket login failed unexpectedly", failure)
        if not self._closed:
            self.error("internal_error", "login failed; try again", msg)

    def _can_register(self) -> bool:
        return getattr(self.hub, "account_creator", None) is not None

    def do_register(self, msg: dict) -> None:
        """Register the nick in use as an account (log in as a guest first, like NickServ)."""
        user = self.user
        assert user is not None  # requests but login, ping and quit need one
        d = self.hub.create_account(user, msg["password"])

        def registered(name: str) -> None:
            # logged in to the new account: a session token as for a password login
            self._with_token(name, msg, {"type": "registered", "account": name})

        def refused(failure) -> None:
            if self._closed:
                return
            if isinstance(failure.value, errors.AccountExists):
                self.error("account_exists", f"the account {user.nick} already exists", msg)
            elif isinstance(failure.value, HubError) and not isinstance(failure.value, errors.StorageFailed):
                self.error(failure.value.code, failure.value.message, msg)
            else:
                self.log.failure("account registration failed", failure)
                self.error("registration_failed", "could not register that account", msg)

        d.addCallbacks(registered, refused)

    def do_password(self, msg: dict) -> None:
        """Change the account's password: the current one (``password``) is checked through
        the portal (throttled like a login), then every session token of the account is
        revoked (the connections holding one are logged out) and this one gets a new token."""
        user = self.user
        assert user is not None  # requests but login, ping and quit need one
        account = user.account
        if account is None:
            raise RequestError("registration_unavailable", "log in to an account to change its password")
        shortest = self.config.auth.min_password_length
        if len(msg["new_password"]) < shortest:
            raise RequestError("weak_password", errors.weak_password("", shortest).message, "new_password")
        current = UsernamePassword(account.encode("utf-8"), msg["password"].encode("utf-8"))

        def checked(result) -> Deferred:
            _, avatar, logout = result
            logout()  # only a check: this connection keeps its user
            if avatar.account is None or fold(avatar.account) != fold(account):
                raise UnauthorizedLogin("wrong password")
            # this session is answered with a new token, not logged out as one holding a revoked one
            self._use_token(None)
            return self.hub.change_password(user, msg["new_password"])

        def changed(revoked: int) -> Optional[Deferred]:
            if self._closed:
                return None
            return self._with_token(account, msg, {"type": "password_changed", "revoked": revoked})

        def refused(failure) -> None:
            if self._closed:
                return
            if failure.check(UnauthorizedLogin):
                code = "login_throttled" if failure.check(LoginThrottled) else "login_failed"
                self.error(code, "the current password is wrong" if code == "login_failed"
                           else failure.getErrorMessage(), msg, field="password")
            elif failure.check(HubError) and not failure.check(errors.StorageFailed):
                self.error(failure.value.code, failure.value.message, msg)
            else:
                self.log.error("password change of {account} failed: {why}", account=account,
                               why=failure.getErrorMessage())
                self.error("internal_error", "could not change the password; try again", msg)

        d = self.portal.login(current, self, IChatUser).addCallback(checked).addCallbacks(changed, refused)
        self.gate.pause_until(d)

    def do_ping(self, msg: dict) -> None:
        reply: dict[str, Any] = {"type": "pong"}
        if "token" in msg:
            reply["token"] = msg["token"]
        self.reply(reply)

    def do_logout(self, msg: dict) -> None:
        """Revoke this session's token (``everywhere``: every token of the account), answer
        ``logged_out`` with how many were revoked, and quit."""
        user = self.user
        assert user is not None  # requests but login, ping and quit need one
        tokens = getattr(self.hub, "session_tokens", None)
        d: Deferred
        if tokens is None or user.account is None:
            d = succeed(0)
        else:
            token = self._token
            # this session answers for itself (logged_out with the count): not as one ended elsewhere
            self._use_token(None)
            if msg.get("everywhere"):
                d = tokens.revoke_all(user.account)
            elif token is not None:
                d = tokens.revoke(token, user.account).addCallback(int)
            else:
                d = succeed(0)

        def done(revoked: int) -> None:
            if not self._closed:
                self.answer(msg, {"type": "logged_out", "revoked": revoked})
                self.do_quit({"reason": "Logged out"})

        def failed(failure) -> None:
            self.log.error("logout of {account} could not revoke tokens: {why}", account=user.account,
                           why=failure.getErrorMessage())
            if not self._closed:
                self.error("internal_error", "could not log out; try again", msg)

        d.addCallbacks(done, failed)
        self.gate.pause_until(d)

    def do_quit(self, msg: dict) -> None:
        reason = (msg.get("reason") or "Quit")[:200]
        self._finish(reason)
        self.ws.close_with(CLOSE_NORMAL, reason)

    # -- rooms -------------------------------------------------------------------------

    def do_join(self, msg: dict) -> Optional[Deferred]:
        name = msg["room"]
        # in a cluster the join may be found void at its number: answered once that is known
        receipt = Receipt() if self.hub.cluster is not None else None
        if self.hub.claims_room(name):
            # a room new to this cluster node: once its name is claimed (later requests wait)
            d = self.hub.claim_and_join(self.user, name, msg.get("key"), receipt=receipt)
            d.addCallbacks(self._joined, self._refused, callbackArgs=(msg, receipt), errbackArgs=(msg,))
            d.addErrback(self._request_crashed, msg)
            self.gate.pause_until(d)
            return d
        self._joined(self.hub.join(self.user, name, msg.get("key"), receipt=receipt), msg, receipt)
        return None

    def _joined(self, room: Optional[Room], msg: dict, receipt: Optional[Receipt]) -> None:
        name = msg["room"]
        waits = receipt is not None and room is not None  # (None: in it already, nothing to wait for)
        if room is None:
            room = self.hub.find_room(name)
        elif receipt is not None:
            # answered at its number: what the room showed before it is in the snapshot
            # and in the history the client reads after it (``JoinsUnderWay``)
            self.join_waits(room.folded, receipt)
        user = self.user
        assert user is not None  # requests but login, ping and quit need one
        folded = room.folded if room is not None else ""

        def snapshot() -> None:
            if waits:
                self.join_answered(folded)
            if not self._closed and room is not None and user.folded in room.members:
                self.reply(room_json(room, self.hub.visible_members(user, room)))

        self.hub.after_delivery(snapshot, self.user)
        if receipt is None:
            self._ok(msg)
        else:
            self._answer_stored(msg, receipt)

    def do_part(self, msg: dict) -> None:
        self.hub.part(self.user, msg["room"], (msg.get("reason") or "")[:200])
        self._ok(msg)

    def do_topic(self, msg: dict) -> None:
        self.hub.set_topic(self.user, msg["room"], msg["text"])
        self._ok(msg)

    def do_rename(self, msg: dict) -> Optional[Deferred]:
        d = self.hub.claim_and_rename(self.user, msg["room"], msg["new"], msg.get("reason") or "")
        if not d.called:
            # in a cluster, once the new name is claimed (later requests wait)
            d.addCallbacks(lambda _: self._ok(msg), self._refused, errbackArgs=(msg,))
            d.addErrback(self._request_crashed, msg)
            self.gate.pause_until(d)
            return d
        fired(d)  # a refusal is raised here, and answered as any
        self._ok(msg)
        return None

    def do_members(self, msg: dict) -> None:
        room = self.hub.visible_room(self.user, msg["room"])
        if room is None:
            raise errors.NoSuchRoom(msg["room"])
        self.answer(msg, room_json(room, self.hub.visible_members(self.user, room)))

    def do_rooms(self, msg: dict) -> None:
        hub, user = self.hub, self.user
        assert user is not None  # requests but login, ping and quit need one
        rooms = [
            {
                "room": r.name,
                "topic": r.topic,
                "members": len(hub.visible_members(user, r)),
                "joined": user.folded in r.members,
            }
            for r in sorted(hub.list_rooms(user), key=lambda r: r.folded)
        ]
        self.answer(msg, {"type": "rooms", "rooms": rooms})

    # -- talking -----------------------------------------------------------------------

    def _talk(self, msg: dict, kind: str) -> None:
        # A text of several lines is one message, kept whole (IRC clients get it as a
        # draft/multiline batch or as several lines, telnet users as several lines); the
        # hub refuses one over [limits] message_bytes or message_lines (message_too_long).
        # Every 10 lines cost one more flood unit (the request itself paid for the first).
        text = msg["text"]
        if "\r" in text:
            text = text.replace("\r\n", "\n").replace("\r", "\n")
        if "\n" in text:
            text = text.strip("\n")
            extra = text.count("\n") // 10
            if extra:
                self.gate.control.charge(extra)
        if not text.strip():
            raise RequestError("no_text", "no text to send", "text")
        receipt = Receipt()
        event = self.hub.send(self.user, msg["target"], text, kind, receipt=receipt)
        self._answer_stored(msg, receipt, id=event.id)

    def _answer_stored(self, msg: dict, receipt: Receipt, **extra: Any) -> None:
        """One answer once the request's messages are committed or refused: ``ok`` (when
        asked for, with a ``ref``), or instead ``storage_failed`` (always) when any was not
        stored, or the hub's error when a cluster found it void at its number; then that
        message reached nobody."""

        def answer() -> None:
            if self._closed:
                return
            if receipt.stored:
                if "ref" in msg:
                    self.reply({"type": "ok", "request": msg["type"], **extra, "ref": msg["ref"]})
            else:
                error = receipt.error
                self.error(receipt.code, error.message if error is not None else receipt.describe(), msg,
                           target=msg.get("target") or msg.get("room"))

        self.hub.after_delivery(answer, self.user)

    def do_message(self, msg: dict) -> None:
        self._talk(msg, Kind.MESSAGE)

    def do_action(self, msg: dict) -> None:
        self._talk(msg, Kind.ACTION)

    def do_notice(self, msg: dict) -> None:
        self._talk(msg, Kind.NOTICE)

    def do_typing(self, msg: dict) -> None:
        state = msg.get("state") or "active"
        if state not in TYPING_STATES:
            raise RequestError("invalid_field", "'state' must be active, paused or done", "state")
        self.hub.send(self.user, msg["target"], "", Kind.TAGMSG, {TYPING_TAG: state})

    def do_redact(self, msg: dict) -> Deferred:
        """Take back a message (``redact``): its ``redact`` event reaches everyone who saw
        it, this session included; refusals are ``no_such_message``, ``redact_forbidden``,
        ``not_on_room``, ``no_such_room``, ``no_such_nick``. Later requests wait for it."""
        receipt = Receipt()
        d = self.hub.redact(self.user, msg["target"], msg["msgid"], msg.get("reason") or "", receipt=receipt)
        d.addCallbacks(lambda event: self._answer_stored(msg, receipt, id=event.id), self._refused,
                       errbackArgs=(msg,))
        self.gate.pause_until(d)
        return d

    # -- identity and presence ---------------------------------------------------------

    def do_nick(self, msg: dict) -> Deferred:
        assert self.user is not None  # requests but login, ping and quit need one
        user = self.user
        # in a cluster, once the nick is claimed on every node (later requests wait)
        d = self.hub.claim_and_change_nick(user, msg["nick"])
        d.addCallbacks(lambda _: self._ok(msg, nick=user.nick), self._refused, errbackArgs=(msg,))
        self.gate.pause_until(d)
        return d

    def _refused(self, failure, msg: dict) -> None:
        failure.trap(HubError)
        e = failure.value
        self.error(e.code, e.message, msg, target=e.target or None)

    def do_away(self, msg: dict) -> None:
        self.hub.set_away(self.user, msg.get("text") or None)
        self._ok(msg)

    # -- read markers ------------------------------------------------------------------

    def do_markread(self, msg: dict) -> None:
        """Read, or move forward, the read marker of a conversation (IRC's MARKREAD): the
        answer is the marker, ``read_marker``; the user's other sessions are told. Once the
        account's stored markers, read at login, are in."""
        target = msg["target"]
        limits = self.config.limits
        if not target or len(target) > max(limits.nick_length, limits.room_name_length):
            raise RequestError("invalid_field", "'target' must be a room or a nick", "target")
        if "time" in msg:
            try:
                when = parse_iso_time(msg["time"])
            except ValueError:
                why = "'time' must be a time like 2026-01-02T03:04:05.000Z"
                raise RequestError("invalid_field", why, "time") from None
        else:
            when = None

        def answer(_: object = None) -> None:
            if when is not None:
                self.hub.mark_read(self.user, target, when)
            self.answer(msg, self._marker_json(target, self.hub.read_marker(self.user, target)))

        # fired at once, nearly always
        self.hub.markers_loaded(self.user).addCallback(answer).addErrback(self._request_crashed, msg)

    def read_marker_moved(self, target: str, when: float) -> None:
        """Another session of this user moved a read marker (``ChatHub.mark_read``)."""
        self.reply(self._marker_json(target, when))

    @staticmethod
    def _marker_json(target: str, when: Optional[float]) -> dict[str, Any]:
        return {"type": "read_marker", "target": target, "time": None if when is None else iso_time(when)}

    # -- history -----------------------------------------------------------------------

    def do_conversations(self, msg: dict) -> None:
        """The user's private conversations from history, the most recently active first
        (``CHATHISTORY TARGETS`` for the web client): ``[{"target": nick, "time": t}]``."""
        user = self.user
        assert user is not None  # requests but login, ping and quit need one
        limit = msg.get("limit")
        limit = 50 if limit is None else limit
        if limit <= 0:
            raise RequestError("invalid_field", "'limit' must be positive", "limit")
        limit = min(limit, self.config.history.query_limit)
        # counted back from now: the latest conversations; the rooms the user is in come too
        # (TARGETS lists them), so ask for as many more and leave them out
        d = self.hub.history_targets(user, time.time() + 1, 0.0, limit + len(user.rooms))

        def answer(found: list[tuple[str, float]]) -> None:
            # the store answers oldest first, ties within a millisecond in the order sent:
            # reversed, not sorted by time (a stable sort would keep such a tie oldest first)
            private = [(name, when) for name, when in found if not is_room_name(name)]
            private.reverse()
            self.answer(msg, {
                "type": "conversations",
                "conversations": [{"target": name, "time": when} for name, when in private[:limit]],
            })

        def failed(failure) -> None:
            if self._closed:
                return
            if failure.check(HubError) and failure.value.code == "history_unavailable":
                self.error("history_unavailable", failure.value.message, msg)
            else:
                self.log.failure("conversations request failed", failure)
                self.error("history_failed", "history could not be read", msg)

        d.addCallbacks(answer, failed)

    def do_history(self, msg: dict) -> None:
        target = msg["target"]
        limit = msg.get("limit")
        limit = 50 if limit is None else limit
        if limit <= 0:
            raise RequestError("invalid_field", "'limit' must be positive", "limit")
        limit = min(limit, self.config.history.query_limit)
        if "before" in msg and "after" in msg:
            raise RequestError("invalid_field", "give 'before' or 'after', not both", "after")
        if is_room_name(target):
            room = self.hub.find_room(target)
            assert self.user is not None  # requests but login, ping and quit need one
            if room is None or self.user.folded not in room.members:
                raise errors.NotOnRoom(target, "join the room to read its history")
        try:
            d = fetch_history(self.hub, self.user, target, limit, msg.get("before"), msg.get("after"))
        except HistoryUnavailable as e:
            raise RequestError("history_unavailable", str(e)) from e
        except BadReference as e:
            raise RequestError("invalid_field", str(e), e.field) from e

        def answer(result) -> None:
            events, more = result
            self.answer(msg, {
                "type": "history",
                "target": target,
                "events": [obj for obj in (event_json(e) for e in events) if obj is not None],
                "more": more,
            })

        def failed(failure) -> None:
            if self._closed:
                return
            if isinstance(failure.value, errors.NoSuchMessage):
                self.error("no_such_message", "no message with that id in this conversation", msg)
            else:
                self.log.failure("history request failed", failure)
                self.error("history_failed", "history could not be read", msg)

        d.addCallbacks(answer, failed)
