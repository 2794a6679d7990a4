"""The rooms an account is in follow it: kept in the store as its users join and leave them
(a quit keeps them: the account is coming back), and joined again when it logs in, from
any protocol (``ChatHub.kept_rooms``). A ``+k`` room is kept with its key, so the rejoin
works: the key is written to the store only (never logged, never sent to a client)."""
from __future__ import annotations

import time
from typing import Any, Optional

from twisted.internet import defer
from twisted.logger import Logger

from chathub.store.interfaces import IStore


class AccountRooms:
    """Writes the account's rooms to ``store`` (at most ``keep`` each) without holding up
    chat: a failed write is logged, and only loses the room from the next login's list."""

    def __init__(self, store: IStore, keep: int, log: Logger) -> None:
        self.store = store
        self.keep = keep
        self.log = log

    def joined(self, account: Optional[str], room: str, key: Optional[str]) -> None:
        """An account's user joined ``room``, whose key is ``key`` (None: it has none); also
        when the key of a room it is in changes."""
        if account is not None:
            self._background(self.store.add_account_room(account, room, time.time(), self.keep, key), account)

    def left(self, account: Optional[str], room: str) -> None:
        """An account's user parted or was kicked from ``room``."""
        if account is not None:
            self._background(self.store.remove_account_room(account, room), account)

    def rooms_of(self, account: str) -> "defer.Deferred[list[tuple[str, Optional[str]]]]":
        """The rooms ``account`` is in, as (name, key or None), in joining order."""
        return self.store.account_rooms(account)

    def _background(self, d: "defer.Deferred[Any]", account: str) -> None:
        d.addErrback(lambda f: self.log.error("could not record the rooms of {account}: {why}",
                                              account=account, why=f.getErrorMessage()))
