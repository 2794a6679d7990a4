"""Applying other nodes' room events to this node's rooms (cluster mode).

The node where a user acts checks the request against its copy of the room and stores the
event; every other node gets it from the cluster relay, in the room's committed order, and
applies it here without checking again (but for the checks every node makes at the event's
number, ``chathub.hub.admission``, which keep a void event from reaching this module): a
join adds the member (with the privileges it got there), a part, kick or quit removes one,
a nick change renames one, a topic or mode event changes the room, a rename renames it.
Then the event goes to this node's users it concerns, as a local one would. A user of
another node sits in a room as a ``User`` whose participant sends nothing
(``RemoteParticipant``): NAMES, WHO and the fan-out treat it like any member.
"""
from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Callable, Optional, Protocol, Sequence

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

from chathub.events import Event, Kind, Source
from chathub.hub.lifetimes import ROOM_FOUNDER
from chathub.hub.metadata import Metadata, read_room_state
from chathub.hub.remote import RemoteParticipant, RemoteUser, presence_of
from chathub.hub.roomclaims import ROOM_CLAIM
from chathub.hub.roommodes import apply_room_modes
from chathub.hub.rooms import BanEntry, Member, Room, is_aside
from chathub.hub.users import User
from chathub.names import fold

if TYPE_CHECKING:
    from chathub.hub.service import ChatHub

__all__ = ["Positions", "RemoteParticipant", "RemoteRooms"]


log = Logger()

#: what a KICK or an INVITE adds to its data: the kicked or invited user's connection
#: (``User.session``), which names it on every node even when its nick change is on its way
#: there
TARGET_SESSION = "session"
#: what a MODE that changes members' privileges adds to its data: each target's connection
#: by the nick the MODE names, which finds it on every node even when its nick change is
#: on its way there (``RemoteRooms._mode``), as ``TARGET_SESSION`` does for a KICK
MODE_SESSIONS = "sessions"
#: the longest a nick granted here waits for its earlier holder's quit or nick change to
#: reach this node's rooms (``RemoteRooms.vacated``; seconds: a committed event comes in
#: milliseconds, a lost one is fetched as a gap within ``MAX_WAIT``)
VACATE_WAIT = 10.0
#: earlier holders of nicks kept aside for their QUIT or NICK (``RemoteRooms.user_for``)
EARLIER_KEPT = 1_000


class Positions(Protocol):
    """Where each conversation stands on this node (``ClusterRelay``)."""

    def position(self, conv: str) -> Optional[int]:
        """The number up to which ``conv`` was delivered here, or None."""

    def start_at(self, conv: str, seq: int) -> None:
        """Deliver ``conv`` from ``seq + 1`` on."""

    def hold_unknown_rooms(self) -> None:
        """Hold the events of rooms not heard of until ``release_unknown_rooms``."""

    def movable(self, conv: str, seq: int) -> bool:
        """Whether ``conv`` may start at ``seq`` (not delivered past it, nothing of its own
        on its way)."""

    def began_unseen(self, conv: str) -> bool:
        """Whether this node's order of room ``conv`` began while it held no copy of it
        (and no making of it came since)."""

    def seen_making(self, conv: str) -> None:
        """A making of room ``conv`` reached this node."""

    def release_unknown_rooms(self) -> None:
        """Deliver what was held, each room from where it now stands."""


