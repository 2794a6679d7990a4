"""``ReadMarkerStore``: each account's read markers (the last-read time of each conversation:
IRC ``MARKREAD``, chathub.v1 ``markread``), kept across restarts and read by whichever node
of a cluster the account logs in to. Which markers move is the hub's decision
(``chathub.hub.readmarkers``); this keeps, per folded account name, the latest time of each
folded target, never moving one back, and at most ``keep`` targets (the ones moved longest
ago go first).
"""
from __future__ import annotations

from twisted.internet import defer

from chathub.names import fold
from chathub.store.sql.database import Cursor, SqlDatabase


class ReadMarkerStore(SqlDatabase):
    """Per account: the read marker of each conversation (room or nick), as epoch seconds."""

    def save_read_marker(self, account: str, target: str, at: float, moved: float, keep: int) -> defer.Deferred[None]:
        """``account``'s marker of ``target`` is at ``at`` (kept if it is there or later
        already), moved at ``moved``; only its ``keep`` most recently moved markers stay."""
        return self._write(self._save_read_marker, fold(account), fold(target), at, moved, keep)

    def _save_read_marker(self, txn: Cursor, account: str, target: str, at: float, moved: float, keep: int) -> None:
        self._put_marker(txn, account, target, at, moved)
        txn.execute(self._q("SELECT COUNT(*) FROM read_markers WHERE account = ?"), (account,))
        row = txn.fetchone()
        if row is None or int(row[0]) <= keep:
            return  # nearly always: the bound is read only when it is passed
        txn.execute(
            self._q("SELECT target FROM read_markers WHERE account = ? ORDER BY moved DESC, target"), (account,)
        )
        for (old,) in txn.fetchall()[keep:]:
            txn.execute(self._q("DELETE FROM read_markers WHERE account = ? AND target = ?"), (account, old))

    def _put_marker(self, txn: Cursor, account: str, target: str, at: float, moved: float) -> None:
        """Store a marker, never moving one back: two nodes (or two logins) may write one
        account's marker out of order, and a renamed room's may meet one of the new name."""
        txn.execute(
            self._q(
                "INSERT INTO read_markers (account, target, at, moved) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (account, target) DO UPDATE SET "
                "at = CASE WHEN excluded.at > read_markers.at THEN excluded.at ELSE read_markers.at END, "
                "moved = excluded.moved"
            ),
            (account, target, at, moved),
        )

    def read_markers(self, account: str) -> defer.Deferred[dict[str, float]]:
        """``account``'s markers: {folded target: epoch seconds}, the most recently moved last."""
        return self._read(self._read_markers, fold(account))

    def _read_markers(self, txn: Cursor, account: str) -> dict[str, float]:
        txn.execute(
            self._q("SELECT target, at FROM read_markers WHERE account = ? ORDER BY moved, target"), (account,)
        )
        return {str(target): float(at) for target, at in txn.fetchall()}

    def _rename_read_markers(self, txn: Cursor, old: str, new: str) -> None:
        """Room ``old`` is called ``new`` now: every account's marker of it is of ``new``
        (where an account had one of ``new`` too, the later of the two stays). Rare: read
        and written back row by row."""
        old_folded, new_folded = fold(old), fold(new)
        if old_folded == new_folded:
            return
        txn.execute(self._q("SELECT account, at, moved FROM read_markers WHERE target = ?"), (old_folded,))
        for account, at, moved in txn.fetchall():
            txn.execute(self._q("DELETE FROM read_markers WHERE account = ? AND target = ?"), (account, old_folded))
            self._put_marker(txn, account, new_folded, at, moved)
