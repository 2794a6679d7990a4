"""Talking: PRIVMSG, NOTICE, TAGMSG (to ``@#room``/``+#room`` too: STATUSMSG), REDACT, AWAY, SETNAME."""
from __future__ import annotations

import time
from typing import Optional

from chathub.events import Kind
from chathub.hub import errors
from chathub.hub.outbox import Receipt
from chathub.names import fold, is_room_name
from chathub.protocols.irc import caps as C
from chathub.protocols.irc import numerics as N
from chathub.protocols.irc.commands_accounts import SERVICES
from chathub.protocols.irc.commands_server import BOT_MODE
from chathub.protocols.irc.multiline import ACTION_WRAP, BATCH_TYPE, SOFT_BREAKS, ClientBatch, line_room
from chathub.protocols.irc.responsebuffer import ResponseBuffer
from chathub.protocols.irc.table import COMMANDS, command, fast_path
from chathub.protocols.irc.wire import MAX_BODY, MAX_CLIENT_TAGS, Message, format_tags, plain_privmsg

_ACTION_START = "\x01ACTION "


def client_tags(session, msg: Message) -> dict[str, str]:
    """The client-only (``+``) tags a message carries, when the client may send them."""
    if C.MESSAGE_TAGS not in session.caps:
        return {}
    return {k: v for k, v in msg.tags.items() if k.startswith("+")}


def _deliver(session, msg: Message, rb, kind: str, quiet: bool, batched: Optional[ClientBatch] = None) -> None:
    """Send a PRIVMSG, NOTICE or TAGMSG, or the message of a closed multiline batch
    (``batched``), to each of its targets through the hub."""
    name = msg.command.upper()
    soft_breaks = batched.soft_breaks if batched is not None else []
    if not msg.params or not msg.params[0]:
        if not quiet:
            rb.numeric(N.ERR_NORECIPIENT, f"No recipient given ({name})")
        return
    text = ""
    if kind != Kind.TAGMSG:
        if len(msg.params) < 2 or not msg.params[1]:
            if not quiet:
                rb.numeric(N.ERR_NOTEXTTOSEND, "No text to send")
            return
        text = msg.params[1]
    tags = client_tags(session, msg)
    if tags and len(format_tags(tags).encode("utf-8")) > MAX_CLIENT_TAGS:
        rb.numeric(N.ERR_INPUTTOOLONG, "Input line too long")
        return
    if BOT_MODE in session.user.modes:
        tags["bot"] = ""  # IRCv3 bot-mode: recipients see the bot tag
    if kind == Kind.TAGMSG and not tags:
        return
    targets = [t for t in msg.params[0].split(",") if t]
    if len(targets) > session.config.irc.max_targets:
        if not quiet:
            rb.numeric(N.ERR_TOOMANYTARGETS, msg.params[0], "Too many targets")
        return
    hub, user = session.hub, session.user
    echo = C.ECHO_MESSAGE in session.caps
    # the command is answered (an echo, a labeled ACK): a message that is not stored is
    # answered with an error instead, in that answer (else the hub sends a server notice)
    answered = echo or rb.label is not None
    sent = 0
    for target in targets:
        room = is_room_name(target)
        folded = fold(target)
        service = None if room else SERVICES.get(folded)
        if service is not None:  # NickServ: answered here, never sent through the hub or stored
            service(session, kind, text, rb)
            continue
        event_kind = kind
        body = text
        if kind == Kind.MESSAGE and body.startswith(_ACTION_START):
            event_kind = Kind.ACTION
            body = body[len(_ACTION_START) :].rstrip("\x01")
        if (
            batched is None and kind == Kind.MESSAGE
            and _too_long_for_one_line(rb, name, user, target, event_kind, body)
        ):
            continue
        to_self = folded == user.folded
        receipt = Receipt() if answered or to_self else None
        try:
            event = hub.send(user, target, body, event_kind, tags, receipt=receipt,
                             data={SOFT_BREAKS: soft_breaks} if soft_breaks else None)
        except errors.HubError as e:
            if not quiet:
                session.hub_error(rb, e)
            continue
        sent += 1
        if to_self:
            # the copy a recipient gets; the echo (with the label) follows it
            own = session.render_own(event)
            session.hub.after_delivery(lambda own=own, r=receipt: r.stored and session.write_messages(own), user)
        if receipt is not None:
            own = session.render_own(event) if echo else []
            rb.later(lambda own=own, r=receipt, t=target: own if r.stored else _not_stored(session, name, t, r))
        if kind == Kind.MESSAGE and not to_self and not room:
            recipient = hub.find_user(target)
            if recipient is not None and recipient.away:
                rb.numeric(N.RPL_AWAY, recipient.nick, recipient.away)
    if sent > 1:
        session.flood.charge(sent - 1)  # one message per target: the command paid for one


