"""Rooms: members with their privileges, topic, modes, bans and invites."""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterator, Optional, cast

from chathub.hub.masks import MUTE_EXTBAN, entry_matches, extban
from chathub.names import fold

if TYPE_CHECKING:
    from chathub.hub.users import User

#: room privileges, highest first, with the prefix IRC and the line protocol show
PRIVILEGES = (("o", "@"), ("v", "+"))
#: modes that take no parameter
FLAG_MODES = frozenset("Cimnpst")  # C: no CTCP other than ACTION
#: list modes: b bans, e ban exceptions, I invite exceptions (each a list of ``BanEntry``)
LIST_MODES = {"b": "bans", "e": "excepts", "I": "invex"}
#: modes with a parameter when set and when unset: the key (``-k`` may omit it)
KEY_MODES = frozenset("k")
#: modes with a parameter only when set: the member limit
LIMIT_MODES = frozenset("l")
#: what joins a member's nick and identity in the key it is listed aside under
#: (``Room.displace``): a NUL never appears in a nick, so no nick is ever listed there
ASIDE = "\0"
#: member privileges set as room modes (``+o nick``)
PRIVILEGE_MODES = frozenset(m for m, _ in PRIVILEGES)


def is_aside(key: str) -> bool:
    """Whether a room's member ``key`` is one ``Room.displace`` listed a member aside under."""
    return ASIDE in key


@dataclass(frozen=True)
class BanEntry:
    """One ban: a hostmask glob, who set it and when."""

    mask: str
    setter: str
    time: float


class Member:
    """A user's membership of one room."""

    __slots__ = ("user", "privileges")

    def __init__(self, user: "User", privileges: str = "") -> None:
        self.user = user
        self.privileges = privileges  # subset of "ov", highest first

    @property
    def is_operator(self) -> bool:
        return "o" in self.privileges

    @property
    def is_voiced(self) -> bool:
        return "v" in self.privileges or "o" in self.privileges

    def prefixes(self, all_of_them: bool = True) -> str:
        """``@+`` style prefixes; only the highest unless ``all_of_them`` (multi-prefix)."""
        out = "".join(p for m, p in PRIVILEGES if m in self.privileges)
        return out if all_of_them else out[:1]

    def grant(self, privilege: str) -> None:
        if privilege not in self.privileges:
            self.privileges = "".join(m for m, _ in PRIVILEGES if m in self.privileges + privilege)

    def revoke(self, privilege: str) -> None:
        self.privileges = self.privileges.replace(privilege, "")


