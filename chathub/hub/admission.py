"""Checking a room event again at its place in the room's numbered order (cluster mode).

The node where a user acts checks the request against its copy of the room, which may not
have applied another node's change numbered just before it: a KICK of the sender, a ``+i``
set at the moment of a JOIN. Every node sees the room's events in one numbered order, so
each one checks each event again at its number, from what the events before it in that
order established, and all of them come to the same verdict: an event refused there is
void, shown to no one and deleted from history (docs/cluster.md, "Checked at its number").

Only what the order itself proves is used, never a node's copy of the room (which has its
own users' later changes applied early):

- a room that ends (its last member parts, quits or kicks itself, and it is not registered)
  starts afresh: its facts are forgotten at that number on every node;
- a room message from a user removed from the room (kicked, parted, quit, or whose join
  was void) by an earlier number, and not joined again since, is void, unless its node
  sent it as a non-member's (an external message to a ``-n`` room: it needed no membership);
- a JOIN is void when ``+i`` was set by a number its node had not applied when it checked
  the join (the join carries that position), the room is still ``+i`` at the join's
  number, and the joiner was neither invited nor invite-excepted there; or when a ban
  (``+b``, not a mute) matching the joiner was set after that position and holds at the
  join's number, and the joiner was not invited and no exception matching it (then, or added
  since) lifts it; or when a key (``+k``) was set or changed after that position and the
  room has a key at the join's number that is not the one the joiner gave (the join
  carries a digest of the key it passed with at its node, ``key_digest``, never the key);
- a room message is void when a change numbered after what its node had applied when it
  checked the message (the message carries that position, and what let its sender speak
  then: its privileges, whether the room was ``+m``, whether an exception matched it) and
  before the message takes its voice away at the message's number: ``+m`` (or the loss of
  ``+v``/``+o`` in a ``+m`` room), a ban (``+b``) or a mute (``+b m:``) matching the sender
  that no exception matching it (then, or added since) lifts, while it holds neither voice
  nor operator status;
- a room message, a TOPIC or a MODE numbered after a RENAME in the room's old
  conversation is void (its node's copy took it before applying the rename), and so is a
  JOIN there that does not make a room of the old name again.
"""
from __future__ import annotations

import hashlib
import sys
from collections import OrderedDict, deque
from typing import Any, Callable, Optional

from chathub.events import Event, EventIds, Kind
from chathub.hub import errors
from chathub.hub.masks import MUTE_EXTBAN, entry_matches, extban
from chathub.hub.roomclaims import ROOM_CLAIM
from chathub.names import fold, is_room_name

#: removed members remembered per room, oldest forgotten first: a message of a removed
#: user is numbered soon after the removal, and every node forgets in the same order
GONE_LIMIT = 256

#: what a node adds to a JOIN's data: the number up to which it had applied the room's
#: events when it checked the join, whether the joiner passed ``+i`` by invitation or an
#: invite exception, and whether it was invited (which passes a ban too)
JOIN_SEEN, JOIN_EXEMPT, JOIN_INVITED = "seen", "exempt", "invited"
#: what a node adds to a JOIN's data when the room had a key there: the digest of the key
#: the joiner gave (``key_digest``), so a key set elsewhere meanwhile can be told from it
JOIN_KEY = "key"
#: what a node adds to a JOIN's data: the members its copy of the room held when it
#: checked the join (its own changes not numbered yet included), for a ``+l`` set
#: elsewhere meanwhile
JOIN_COUNT = "count"
#: what a node adds to a room message's data when its sender was not a member
EXTERNAL = "external"
#: what a node adds to a PART, QUIT or KICK that empties rooms that then end there:
#: ``[[folded name, the room's position on that node], ...]``. The facts of their order go
#: with them at that number (a room made again under the name starts with none), unless a
#: JOIN made on another node, which this one had not applied, stood in the room after that
#: position (the leaver was not the last member after all). The node's own JOINs after its
#: position were in its copy of the room when it found the leaver the last member
ROOM_ENDS = "ends"
#: what a node adds to a member's room message (with JOIN_SEEN, the room's position it
#: checked the message at): the sender's privileges then ("o", "v", "ov"; absent: none),
#: that the room was ``+m`` (absent: it was not), which kinds of exception (+e) matched the
#: sender ("b": a plain one, lifting bans and mutes; "m": an ``m:`` one, lifting mutes)
SPOKE_PRIVILEGES, SPOKE_MODERATED, SPOKE_EXCEPTED = "privileges", "moderated", "excepted"
#: room changes remembered per room for the messages checked at their number (the newest;
#: every node forgets in the same order): a message is numbered soon after its node's
#: position, so only the last few changes ever fall between the two
CHANGES_LIMIT = 256
#: room ends and renames remembered (``Admission.ended``, ``Admission.renamed``): what was
#: sent to a copy that had not applied one is numbered moments after it
ENDS_KEPT = 1024
#: the mode changes that can take a member's voice away, or give it back
_SPEAKING_MODES = frozenset("mbevo")
#: what a recorded join or leave changed (in the numbered order, in its node's copy)
_MOVES = frozenset(((1, 1), (0, 1), (-1, -1), (0, -1)))
#: the events that take a member out of a room, and may end it (``ROOM_ENDS``)
_LEAVING = frozenset((Kind.PART, Kind.QUIT, Kind.KICK))