class RemoteRooms:
    """This node's copies of other nodes' users in its rooms."""

    def __init__(self, hub: "ChatHub", publish: Callable[[Event, Sequence[User]], None]) -> None:
        self.hub = hub
        self.publish = publish  # deliver to local recipients, in hub order
        self.users: dict[str, User] = {}  # folded nick -> a user of another node in some room here
        #: (node, folded nick) -> the earlier holder of a nick another node's user holds now,
        #: still in rooms here until its QUIT or NICK comes (``user_for``, ``leaver``)
        self._earlier: OrderedDict[tuple[str, str], User] = OrderedDict()
        #: nicks granted here whose earlier holder is still listed (``vacated``), each waiter
        self._vacating: list[tuple[str, Deferred[None]]] = []
        #: id of another node's NICK -> the user it renamed here, in every room listing it
        #: then, when first applied (``again``: not that user's to apply in a room again)
        self._renamed: OrderedDict[str, User] = OrderedDict()

    def vacated(self, folded: str, clock: Optional[IReactorTime]) -> Deferred[None]:
        """Fires once no user of another node is listed in this node's rooms under the
        folded nick ``folded``, which this node was just granted (``ChatHub._claim``).

        The cluster frees a nick when its holder quits or renames, and shows the QUIT or
        NICK after its commit: a node granted the nick in between still lists the earlier
        holder in its rooms, under the nick. A new user of it there would share that entry
        (its JOIN taken for the earlier holder's, a rename to it overwriting it), and the
        QUIT, once here, would take the new user out of the room on this node only. So the
        new holder waits for it, at most ``VACATE_WAIT`` on ``clock`` (without one, as in
        units, for as long as it takes); past that the earlier holder is taken out here,
        shown leaving as a quit, and a QUIT that comes after finds nobody."""
        if folded not in self.users:
            return succeed(None)
        waiting: Deferred[None] = Deferred()
        self._vacating.append((folded, waiting))
        if clock is not None:
            timer = clock.callLater(VACATE_WAIT, self._give_up, folded, waiting)
            waiting.addBoth(_cancelling, timer)
        return waiting

    def _give_up(self, folded: str, waiting: Deferred[None]) -> None:
        user = self.users.get(folded)
        if user is not None:
            log.warn("the quit or nick change of {nick} (another node's) did not come within {wait:g} s of its "
                     "nick being given here: taken out of the rooms here", nick=user.nick, wait=VACATE_WAIT)
            self.drop_users([folded], "Gone (its quit was not heard of)")
        # the wait is bounded whatever is listed now (before, a holder listed under a nick
        # it no longer had stayed listed, and the sign-on waited for good)
        self._vacating = [(f, d) for f, d in self._vacating if d is not waiting]
        if not waiting.called:
            waiting.callback(None)
        self._check_vacated()

    def _check_vacated(self) -> None:
        """Let the waiters for nicks no longer listed here go on (``vacated``)."""
        if not self._vacating:
            return
        done = [(f, d) for f, d in self._vacating if f not in self.users]
        if done:
            self._vacating = [(f, d) for f, d in self._vacating if f in self.users]
            for _, waiting in done:
                if not waiting.called:
                    waiting.callback(None)

    def user_for(self, event: Event, node: str = "") -> User:
        """The member standing for the sender of ``event`` (made on its first join)."""
        source = event.source
        folded = fold(source.nick)
        user = self.users.get(folded)
        if user is not None and self._someone_else(user, event):
            earlier = self._late_earlier_holder(user, event, folded, node)
            if earlier is not None:
                return earlier
            # the nick's earlier holder, of another node: its QUIT or NICK, which freed the
            # nick, is still on its way here (behind a gap of one of its rooms) while the new
            # holder's event came first. Set aside for it: that QUIT took the new holder out
            # of its rooms here, on this node only
            self._set_aside(folded, user)
            user = None
        if user is None:
            # what the directory holds is newer than the event (presence goes out at once,
            # room events after their commit, over one connection): take it when it is
            # the same user
            remote = self.hub.remote
            said = remote.said(source.nick) if remote is not None else None
            if said is not None and (not source.session or source.session == said.session):
                user = said.make_user()
                user.set_nick(source.nick)
            else:
                # of the node that made the event: the directory's holder of the nick may be
                # another connection of another node (this one quit since, and the nick was
                # given again there). Taken for that node's, the sender's next JOIN found it
                # "someone else", made it a second user, and its QUIT found neither: both
                # stayed listed, on this node only (a random three-node driver, seed 1223)
                maker = remote.node_of(event) if remote is not None else None
                user = _stand_in(source, maker or node)
            self.users[folded] = user
        return user

    def _late_earlier_holder(self, listed: User, event: Event, folded: str, node: str) -> Optional[User]:
        """The sender of ``event`` when it is the nick's earlier holder and ``listed``, of
        another node or connection, the holder now (as the directory says): a JOIN of the
        earlier holder, numbered before its QUIT or NICK, reached this node after the new
        holder's first event (behind a gap of its room). Taken for the earlier one,
        ``listed`` was set aside for a QUIT that had come already, and stayed in its rooms
        here when its own QUIT came (a member no other node listed). The sender stands
        aside instead, for its QUIT or NICK (``leaver``); None otherwise."""
        remote = self.hub.remote
        said = remote.said(event.source.nick) if remote is not None else None
        if said is None or said.node != getattr(listed.participant, "node", "") or said.session != listed.session:
            return None  # not the holder now, as far as this node knows
        source = event.source
        maker = remote.node_of(event) if remote is not None else None
        key = (maker or node, folded)
        earlier = self._earlier.get(key)
        if earlier is not None:
            if source.session and earlier.session != source.session:
                return None  # aside already for another earlier holder: as before
            return earlier
        earlier = _stand_in(source, maker or node)
        self._set_aside(folded, earlier)  # (under ``key``: the stand-in is of that node)
        return earlier

    def _forget_earlier(self, user: User) -> None:
        """``user``, set aside as a nick's earlier holder, left its last room here."""
        key = (getattr(user.participant, "node", ""), user.folded or "")
        if self._earlier.get(key) is user:
            del self._earlier[key]

    def apply(self, event: Event) -> None:
        """Apply another node's room event, then deliver it to the local members it concerns."""
        kind = event.kind
        handler = _HANDLERS.get(kind)
        if handler is None:
            return
        target = event.target
        if target and fold(target) not in self.hub.rooms and not (kind == Kind.JOIN and ROOM_CLAIM in event.data):
            # numbered before a rename this node applied ahead of its number (its own): it
            # is the renamed room's, and shown under its name now
            room = self.hub.room_named(target)
            if room is not None:
                event = replace(event, target=room.name)
        handler(self, event)
        if self._vacating:
            self._check_vacated()

    def again(self, event: Event, conv: str) -> None:
        """A QUIT or NICK of another node's user, applied here when the first of its rooms'
        orders reached it (the user taken out of, or renamed in, every room this copy
        listed it in then), now at its number in room ``conv``. A JOIN of the user numbered
        before it in ``conv`` may have come after that first one (``conv``'s order waited
        for a gap, while the other room's did not): it put the user back in ``conv`` under
        the old nick, and the QUIT or NICK, applied once, left it there for good on this
        node only (a random three-node driver: a member the other nodes never listed). That
        member leaves now, or takes the new nick, shown to the room."""
        room = self.hub.rooms.get(conv)
        old = fold(event.source.nick)
        member = room.members.get(old) if room is not None else None
        if room is None or member is None or not isinstance(member.user.participant, RemoteParticipant) \
                or self._someone_else(member.user, event):  # the nick's new holder, of another node
            return
        user = member.user
        if event.kind == Kind.NICK and self._renamed.get(event.id) is user:
            # the user this NICK renamed in every room when first applied, under the old
            # nick again by a later NICK of its own applied first too: as that one left it
            return
        recipients = room.recipients()
        if event.kind == Kind.QUIT:
            self.hub.leave_room(user, room)
        elif event.kind == Kind.NICK:
            new = str((event.data or {}).get("new", ""))
            if not new:
                return
            renamed = self.users.get(fold(new))
            listed = room.members.get(fold(new))
            if renamed is not None and renamed is not user and listed is not None and listed.user is renamed:
                # listed here too, under the new nick: a PART of it numbered before this
                # NICK and applied after it named the old nick and missed it, and the JOIN
                # after the PART made the member under the old nick. That member, as the
                # JOIN made it, is the one every node has
                room.remove(fold(new))
                renamed.remove_room(room.folded)
                listed = None
            if renamed is not None and renamed is not user and listed is None:
                # the user as renamed in its other rooms: one member of each room it is in
                _move_member(room, old, member, renamed)
            elif renamed is None:
                user.set_nick(new)
                room.rekey(old, fold(new))
                self.users[fold(new)] = user
            else:
                return
        else:
            return
        if self.users.get(old) is user and (event.kind == Kind.NICK or not user.rooms):
            self.users.pop(old)  # listed under the nick it has now (a quitter: in no room left)
        elif event.kind == Kind.QUIT and not user.rooms:
            self._forget_earlier(user)  # its late JOIN's stand-in, aside for this QUIT
        self.publish(event, recipients)
        if self._vacating:
            self._check_vacated()

    def _room(self, event: Event, create: bool = False) -> Optional[Room]:
        folded = fold(event.target)
        room = self.hub.rooms.get(folded)
        if room is None and create:
            claim = (event.data or {}).get(ROOM_CLAIM)
            # a JOIN numbered before the leave of this node's that ended the room here: the
            # room as it was (``ChatHub.revived``); else made at the node where it was joined
            # (within its limits), when its JOIN was made there: a node's own clock on
            # applying it was later (329 differed by seconds)
            kept = self.hub.revived(folded)
            room = kept if kept is not None and not isinstance(claim, str) else Room(event.target, created=event.time)
            self.hub.rooms[folded] = room
            self.hub.made_again(folded)
            claims = self.hub.room_claims
            if claims is not None:
                if isinstance(claim, str):
                    room.claim = claim  # its making: released when it ends
                    self.hub.seen_making(room)
                else:
                    claims.rebuilt(room)  # joined on a node that had not applied its end yet
                    self.hub.begun_unseen(room)  # or its making's message was lost
                claims.made(room)  # joins here waiting for it go on
            founder = (event.data or {}).get(ROOM_FOUNDER)
            # made by an account holder, or registered at its guest maker's login already:
            # kept while empty, as on the node that made it
            self.hub.made_elsewhere(room, founder if isinstance(founder, str) and founder else None)
        return room

    def _join(self, event: Event) -> None:
        remote = self.hub.remote
        if remote is not None and remote.lost(event):
            # committed by a node that died before it rang the doorbell, and read after the
            # node was declared dead here: its users left every room then, and no QUIT of
            # theirs will ever come, so applied it would keep a member of no live node
            return
        room = self._room(event, create=True)
        assert room is not None
        known = self.hub.remote.said(event.source.nick) if self.hub.remote is not None else None
        if known is not None and event.source.session and known.session != event.source.session:
            known = None  # the nick's holder now is another connection: not this JOIN's user
        user = self.user_for(event, known.node if known is not None else "")
        listed = room.members.get(user.folded or "")
        if listed is not None and listed.user is not user and listed.user is self._earlier.get(
                (getattr(listed.user.participant, "node", ""), user.folded or "")):
            # the nick's earlier holder, set aside for its QUIT or NICK: out of this room now
            # (its place taken at once: the room does not end in between)
            room.remove(user.folded or "")
            listed.user.remove_room(room.folded)
        elif listed is not None:
            return
        self.hub.made_earlier(room, event)
        privileges = str((event.data or {}).get("privileges", ""))
        room.add(Member(user, privileges))
        user.add_room(room)
        if known is None:  # else the directory's is newer
            user.away = (event.data or {}).get("away")
        self.publish(event, room.recipients())

    def _leave(self, event: Event, nick: str, member: Optional[Member] = None, found: bool = False) -> None:
        """Take the member ``nick`` names (or, ``found``, ``member``) out of the event's room."""
        room = self._room(event)
        if room is None:
            return
        if not found:
            member = room.members.get(fold(nick))
        recipients: Sequence[User] = room.recipients()
        if member is not None and event.kind == Kind.PART:
            # the nick's earlier holder, when another node's user holds it here now
            parter = self.leaver(event)
            if parter is not None and member.user is not parter:
                # the nick is this node's user's here now; the parter, another node's
                # earlier holder of it, is listed aside (``Room.displace``) or not at all
                key = room.key_of(parter)
                member = room.members.get(key) if key is not None else None
        if member is not None:
            self.hub.leave_room(member.user, room)
            if isinstance(member.user.participant, RemoteParticipant) and not member.user.rooms:
                listed = self.users.get(fold(nick))
                if listed is not None and listed is not member.user and listed.rooms:
                    self._forget_earlier(member.user)  # the nick's earlier holder: the holder stays
                else:
                    self.users.pop(fold(nick), None)
            recipients = _but_namesakes(recipients, member.user, fold(nick))
        self.publish(event, recipients)

    def _part(self, event: Event) -> None:
        self._leave(event, event.source.nick)

    def _kick(self, event: Event) -> None:
        # the kicked may be a user of this node: it leaves the room here too
        data = event.data or {}
        nick = str(data.get("nick", ""))
        room = self._room(event)
        session = data.get(TARGET_SESSION)
        kicked = room.members.get(fold(nick)) if room is not None else None
        if room is not None and isinstance(session, str) and session and (
                kicked is None or (kicked.user.session and kicked.user.session != session)):
            # renamed since the kicking node saw it (its NICK numbered before this KICK, which
            # that node applied at once), or listed aside while this node's user holds the
            # nick (``Room.displace``): the same user, kicked here too, its lines naming it
            # by the nick it has now; never the other user listed under that nick
            kicked = next((m for m in room.members.values() if m.user.session == session), None)
            if kicked is not None:
                nick = kicked.user.nick or nick
                event = Event(event.id, event.time, event.kind, event.source, event.target, event.text,
                              event.tags, {**data, "nick": nick})
        self._leave(event, nick, kicked, found=True)

    def _someone_else(self, user: User, event: Event) -> bool:
        """Whether ``user``, listed here under the nick of ``event``'s sender, is not that
        sender: another connection (a guest's event names its connection: the nick given
        anew on the same node) or a user of another node than the one that made ``event``
        (as far as this node knows)."""
        if event.source.session and user.session and event.source.session != user.session:
            return True
        node = getattr(user.participant, "node", "")
        if not node or self.hub.remote is None:
            return False
        sender = self.hub.remote.node_of(event)
        return sender is not None and sender != node

    def _set_aside(self, folded: str, user: User) -> None:
        self._earlier[(getattr(user.participant, "node", ""), folded)] = user
        if len(self._earlier) > EARLIER_KEPT:
            _, oldest = self._earlier.popitem(last=False)
            self._leave_all(oldest)  # its QUIT long overdue: out of the rooms here
        if self.users.get(folded) is user:
            del self.users[folded]

    def leaver(self, event: Event, forget: bool = False) -> Optional[User]:
        """The user a QUIT or NICK ``event`` is of: the one listed under its nick, or, when
        another user holds the nick here now or nobody does any more, the earlier holder
        set aside for it (``user_for``); with ``forget``, no longer listed (applying the
        event)."""
        folded = fold(event.source.nick)
        user = self.users.get(folded)
        if user is None or self._someone_else(user, event):
            node = self.hub.remote.node_of(event) if self.hub.remote is not None else None
            key = (node or "", folded)
            earlier = self._earlier.get(key)
            if user is None and earlier is not None and event.source.session and earlier.session \
                    and earlier.session != event.source.session:
                return None  # another connection's, set aside for an event still to come
            # with nobody listed: the later holder of the nick left first (its QUIT reached
            # this node ahead of the earlier holder's, numbered in another room): the earlier
            # holder stayed in its rooms for good (a random three-node driver, seed 6787)
            return self._earlier.pop(key, None) if forget else earlier
        return self.users.pop(folded, None) if forget else user

    def _leave_all(self, user: User) -> None:
        """``user`` leaves every room here it is listed in (as itself: not where another
        user holds its nick now)."""
        for room in list(user.rooms.values()):
            if room.key_of(user) is not None:  # under its nick, or moved aside (``Room.displace``)
                self.hub.leave_room(user, room)
            else:
                user.remove_room(room.folded)

    def _quit(self, event: Event) -> None:
        user = self.leaver(event, forget=True)
        if user is None:
            return
        # (one user per nick, the quitter first: a namesake listed beside it is not told)
        recipients = self.hub.neighbours(user)
        self._leave_all(user)
        self.publish(event, recipients)

    def _nick(self, event: Event) -> None:
        old = fold(event.source.nick)
        user = self.leaver(event, forget=True)
        new = str((event.data or {}).get("new", ""))
        if user is None or not new:
            return
        recipients = _but_namesakes(self.hub.neighbours(user), user, old, fold(new))
        holder = self.users.get(fold(new))
        same = None
        if holder is not None and holder is not user:
            if self._someone_else(holder, event):
                self._set_aside(fold(new), holder)  # the nick's earlier holder (``user_for``)
            else:
                same = holder  # this user, made here by a JOIN under the new nick that came first
        user.set_nick(new)
        folded = fold(new)
        self.users[folded] = user
        for room in list(user.rooms.values()):
            key = room.key_of(user, old)  # renamed already: listed under its old nick, or aside
            if key is None:
                continue  # not where another holds the nick now
            taken = room.members.get(folded)
            if taken is not None and taken.user is not user and self.hub.users.get(folded) is taken.user:
                # one of this node's users is listed under the new nick already, given the
                # nick once this user let it go (its QUIT or NICK away follows) and joined
                # ahead of this NICK's number: both are members here now. Renamed over it,
                # the entry was this user's, and its leaving took the room from under the
                # other. (Another node's user listed so is the stale one: a lost node's,
                # say, whose drop is on its way here while the node that found it lost gave
                # its nick again: its place goes, as before)
                room.displace(key)
                continue
            room.rekey(key, folded)
        if same is not None:
            self._take_over(same, user)
        self._renamed[event.id] = user
        if len(self._renamed) > EARLIER_KEPT:
            self._renamed.popitem(last=False)
        self.publish(event, recipients)
        self._catch_up(user)

    @staticmethod
    def _take_over(other: User, user: User) -> None:
        """``user``, renamed here, takes the places of ``other``: the same user of another
        node, made here under the new nick by its JOIN of another room, which reached this
        node before the NICK (each room's order is its own). Two users for one, the next
        NICK renamed one of them, and the other stayed listed under the old nick."""
        folded = user.folded or ""
        for room in list(other.rooms.values()):
            member = room.members.get(folded)
            if member is not None and member.user is other:
                _move_member(room, folded, member, user)
            else:
                other.remove_room(room.folded)

    def _catch_up(self, user: User) -> None:
        """Give the room copy of a user of another node, renamed just now, what its node said
        of it since (presence comes at once, the NICK in the rooms' order after its commit):
        an away, account, host or real name change made right after the nick change found no
        copy under the new nick and was lost here (its room neighbours never told)."""
        remote = self.hub.remote
        if remote is None or not isinstance(user.participant, RemoteParticipant):
            return
        said = remote.said(user.nick or "")
        listed = remote.get(user.nick or "")
        if said is None or listed is None or (user.session and said.session != user.session):
            return
        before = RemoteUser.from_list(said.node, presence_of(user))
        fields = ("user", "host", "account", "realname", "away", "metadata")
        if any(getattr(before, f) != getattr(said, f) for f in fields):
            self.hub.remote_changed(listed, before, said, watchers=False)

    def _topic(self, event: Event) -> None:
        room = self._room(event)
        if room is None:
            return
        room.topic = event.text
        room.changed_elsewhere += 1
        room.topic_setter = f"{event.source.nick}!{event.source.user}@{event.source.host}"
        room.topic_time = event.time if isinstance(event.time, float) else time.time()
        self.hub.room_changed(room)
        self.publish(event, room.recipients())

    def _mode(self, event: Event) -> None:
        room = self._room(event)
        if room is None:
            return
        changes = [tuple(change) for change in (event.data or {}).get("changes", ())]
        sessions = (event.data or {}).get(MODE_SESSIONS)
        if isinstance(sessions, dict) and sessions:
            followed = following_renames(room, changes, sessions)
            if followed != changes:
                # renamed since the setting node saw it (its NICK numbered before this MODE,
                # which that node applied at once): the same member, its lines naming it by
                # the nick it has now
                changes = followed
                event = replace(event, data={**event.data, "changes": [list(change) for change in changes]})
        setter = self.users.get(fold(event.source.nick))
        if setter is None:
            # no member of this copy (its node gave the nick anew, to a user who acted at
            # once, while this copy still listed the nick's earlier holder: a random
            # two-node driver, a +l and a ban left on one node only). Checked where it was
            # asked: applied here too, or the copies differ for good
            setter = _stand_in(event.source, "")
        members: dict[str, User] = {**self.hub.users, **self.users}
        # checked at the setter's node; here a change this copy cannot apply is skipped (a
        # list entry past the bound is not: that node counted its copy's entries)
        apply_room_modes(setter, room, changes, members, self.hub.config, counted=False, at=event.time)
        room.changed_elsewhere += 1
        self.hub.room_changed(room)
        self.publish(event, room.recipients())

    def _rename(self, event: Event) -> None:
        room = self._room(event)
        new = str((event.data or {}).get("new", ""))
        claim = (event.data or {}).get(ROOM_CLAIM)
        if room is None or not new or not self.hub.apply_rename(room, new, claim if isinstance(claim, str) else None):
            return
        # each member's protocol renders it for itself (an IRC client without the capability
        # is shown a PART and a JOIN naming it), as on the node where it was renamed
        self.hub.deliver_each(event, room.recipients())

    # -- snapshots: a node that starts learns the rooms in use from a node that has them ----

    def snapshot(self, node_id: str, position: Callable[[str], Optional[int]]) -> list[dict[str, Any]]:
        """Every room here as plain data, each with ``seq``: the number of its conversation up
        to which this node applied the room's events (``ClusterRelay.position``; None when
        it heard of none). The state is that of every event up to ``seq`` plus this node's
        own changes not yet numbered, which come again later, numbered above ``seq``, and
        change nothing the second time (joins, parts, modes and topics set a state)."""
        rooms = []
        for room in self.hub.rooms.values():
            # not a nick's earlier holder listed aside for its new holder (``Room.displace``):
            # taken there as one user with the new holder, it could be the one kept, and its
            # leaving, still to come, then took the new holder out on that node only
            members = [
                [getattr(m.user.participant, "node", node_id) or node_id, presence_of(m.user), m.privileges]
                for key, m in room.members.items() if not is_aside(key)
            ]
            rooms.append({
                "name": room.name, "seq": position(room.folded), "created": room.created,
                "topic": [room.topic, room.topic_setter, room.topic_time], "modes": "".join(sorted(room.modes)),
                "key": room.key, "limit": room.limit,
                "lists": [[[b.mask, b.setter, b.time] for b in bans] for bans in (room.bans, room.excepts, room.invex)],
                "persistent": room.persistent, "founder": room.founder, "operators": sorted(room.operators),
                "members": members, "claim": room.claim, "metadata": Metadata.room_state(room),
            })
        return rooms

    def install(
        self, node_id: str, rooms: Any, wanted: Callable[[str, Optional[int]], bool] = lambda folded, seq: True
    ) -> list[tuple[Room, Optional[int]]]:
        """Take another node's ``snapshot``: each room's state replaces this node's copy (at
        start-up, before this node has users), or, with ``wanted`` (a folded name and where
        the room stands there), only the rooms it wants (those this node lacks).
        Returns each room taken and the number its state stands at (None: not numbered
        there yet), for the relay to deliver what follows. The whole answer is read before
        anything is taken: one that is not such data raises (ValueError, TypeError,
        KeyError) and changes nothing."""
        read = [_read_room(data, node_id) for data in rooms]
        taken: list[tuple[Room, Optional[int]]] = []
        for name, created, state, members, seq, claim, metadata in read:
            if not wanted(fold(name), seq):
                continue
            room = self.hub.rooms.get(fold(name))
            if room is None:
                room = self.hub.rooms[fold(name)] = Room(name, created=created)
            room.claim = claim  # released by this node too when the room ends
            room.partial = False
            founder_before = room.founder if room.persistent else None
            for member in list(room.members.values()):
                room.remove(member.user.folded or "")
                member.user.remove_room(room.folded)
                if isinstance(member.user.participant, RemoteParticipant) and not member.user.rooms:
                    self.users.pop(member.user.folded or "", None)  # in no room here now
            (room.topic, room.topic_setter, room.topic_time, room.modes, room.key, room.limit, room.bans,
             room.excepts, room.invex, room.persistent, room.founder, room.operators) = state
            self.hub.took_state(room, founder_before)
            for key, value, when, node in metadata:
                self.hub.metadata.apply_room(room, key, value, (when, node))
            for said, privileges in members:
                user = self.users.get(fold(said.nick))
                if user is None:
                    user = self.users[fold(said.nick)] = said.make_user()
                room.add(Member(user, privileges))
                user.add_room(room)
            taken.append((room, seq))
        self._check_vacated()
        return taken

    def members_of(self, node: str) -> list[str]:
        """The nicks of the users of ``node`` in this node's rooms."""
        return [user.nick or "" for user in self.users.values()
                if isinstance(user.participant, RemoteParticipant) and user.participant.node == node]

    def drop_users(self, nicks: Sequence[str], reason: str, node: str = "") -> list[tuple[Event, list[str]]]:
        """Users of a node that is gone leave every room here, as a quit each, shown to this
        node's members, with the earlier holders of nicks of ``node`` set aside here
        (``user_for``). Returns each quit with the (folded) rooms it was shown in, for the
        one node that stores them (the reaper: no node speaks for the dead one otherwise)."""
        gone: list[User] = []
        for nick in nicks:
            key = fold(nick)
            user = self.users.get(key)
            if user is None:
                continue
            if key != user.folded:
                # listed under a nick it no longer has (a rename applied here in part): its
                # entries under that nick follow it, so it leaves the rooms as itself
                del self.users[key]
                for room in user.rooms.values():
                    member = room.members.get(key)
                    if member is not None and member.user is user and (user.folded or "") not in room.members:
                        room.rekey(key, user.folded or "")
            gone.append(user)
        for earlier in [k for k in self._earlier if node and k[0] == node]:
            gone.append(self._earlier.pop(earlier))
        quits = []
        for user in gone:
            ends = self.hub.room_ends(user, user.rooms.values())
            event = self.hub.ids.make(Kind.QUIT, user.source, "", reason, data=ends)
            recipients = self.hub.neighbours(user)
            rooms = list(user.rooms)
            self._leave_all(user)
            if self.users.get(fold(user.nick or "")) is user:
                del self.users[fold(user.nick or "")]
            self.publish(event, recipients)
            quits.append((event, rooms))
        if self._vacating and gone:
            self._check_vacated()
        return quits


