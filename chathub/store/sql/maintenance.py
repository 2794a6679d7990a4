"""``MaintenanceStore``: what ``python -m chathub.admin`` asks of a store while the server runs:
``stats`` (counts, size, the age of history, what retention would remove) and ``backup``.

Both are blocking and use a connection of their own (``_connect_existing``), never the
server's pools: the admin command is a separate process without a reactor. ``stats`` reads
in one transaction, so its counts agree with each other.
"""
from __future__ import annotations

import time
from typing import Any, Optional

from chathub.names import is_room_name
from chathub.store.history import to_ms
from chathub.store.interfaces import StorageError, StoreStats
from chathub.store.schema import LATEST_VERSION
from chathub.store.sql.database import Connection, Cursor, SqlDatabase


class MaintenanceStore(SqlDatabase):
    """Statistics and backups for the operator's admin command."""

    # -- what a backend provides -------------------------------------------------

    def _connect_existing(self) -> Connection:
        """A DB-API connection to the database, which must exist already (never made here)."""
        return self._connect()

    def _begin_snapshot(self, txn: Cursor) -> None:
        """Start a read transaction that sees one moment of the database."""

    def _size(self, txn: Cursor) -> int:
        """Bytes the database takes."""
        return 0

    def backup(self, path: str, replace: bool = False) -> int:
        """Copy the database to ``path`` (a backend with its own tools says which instead)."""
        raise StorageError(f"the {self.engine} database cannot be backed up by chathub")

    # -- statistics --------------------------------------------------------------

    def stats(self, now: Optional[float] = None) -> StoreStats:
        """Counts, size and the age of history, read in one transaction (blocking)."""
        now = time.time() if now is None else now
        conn = self._connect_existing()
        try:
            txn = conn.cursor()
            try:
                self._begin_snapshot(txn)
                return self._stats(txn, now)
            finally:
                txn.close()
                conn.rollback()  # read only: nothing to keep
        except StorageError:
            raise
        except Exception as e:
            raise StorageError(f"cannot read the {self.description}: {self._detail(e)}") from None
        finally:
            conn.close()

    def _stats(self, txn: Cursor, now: float) -> StoreStats:
        version = self._schema_version(txn)
        if version != LATEST_VERSION:
            raise StorageError(
                f"the {self.description} has schema version {version}, this chathub knows {LATEST_VERSION}: "
                "start the server of this version on it once (it migrates at start-up), or use the matching chathub"
            )
        count = self._count
        # one row per conversation: rooms against private conversations ("alice bob": a room
        # name has no space), and what max_per_target would leave out
        txn.execute("SELECT conv, COUNT(*) FROM conversation_events GROUP BY conv")
        rooms = private = rows = over = 0
        keep = self.history.max_per_target
        for conv, n in txn.fetchall():
            n = int(n)
            rows += n
            if " " in conv:
                private += 1
            elif is_room_name(conv):  # not a room's STATUSMSG conversation ("@#chat")
                rooms += 1
            if keep > 0 and n > keep:
                over += n - keep
        by_age = 0
        if self.history.max_age_days > 0:
            cutoff = to_ms(now - self.history.max_age_days * 86400)
            by_age = count(txn, self._q("SELECT COUNT(*) FROM conversation_events WHERE ms < ?"), (cutoff,))
        txn.execute("SELECT MIN(ms), MAX(ms) FROM conversation_events")
        oldest, newest = txn.fetchone() or (None, None)
        return StoreStats(
            database=self.description,
            schema_version=version,
            size_bytes=self._size(txn),
            accounts=count(txn, "SELECT COUNT(*) FROM accounts"),
            persistent_rooms=count(txn, "SELECT COUNT(*) FROM rooms"),
            rooms_with_history=rooms,
            private_conversations=private,
            events=count(txn, "SELECT COUNT(DISTINCT msgid) FROM conversation_events"),
            history_rows=rows,
            oldest=None if oldest is None else int(oldest) / 1000,
            newest=None if newest is None else int(newest) / 1000,
            prunable_by_age=by_age,
            prunable_by_count=over,
        )

    @staticmethod
    def _count(txn: Cursor, query: str, params: tuple[Any, ...] = ()) -> int:
        txn.execute(query, params)
        row = txn.fetchone()
        return int(row[0]) if row and row[0] is not None else 0

    def _schema_version(self, txn: Cursor) -> int:
        try:
            txn.execute("SELECT version FROM schema_version")
        except Exception:
            raise StorageError(
                f"the {self.description} has no chathub tables: has the server ever run on it?"
            ) from None
        row = txn.fetchone()
        return int(row[0]) if row else 0