def key_digest(conv: str, key: str) -> str:
    """What a JOIN carries of the room key it passed with: 16 hex digits of a SHA-256 of the
    room and the key (history keeps the JOIN; the key itself stays out of it)."""
    return hashlib.sha256(f"{conv}\x00{key}".encode("utf-8", "surrogatepass")).hexdigest()[:16]


class _RoomOrder:
    """What a room's numbered events have established so far on this node."""

    __slots__ = ("gone", "invite_only_since", "changes", "key_since", "key", "limit", "limit_since", "moves")

    def __init__(self) -> None:
        self.gone: OrderedDict[str, int] = OrderedDict()  # folded nick -> number of its removal
        self.invite_only_since = 0  # the number of the ``+i`` in force, 0 when none is
        self.key_since = 0  # the number of the last ``+k`` or ``-k``, 0 when none was seen
        self.key: Optional[str] = None  # the digest of the key then set, None when removed
        #: (number, "+b", parameter) of the latest mode changes that decide who may speak
        self.changes: deque[tuple[int, str, Any]] = deque(maxlen=CHANGES_LIMIT)
        self.limit: Optional[int] = None  # the ``+l`` in force, None when none is
        self.limit_since = 0  # the number of that ``+l``
        #: while a limit is in force, the latest joins and leaves: (number, node, what it
        #: changed in the numbered order, what it changed in its own node's copy when made,
        #: and for a leave of a user already gone the number of that user's removal, else
        #: 0): a join that stood (+1, +1), one found void (0, +1), a leave of a member (-1,
        #: -1), one of a user already gone (0, -1); for the member count at a join's number
        self.moves: deque[tuple[int, str, int, int, int]] = deque(maxlen=CHANGES_LIMIT)

    def holds(self) -> bool:
        """Whether it holds anything a later event is checked against (else the room needs
        no entry: most rooms have none)."""
        return bool(self.gone or self.invite_only_since or self.changes or self.key is not None
                    or self.limit is not None)

    def moved(self, seq: int, event: Event, numbered: int, copied: int, since: int = 0) -> None:
        """A join or a leave at ``seq`` (``moves``): recorded while a limit is in force."""
        if self.limit is not None:
            self.moves.append((seq, sys.intern(EventIds.node_of(event.id)), numbered, copied, since))

    def full_at(self, seq: int, event: Event) -> bool:
        """Whether JOIN ``event`` (numbered ``seq``) finds the room full at its number under
        the ``+l`` in force: the members its node counted when it checked it (its own
        changes not numbered yet in that count), with what the joins and leaves numbered
        between its position and it changed: another node's, in the numbered order; its
        own node's (in its count already), where the numbered order differs from its copy
        (a join of its own found void, a leave of a user already gone). Those numbered
        before the limit itself are not known: no join or leave is recorded without one. A
        join without a count (from a lone node, or an older one) is not checked; an
        invitation passes the limit, as at its node."""
        limit = self.limit
        data = event.data
        seen, count = data.get(JOIN_SEEN), data.get(JOIN_COUNT)
        if limit is None or type(seen) is not int or type(count) is not int or data.get(JOIN_INVITED):
            return False
        node = EventIds.node_of(event.id)
        for at, by, numbered, copied, since in self.moves:
            if not seen < at < seq:
                continue
            if by != node:
                count += numbered
            elif copied > 0:
                count += numbered - copied  # a join of its own found void: no place taken
            elif numbered == 0 and since > seen:
                # its own leave of a user removed after its position: its copy still held
                # the user when it counted (removed at or before it, the copy had not)
                count += 1
        return count >= limit