class Room:
    """A room: who is in it and the rules that apply to them."""

    __slots__ = (
        "name",
        "folded",
        "created",
        "topic",
        "topic_setter",
        "topic_time",
        "modes",
        "key",
        "limit",
        "bans",
        "excepts",
        "invex",
        "invited",
        "members",
        "persistent",
        "founder",
        "operators",
        "creator",
        "claim",
        "partial",
        "changed_elsewhere",
        "metadata",
        "metadata_stamps",
        "_recipients",
    )

    def __init__(self, name: str, created: Optional[float] = None) -> None:
        self.name = name
        self.folded = fold(name)
        self.created = created if created is not None else time.time()
        self.topic = ""
        self.topic_setter = ""
        self.topic_time = 0.0
        self.modes: set[str] = {"n", "t"}
        self.key: Optional[str] = None
        self.limit: Optional[int] = None
        self.bans: list[BanEntry] = []
        self.excepts: list[BanEntry] = []  # +e: masks a ban does not apply to
        self.invex: list[BanEntry] = []  # +I: masks that may join past +i
        self.invited: set[str] = set()  # folded nicks invited past +i
        self.members: dict[str, Member] = {}  # folded nick -> member
        # Persistent rooms are stored, kept while empty and restored after a restart; every
        # other room vanishes with its last member. See chathub.hub.lifetimes and docs/storage.md.
        self.persistent = False
        #: draft/metadata-3 key -> value, and each key's stamp, set or unset
        #: (``chathub.hub.metadata``); None when it has none
        self.metadata: Optional[dict[str, str]] = None
        self.metadata_stamps: Optional[dict[str, tuple[float, str]]] = None
        #: the folded account that owns a persistent room: ops on join, and only its grants
        #: persist (None on a guest room, and on rooms stored before founders were kept)
        self.founder: Optional[str] = None
        #: folded accounts the founder made operators: given ops on join (persistent rooms)
        self.operators: set[str] = set()
        #: the connection (``User.session``) of the guest who made an guest room: it
        #: becomes the founder if that guest logs in to an account while still its operator
        self.creator: Optional[str] = None
        #: in a cluster: the token of the claim of its name taken by the node that made it
        #: (``chathub.hub.roomclaims``), released when it ends; None when unknown here
        self.claim: Optional[str] = None
        #: in a cluster: this node's copy began at another node's JOIN that was not the
        #: room's making, the first event of the room heard here (its making's message was
        #: lost): it may lack the members before that JOIN until the other nodes' state of
        #: the room is taken (``ChatHub.learn_rooms``)
        self.partial = False
        #: in a cluster: how many topic and mode changes of other nodes this copy applied (a
        #: change of this node's own is applied again at its number only when one came
        #: between: ``ChatHub._own_change_at_its_number``)
        self.changed_elsewhere = 0
        self._recipients: Optional[tuple["User", ...]] = None

    def __contains__(self, user: "User") -> bool:
        return user.folded in self.members

    def __len__(self) -> int:
        return len(self.members)

    def member(self, user: "User") -> Optional[Member]:
        """The user's membership, or None."""
        return self.members.get(user.folded or "")

    def users(self) -> Iterator["User"]:
        """Every member's user."""
        return (m.user for m in self.members.values())

    def recipients(self) -> tuple["User", ...]:
        """Every member's user this node delivers to, as a tuple that is rebuilt, never
        changed, when members change.

        Fan-out keeps it as the snapshot of who an event goes to: no copy per message, and
        consecutive messages with the same snapshot can share one write per member.
        """
        recipients = self._recipients
        if recipients is None:
            # a member another cluster node writes to (format_key None) is not this node's to
            # deliver to: fan-out never walks it
            recipients = self._recipients = tuple(
                m.user for m in self.members.values() if m.user.participant.format_key is not None
            )
        return recipients

    def add(self, member: Member) -> None:
        """Make ``member`` a member."""
        self.members[cast(str, member.user.folded)] = member  # members are signed on
        self._recipients = None

    def remove(self, folded: str) -> Optional[Member]:
        """Remove the member with folded nick ``folded``; return it (or None)."""
        self._recipients = None
        return self.members.pop(folded, None)

    def rekey(self, old: str, new: str) -> None:
        """Follow a member's nick change."""
        self.members[new] = self.members.pop(old)

    def key_of(self, user: "User", folded: Optional[str] = None) -> Optional[str]:
        """Where ``user`` is listed: under ``folded`` (by default its folded nick), or under
        the key it was moved to when another user took its nick here (``displace``); None
        when it is not."""
        if folded is None:
            folded = user.folded or ""
        member = self.members.get(folded)
        if member is not None and member.user is user:
            return folded
        for key, member in self.members.items():  # rare: listed otherwise, or not at all
            if member.user is user:
                return key
        return None

    def displace(self, key: str) -> None:
        """Move the member listed under ``key`` aside, under a key made of its nick and its
        identity, for another user of the same nick:
        in a cluster, another node's earlier holder of a nick this node gave again, whose
        leaving (a QUIT, a NICK away) is numbered after the new holder joined. Both are
        members at those numbers, on every node; the earlier one is found by ``key_of``
        (a NUL never appears in a nick, so no nick is ever listed there)."""
        member = self.members.pop(key)
        self.members[f"{member.user.folded}{ASIDE}{id(member.user):x}"] = member
        self._recipients = None

    def is_banned(self, user: "User") -> bool:
        """True when a ban (+b) matches the user (its hostmask, or ``a:`` its account) and
        no exception (+e) does. Mutes (``m:``) are not bans: ``is_muted``."""
        if not self.bans:
            return False
        mask, account = user.mask, user.account
        if not any(extban(b.mask)[0] != MUTE_EXTBAN and entry_matches(b.mask, mask, account) for b in self.bans):
            return False
        return not self._excepted(self.excepts, mask, account)

    def is_muted(self, user: "User") -> bool:
        """True when a mute (``+b m:mask``) matches the user and no exception does (a plain
        +e entry, or an ``m:`` one): it may join and read, not speak (voice overrides it)."""
        if not self.bans:
            return False
        mask, account = user.mask, user.account
        if not any(_muting(b.mask, mask, account) for b in self.bans):
            return False
        return not self._excepted(self.excepts, mask, account, mutes=True)

    @staticmethod
    def _excepted(entries: list[BanEntry], mask: str, account: Optional[str], mutes: bool = False) -> bool:
        for e in entries:
            kind, rest = extban(e.mask)
            if kind == MUTE_EXTBAN:
                if mutes and entry_matches(rest, mask, account):
                    return True
            elif entry_matches(e.mask, mask, account):
                return True
        return False

    def exceptions_for(self, user: "User") -> str:
        """Which exceptions (+e) match ``user``: "b" for a plain one (it lifts bans and
        mutes), "m" when only an ``m:`` one does (it lifts mutes), "" for none."""
        if not self.excepts:
            return ""
        mask, account = user.mask, user.account
        if self._excepted(self.excepts, mask, account):
            return "b"
        return "m" if self._excepted(self.excepts, mask, account, mutes=True) else ""

    def is_invite_excepted(self, user: "User") -> bool:
        """True when an invite exception (+I) lets the user past +i."""
        mask, account = user.mask, user.account
        return any(entry_matches(e.mask, mask, account) for e in self.invex)

    @property
    def secret(self) -> bool:
        return "s" in self.modes or "p" in self.modes

    def mode_string(self, with_params: bool = True) -> tuple[str, list[str]]:
        """``+ntk`` and its parameters, as MODE replies show them."""
        letters = "".join(sorted(self.modes))
        params: list[str] = []
        if self.key is not None:
            letters += "k"
            params.append(self.key if with_params else "*")
        if self.limit is not None:
            letters += "l"
            params.append(str(self.limit))
        return "+" + letters, params

    def __repr__(self) -> str:
        return f"<Room {self.name} ({len(self.members)} members)>"


def _muting(entry: str, mask: str, account: Optional[str]) -> bool:
    kind, rest = extban(entry)
    return kind == MUTE_EXTBAN and entry_matches(rest, mask, account)