def _too_long_for_one_line(rb, command: str, user, target: str, kind: str, body: str) -> bool:
    """Refuse (417, True) a PRIVMSG that fits the sender's line but not the recipients'
    (their lines carry the sender's prefix) rather than split it: what arrived as one line
    leaves as one line (a NOTICE, never answered, is split)."""
    mask = user.source.mask
    wrap = ACTION_WRAP if kind == Kind.ACTION else 0
    if 4 * (len(body) + len(mask) + len(target)) + len(command) + 7 + wrap <= MAX_BODY:
        return False  # fits whatever the characters (at most 4 bytes each): most messages
    room_left = line_room(command, mask, target, wrap)
    if len(body.encode("utf-8")) <= room_left:
        return False
    rb.numeric(N.ERR_INPUTTOOLONG, f"Message too long for one line to {target}: at most {room_left} "
               "bytes of text (longer ones as a draft/multiline batch)")
    return True


def _not_stored(session, command: str, target: str, receipt: Receipt) -> list[Message]:
    """The answer to a message the hub could not store, or found void (nobody got it)."""
    error = receipt.error
    if error is not None:  # void at its number in a cluster: refused after all
        return [session.numeric(N.HUB_ERRORS.get(error.code, N.ERR_UNKNOWNERROR), target, error.message)]
    text = receipt.describe()
    if C.STANDARD_REPLIES in session.caps:
        return [Message("FAIL", [command, "STORAGE_FAILED", target, text], session.server_name)]
    return [Message("NOTICE", [session.nick or "*", text], session.server_name)]


@command("PRIVMSG", min_params=0)
def privmsg(session, msg: Message, rb) -> None:
    """PRIVMSG <target>[,<target>...] :<text> (CTCP ACTION becomes a /me)."""
    _deliver(session, msg, rb, Kind.MESSAGE, quiet=False)


_PRIVMSG_PENALTY = COMMANDS["PRIVMSG"].penalty


@fast_path(b"PRIVMSG ")
def plain_privmsg_line(session, line: bytes) -> bool:
    """``PRIVMSG #room :text`` from a registered client without echo-message or the bot
    mode: what ``dispatch`` and ``privmsg`` do with it (the flood charge, the idle time,
    the same ``hub.send``, a refusal answered with the same numeric), without a
    ``Message`` or the command table. False for any other line."""
    found = plain_privmsg(line)
    if found is None or C.ECHO_MESSAGE in session.caps or BOT_MODE in session.user.modes:
        return False
    target, text = found
    if not is_room_name(target):
        return False
    session.flood.charge(_PRIVMSG_PENALTY)
    session.idle_since = time.time()
    rb = ResponseBuffer(session, None)
    session.run_handler("PRIVMSG", _send_plain, found, rb)  # a refusal is answered in rb
    session._flush(rb)
    return True


def _send_plain(session, found: tuple[str, str], rb) -> None:
    target, text = found
    kind = Kind.MESSAGE
    if text.startswith(_ACTION_START):
        kind = Kind.ACTION
        text = text[len(_ACTION_START) :].rstrip("\x01")
    if not _too_long_for_one_line(rb, "PRIVMSG", session.user, target, kind, text):
        session.server.hub.send(session.user, target, text, kind, {})


@command("NOTICE", min_params=0)
def notice(session, msg: Message, rb) -> None:
    """NOTICE <target>[,<target>...] :<text> (never answered with an error)."""
    _deliver(session, msg, rb, Kind.NOTICE, quiet=True)


@command("TAGMSG", min_params=1)
def tagmsg(session, msg: Message, rb) -> None:
    """TAGMSG <target>: client-only tags (typing notices, reactions), message-tags clients."""
    _deliver(session, msg, rb, Kind.TAGMSG, quiet=False)


