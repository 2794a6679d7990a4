"""IRCv3 ``draft/channel-rename``: ``RENAME <#old> <#new> [:reason]``.

The hub renames the room (its operators only) and tells each member; this module shows
that to an IRC session: ``RENAME #old #new :reason`` to a client with the capability, and
to one without, the fallback the specification gives: a ``PART`` of the old name and a
``JOIN`` of the new one from the client itself, followed by what a join shows (topic,
``NAMES``). A change of case alone is not shown to a client without the capability.
Refusals are ``FAIL RENAME CHANNEL_NAME_IN_USE`` / ``CANNOT_RENAME <#old> <#new>``, or
the numeric IRC has for them (``403``, ``442``, ``482``; in a cluster ``437`` when the new
name cannot be claimed now).
"""
from __future__ import annotations

from typing import cast

from twisted.internet import defer
from twisted.python.failure import Failure

from chathub.events import Event
from chathub.hub import errors
from chathub.names import fold
from chathub.protocols.irc import caps as C
from chathub.protocols.irc import numerics as N
from chathub.protocols.irc.commands_channels import names_of, topic_numerics
from chathub.protocols.irc.render import event_tags
from chathub.protocols.irc.responsebuffer import ResponseBuffer
from chathub.protocols.irc.table import RENAME_SHOWN, command, hook
from chathub.protocols.irc.wire import Message

#: hub refusals answered with ``FAIL RENAME <code> <#old> <#new>``
FAIL_CODES = {
    "room_name_in_use": "CHANNEL_NAME_IN_USE",
    "cannot_rename": "CANNOT_RENAME",
    "reason_too_long": "CANNOT_RENAME",
}


@command("RENAME", min_params=2, penalty=5.0)
def rename(session, msg: Message, rb) -> defer.Deferred:
    """RENAME <#old> <#new> [:reason]: a channel operator renames the channel."""
    old, new = msg.params[0], msg.params[1]
    reason = msg.params[2] if len(msg.params) > 2 else ""

    def refused(failure: Failure) -> None:
        failure.trap(errors.HubError)
        e = failure.value
        code = FAIL_CODES.get(e.code)
        if code is None:
            session.hub_error(rb, e)
        else:
            rb.fail("RENAME", code, old, new, e.message)

    def renamed(event: Event) -> None:
        # our own copy, once the hub has shown it to the others (it waits for its commit)
        def own() -> list[Message]:
            mine = ResponseBuffer(session, None)
            show_rename(session, event, mine)
            return cast("list[Message]", mine.messages)  # lines only: nothing is made later

        rb.later(own)

    # in a cluster, once the new name is claimed (later lines wait)
    return session.hub.claim_and_rename(session.user, old, new, reason).addCallbacks(renamed, refused)


@hook(RENAME_SHOWN)
def show_rename(session, event: Event, rb) -> None:
    """Show one session the rename ``event``: ``RENAME`` with the capability, else the
    fallback (nothing for a change of case); its read marker follows the room (the hub's
    ``_rename`` moves it)."""
    old, new = event.target, str(event.data.get("new", ""))
    if C.CHANNEL_RENAME in session.caps:
        rb.add(session.render_own(event))
        return
    if fold(old) == fold(new):
        return
    room = session.hub.find_room(new)
    user = session.user
    if room is None or user is None or user not in room:
        return  # it left meanwhile
    # server-time as the rename's; not its msgid, which names one message, not these two
    tags = {k: v for k, v in event_tags(event, C.rendering(session.caps)).items() if k != "msgid"}
    me = user.mask
    rb.add(Message("PART", [old, event.text] if event.text else [old], me, tags))
    if C.EXTENDED_JOIN in session.caps:
        rb.add(Message("JOIN", [room.name, user.account or "*", user.realname], me, tags))
    else:
        rb.add(Message("JOIN", [room.name], me, tags))
    if room.topic:
        topic_numerics(session, room, rb)
    names_of(session, room, rb, end=False)
    rb.numeric(N.RPL_ENDOFNAMES, room.name, "End of /NAMES list")