#: a room's JOINs that stood, as far as its end needs them: the number of the latest, the
#: node that made it (``EventIds.node_of``), and the number of the latest made on any
#: other node (0: none)
Joins = tuple[int, str, int]


class Admission:
    """Per room, the facts of its numbered order that decide whether an event stands."""

    def __init__(self) -> None:
        #: the rooms whose order holds something a later event is checked against (most
        #: hold nothing, and have no entry): a chat message of any other room stands
        self.rooms: dict[str, _RoomOrder] = {}
        #: every room that has not ended: its latest JOINs (``_ends``), gone with its end
        self.joins: dict[str, Joins] = {}
        #: called with a room's conversation when its end stands at its number (the hub's
        #: claims of room names: ``RoomClaims.confirm``)
        self.on_end: Callable[[str], None] = lambda conv: None
        #: called with a room's conversation when a RENAME of it is at its number, standing
        #: or void (the old name's claim, kept by the node that renamed its copy ahead:
        #: ``RoomClaims.confirm``)
        self.on_renamed: Callable[[str], None] = lambda conv: None
        #: the rooms whose end stood at its number lately, with that number (the latest
        #: ``ENDS_KEPT``): a node whose copy of the room outlives it (a user there joined
        #: before the node applied the end) knows that copy is not the room the others
        #: will make at its next JOIN (``ChatHub.admit``)
        self.ended: OrderedDict[str, int] = OrderedDict()
        #: rooms renamed lately (the latest ``ENDS_KEPT``): old name -> the new one. What
        #: comes after the RENAME under the old name (but a JOIN that makes a room of it
        #: again) was sent to a copy that had not applied the rename yet: a message is void
        #: (the room's history, moved to the new name, never holds it), a join too
        self.renamed: OrderedDict[str, str] = OrderedDict()

    def check(self, conv: str, seq: int, event: Event) -> Optional[errors.HubError]:
        """Check ``event``, numbered ``seq`` in room conversation ``conv``, and take in what
        it changes; the error to tell its sender when it is void, else None."""
        order = self.rooms.get(conv)
        kind = event.kind
        data = event.data
        if kind in Kind.TEXT_KINDS:
            renamed = self.renamed.get(conv)
            if renamed is not None:
                return errors.CannotSend(event.target, f"Cannot send to room (it was renamed to {renamed})")
            if order is None or data.get(EXTERNAL):
                return None
            if order.gone and fold(event.source.nick) in order.gone:
                return errors.CannotSend(event.target, "Cannot send to room (you are no longer in it)")
            if order.changes and kind != Kind.TAGMSG:
                return _silenced(order, seq, event)
            return None
        if kind in _LEAVING and self._ends(conv, event):
            # the room ended with it (every node forgets at this number): a JOIN that
            # makes it again, from a node that never heard of the old room (position 0),
            # is not taken for one racing the old room's +i, key or bans
            self.rooms.pop(conv, None)
            self.joins.pop(conv, None)
            remember(self.ended, conv, seq)
            self.on_end(conv)
            return None
        if kind == Kind.RENAME:
            if fold(event.target) == conv:  # not the copy that ends the new name's moved history
                self.on_renamed(conv)
            renamed = self.renamed.get(conv)
            if renamed is not None:
                # a second rename of the room, asked on another node before the first reached
                # it: the room has its new name (every node applied the first at its number;
                # applying both, each node ended with the other's name)
                return errors.CannotRename(event.target, f"The room was renamed to {renamed} meanwhile")
            # the room goes on under its new name (the facts of its order stay with this
            # one, as before: a rename is rare, and numbered after them); a change of case
            # keeps the name, and a rename back to a name renamed away lately gives it back
            new = str(data.get("new", ""))
            if new and fold(new) != conv:
                remember(self.renamed, conv, new)
                self.renamed.pop(fold(new), None)
            return None
        if (kind == Kind.TOPIC or kind == Kind.MODE) and conv in self.renamed:
            # taken by a copy that had not applied the rename: applied to the renamed room,
            # it fell in no one order with the changes made under the new name (another
            # conversation), and nodes that got the two the other way round kept different
            # topics and limits (a random three-node driver, seed 4441)
            return errors.NoSuchRoom(event.target, f"No such room (it was renamed to {self.renamed[conv]})")
        if kind == Kind.JOIN and conv in self.renamed:
            if ROOM_CLAIM not in data:
                return errors.NoSuchRoom(event.target, f"No such room (it was renamed to {self.renamed[conv]})")
            del self.renamed[conv]  # a room made again under the name
        if order is None:
            if kind == Kind.JOIN:
                self._joined(conv, seq, event)
                return None  # nothing of the order to check it against
            order = self.rooms[conv] = _RoomOrder()
        if kind == Kind.JOIN:
            nick = fold(event.source.nick)
            refusal = _refusal(order, seq, event)
            if refusal is not None:
                self._remove(order, nick, seq)  # what it says next in the room is void too
                order.moved(seq, event, 0, 1)  # its node counted it
                return refusal
            order.gone.pop(nick, None)
            order.moved(seq, event, 1, 1)
            self._joined(conv, seq, event)
        elif kind in (Kind.PART, Kind.QUIT, Kind.KICK):
            nick = fold(event.source.nick if kind != Kind.KICK else str(data.get("nick", "")))
            since = order.gone.get(nick, 0)  # removed already, at that number
            self._remove(order, nick, seq)
            order.moved(seq, event, 0 if since else -1, -1, since)
        elif kind == Kind.NICK:
            old, new = fold(event.source.nick), fold(str(data.get("new", "")))
            removed = order.gone.pop(old, None) if old != new else None
            order.gone.pop(new, None)
            if removed is not None:  # a removed user that took a new nick is still out
                order.gone[new] = removed
        elif kind == Kind.MODE:
            for change in data.get("changes", ()):
                if not change:
                    continue
                if change[0] == "+i":
                    order.invite_only_since = seq
                elif change[0] == "-i":
                    order.invite_only_since = 0
                elif change[0] in ("+k", "-k"):
                    order.key_since = seq
                    key = change[1] if len(change) > 1 else None
                    order.key = key_digest(conv, str(key)) if change[0] == "+k" and key else None
                elif change[0] == "+l":
                    limit = change[1] if len(change) > 1 else None
                    if type(limit) is str and limit.isascii() and limit.isdigit() and int(limit) > 0:
                        order.limit, order.limit_since = int(limit), seq
                elif change[0] == "-l":
                    order.limit = None
                    order.moves.clear()
                elif len(change[0]) == 2 and change[0][1] in _SPEAKING_MODES:
                    order.changes.append((seq, change[0], change[1] if len(change) > 1 else None))
        if not order.holds():
            del self.rooms[conv]  # nothing to remember: most rooms keep no entry
        return None

    def _joined(self, conv: str, seq: int, event: Event) -> None:
        """JOIN ``event`` stood at number ``seq`` of ``conv``."""
        node = EventIds.node_of(event.id)
        last = self.joins.get(conv)
        if last is None:
            self.joins[conv] = (seq, node, 0)
        elif last[1] == node:
            self.joins[conv] = (seq, node, last[2])
        else:
            self.joins[conv] = (seq, node, last[0])

    def _ends(self, conv: str, event: Event) -> bool:
        """Whether a PART, QUIT or KICK ends room ``conv``: its node had the leaver as the
        last member at the position its ``ROOM_ENDS`` gives, and no JOIN made on another
        node stood after that position."""
        ends = event.data.get(ROOM_ENDS)
        if not ends:
            return False
        for entry in ends:
            if type(entry) is list and len(entry) == 2 and entry[0] == conv and isinstance(entry[1], int):
                last = self.joins.get(conv)
                if last is None:
                    return True  # no JOIN stood since the room last ended
                other = last[2] if last[1] == EventIds.node_of(event.id) else last[0]
                return other <= entry[1]
        return False

    def export(self) -> list[list[Any]]:
        """Every room's facts and latest JOINs as plain data, for a node that starts
        (``parse``, ``adopt``): read at the same moment as the relay's positions, which
        they stand at."""
        empty = _RoomOrder()
        facts = []
        for conv in self.rooms.keys() | self.joins.keys():
            order = self.rooms.get(conv, empty)
            joins = self.joins.get(conv)
            facts.append([
                conv, list(map(list, order.gone.items())), order.invite_only_since, order.key_since, order.key,
                [list(change) for change in order.changes], None if joins is None else list(joins),
                None if order.limit is None else [order.limit, order.limit_since, [list(m) for m in order.moves]],
            ])
        return facts

    @staticmethod
    def parse(facts: Any) -> dict[str, tuple[_RoomOrder, Optional[Joins], int]]:
        """Another node's ``export``, each room's facts with the position they stand at
        (``[*fact, position]``), read into this node's terms without taking them; ValueError
        when ``facts`` is not such data (a peer's message is not trusted to be)."""
        if type(facts) is not list:
            raise ValueError("not a list of room facts")
        parsed: dict[str, tuple[_RoomOrder, Optional[Joins], int]] = {}
        for fact in facts:
            if type(fact) is not list or len(fact) not in (8, 9):
                raise ValueError("not a room's facts")
            if len(fact) == 8:  # a node of the version before ``+l`` at the number
                fact = [*fact[:7], None, fact[7]]
            conv, gone, invite_only_since, key_since, key, changes, joins, limit, seq = fact
            if type(conv) is not str or not is_room_name(conv) or type(gone) is not list \
                    or type(changes) is not list or not (key is None or type(key) is str):
                raise ValueError(f"not a room's facts: {conv!r}")
            if type(joins) is int:
                # a node of the version before ``joins``: the last JOIN that stood, made on
                # no node known (so on another node than any leaver's: its end waits for it)
                joins = [joins, "", joins]
            if joins is not None and (type(joins) is not list or len(joins) != 3 or type(joins[1]) is not str):
                raise ValueError(f"not a room's joins: {joins!r}")
            order = _RoomOrder()
            order.invite_only_since, order.key_since, order.key = _number(invite_only_since), _number(key_since), key
            for entry in gone[-GONE_LIMIT:]:
                if type(entry) is not list or len(entry) != 2 or type(entry[0]) is not str:
                    raise ValueError("not a departure")
                order.gone[entry[0]] = _number(entry[1])
            for entry in changes[-CHANGES_LIMIT:]:
                if (type(entry) is not list or len(entry) != 3 or type(entry[1]) is not str
                        or len(entry[1]) != 2 or entry[1][0] not in "+-" or entry[1][1] not in _SPEAKING_MODES
                        or not (entry[2] is None or type(entry[2]) is str)):
                    raise ValueError("not a mode change")
                order.changes.append((_number(entry[0]), entry[1], entry[2]))
            if limit is not None:
                if type(limit) is not list or len(limit) != 3 or type(limit[2]) is not list or limit[0] == 0:
                    raise ValueError(f"not a room's limit: {limit!r}")
                order.limit, order.limit_since = _number(limit[0]), _number(limit[1])
                for entry in limit[2][-CHANGES_LIMIT:]:
                    if (type(entry) is not list or len(entry) != 5 or type(entry[1]) is not str
                            or type(entry[2]) is not int or type(entry[3]) is not int
                            or (entry[2], entry[3]) not in _MOVES):
                        raise ValueError("not a join or leave")
                    order.moves.append((_number(entry[0]), sys.intern(entry[1]), entry[2], entry[3],
                                        _number(entry[4])))
            parsed[conv] = (order, None if joins is None else (_number(joins[0]), joins[1], _number(joins[2])),
                            _number(seq))
        return parsed

    def adopt(self, parsed: dict[str, tuple[_RoomOrder, Optional[Joins], int]]) -> None:
        """Take the facts ``parse`` read (at start-up, before this node checks anything),
        so this node comes to the verdicts the others come to (a node that started without
        them let a JOIN stand that the others found void)."""
        for conv, (order, joins, _) in parsed.items():
            if order.holds():
                self.rooms[conv] = order
            if joins is not None:
                self.joins[conv] = joins

    @staticmethod
    def _remove(order: _RoomOrder, nick: str, seq: int) -> None:
        order.gone[nick] = seq
        order.gone.move_to_end(nick)
        if len(order.gone) > GONE_LIMIT:
            order.gone.popitem(last=False)


