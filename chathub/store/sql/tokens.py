"""``TokenStore``: the session-token domain of ``SqlStore``: one row per token, keyed by the
token's sha256 digest (the token itself is never stored), naming the account it logs in.
Issuing and checking tokens is auth's (``chathub.auth.tokens``); this only keeps them.
"""
from __future__ import annotations

from typing import Optional

from twisted.internet import defer

from chathub.names import fold
from chathub.store.sql.database import Cursor, SqlDatabase


class TokenStore(SqlDatabase):
    """Session tokens: add (keeping at most N per account), look up, revoke."""

    def add_token(
        self, digest: str, account: str, created: float, expires: float, keep: int
    ) -> defer.Deferred[None]:
        """Store a token digest for ``account``; the account's oldest tokens beyond ``keep``
        (this one included) are revoked in the same transaction."""
        return self._write(self._add_token, digest, account, created, expires, keep)

    def _add_token(self, txn: Cursor, digest: str, account: str, created: float, expires: float, keep: int) -> None:
        folded = fold(account)
        txn.execute(
            self._q("INSERT INTO session_tokens (digest, account, created, expires) VALUES (?, ?, ?, ?)"),
            (digest, folded, created, expires),
        )
        txn.execute(
            self._q("SELECT digest FROM session_tokens WHERE account = ? ORDER BY created DESC, digest"),
            (folded,),
        )
        for (old,) in txn.fetchall()[keep:]:
            txn.execute(self._q("DELETE FROM session_tokens WHERE digest = ?"), (old,))

    def token_account(self, digest: str, now: float) -> defer.Deferred[Optional[str]]:
        """The account a live (unexpired) token digest logs in, by its name as registered
        (``Alice``), or None (also when the account is gone)."""
        return self._read(self._token_account, digest, now)

    def _token_account(self, txn: Cursor, digest: str, now: float) -> Optional[str]:
        txn.execute(
            self._q(
                "SELECT a.name FROM session_tokens t JOIN accounts a ON a.name_folded = t.account "
                "WHERE t.digest = ? AND t.expires > ?"
            ),
            (digest, now),
        )
        row = txn.fetchone()
        return None if row is None else str(row[0])

    def revoke_token(self, digest: str) -> defer.Deferred[bool]:
        """Remove one token; fires with True if it existed."""
        return self._write(self._revoke, digest)

    def revoke_tokens(self, account: str) -> defer.Deferred[int]:
        """Remove every token of ``account``; fires with how many there were."""
        return self._write(self._revoke_all, fold(account))

    def _revoke(self, txn: Cursor, digest: str) -> bool:
        txn.execute(self._q("DELETE FROM session_tokens WHERE digest = ?"), (digest,))
        return txn.rowcount > 0

    def _revoke_all(self, txn: Cursor, folded: str) -> int:
        txn.execute(self._q("DELETE FROM session_tokens WHERE account = ?"), (folded,))
        return int(txn.rowcount)
