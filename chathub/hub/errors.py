"""Errors the hub raises, each with a stable code that every protocol maps to its own terms.

The IRC server maps codes to numerics, the JSON protocol sends ``{"type": "error", "code": ...}``,
the line protocol prints ``! message``. ``target`` names what the error is about (a nick or
room), so a numeric can carry it.
"""
from __future__ import annotations


class HubError(Exception):
    """A request the hub refused; ``code`` is stable, ``message`` is for people."""

    code = "error"
    message = "request refused"

    def __init__(self, target: str = "", message: str = "") -> None:
        self.target = target
        if message:
            self.message = message
        super().__init__(f"{self.code}: {target} {self.message}".strip())


def _error(code: str, message: str) -> type[HubError]:
    return type(
        "".join(p.capitalize() for p in code.split("_")),
        (HubError,),
        {"code": code, "message": message, "__doc__": message},
    )


NoSuchNick = _error("no_such_nick", "No such nick")
NoSuchRoom = _error("no_such_room", "No such room")
NickInUse = _error("nick_in_use", "Nickname is already in use")
ErroneousNick = _error("erroneous_nick", "Erroneous nickname")
# a cluster grants a nick only by an atomic claim shared by every node; when the claim
# cannot be decided (Redis unreachable) the nick is refused, never granted twice
NickUnavailable = _error("nick_unavailable", "Nicknames cannot be granted right now; try again shortly")
# [auth] multiclient joins a login to its account's user only on the node that holds it: a
# second session of the account on another node of a cluster is refused, saying why
NickOnOtherServer = _error(
    "nick_on_other_server",
    "Nickname is in use by a session of your account on another server of this network; "
    "several sessions of one account must connect to the same server",
)
# a cluster makes a room only after claiming its name in Redis (chathub.hub.roomclaims):
# without Redis, or when the claim keeps being refused, no room is made
RoomUnavailable = _error("room_unavailable", "Rooms cannot be made right now; try again shortly")
NickRegistered = _error("nick_registered", "Nickname is registered; log in with its password")
BadRoomName = _error("bad_room_name", "Invalid room name")
NotOnRoom = _error("not_on_room", "You're not on that room")
UserNotInRoom = _error("user_not_in_room", "They aren't on that room")
AlreadyOnRoom = _error("already_on_room", "is already on that room")
CannotSend = _error("cannot_send", "Cannot send to room")
# RENAME (IRC ``FAIL RENAME CHANNEL_NAME_IN_USE`` / ``CANNOT_RENAME``)
RoomNameInUse = _error("room_name_in_use", "The room name is already taken")
CannotRename = _error("cannot_rename", "The room cannot be renamed")
NotRoomOperator = _error("not_room_operator", "You're not a room operator")
NotServerOperator = _error("not_server_operator", "Permission denied - you're not an IRC operator")
Banned = _error("banned", "Cannot join room (you are banned)")
InviteOnly = _error("invite_only", "Cannot join room (invite only)")
BadKey = _error("bad_key", "Cannot join room (incorrect key)")
RoomFull = _error("room_full", "Cannot join room (room is full)")
TooManyRooms = _error("too_many_rooms", "You have joined too many rooms")
# KICK and PART reasons are bounded ([irc] kick_length, [limits] reason_length); the
# message names the bound
ReasonTooLong = _error("reason_too_long", "Reason too long")
NoText = _error("no_text", "No text to send")
# [limits] message_bytes / message_lines: the message names the limit it broke
MessageTooLong = _error("message_too_long", "Message too long")
UnknownMode = _error("unknown_mode", "is an unknown mode character")
RegistrationUnavailable = _error("registration_unavailable", "Account registration is not available here")
AlreadyRegistered = _error("already_registered", "You are already logged in to an account")
# [auth] max_sessions_per_account: the message names the bound
TooManySessions = _error("too_many_sessions", "Too many sessions of this account are connected")
#: the message names the shortest password ``[auth] min_password_length`` allows
WeakPassword = _error("weak_password", "Password too short")


def weak_password(target: str, shortest: int) -> HubError:
    """``WeakPassword`` naming the shortest password allowed."""
    return WeakPassword(target, f"Password too short (at least {shortest} characters)")
NotLoggedIn = _error("not_logged_in", "You are not logged in to the hub")
# room creation is bounded three ways ([limits]); each names its bound in the message
TooManyOwnedRooms = _error("too_many_owned_rooms", "Your account already owns as many rooms as it may")
RoomCreationThrottled = _error("room_creation_throttled", "You are creating rooms too fast; try again later")
RoomLimitReached = _error("room_limit_reached", "The server holds as many rooms as it may; no new room can be made")
# what the store refused, as the hub passes it on (``chathub.hub.storage``): protocols see
# these codes, never the store's exceptions
AccountExists = _error("account_exists", "That account already exists")
NoSuchMessage = _error("no_such_message", "No such message in this conversation")
StorageFailed = _error("storage_failed", "Storage is unavailable right now")
HistoryUnavailable = _error("history_unavailable", "History is not kept on this server")
# REDACT (draft/message-redaction): a message only its sender, the room's operators and
# server operators may take back
RedactForbidden = _error("redact_forbidden", "You are not authorised to delete this message")


class ModeParamError(HubError):
    """A room mode change refused because of its parameter; ``mode`` is the letter and
    ``param`` the parameter, so IRC can name both (478, 696)."""

    def __init__(self, target: str, mode: str, param: str, message: str = "") -> None:
        self.mode = mode
        self.param = param
        super().__init__(target, message)


class ListFull(ModeParamError):
    """The room's ban, exception or invite-exception list is full."""

    code = "list_full"
    message = "Channel list is full"


class BadMask(ModeParamError):
    """A mask too long to be a hostmask (masks are matched on every message and join)."""

    code = "bad_mask"
    message = "Mask is too long"