def _refusal(order: _RoomOrder, seq: int, event: Event) -> Optional[errors.HubError]:
    """Why JOIN ``event``, numbered ``seq``, is void there (a ``+i``, key or ban numbered
    after its position, the limit), or None."""
    data = event.data
    seen = data.get(JOIN_SEEN)
    if (order.invite_only_since and type(seen) is int and order.invite_only_since > seen
            and not data.get(JOIN_EXEMPT)):
        return errors.InviteOnly(event.target)
    if (order.key is not None and type(seen) is int and order.key_since > seen
            and data.get(JOIN_KEY) != order.key):
        return errors.BadKey(event.target)  # an invitation does not pass a key here either
    if order.changes and type(seen) is int and not data.get(JOIN_INVITED) and _banned(order, seen, seq, event):
        return errors.Banned(event.target)
    if order.full_at(seq, event):
        return errors.RoomFull(event.target)
    return None


def _number(value: Any) -> int:
    """A number of a room's order read from a peer: a whole number, not below 0."""
    if type(value) is not int or value < 0:
        raise ValueError(f"not a number of the order: {value!r}")
    return value


def _changes_between(order: _RoomOrder, seen: int, seq: int) -> list[tuple[int, str, Any]]:
    # the room's speaking-mode changes numbered after ``seen`` and before ``seq``
    return [c for c in order.changes if seen < c[0] < seq]