def _move_member(room: Room, folded: str, member: Member, to: User) -> None:
    """``room``'s ``member``, listed under ``folded``, becomes ``to`` (same privileges): one
    user of another node had two copies here, and ``to`` is the one that stays."""
    room.remove(folded)
    member.user.remove_room(room.folded)
    room.add(Member(to, member.privileges))
    to.add_room(room)


def following_renames(
    room: Room, changes: list[tuple[Any, ...]], sessions: dict[Any, Any]
) -> list[tuple[Any, ...]]:
    """``changes`` with each privilege change whose nick ``room`` does not list now naming the
    member of the connection ``sessions`` (a MODE's ``MODE_SESSIONS``) gives for that nick,
    when one is listed: its target renamed since the MODE was made."""
    followed = []
    for change in changes:
        if len(change) == 2 and isinstance(change[1], str) and fold(change[1]) not in room.members:
            session = sessions.get(change[1])
            member = next((m for m in room.members.values() if session and m.user.session == session), None)
            if member is not None and member.user.nick:
                change = (change[0], member.user.nick)
        followed.append(change)
    return followed


def _cancelling(result: Any, timer: IDelayedCall) -> Any:
    if timer.active():
        timer.cancel()
    return result


def _stand_in(source: Source, node: str) -> User:
    """A ``User`` for the sender ``source`` of another node's event, as it says it is."""
    user = User(RemoteParticipant(node, source.protocol or "remote"), account=source.account,
                user=source.user, host=source.host, realname=source.realname)
    user.session = source.session or user.session
    user.set_nick(source.nick)
    return user


