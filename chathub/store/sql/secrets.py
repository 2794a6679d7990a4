"""``SecretStore``: secrets the nodes of a cluster share, one per name, the first node's.

The nodes of a cluster must agree on some secrets they would each otherwise make for
themselves at first start: the host cloak's key (``chathub.auth.cloak``), without which one
address had a different cloak on each node (a ban on a cloak was dodged by reconnecting to
another node). The first node to ask stores its own; every later one gets that one.
"""
from __future__ import annotations

from twisted.internet import defer

from chathub.store.sql.database import Cursor, SqlDatabase


class SecretStore(SqlDatabase):
    """Named secrets, each written once."""

    def shared_secret(self, name: str, candidate: str) -> defer.Deferred[str]:
        """The secret stored under ``name``; ``candidate`` is stored and returned when there
        is none yet (two nodes asking at once get the same one: one insert wins)."""
        return self._write(self._shared_secret, name, candidate)

    def _shared_secret(self, txn: Cursor, name: str, candidate: str) -> str:
        txn.execute(
            self._q("INSERT INTO shared_secrets (name, secret) VALUES (?, ?) ON CONFLICT (name) DO NOTHING"),
            (name, candidate),
        )
        txn.execute(self._q("SELECT secret FROM shared_secrets WHERE name = ?"), (name,))
        row = txn.fetchone()
        return candidate if row is None else str(row[0])
