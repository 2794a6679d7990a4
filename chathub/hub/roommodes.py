"""Applying room mode changes: flags, member privileges, key, limit and the mask lists.

``chathub.hub.modes`` reads a mode string into ``[("+m", None), ("+b", "*!*@host"),
("+o", "bob")]``; ``ChatHub.change_room_modes`` checks that the setter operates the room
and hands the list to ``apply_room_modes`` here, which applies each change as far as the
rules allow and says what it did. A change that changes nothing (``+m`` on a moderated
room, ``-k`` with no key set) is left out of what was applied; a change the rules refuse
raises nothing but is returned as its ``HubError``, so the other changes of the request
still apply.
"""
from __future__ import annotations

import time
from typing import Mapping, NamedTuple, Optional, Sequence

from chathub.config import Config
from chathub.hub import errors
from chathub.hub.lifetimes import is_founder
from chathub.hub.masks import normalize_entry
from chathub.hub.modes import Change
from chathub.hub.rooms import FLAG_MODES, KEY_MODES, LIMIT_MODES, LIST_MODES, PRIVILEGE_MODES, BanEntry, Room
from chathub.hub.users import User
from chathub.names import fold

#: longest room key kept (a longer one is cut)
MAX_KEY_LENGTH = 23


def apply_room_modes(
    setter: User, room: Room, changes: Sequence[Change], users: Mapping[str, User], config: Config,
    counted: bool = True, at: Optional[float] = None,
) -> tuple[list[Change], list[errors.HubError]]:
    """Apply ``changes`` to ``room`` on behalf of ``setter`` (one of its operators).

    ``users`` (folded nick -> user) tells a nick nobody holds from one not in the room;
    ``config`` bounds the mask lists. Returns the changes applied, each with the parameter
    to show (None for flags), and one error per change refused.

    ``counted=False``: a change checked already, against the copy of the room on the node
    where it was asked (a cluster's): a list entry is added however long the list is here.
    This copy may hold that node's entries and this one's of the same moment, each node's
    within the bound; refusing the other's would keep different lists on the two nodes.

    ``at``: when a list entry is set, the time of the MODE event that carries it, so that
    every node of a cluster lists the same time (each node's own clock, read as it applied
    the change, differed by a second across a second's turn: a random two-node driver).
    """
    applied: list[Change] = []
    refused: list[errors.HubError] = []
    for change, arg in changes:
        letter = change[1]
        try:
            if letter in FLAG_MODES:
                done = _flag(room, change)
            elif letter in PRIVILEGE_MODES:
                done = _privilege(setter, room, change, arg, users)
            elif letter in KEY_MODES:
                done = _key(room, change, arg)
            elif letter in LIMIT_MODES:
                done = _limit(room, change, arg)
            elif letter in LIST_MODES:
                done = _list_entry(setter, room, change, arg, config, counted, at)
            else:
                raise errors.UnknownMode(letter)
        except errors.HubError as e:
            refused.append(e)
            continue
        if done is not None:
            applied.append(done)
    return applied, refused


def _flag(room: Room, change: str) -> Optional[Change]:
    """``+m``, ``-s``, ...: a mode without a parameter."""
    adding, letter = change[0] == "+", change[1]
    if adding == (letter in room.modes):
        return None
    (room.modes.add if adding else room.modes.discard)(letter)
    return change[:2], None


def _privilege(
    setter: User, room: Room, change: str, nick: Optional[str], users: Mapping[str, User]
) -> Optional[Change]:
    """``+o nick``, ``-v nick``: a member's privilege. The founder's grants of operator
    status to an account are written down (see ``chathub.hub.lifetimes``); any other lasts
    while the member stays."""
    adding, letter = change[0] == "+", change[1]
    if not nick:
        return None
    target = room.members.get(fold(nick))
    if target is None:
        if fold(nick) not in users:
            raise errors.NoSuchNick(nick)
        raise errors.UserNotInRoom(nick, f"{nick} isn't on {room.name}")
    if adding == (letter in target.privileges):
        return None
    (target.grant if adding else target.revoke)(letter)
    if letter == "o" and target.user.account is not None and is_founder(room, setter):
        account = fold(target.user.account)
        if account != room.founder:
            (room.operators.add if adding else room.operators.discard)(account)
    return change[:2], target.user.nick


def _key(room: Room, change: str, key: Optional[str]) -> Optional[Change]:
    """``+k key`` sets the key; ``-k`` (with any parameter or none) removes it."""
    if change[0] == "+":
        if not key or " " in key:
            return None
        room.key = key[:MAX_KEY_LENGTH]
        return change[:2], room.key
    if room.key is None:
        return None
    room.key = None
    return change[:2], "*"


def _limit(room: Room, change: str, limit: Optional[str]) -> Optional[Change]:
    """``+l count`` sets the member limit (a positive number, else nothing); ``-l`` removes it."""
    if change[0] != "+":
        if room.limit is None:
            return None
        room.limit = None
        return change[:2], None
    try:
        count = int(limit or "")
    except ValueError:
        return None
    if count <= 0:
        return None
    room.limit = count
    return change[:2], str(count)