def _matching_bans(between: list[tuple[int, str, Any]], event: Event) -> tuple[list[str], str]:
    """Of the ban list changes in ``between``, the entries (bans and mutes) matching
    ``event``'s sender and in force at the end (in order), and the kinds of exception (+e)
    added meanwhile that match it, after those its node found (``SPOKE_EXCEPTED``)."""
    source = event.source
    mask, account = source.mask, source.account
    excepted = str(event.data.get(SPOKE_EXCEPTED) or "")
    entries: list[str] = []
    for _, change, arg in between:
        if arg is None or change[1] not in ("b", "e"):
            continue
        entry = str(arg)
        kind, rest = extban(entry)
        muting = kind == MUTE_EXTBAN
        if not entry_matches(rest if muting else entry, mask, account):
            continue
        adding = change[0] == "+"
        if change[1] == "e":
            if adding:
                excepted += "m" if muting else "b"
        elif adding:
            entries.append(entry)
        elif entry in entries:
            entries.remove(entry)
    return entries, excepted


def _banned(order: _RoomOrder, seen: int, seq: int, event: Event) -> bool:
    """Whether a ban (not a mute) set between the join's position and its number bars the
    joiner there, with no exception lifting it."""
    between = _changes_between(order, seen, seq)
    if not between:
        return False
    bans, excepted = _matching_bans(between, event)
    return "b" not in excepted and any(extban(entry)[0] != MUTE_EXTBAN for entry in bans)


