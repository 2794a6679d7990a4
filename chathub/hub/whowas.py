"""The WHOWAS log: who held a nick before, for WHOWAS and for naming past private talks.

The hub remembers a user when it quits or changes nick. The log is bounded (the oldest
entries go first), so the users who come and go cannot grow it.
"""
from __future__ import annotations

import time
from collections import deque

from chathub.hub.users import User
from chathub.names import fold

#: how many departures the log remembers
WHOWAS_LENGTH = 2000


class WhowasEntry:
    """What WHOWAS remembers of a user who left or changed nick."""

    __slots__ = ("nick", "user", "host", "realname", "account", "time", "party")

    def __init__(self, user: User) -> None:
        self.nick = user.nick or ""
        self.user = user.user
        self.host = user.host
        self.realname = user.realname
        self.account = user.account
        self.time = time.time()
        #: the user's ``history_party``: its private history is stored under this name
        self.party = user.history_party


class WhowasLog:
    """The last ``WHOWAS_LENGTH`` nicks given up, oldest first."""

    __slots__ = ("_entries",)

    def __init__(self, length: int = WHOWAS_LENGTH) -> None:
        self._entries: deque[WhowasEntry] = deque(maxlen=length)

    def remember(self, user: User) -> None:
        """Note that ``user`` gives up its current nick (it quits or takes another)."""
        self._entries.append(WhowasEntry(user))

    def find(self, nick: str) -> list[WhowasEntry]:
        """Past holders of ``nick`` (any case), newest first."""
        folded = fold(nick)
        return [e for e in reversed(self._entries) if fold(e.nick) == folded]

    def __len__(self) -> int:
        return len(self._entries)
