"""``AccountRoomStore``: the rooms each account is in, kept across its logins so they can be
joined again when it logs in from any client. Which rooms to keep is the hub's decision;
this only keeps a list per (folded) account name.
"""
from __future__ import annotations

from typing import Optional

from twisted.internet import defer

from chathub.names import fold
from chathub.store.sql.database import Cursor, SqlDatabase


class AccountRoomStore(SqlDatabase):
    """Per account: the rooms it joined (in joining order) and has not left, each with the
    key it is entered with (a ``+k`` room's; None for the others)."""

    def add_account_room(
        self, account: str, room: str, at: float, keep: int, key: Optional[str] = None
    ) -> defer.Deferred[None]:
        """Remember that ``account`` is in ``room`` (its display name), entered with ``key``
        (a room already remembered keeps its place and takes the new key); only the ``keep``
        most recently joined rooms are kept."""
        return self._write(self._add_account_room, fold(account), room, at, keep, key)

    def _add_account_room(
        self, txn: Cursor, account: str, room: str, at: float, keep: int, key: Optional[str]
    ) -> None:
        # a room it is already in keeps its place: joining it again at login (from another
        # client) must not reorder the list
        txn.execute(
            self._q(
                "INSERT INTO account_rooms (account, room_folded, room, joined, room_key) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT (account, room_folded) DO UPDATE SET room_key = excluded.room_key"
            ),
            (account, fold(room), room, at, key),
        )
        txn.execute(
            self._q("SELECT room_folded FROM account_rooms WHERE account = ? ORDER BY joined DESC, room_folded"),
            (account,),
        )
        for (old,) in txn.fetchall()[keep:]:
            txn.execute(self._q("DELETE FROM account_rooms WHERE account = ? AND room_folded = ?"), (account, old))

    def remove_account_room(self, account: str, room: str) -> defer.Deferred[bool]:
        """Forget that ``account`` is in ``room``; fires with True if it was remembered."""
        return self._write(self._remove_account_room, fold(account), fold(room))

    def _remove_account_room(self, txn: Cursor, account: str, folded: str) -> bool:
        txn.execute(self._q("DELETE FROM account_rooms WHERE account = ? AND room_folded = ?"), (account, folded))
        return txn.rowcount > 0

    def account_rooms(self, account: str) -> defer.Deferred[list[tuple[str, Optional[str]]]]:
        """The rooms ``account`` is in, as (display name, key or None), in the order it
        joined them."""
        return self._read(self._account_rooms, fold(account))

    def _account_rooms(self, txn: Cursor, account: str) -> list[tuple[str, Optional[str]]]:
        txn.execute(
            self._q("SELECT room, room_key FROM account_rooms WHERE account = ? ORDER BY joined, room_folded"),
            (account,),
        )
        return [(str(room), None if key is None else str(key)) for room, key in txn.fetchall()]