def _silenced(order: _RoomOrder, seq: int, event: Event) -> Optional[errors.HubError]:
    """The refusal of room message ``event`` (numbered ``seq``) when a mode change numbered
    between its node's position and it took the sender's voice away; None when it stands
    (and when it carries no position: a lone node's, or one from before this check)."""
    data = event.data
    seen = data.get(JOIN_SEEN)
    if not isinstance(seen, int):
        return None
    between = _changes_between(order, seen, seq)
    if not between:
        return None
    nick = fold(event.source.nick)
    privileges = set(str(data.get(SPOKE_PRIVILEGES) or ""))
    moderated = bool(data.get(SPOKE_MODERATED))
    for _, change, arg in between:
        adding, letter = change[0] == "+", change[1]
        if letter == "m":
            moderated = adding
        elif letter in "ov" and arg is not None and fold(str(arg)) == nick:
            (privileges.add if adding else privileges.discard)(letter)
    # new bans (and mutes) matching the sender, in force at ``seq``
    bans, excepted = _matching_bans(between, event)
    if privileges:
        return None  # voice or operator status lets a member speak through all of these
    if moderated:
        return errors.CannotSend(event.target, "Cannot send to room (moderated, +v needed)")
    for entry in bans:
        muting = extban(entry)[0] == MUTE_EXTBAN
        if "b" in excepted or (muting and "m" in excepted):
            continue
        if muting:
            return errors.CannotSend(event.target, "Cannot send to room (you are muted)")
        return errors.CannotSend(event.target, "Cannot send to room (you are banned)")
    return None


def remember(kept: OrderedDict[str, Any], key: str, value: Any, most: int = ENDS_KEPT) -> None:
    """Keep ``value`` for ``key`` among the latest ``most`` of ``kept`` (the oldest go)."""
    kept[key] = value
    kept.move_to_end(key)
    if len(kept) > most:
        kept.popitem(last=False)
