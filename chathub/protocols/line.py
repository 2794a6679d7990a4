"""The telnet line protocol: plain lines are messages, ``/commands`` act.

Telnet option negotiation is handled by ``twisted.conch.telnet.TelnetTransport`` (which
refuses every option), so IAC sequences never reach the chat. Output is for people:
``[#room] <alice> hello``, ``[#room] * alice waves``, ``-> bob: hi``; errors start with ``! ``.
"""
from __future__ import annotations

import re
import time
import weakref
from dataclasses import replace
from typing import Any, Callable, Optional, Sequence

from zope.interface import implementer

from twisted.conch.telnet import DO, DONT, IAC, WILL, WONT, TelnetProtocol, TelnetTransport
from twisted.cred.credentials import UsernamePassword
from twisted.cred.error import UnauthorizedLogin, UnhandledCredentials
from twisted.internet.defer import Deferred
from twisted.internet.protocol import ServerFactory
from twisted.logger import Logger

from chathub import formatting
from chathub.auth.credentials import GuestNick
from chathub.auth.limiter import client_portal
from chathub.events import REDACTED, STATUSMSG, Event, Kind
from chathub.hub.errors import AccountExists, HubError, StorageFailed
from chathub.hub.modes import parse_room_modes
from chathub.hub.outbox import Receipt
from chathub.hub.rooms import LIST_MODES
from chathub.hub.users import User
from chathub.interfaces import IChatUser, IParticipant
from chathub.names import fold, is_room_name
from chathub.protocols.autojoin import fired, join_in_turn
from chathub.protocols.connlimit import REASON_TEXT
from chathub.protocols.flood import FloodGate, control_for, is_exempt
from chathub.protocols.lines import LineBuffer
from chathub.protocols.participant import EncodingParticipant, JoinAnswering, JoinsUnderWay
from chathub.protocols.sendqueue import SendQueue, TurnWrites

HELP = (
    "Commands: /nick NAME [password]  /join #room [key]  /part [#room] [reason]  "
    "/room #room (switch)  /msg NICK|#room text  /me action  /topic [text]  /who [#room]  "
    "/list  /names [#room]  /away [text]  /mode #room [+-modes args]  /kick NICK [reason]  "
    "/invite NICK [#room]  /rename [#room] #new [reason]  /register PASSWORD  /color on|off  /quit [reason]  /help. "
    "A line without / is said in your current room."
)
GREETING = (
    "Welcome to {name}. Pick a nick with /nick NAME (add a password for a registered nick). /help lists commands."
)

#: how /mode names the hub's list modes when showing them
LIST_NAMES = {"b": "ban", "e": "ban exception", "I": "invite exception"}

#: C0 controls, DEL and C1 controls other than the mIRC formatting codes: never sent to a
#: terminal, never taken from one (a lone ESC or CSI could drive the reader's terminal)
_CONTROLS = re.compile(r"[\x00\x01\x05-\x08\x0a-\x0e\x10\x12-\x15\x17-\x1c\x7f-\x9f]")


def _clean(text: str, colour: bool = False) -> str:
    """``text`` for a terminal: formatting as ANSI SGR with ``colour``, else stripped whole."""
    text = _CONTROLS.sub("", text)
    return formatting.to_ansi(text) if colour else formatting.plain(text)


def clean_input(line: str) -> str:
    """A typed line as the hub takes it: terminal escapes removed whole, then other controls;
    mIRC formatting codes are kept (they are the hub's formatting)."""
    return _CONTROLS.sub("", formatting.strip_ansi(line))


def plain_text(raw: bytes) -> Optional[str]:
    """The line as ``clean_input(raw.decode("utf-8", "replace")).strip()`` makes it, when
    ``raw`` is a plain line of printable ASCII not starting with ``/``: decoded, stripped
    and nothing else (it has no byte the cleaning removes). None for any other line: clean
    it. The commonest line of a busy room, taken without a regular expression."""
    if not raw.isascii():
        return None
    text = raw.decode("ascii")
    if not text.isprintable():  # on ASCII: only 0x20 to 0x7e are
        return None
    text = text.strip()
    return text if text and text[0] != "/" else None


def _line(text: str) -> bytes:
    return (text + "\r\n").encode("utf-8", "replace")