_HANDLERS: dict[str, Callable[[RemoteRooms, Event], None]] = {
    Kind.JOIN: RemoteRooms._join,
    Kind.PART: RemoteRooms._part,
    Kind.KICK: RemoteRooms._kick,
    Kind.QUIT: RemoteRooms._quit,
    Kind.NICK: RemoteRooms._nick,
    Kind.TOPIC: RemoteRooms._topic,
    Kind.MODE: RemoteRooms._mode,
    Kind.RENAME: RemoteRooms._rename,
}


def _but_namesakes(recipients: Sequence[User], user: User, *nicks: str) -> Sequence[User]:
    """``recipients`` of another node's event about ``user`` without the others here holding
    one of its (folded) ``nicks``: a nick's new holder listed beside its earlier holder
    (``Room.displace``), whose client reads a PART, KICK or NICK naming its own nick as
    about itself (it took itself out of the room, or renamed itself)."""
    if not any((u.folded in nicks and u is not user) for u in recipients):
        return recipients
    return [u for u in recipients if u.folded not in nicks or u is user]


def _read_room(
    data: Any, node_id: str
) -> tuple[str, float, tuple[Any, ...], list[tuple[RemoteUser, str]], Any, Optional[str],
           list[tuple[str, Optional[str], float, str]]]:
    """One room of another node's ``snapshot``, read (and checked) without taking it: its
    name, creation time, state, members (but this node's own earlier ones), position, the
    claim of its name (None: not known there) and its metadata with their stamps."""
    name = str(data["name"])
    topic = (str(data["topic"][0]), str(data["topic"][1]), float(data["topic"][2]))
    lists = [[BanEntry(str(m), str(s), float(t)) for m, s, t in entries] for entries in data["lists"]]
    if len(lists) != 3:
        raise ValueError("not three mask lists")
    state = (
        *topic, set(str(data["modes"])), None if data["key"] is None else str(data["key"]),
        None if data["limit"] is None else int(data["limit"]), *lists, bool(data["persistent"]),
        None if data["founder"] is None else str(data["founder"]), {str(a) for a in data["operators"]},
    )
    members = [
        (RemoteUser.from_list(str(node), entry), str(privileges))
        for node, entry, privileges in data["members"]
        if node != node_id  # a user of an earlier process of this node: not here any more
    ]
    seq = None if data["seq"] is None else int(data["seq"])
    claim = data.get("claim")
    metadata = read_room_state(data.get("metadata") or ())  # (none from a node of an earlier version)
    return (name, float(data["created"]), state, members, seq, claim if isinstance(claim, str) else None,
            metadata)