def _list_entry(
    setter: User, room: Room, change: str, mask: Optional[str], config: Config, counted: bool = True,
    at: Optional[float] = None,
) -> Optional[Change]:
    """``+b mask``, ``-e mask``, ``+I mask``: an entry of a ban, exception or invite-exception
    list. Every entry is matched on every message and join, so the mask length and the
    list length are bounded here, whichever protocol sets them."""
    adding, letter = change[0] == "+", change[1]
    if not mask:
        return None
    entries: list[BanEntry] = getattr(room, LIST_MODES[letter])
    try:
        normal = normalize_entry(mask)  # extended bans (a:, m:) too, on every list
    except ValueError as e:
        if adding:
            raise errors.BadMask(room.name, letter, mask, str(e)) from None
        normal = mask  # removing: whatever is listed under that text
    folded = fold(normal)
    existing = [b for b in entries if fold(b.mask) == folded]
    if adding:
        if existing:
            return None
        limit = config.limits.mask_length
        if len(normal) > limit:
            raise errors.BadMask(room.name, letter, mask, f"Mask is too long (at most {limit} characters)")
        if counted and len(entries) >= config.irc.max_bans:
            raise errors.ListFull(room.name, letter, mask)
        entries.append(BanEntry(normal, setter.mask, time.time() if at is None else at))
        return change[:2], normal
    if not existing:
        return None
    entries.remove(existing[0])
    return change[:2], existing[0].mask


def reset_room(room: Room) -> list[Change]:
    """Put ``room`` back to a new room's state (``Room``'s own: ``+nt``, no key, limit, mask
    lists or invitations; its topic and members are the caller's) and return the mode
    changes that took, as ``apply_room_modes`` gives them (``-k`` with ``*``)."""
    fresh = Room(room.name)
    changes: list[Change] = [("-" + letter, None) for letter in sorted(room.modes - fresh.modes)]
    changes += [("+" + letter, None) for letter in sorted(fresh.modes - room.modes)]
    if room.key is not None:
        changes.append(("-k", "*"))
    if room.limit is not None:
        changes.append(("-l", None))
    for letter, attribute in LIST_MODES.items():
        changes += [("-" + letter, entry.mask) for entry in getattr(room, attribute)]
    room.modes, room.key, room.limit = fresh.modes, None, None
    room.bans, room.excepts, room.invex, room.invited = [], [], [], set()
    return changes


class ModeState(NamedTuple):
    """What a room's mode changes set, as it was before a change (``take_back_room_modes``)."""

    modes: frozenset[str]
    key: Optional[str]
    limit: Optional[int]
    #: each list's entries (``LIST_MODES``' letters)
    lists: dict[str, tuple[BanEntry, ...]]
    #: the accounts a persistent room makes operators (a founder's ``+o`` writes them down)
    operators: frozenset[str]


def mode_state(room: Room) -> ModeState:
    """``room``'s flags, key, limit and mask lists now."""
    return ModeState(frozenset(room.modes), room.key, room.limit,
                     {letter: tuple(getattr(room, attribute)) for letter, attribute in LIST_MODES.items()},
                     frozenset(room.operators))


def take_back_room_modes(room: Room, applied: Sequence[Change], before: ModeState) -> list[Change]:
    """Undo ``applied`` (what ``apply_room_modes`` did to ``room`` when it was as ``before``)
    wherever what a change set still stands: a change made since over the same flag, key,
    limit, entry or privilege stays. Returns the changes taken back, last first.

    A cluster node applies its own change when asked, ahead of its number; one found void
    there (``chathub.hub.admission``) is left out by every other node, so this one takes
    back what it applied."""
    taken: list[Change] = []
    for change, arg in reversed(applied):  # the last of a request's changes of one mode stands
        adding, letter = change[0] == "+", change[1]
        if letter in FLAG_MODES:
            if adding == (letter in room.modes) and adding != (letter in before.modes):
                (room.modes.discard if adding else room.modes.add)(letter)
                taken.append((change, arg))
        elif letter in PRIVILEGE_MODES:
            member = room.members.get(fold(arg)) if arg else None
            if member is not None and adding == (letter in member.privileges):
                (member.revoke if adding else member.grant)(letter)
                taken.append((change, arg))
                account = fold(member.user.account) if letter == "o" and member.user.account else None
                if account is not None and (account in room.operators) != (account in before.operators):
                    # a founder's grant written down (``_privilege``) goes with it
                    (room.operators.add if account in before.operators else room.operators.discard)(account)
        elif letter in KEY_MODES:
            if room.key == (arg if adding else None):
                room.key = before.key
                taken.append((change, arg))
        elif letter in LIMIT_MODES:
            if room.limit == (int(arg) if adding and arg else None):
                room.limit = before.limit
                taken.append((change, arg))
        elif letter in LIST_MODES and arg:
            entries: list[BanEntry] = getattr(room, LIST_MODES[letter])
            folded = fold(arg)
            listed = [entry for entry in entries if fold(entry.mask) == folded]
            if adding and listed:
                entries.remove(listed[0])
                taken.append((change, arg))
            elif not adding and not listed:
                was = [entry for entry in before.lists[letter] if fold(entry.mask) == folded]
                if was:
                    # back where it stood among the entries still listed (as every other node lists it)
                    earlier = before.lists[letter][: before.lists[letter].index(was[0])]
                    entries.insert(sum(1 for entry in earlier if entry in entries), was[0])
                    taken.append((change, arg))
    return taken