def render(event: Event, colour: bool = False) -> Optional[str]:
    """The line a telnet user sees for ``event``, or None for events not shown; formatting
    as ANSI SGR with ``colour``, stripped otherwise.

    A message of several lines is shown as several (``\r\n`` between them), each with
    the sender, blank ones left out."""
    kind = event.kind
    if "\n" in event.text and kind in Kind.TEXT_KINDS:
        shown = (render(replace(event, text=line), colour) for line in event.text.split("\n") if line.strip())
        return "\r\n".join(line for line in shown if line is not None) or None
    nick = event.source.nick
    target = event.target
    text = _clean(event.text, colour)
    room = is_room_name(target)
    if event.data:
        if REDACTED in event.data:  # history of a message taken back: where it was, not what
            text = "(message deleted)"
        if STATUSMSG in event.data:  # to the room's operators (or voiced members) only
            target = f"{event.data[STATUSMSG]}{target}"
    if kind == Kind.MESSAGE:
        return f"[{target}] <{nick}> {text}" if room else f"<- {nick}: {text}"
    if kind == Kind.ACTION:
        return f"[{target}] * {nick} {text}" if room else f"<- * {nick} {text}"
    if kind == Kind.NOTICE:
        if event.source.protocol == "server":
            return f"! {text}" if event.data.get("error") else f"-{nick}- {text}"
        return f"[{target}] -{nick}- {text}" if room else f"-{nick}- {text}"
    if kind == Kind.JOIN:
        return f"* {nick} joined {target}"
    if kind == Kind.PART:
        return f"* {nick} left {target}" + (f" ({text})" if text else "")
    if kind == Kind.QUIT:
        return f"* {nick} quit" + (f" ({text})" if text else "")
    if kind == Kind.KICK:
        return f"* {event.data['nick']} was kicked from {target} by {nick}" + (f" ({text})" if text else "")
    if kind == Kind.NICK:
        return f"* {nick} is now known as {event.data['new']}"
    if kind == Kind.TOPIC:
        return f"* {nick} set the topic of {target}: {text}" if text else f"* {nick} cleared the topic of {target}"
    if kind == Kind.MODE:
        changes = " ".join(c + (f" {a}" if a else "") for c, a in event.data["changes"])
        return f"* {nick} sets mode {changes} on {target}"
    if kind == Kind.RENAME:
        return f"* {nick} renamed {target} to {event.data.get('new', '')}" + (f" ({text})" if text else "")
    if kind == Kind.REDACT:
        where = f" in {target}" if room else ""
        return f"* {nick} deleted a message of {event.data.get('sender', '?')}{where}" + (f" ({text})" if text else "")
    if kind == Kind.INVITE:
        return f"* {nick} invites {event.data['nick']} to {target} (/join {target})"
    return None


class LineTelnetTransport(TelnetTransport):
    """TelnetTransport that skips an IAC followed by a byte that is no telnet command.

    conch raises ValueError ("Stumped") on such a pair, which binary garbage produces
    easily: a traceback in the log and a dropped connection. It can only stumble on the
    byte right after an IAC, so the input is fed in pieces that each start at an IAC and
    a stumble skips that one pair.
    """

    def dataReceived(self, data: bytes) -> None:
        if IAC not in data and self.state != "escaped":
            super().dataReceived(data)
            return
        first, *rest = data.split(IAC)
        pieces = [first] + [IAC + piece for piece in rest]
        for piece in pieces:
            if not piece:
                continue
            try:
                super().dataReceived(piece)
            except ValueError as e:
                if e.args[:1] != ("Stumped",):
                    raise
                self.state = "data"
                # the lone IAC is a byte of text (shown as U+FFFD), the byte after it is
                # read again as text: an IAC-started piece stumbles on its second byte; the
                # first piece only on its first one (an IAC ended the previous read)
                self.applicationDataReceived(IAC)
                remainder = piece[1:] if piece.startswith(IAC) else piece
                if remainder:
                    super().dataReceived(remainder)

    def commandReceived(self, command: bytes, argument: Optional[bytes]) -> None:
        # No telnet option is numbered 128 or above but EXOPL (255): IAC WILL/WONT/DO/DONT
        # with such an option is text from a client that does not escape IAC (nc), as the
        # invalid UTF-8 ``\xff\xfe\xc3``: it reaches the line as bytes, shown as U+FFFD.
        if argument is not None and command in (WILL, WONT, DO, DONT) and 0x80 <= argument[0] < 0xFF:
            self.applicationDataReceived(IAC + command + argument)
            return
        super().commandReceived(command, argument)

    def _subnegotiationLengthExceeded(self) -> None:
        # conch logs and drops the connection; tell the person why first
        tcp: Any = self.transport  # a TCP transport: ITransport does not say ``disconnecting``
        session = self.protocol
        if not tcp.disconnecting and isinstance(session, LineSession):
            session.error("telnet subnegotiation too long (no IAC SE); closing")
            if session.queue is not None:
                # conch closes the TCP transport itself, not through the queue: what the
                # queue holds for the end of the turn goes to the transport first
                session.queue.send_held()
        super()._subnegotiationLengthExceeded()


