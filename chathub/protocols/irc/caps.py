"""IRCv3 capabilities: what we offer in ``CAP LS`` and which ones change the bytes we send."""
from __future__ import annotations

from typing import Mapping

CAP_NOTIFY = "cap-notify"
MESSAGE_TAGS = "message-tags"
SERVER_TIME = "server-time"
ECHO_MESSAGE = "echo-message"
MULTI_PREFIX = "multi-prefix"
USERHOST_IN_NAMES = "userhost-in-names"
AWAY_NOTIFY = "away-notify"
ACCOUNT_NOTIFY = "account-notify"
ACCOUNT_TAG = "account-tag"
EXTENDED_JOIN = "extended-join"
EXTENDED_MONITOR = "extended-monitor"
CHGHOST = "chghost"
SETNAME = "setname"
INVITE_NOTIFY = "invite-notify"
BATCH = "batch"
LABELED_RESPONSE = "labeled-response"
STANDARD_REPLIES = "standard-replies"
SASL = "sasl"
METADATA = "draft/metadata-3"
READ_MARKER = "draft/read-marker"
#: limits of draft/metadata-3 (enforced in commands_metadata)
METADATA_MAX_KEYS = 50
METADATA_MAX_SUBS = 50
METADATA_MAX_VALUE_BYTES = 300
METADATA_VALUE = (
    f"before-connect,max-subs={METADATA_MAX_SUBS},max-keys={METADATA_MAX_KEYS},"
    f"max-value-bytes={METADATA_MAX_VALUE_BYTES}"
)
CHATHISTORY = "draft/chathistory"
EVENT_PLAYBACK = "draft/event-playback"
ACCOUNT_REGISTRATION = "draft/account-registration"
#: REGISTER works before connection registration; the account is always the nick
ACCOUNT_REGISTRATION_VALUE = "before-connect"
#: RENAME of channels (IRCv3 draft/channel-rename); without it a client sees PART + JOIN
CHANNEL_RENAME = "draft/channel-rename"
#: messages longer than a line, and with line breaks (``multiline.py``); needs ``batch``
MULTILINE = "draft/multiline"
#: REDACT: messages taken back (``commands_messages.redact``); shown only to clients with it
MESSAGE_REDACTION = "draft/message-redaction"


def offered(
    sasl_mechanisms: str = "PLAIN",
    multiline: str = "max-bytes=4096,max-lines=100",
    account_registration: str = ACCOUNT_REGISTRATION_VALUE,
) -> Mapping[str, str]:
    """Every capability we offer, with its ``CAP LS 302`` value ("" for none);
    ``multiline`` is the ``draft/multiline`` value (``multiline.cap_value``),
    ``account_registration`` ``draft/account-registration``'s ("" when ``[irc]
    register_before_connect`` is off)."""
    return {
        ACCOUNT_NOTIFY: "",
        ACCOUNT_TAG: "",
        AWAY_NOTIFY: "",
        BATCH: "",
        CAP_NOTIFY: "",
        CHANNEL_RENAME: "",
        CHGHOST: "",
        ECHO_MESSAGE: "",
        EXTENDED_JOIN: "",
        EXTENDED_MONITOR: "",
        INVITE_NOTIFY: "",
        LABELED_RESPONSE: "",
        MESSAGE_TAGS: "",
        MULTI_PREFIX: "",
        METADATA: METADATA_VALUE,
        MULTILINE: multiline,
        MESSAGE_REDACTION: "",
        READ_MARKER: "",
        SASL: sasl_mechanisms,
        SERVER_TIME: "",
        SETNAME: "",
        STANDARD_REPLIES: "",
        CHATHISTORY: "",
        EVENT_PLAYBACK: "",
        ACCOUNT_REGISTRATION: account_registration,
        USERHOST_IN_NAMES: "",
    }


#: capabilities that change how a hub event is rendered: part of a session's format_key,
#: so fan-out renders once per distinct set of these
RENDERING = frozenset(
    {
        MESSAGE_TAGS,
        SERVER_TIME,
        ACCOUNT_TAG,
        EXTENDED_JOIN,
        AWAY_NOTIFY,
        ACCOUNT_NOTIFY,
        CHGHOST,
        SETNAME,
        INVITE_NOTIFY,
        CHANNEL_RENAME,
        MESSAGE_REDACTION,
        MULTILINE,  # only with BATCH: ``rendering`` drops it otherwise
    }
)


def rendering(caps: frozenset) -> frozenset:
    """The capabilities of ``caps`` that change how events are rendered."""
    render = caps & RENDERING
    if MULTILINE in render and BATCH not in caps:
        render = render - {MULTILINE}  # the batch needs batch (the specification's dependency)
    return frozenset(render)

#: capabilities a client may not remove once enabled (CAP 302: none are sticky for us)
STICKY: frozenset[str] = frozenset()
