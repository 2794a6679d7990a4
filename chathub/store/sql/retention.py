"""``RetentionStore``: the retention domain of ``SqlStore``: ``prune`` forgets events older
than ``[history] max_age_days`` and all but the newest ``max_per_target`` of a conversation,
``[history] prune_batch`` rows per transaction. Each batch is a write of its own in the
group-commit queue, and the next one is queued only when it has committed: the appends that
arrived meanwhile are ahead of it, so a message waits for at most one batch, however many
rows the prune removes (tests/test_retention_load.py; bench/prune.py measures 1M rows).
"""
from __future__ import annotations

import time
from typing import Any, Optional

from twisted.internet import defer

from chathub.store.history import to_ms
from chathub.store.sql.database import Cursor, SqlDatabase


class RetentionStore(SqlDatabase):
    """History retention: what ``RetentionService`` runs every ``prune_interval_seconds``."""

    @defer.inlineCallbacks
    def prune(self, now: Optional[float] = None) -> Any:
        """Apply [history] max_age_days and max_per_target; fires with the number of
        conversation rows removed (an event shown in three rooms has three)."""
        now = time.time() if now is None else now
        removed = 0
        if self.history.max_age_days > 0:
            cutoff = to_ms(now - self.history.max_age_days * 86400)
            while True:
                count, more = yield self._write(self._prune_old, cutoff)
                removed += count
                if not more:
                    break
        keep = self.history.max_per_target
        if keep > 0:
            crowded = yield self._read(self._crowded_conversations, keep)
            for conv in crowded:
                while True:
                    count, more = yield self._write(self._prune_conversation, conv, keep)
                    removed += count
                    if not more:
                        break
        if removed:
            yield self._write(self._drop_empty_conversations)
            self.log.info("{db}: retention removed {count} events", db=self.description, count=removed)
        return removed

    def _prune_old(self, txn: Cursor, cutoff_ms: int) -> tuple[int, bool]:
        txn.execute(
            self._q(
                "DELETE FROM conversation_events WHERE (conv, conv_seq) IN "
                "(SELECT conv, conv_seq FROM conversation_events WHERE ms < ? LIMIT ?)"
            ),
            (cutoff_ms, self.history.prune_batch),
        )
        removed = max(txn.rowcount, 0)
        return removed, removed == self.history.prune_batch

    def _crowded_conversations(self, txn: Cursor, keep: int) -> list[str]:
        txn.execute(
            self._q("SELECT conv FROM conversation_events GROUP BY conv HAVING COUNT(*) > ? ORDER BY conv"), (keep,)
        )
        return [row[0] for row in txn.fetchall()]

    def _prune_conversation(self, txn: Cursor, conv: str, keep: int) -> tuple[int, bool]:
        txn.execute(
            self._q("SELECT conv_seq FROM conversation_events WHERE conv = ? ORDER BY conv_seq DESC LIMIT 1 OFFSET ?"),
            (conv, keep - 1),
        )
        row = txn.fetchone()
        if row is None:
            return 0, False
        txn.execute(
            self._q(
                "DELETE FROM conversation_events WHERE conv = ? AND conv_seq IN "
                "(SELECT conv_seq FROM conversation_events WHERE conv = ? AND conv_seq < ? ORDER BY conv_seq LIMIT ?)"
            ),
            (conv, conv, row[0], self.history.prune_batch),
        )
        removed = max(txn.rowcount, 0)
        return removed, removed == self.history.prune_batch

    def _drop_empty_conversations(self, txn: Cursor) -> None:
        # A room's incarnation marker goes with the last of its history: nothing older is
        # left for it to hide. The conversations row stays: it holds the conversation's
        # last number, and numbers are never given twice.
        txn.execute(
            "DELETE FROM room_incarnations WHERE NOT EXISTS "
            "(SELECT 1 FROM conversation_events t WHERE t.conv = room_incarnations.conv)"
        )
        # and a range of moved history, with the last of its rows
        txn.execute(
            "DELETE FROM moved_history WHERE NOT EXISTS (SELECT 1 FROM conversation_events t WHERE "
            "t.conv = moved_history.conv AND t.conv_seq BETWEEN moved_history.first_seq AND moved_history.last_seq)"
        )