@implementer(IParticipant)
class LineSession(EncodingParticipant, JoinAnswering, TelnetProtocol):
    """One telnet user: parses their lines into hub calls, renders hub events as lines."""

    protocol = "line"
    format_key: Any = "line"  # (a key of its own while a join waits: ``_entered``)
    echo_own = False

    @property
    def address(self) -> str:
        """The peer's address (``IParticipant.address``)."""
        return self.peer
    log = Logger()

    def __init__(self, hub, portal, config, clock=None, turn: Optional[TurnWrites] = None) -> None:
        self.hub = hub
        self.portal = portal
        self.config = config
        self.clock = clock
        #: the end of the reactor turn, for what is written while reads are handled
        #: (the factory's, shared by its connections)
        self.turn = turn if turn is not None else TurnWrites(clock)
        self.user: Optional[User] = None
        self.logout: Optional[Callable[[], None]] = None
        self.current_room: Optional[str] = None
        self.queue: Optional[SendQueue] = None
        self.lines: Optional[LineBuffer] = None
        self.gate: Optional[FloodGate] = None  # lines read, handled as flood control allows
        self._tcp: Any = None  # the TCP transport under telnet (producer, abortConnection)
        self._registration_timer = None
        self.peer = "unknown"
        self.closing = False
        self.colour = False  # /color on: formatting as ANSI SGR (off: dumb terminals)
        self._joins: Optional[JoinsUnderWay] = None  # in a cluster, while a join waits for its number

    # -- connection ------------------------------------------------------------------

    def connectionMade(self) -> None:
        if self.clock is None:
            from twisted.internet import reactor

            self.clock = reactor
        tcp: Any = getattr(self.transport, "transport", self.transport)
        peer = tcp.getPeer()
        self.peer = getattr(peer, "host", str(peer))
        self.portal = client_portal(self.portal, self.peer)
        if self.config.line.tcp_keepalive and hasattr(tcp, "setTcpKeepAlive"):
            tcp.setTcpKeepAlive(1)
        # Lines go to TCP directly: TelnetTransport.write would turn our CRLF into CRCRLF,
        # and its writeSequence (used after a pause) does not; UTF-8 output has no IAC byte.
        self.queue = SendQueue(tcp, self.config.limits.sendq_bytes, self, turn=self.turn)
        self._tcp = tcp
        self.lines = LineBuffer(self.config.limits.max_line_bytes, self)
        line = self.config.line
        exempt = is_exempt(self.peer, self.config.limits.flood_exempt)
        control = control_for(line.flood_rate, line.flood_burst, line.flood_max_lines, self.clock.seconds, exempt)
        self.gate = FloodGate(control, self.clock, self)
        self._registration_timer = self.clock.callLater(
            self.config.limits.registration_timeout, self._registration_timed_out
        )
        if self.config.logging.detailed:  # else the line when it closes is the one
            self.log.debug("line connection from {peer}", event="connect", peer=self.peer)
        self.say(GREETING.format(name=self.config.server.name))

    def dataReceived(self, data: bytes) -> None:
        assert self.lines is not None  # from connectionMade
        with self.turn, self.hub.batching():
            self.lines.feed(data)

    # -- LineBuffer's owner: every line (None: one too long) goes through the flood gate --

    def line_read(self, line: bytes) -> None:
        assert self.gate is not None  # from connectionMade
        self.gate.submit(line)

    def line_too_long(self) -> None:
        assert self.gate is not None  # from connectionMade
        self.gate.submit(None)

    # -- the gate's owner --------------------------------------------------------------

    def handle_gated(self, raw: Optional[bytes]) -> None:
        """Handle one line whose turn at the flood gate has come."""
        if self.closing:
            return
        if raw is None:
            self._too_long()
        else:
            self._line_received(raw)

    def reconfigure(self, config) -> None:
        """Take a reloaded config: its limits, and its flood settings for this connection
        (the longest line and the send queue stay those it connected with)."""
        self.config = config
        line = config.line
        exempt = is_exempt(self.peer, config.limits.flood_exempt)
        assert self.gate is not None and self.clock is not None  # from connectionMade
        control = control_for(line.flood_rate, line.flood_burst, line.flood_max_lines, self.clock.seconds, exempt)
        self.gate.retune(control)

    def flooded(self) -> None:
        """More lines waited than ``[line] flood_max_lines``: the client floods."""
        self.hub.counts.flood_disconnects += 1
        self.log.info("{peer} ({nick}) flooded; disconnecting", peer=self.peer,
                      nick=self.user.nick if self.user else "-")
        if self.user is not None:
            self.hub.quit(self.user, "Excess flood", self)
        self.close(f"excess flood: more than {self.config.line.flood_max_lines} lines waiting; closing")

    def pause_reading(self) -> None:
        """Lines wait: read no more until they are handled (TCP backpressure)."""
        self._tcp.pauseProducing()

    def resume_reading(self) -> None:
        """Nothing waits: read again (unless the connection is closing)."""
        if not self._tcp.disconnecting:
            self._tcp.resumeProducing()

    def when_delivered(self, fn: Callable[[], None]) -> None:
        """Call ``fn`` once the hub delivered what our lines so far caused."""
        self.hub.after_delivery(fn, self.user)

    def _stop_input(self) -> None:
        """Nothing more runs for this connection: not a waiting line, nor a login under way."""
        self.closing = True
        if self.gate is not None:
            self.gate.stop()

    def connectionLost(self, reason=None) -> None:
        self._stop_input()
        if self._registration_timer is not None and self._registration_timer.active():
            self._registration_timer.cancel()
        if self.queue is not None:
            self.queue.stopProducing()
        if self.user is not None:
            self.hub.quit(self.user, "Connection closed", self)
        self.log.info(
            "line connection from {peer} closed ({nick})", event="disconnect",
            peer=self.peer,
            nick=self.user.nick if self.user else "no nick",
        )

    def send_queue_overflow(self) -> None:
        """The client stopped reading and its send queue is full."""
        self.hub.counts.sendq_drops += 1
        self.log.info("{peer} ({nick}) exceeded its send queue; disconnecting", peer=self.peer,
                      nick=self.user.nick if self.user else "-")
        if self.user is not None:
            self.hub.quit(self.user, "Send queue exceeded", self)
        self._stop_input()
        tcp: Any = getattr(self.transport, "transport", self.transport)
        tcp.abortConnection()

    def _registration_timed_out(self) -> None:
        if self.user is None:
            self.close(f"no nick given within {self.config.limits.registration_timeout:g} seconds")

    def _too_long(self) -> None:
        self.error(f"line too long (at most {self.config.limits.max_line_bytes} bytes); dropped")

    # -- IParticipant ----------------------------------------------------------------

    def encode(self, event: Event) -> Optional[bytes]:
        if self.hidden_while_joining(event):
            return None
        text = render(event, self.colour)
        return None if text is None else _line(text)

    def encode_own(self, event: Event) -> Optional[bytes]:
        """``event`` as this user's other session caused it (``[auth] multiclient``): a
        private message reads as the sender's own confirmation (``-> bob: text``), since
        ``<- alice: text`` would say alice wrote to herself; anything else as ``encode``."""
        if event.kind in Kind.TEXT_KINDS and not is_room_name(event.target):
            text = "\r\n".join(f"-> {event.target}: {_clean(line, self.colour)}"
                                for line in event.text.split("\n") if line.strip())
            return _line(text) if text else None
        return self.encode(event)

    def send(self, data: bytes) -> None:
        if self.queue is not None:
            self.queue.write(data)

    def deliver(self, event: Event) -> None:
        """Show ``event`` to this user; a rename of the current room keeps it current."""
        if event.kind == Kind.RENAME:
            self._follow_rename(event)
        super().deliver(event)

    def _follow_rename(self, event: Event) -> None:
        if self.current_room is not None and fold(self.current_room) == fold(event.target):
            self.current_room = str(event.data.get("new", "")) or self.current_room

    def close(self, reason: str) -> None:
        if self.closing:
            return
        self._stop_input()
        self.error(reason)
        assert self.queue is not None  # from connectionMade
        self.queue.lose_connection()  # a TLS transport closes only without a producer

    # -- output helpers --------------------------------------------------------------

    def say(self, text: str) -> None:
        """Send one line of information to this user."""
        self.send(_line(text))

    def error(self, text: str) -> None:
        """Send an error line (``! ...``)."""
        self.send(_line("! " + text))

    def after(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` after the hub delivered what this user's last command caused."""
        self.hub.after_delivery(fn, self.user)

    # -- input -----------------------------------------------------------------------

    def _line_received(self, raw: bytes) -> None:
        user = self.user
        if user is not None and user.participant is not self:  # one of several sessions
            user.act_as(self)
        text = plain_text(raw)
        if text is not None:  # what the cleaning below would make of it, made without it
            try:
                self._say_in_room(text)
            except HubError as e:
                self.hub_error(e)
            return
        if b"\x00" in raw:
            self.error("line contains NUL bytes; dropped")
            return
        line = clean_input(raw.decode("utf-8", "replace")).strip()
        if not line:
            return
        try:
            if line.startswith("/") and not line.startswith("//"):
                self._command(line[1:])
            else:
                self._say_in_room(line[1:] if line.startswith("//") else line)
        except HubError as e:
            self.hub_error(e)

    def hub_error(self, e: HubError) -> None:
        """Tell this user why the hub refused its request (``! target: why``)."""
        self.error(f"{e.target}: {e.message}" if e.target else e.message)

    def _command(self, line: str) -> None:
        name, _, rest = line.partition(" ")
        handler = getattr(self, "cmd_" + name.lower(), None)
        if handler is None:
            self.error(f"unknown command /{name}; /help lists commands")
            return
        if self.user is None and name.lower() not in ("nick", "help", "quit", "color", "colour"):
            self.error("pick a nick first: /nick NAME")
            return
        handler(rest.strip())

    def _here(self) -> Optional[str]:
        """The current room's name while this user is still in it. A kick (or the room
        ending) takes the user out without a command of theirs: the current room is then
        cleared and the user told, never silently switched to another room."""
        name = self.current_room
        if name is None:
            self.error("you are in no room: /join #room first (/list shows rooms)")
            return None
        room = self.hub.find_room(name)
        if room is None or self.user not in room:
            self.current_room = None
            self.error(f"you are no longer in {name}: /join #room or /room #room (joined: {self._joined_list()})")
            return None
        return room.name

    def _say_in_room(self, text: str) -> None:
        if self.user is None:
            self.error("pick a nick first: /nick NAME")
            return
        name = self._here()
        if name is not None:
            self.hub.send(self.user, name, text)

    # -- commands --------------------------------------------------------------------

    def cmd_help(self, rest: str) -> None:
        self.say(HELP)

    def cmd_nick(self, rest: str) -> None:
        parts = rest.split()
        if not parts or len(parts) > 2:
            self.error("usage: /nick NAME [password]")
            return
        nick = parts[0]
        password = parts[1] if len(parts) > 1 else None
        if self.user is not None and password is None:
            # in a cluster, once the nick is claimed on every node (later lines wait)
            d = self.hub.claim_and_change_nick(self.user, nick)
            d.addCallbacks(self._renamed, self._refused, callbackArgs=(nick,))
            assert self.gate is not None  # from connectionMade
            self.gate.pause_until(d)
            return
        if self.user is not None:
            self.error("you are already logged in; /quit and reconnect to change account")
            return
        try:
            self.hub.check_nick(nick)
        except HubError as e:
            if password is None or not (
                e.code == "nick_registered" or (e.code == "nick_in_use" and self.hub.may_attach(nick, nick))
            ):
                raise  # else the login decides: the account's, perhaps as one more session
        credentials = GuestNick(nick) if password is None else UsernamePassword(
            nick.encode("utf-8"), password.encode("utf-8")
        )
        d = self.portal.login(credentials, self, IChatUser)
        d.addCallbacks(self._logged_in, self._login_failed, callbackArgs=(nick,), errbackArgs=(nick,))
        d.addErrback(self._login_crashed)
        assert self.gate is not None  # from connectionMade
        self.gate.pause_until(d)  # later lines wait for the login

    def _logged_in(self, result, nick: str) -> Optional[Deferred]:
        _, user, logout = result
        if self.closing:
            # the connection went while the password was checked: nothing runs for it
            logout()
            self.log.info("login of {nick} from {peer} completed after the connection closed; logged out",
                          nick=nick, peer=self.peer)
            return None
        user.user = fold(nick)[:10]
        user.realname = nick
        # in a cluster, once the nick is claimed on every node (the login's gate waits)
        return self.hub.claim_and_sign_on(user, nick).addCallbacks(
            self._signed_on, self._sign_on_refused, callbackArgs=(user, logout, nick), errbackArgs=(logout, nick)
        )

    def _renamed(self, event, nick: str) -> None:
        if event is not None:
            self.after(lambda: self.say(f"* you are now known as {nick}"))

    def _refused(self, failure) -> None:
        failure.trap(HubError)
        self.hub_error(failure.value)

    def _sign_on_refused(self, failure, logout, nick: str) -> None:
        failure.trap(HubError)
        logout()
        self.error(f"{nick}: {failure.value.message}")

    def _signed_on(self, signed, fresh, logout, nick: str) -> None:
        user, logout = signed, logout.for_user(signed)  # signed: fresh, or the account's user
        if self.closing:  # the connection went while the nick was claimed
            logout()
            return
        self.user = user
        self.logout = logout
        if self._registration_timer is not None and self._registration_timer.active():
            self._registration_timer.cancel()
        how = f"logged in to account {user.account}" if user.account else "a guest"
        if signed is not fresh:
            how += f", one of {len(user.sessions)} sessions"
        self.say(f"* you are {user.nick}, {how}. /join #room to start talking, /list to see rooms.")
        if signed is not fresh:
            rooms = sorted(room.name for room in user.rooms.values())
            if rooms:
                self.current_room = rooms[-1]
                self.say(f"* you are in {', '.join(rooms)}; {self.current_room} is your current room")
        elif user.account is not None:
            self.hub.kept_rooms(user).addCallback(self._rejoin)

    def _rejoin(self, rooms: list[tuple[str, Optional[str]]]) -> None:
        """Join the rooms the account is in, as /join of each (with its key, if kept with
        one) would, in order (``join_in_turn``)."""

        def join(name: str, key: Optional[str]) -> Optional[Deferred]:
            try:
                return self._join(name, key)
            except HubError as e:
                self.error(f"could not join {name} again: {e.message}")
                return None

        join_in_turn(rooms, join, lambda: self.closing or self.user is None)

    def _login_failed(self, failure, nick: str) -> None:
        failure.trap(UnauthorizedLogin, UnhandledCredentials)
        # no checker for passwords at all (guests only): a refusal like any other
        if failure.check(UnhandledCredentials):
            why = "this server has no password accounts"
        else:
            why = failure.getErrorMessage()
        self.log.info("login as {nick} from {peer} refused: {why}", event="login_failed", nick=nick, peer=self.peer,
                      why=why)
        self.error(f"login as {nick} refused: {why}")

    def _command_crashed(self, failure, command: str) -> None:
        """A command answered later failed unexpectedly: logged, and the user told."""
        self.log.failure("telnet /{command} failed unexpectedly", failure, command=command)
        if not self.closing:
            self.error(f"/{command} failed; try again")

    def _login_crashed(self, failure) -> None:
        self.log.failure("telnet login failed unexpectedly", failure)
        if not self.closing:
            self.error("login failed; try again")

    def cmd_join(self, rest: str) -> None:
        parts = rest.split()
        if not parts:
            self.error("usage: /join #room [key]")
            return
        self._join(parts[0], parts[1] if len(parts) > 1 else None)

    def _join(self, name: str, key: Optional[str]) -> Optional[Deferred]:
        name = name if is_room_name(name) else "#" + name
        # in a cluster the join is answered at its number, where it may be found void
        receipt = Receipt() if self.hub.cluster is not None else None
        joined: list[Event] = []  # the hub's JOIN: the replay is of what came before it
        if self.hub.claims_room(name):
            # a room new to this cluster node: once its name is claimed (later lines wait)
            d = self.hub.claim_and_join(self.user, name, key, receipt=receipt, joined=joined)
            d.addCallbacks(self._entered, self._refused, callbackArgs=(name, receipt, joined))
            d.addErrback(self._command_crashed, "join")
            assert self.gate is not None  # from connectionMade
            self.gate.pause_until(d)
            return d
        self._entered(self.hub.join(self.user, name, key, receipt=receipt, joined=joined), name, receipt, joined)
        return None

    def _entered(self, room, name: str, receipt: Optional[Receipt] = None, joined: Sequence[Event] = ()) -> None:
        if self.closing:
            return
        if room is None:
            self.current_room = self.hub.find_room(name).name
            self.say(f"* you are already in {self.current_room}; it is now your current room")
            return
        self.current_room = room.name
        if receipt is not None:
            # answered at its number: what the room showed before it is in the names and
            # the history the answer gives (``JoinsUnderWay``)
            self.join_waits(room.folded, receipt)
        self.after(lambda: self._joined(room, receipt, joined[-1] if joined else None))

    def _joined(self, room, receipt: Optional[Receipt] = None, joined: Optional[Event] = None) -> None:
        if receipt is not None:
            self.join_answered(room.folded)
        if receipt is not None and not receipt.stored:
            self.error(receipt.describe())  # found void at its number (a +i set elsewhere meanwhile)
            return
        if self.user is None or self.user.folded not in room.members:
            return
        self.say(f"* you joined {room.name}")
        if room.topic:
            self.say(f"* topic of {room.name}: {_clean(room.topic, self.colour)}")
        self._names(room)
        d = self.hub.recent_history(self.user, room.name, self.config.history.join_replay, before=joined)
        d.addCallbacks(self._replay, self._history_failed, callbackArgs=(room.name,))

    def _replay(self, events, name: str) -> None:
        if not events or self.closing:
            return
        self.say(f"* last {len(events)} messages in {name}:")
        for event in events:
            text = render(event, self.colour)
            if text is not None:
                self.say(f"{time.strftime('%H:%M', time.gmtime(event.time))} {text}")
        self.say(f"* end of history of {name}")

    def _history_failed(self, failure) -> None:
        self.log.failure("history replay failed", failure)
        self.error("history is unavailable right now")

    def _names(self, room) -> None:
        members = self.hub.visible_members(self.user, room)
        names = sorted((m.prefixes(False) + m.user.nick for m in members), key=str.lower)
        self.say(f"* in {room.name} ({len(names)}): " + " ".join(names))

    def cmd_room(self, rest: str) -> None:
        room = self.hub.find_room(rest) if rest else None
        if room is None or self.user not in room:
            self.error("usage: /room #room (one you have joined: " + self._joined_list() + ")")
            return
        self.current_room = room.name
        self.say(f"* current room is now {room.name}")

    def _joined_list(self) -> str:
        assert self.user is not None  # commands but /nick, /help and /quit need a nick
        return ", ".join(r.name for r in self.user.rooms.values()) or "none"

    def cmd_part(self, rest: str) -> None:
        assert self.user is not None  # commands but /nick, /help and /quit need a nick
        name: Optional[str]
        name, _, reason = rest.partition(" ")
        if not is_room_name(name):
            name, reason = self._here(), rest
        if name is None:
            return
        event = self.hub.part(self.user, name, reason.strip())
        if self.current_room and fold(self.current_room) == fold(event.target):
            rooms = list(self.user.rooms.values())
            self.current_room = rooms[-1].name if rooms else None
        now = self.current_room
        self.after(lambda: self.say(f"* you left {event.target}" + (f"; current room is {now}" if now else "")))

    def cmd_msg(self, rest: str) -> None:
        target, _, text = rest.partition(" ")
        if not target or not text.strip():
            self.error("usage: /msg NICK|#room text")
            return
        if is_room_name(target.lstrip("@+")):  # a room, or its operators (@#room) or voiced (+#room)
            self.hub.send(self.user, target, text.strip())  # unconfirmed, like a plain line
            return
        # confirmed once delivered; a message that could not be stored gets the error instead
        receipt = Receipt()
        event = self.hub.send(self.user, target, text.strip(), receipt=receipt)

        def confirm() -> None:
            if receipt.stored:
                self.say(f"-> {event.target}: {_clean(event.text, self.colour)}")
            else:
                self.error(receipt.describe())

        self.after(confirm)

    def cmd_me(self, rest: str) -> None:
        if not rest:
            self.error("usage: /me action")
            return
        name = self._here()
        if name is not None:
            self.hub.send(self.user, name, rest, Kind.ACTION)

    def cmd_topic(self, rest: str) -> None:
        name = self._here()
        if name is None:
            return
        if not rest:
            room = self.hub.find_room(name)
            assert room is not None  # ``_here`` found it
            topic = _clean(room.topic, self.colour)
            self.say(f"* topic of {room.name}: {topic}" if room.topic else f"* {room.name} has no topic")
            return
        event = self.hub.set_topic(self.user, name, rest)
        self.after(lambda: self.say(f"* you set the topic of {event.target}: {_clean(event.text, self.colour)}"))

    def cmd_names(self, rest: str) -> None:
        name = rest or self.current_room
        room = self.hub.visible_room(self.user, name) if name else None
        if room is None:
            self.error(f"no such room: {name}" if name else "usage: /names #room")
            return
        self._names(room)

    def cmd_who(self, rest: str) -> None:
        if rest:
            room = self.hub.visible_room(self.user, rest)
            if room is None:
                self.error(f"no such room: {rest}")
                return
            members = [(m.prefixes(False), m.user) for m in self.hub.visible_members(self.user, room)]
            self.say(f"* {len(members)} in {room.name}:")
        else:
            members = [("", u) for u in self.hub.visible_users(self.user)]
            self.say(f"* {len(members)} user{'' if len(members) == 1 else 's'} online:")
        for prefix, user in sorted(members, key=lambda pu: pu[1].folded):
            state = f"away: {_clean(user.away, self.colour)}" if user.away else "here"
            account = f", account {user.account}" if user.account else ""
            self.say(f"*   {prefix}{user.nick} ({user.protocol}{account}) {state}")

    def cmd_list(self, rest: str) -> None:
        rooms = sorted(self.hub.list_rooms(self.user), key=lambda r: r.folded)
        self.say(f"* {len(rooms)} room{'' if len(rooms) == 1 else 's'}:")
        for room in rooms:
            topic = f": {_clean(room.topic, self.colour)}" if room.topic else ""
            count = len(self.hub.visible_members(self.user, room))
            self.say(f"*   {room.name} ({count}){topic}")

    def cmd_color(self, rest: str) -> None:
        """``/color on|off``: formatting shown as ANSI colours, or stripped (the default)."""
        value = rest.lower()
        if value not in ("on", "off", ""):
            self.error("usage: /color on|off")
            return
        if value:
            self.colour = value == "on"
            if self._joins is None:  # (else once its joins are answered)
                self.format_key = self.own_format_key()
        self.say(f"* colour is {'on' if self.colour else 'off'}")

    cmd_colour = cmd_color

    def own_format_key(self) -> str:
        """``JoinAnswering.own_format_key``: the fan-out shares a line between connections
        that render alike (with or without colour)."""
        return "line-colour" if self.colour else "line"

    def cmd_away(self, rest: str) -> None:
        self.hub.set_away(self.user, rest or None)
        self.say(f"* you are marked away: {rest}" if rest else "* you are back")

    def cmd_mode(self, rest: str) -> None:
        parts = rest.split()
        if not parts or not is_room_name(parts[0]):
            self.error("usage: /mode #room [+-modes [args]] (e.g. /mode #room +m, /mode #room +b *!*@host)")
            return
        room = self.hub.find_room(parts[0])
        if room is None:
            raise HubError(parts[0], "No such room")
        if len(parts) == 1:
            letters, params = room.mode_string(with_params=self.user in room)
            self.say(f"* modes of {room.name}: {' '.join([letters, *params])}")
            return
        changes, queries, unknown = parse_room_modes(parts[1], parts[2:])
        for letter in unknown:
            self.error(f"{letter}: unknown mode")
        for letter in queries:
            what = LIST_NAMES[letter]
            for entry in getattr(room, LIST_MODES[letter]):
                self.say(f"* {room.name} {what} {entry.mask} (set by {entry.setter})")
            self.say(f"* end of the {what} list of {room.name}")
        if not changes:
            return
        applied, refused = self.hub.change_room_modes(self.user, room.name, changes)
        for error in refused:
            self.error(f"{error.target}: {error.message}" if error.target else error.message)
        if applied:
            text = " ".join(c + (f" {a}" if a else "") for c, a in applied)
            self.after(lambda: self.say(f"* you set mode {text} on {room.name}"))

    def cmd_rename(self, rest: str) -> None:
        """``/rename [#old] #new [reason]``: rename a room (the current one by default)."""
        parts = rest.split(" ", 2)
        if len(parts) >= 2 and is_room_name(parts[0]) and is_room_name(parts[1]):
            old: Optional[str] = parts[0]
            new, reason = parts[1], parts[2] if len(parts) > 2 else ""
        elif parts[0] and is_room_name(parts[0]):
            old, new, reason = self._here(), parts[0], " ".join(parts[1:])
            if old is None:
                return
        else:
            self.error("usage: /rename [#room] #newname [reason] (room operators only)")
            return
        assert self.user is not None and old is not None
        d = self.hub.claim_and_rename(self.user, old, new, reason.strip())
        if not d.called:
            # in a cluster, once the new name is claimed (later lines wait)
            d.addCallbacks(self._renamed_room, self._refused)
            d.addErrback(self._command_crashed, "rename")
            assert self.gate is not None  # from connectionMade
            self.gate.pause_until(d)
            return
        self._renamed_room(fired(d))

    def _renamed_room(self, event) -> None:
        if self.closing:
            return
        self._follow_rename(event)
        self.after(lambda: self.say(f"* you renamed {event.target} to {event.data['new']}"))

    def cmd_kick(self, rest: str) -> None:
        nick, _, reason = rest.partition(" ")
        if not nick:
            self.error("usage: /kick NICK [reason] (in your current room)")
            return
        name = self._here()
        if name is None:
            return
        event = self.hub.kick(self.user, name, nick, reason.strip())
        self.after(lambda: self.say(f"* you kicked {event.data['nick']} from {event.target}"))

    def cmd_invite(self, rest: str) -> None:
        parts = rest.split()
        if not parts:
            self.error("usage: /invite NICK [#room]")
            return
        room = parts[1] if len(parts) > 1 else self._here()
        if room is None:
            return
        event = self.hub.invite(self.user, room, parts[0])
        self.after(lambda: self.say(f"* you invited {event.data['nick']} to {event.target}"))

    def cmd_register(self, rest: str) -> None:
        password = rest.strip()
        if not password or " " in password:
            self.error("usage: /register PASSWORD (registers your current nick as an account)")
            return
        d = self.hub.create_account(self.user, password)
        d.addCallbacks(
            lambda name: self.say(f"* account {name} registered; you are logged in to it"),
            self._register_failed,
        )

    def _register_failed(self, failure) -> None:
        error = failure.value
        if isinstance(error, (AccountExists, StorageFailed)):  # the store refused
            self.error(f"registration failed: {error.message}")
        elif isinstance(error, HubError):
            self.error(error.message)
        else:
            self.log.failure("registration failed", failure)
            self.error("registration failed; try again later")

    def cmd_quit(self, rest: str) -> None:
        if self.user is not None:
            self.hub.quit(self.user, rest or "Quit", self)
        self.say("* bye")
        self._stop_input()
        assert self.queue is not None  # from connectionMade
        self.queue.lose_connection()  # a TLS transport closes only without a producer


class LineFactory(ServerFactory):
    """Makes a telnet-wrapped ``LineSession`` per connection."""

    noisy = False  # the start-up block names the listeners (chathub.lifecycle.announce)

    def __init__(self, hub, portal, config, clock=None) -> None:
        self.hub = hub
        self.portal = portal
        self.config = config
        self.clock = clock
        #: the end of the reactor turn, for what connections are written while their
        #: reads are handled (``SendQueue``)
        self.turn = TurnWrites(clock)
        #: the telnet transports of open connections (gone ones drop out by themselves)
        self.connections: "weakref.WeakSet[LineTelnetTransport]" = weakref.WeakSet()

    def buildProtocol(self, addr):
        protocol = LineTelnetTransport(LineSession, self.hub, self.portal, self.config, self.clock, self.turn)
        protocol.factory = self
        self.connections.add(protocol)
        return protocol

    def reconfigure(self, config) -> None:
        """Take a reloaded config: connections made from now on get its settings, open ones
        its limits and flood settings."""
        self.config = config
        for telnet in list(self.connections):
            session = getattr(telnet, "protocol", None)
            if isinstance(session, LineSession) and session.gate is not None:
                session.reconfigure(config)

    def going_away(self, reason: str) -> None:
        """Tell every connection ``! reason`` and close it: the server is shutting down."""
        for telnet in list(self.connections):
            session = getattr(telnet, "protocol", None)
            if isinstance(session, LineSession) and session.queue is not None:
                session.close(reason)

    def refusal(self, reason: str) -> bytes:
        """What a connection refused by ``[limits]`` is told before it is closed."""
        return _line("! " + REASON_TEXT[reason])
