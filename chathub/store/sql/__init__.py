"""``SqlStore``: the ``IStore`` shared by the SQLite and PostgreSQL backends, composed of one
class per domain, the way Synapse composes its ``DataStore``:

| module | class | domain |
|---|---|---|
| ``database`` | ``SqlDatabase`` | life cycle: pools, ``open``/``preflight``/``close``, migrations, the write queue |
| ``history`` | ``HistoryStore`` | appending events (group commit), room incarnations, the history queries |
| ``retention`` | ``RetentionStore`` | ``prune``: [history] max_age_days and max_per_target |
| ``accounts`` | ``AccountStore`` | accounts and their argon2 hashes |
| ``rooms`` | ``RoomStore`` | persistent rooms, their bans and operators |
| ``tokens`` | ``TokenStore`` | session tokens, kept as sha256 digests |
| ``account_rooms`` | ``AccountRoomStore`` | the rooms each account is in, joined again at login |
| ``read_markers`` | ``ReadMarkerStore`` | each account's read markers, across restarts and nodes |
| ``secrets`` | ``SecretStore`` | secrets the nodes of a cluster share (the host cloak's key) |
| ``maintenance`` | ``MaintenanceStore`` | ``stats`` and ``backup`` for ``python -m chathub.admin`` (blocking) |

Every domain class derives from ``SqlDatabase`` and uses only its helpers (``_read``,
``_write``, ``_q``) and its own tables; a backend (``chathub.store.sqlite``,
``chathub.store.postgres``) derives from ``SqlStore`` and supplies the pools, the dialect,
how a write transaction begins and how its errors read.
"""
from __future__ import annotations

from zope.interface import implementer

from twisted.internet import defer

from chathub.store.interfaces import IStore
from chathub.store.sql.account_rooms import AccountRoomStore
from chathub.store.sql.accounts import AccountStore
from chathub.store.sql.database import SqlDatabase
from chathub.store.sql.history import HistoryStore
from chathub.store.sql.maintenance import MaintenanceStore
from chathub.store.sql.read_markers import ReadMarkerStore
from chathub.store.sql.retention import RetentionStore
from chathub.store.sql.rooms import RoomStore
from chathub.store.sql.secrets import SecretStore
from chathub.store.sql.tokens import TokenStore

__all__ = ["SqlDatabase", "SqlStore"]


@implementer(IStore)
class SqlStore(
    HistoryStore, RetentionStore, AccountStore, AccountRoomStore, ReadMarkerStore, RoomStore, TokenStore,
    SecretStore, MaintenanceStore,
):
    """History, accounts and rooms in an SQL database reached through adbapi."""

    def rename_room(self, old: str, new: str) -> defer.Deferred[None]:
        """Room ``old`` is called ``new`` now: its history (``HistoryStore``), the accounts
        in it (``AccountRoomStore``) and their read markers of it (``ReadMarkerStore``)
        follow, in turn with every other write."""
        moved = self._rename_history(old, new)
        accounts: defer.Deferred[None] = self._write(self._rename_account_rooms, old, new)
        markers: defer.Deferred[None] = self._write(self._rename_read_markers, old, new)
        return defer.gatherResults([moved, accounts, markers], consumeErrors=True).addCallback(lambda _: None)