@command("BATCH", min_params=1)
def batch(session, msg: Message, rb) -> None:
    """BATCH +<ref> draft/multiline <target> ... BATCH -<ref>: one message of several
    lines (IRCv3 draft/multiline; ``multiline.py`` keeps the lines in between)."""
    ref = msg.params[0]
    if ref.startswith("+") and len(ref) > 1:
        opened = ClientBatch(ref[1:], msg.params[2] if len(msg.params) > 2 else "", client_tags(session, msg),
                             rb.label)
        refused = None
        if len(msg.params) < 3 or msg.params[1] != BATCH_TYPE:
            refused = "Only draft/multiline batches with a target may be sent"
        elif C.MULTILINE not in session._render_caps:
            refused = "Enable the draft/multiline and batch capabilities first"
        elif session.client_batch is not None:
            refused = "A multiline batch is already open; both are dropped"
        session.client_batch = opened
        if refused is not None:
            # kept as broken, so its lines are dropped without an error each
            opened.failed = True
            rb.fail("BATCH", "MULTILINE_INVALID", refused)
            return
        # the reply (an echo, or an error) comes when the batch closes, with this line's label
        rb.label = None
        return
    open_batch = session.client_batch
    if not ref.startswith("-") or open_batch is None or open_batch.ref != ref[1:]:
        rb.fail("BATCH", "MULTILINE_INVALID", "No open multiline batch with that reference")
        return
    session.client_batch = None
    if open_batch.label is not None:
        rb.label = open_batch.label
    if open_batch.failed:
        if open_batch.label is not None:
            rb.label = None  # the error that broke it carried the label (or no label was taken)
        return
    text = open_batch.text()
    if not text.strip():
        rb.fail("BATCH", "MULTILINE_INVALID", "A multiline message needs some text")
        return
    _deliver(session, Message("PRIVMSG", [open_batch.target, text], tags=open_batch.tags), rb,
             Kind.MESSAGE, quiet=False, batched=open_batch)


#: what REDACT answers a refusal with (the specification's FAIL codes)
_REDACT_REFUSALS = {
    "no_such_message": "UNKNOWN_MSGID",
    "history_unavailable": "UNKNOWN_MSGID",
    "redact_forbidden": "REDACT_FORBIDDEN",
    "no_such_room": "INVALID_TARGET",
    "not_on_room": "INVALID_TARGET",
    "no_such_nick": "INVALID_TARGET",
}


@command("REDACT", min_params=2)
def redact(session, msg: Message, rb):
    """REDACT <target> <msgid> [:reason] (IRCv3 draft/message-redaction): take a message
    back; the redactor gets its REDACT (with the label) once it is stored and shown."""
    target, msgid = msg.params[0], msg.params[1]
    reason = msg.params[2] if len(msg.params) > 2 else ""
    receipt = Receipt()

    def refused(error: errors.HubError) -> None:
        code = _REDACT_REFUSALS.get(error.code)
        if code == "INVALID_TARGET":
            rb.fail("REDACT", code, target, f"You cannot delete messages from {target}")
        elif code == "REDACT_FORBIDDEN":
            rb.fail("REDACT", code, target, msgid, "You are not authorised to delete this message")
        elif code is not None:
            rb.fail("REDACT", code, target, msgid, "This message does not exist or is too old")
        else:
            session.hub_error(rb, error)

    try:
        d = session.hub.redact(session.user, target, msgid, reason, receipt=receipt)
    except errors.HubError as e:
        refused(e)
        return None

    def redacted(event) -> None:
        own = session.render_own(event)  # always: the redactor's own confirmation
        rb.later(lambda: own if receipt.stored else _not_stored(session, "REDACT", target, receipt))

    def failed(failure) -> None:
        failure.trap(errors.HubError)
        refused(failure.value)

    return d.addCallbacks(redacted, failed)


@command("AWAY")
def away(session, msg: Message, rb) -> None:
    """AWAY [:message]: set or clear the away message."""
    text = msg.params[0] if msg.params else ""
    session.hub.set_away(session.user, text or None)
    if session.user.away:
        rb.numeric(N.RPL_NOWAWAY, "You have been marked as being away")
    else:
        rb.numeric(N.RPL_UNAWAY, "You are no longer marked as being away")


@command("SETNAME", min_params=1)
def setname(session, msg: Message, rb) -> None:
    """SETNAME :<realname> (IRCv3 setname)."""
    realname = msg.params[0]
    if not realname or len(realname) > 200:
        rb.fail("SETNAME", "INVALID_REALNAME", "Realname is not valid")
        return
    event = session.hub.set_realname(session.user, realname)
    rb.add(session.render_own(event))
