"""``AccountStore``: the accounts domain of ``SqlStore``: one row per account, keyed by its
folded name, holding its argon2 hash and its SCRAM-SHA-256 keys (never a password). Checking passwords is auth's
(``chathub.auth.accounts``); this only keeps them.
"""
from __future__ import annotations

import time
from typing import Optional

from twisted.internet import defer

from chathub.names import fold
from chathub.store.interfaces import Account, AccountExists, NoSuchAccount
from chathub.store.sql.database import Cursor, SqlDatabase


class AccountStore(SqlDatabase):
    """Accounts: create, look up, change the hash, record logins, delete."""

    def create_account(
        self,
        name: str,
        password_hash: str,
        email: Optional[str] = None,
        created: Optional[float] = None,
        scram: Optional[str] = None,
    ) -> defer.Deferred[Account]:
        """Store a new account; fails with ``AccountExists``. Fires with the ``Account``."""
        account = Account(name, password_hash, created if created is not None else time.time(), None, email, scram)
        return self._write(self._create_account, account)

    def _create_account(self, txn: Cursor, account: Account) -> Account:
        txn.execute(
            self._q(
                "INSERT INTO accounts (name_folded, name, password_hash, email, created, last_seen, scram) "
                "VALUES (?, ?, ?, ?, ?, NULL, ?) ON CONFLICT (name_folded) DO NOTHING RETURNING name"
            ),
            (fold(account.name), account.name, account.password_hash, account.email, account.created, account.scram),
        )
        if txn.fetchone() is None:
            raise AccountExists(account.name)
        return account

    def get_account(self, name: str) -> defer.Deferred[Optional[Account]]:
        """The ``Account`` called ``name`` in any case, or None."""
        return self._read(self._get_account, fold(name))

    def _get_account(self, txn: Cursor, folded: str) -> Optional[Account]:
        txn.execute(
            self._q(
                "SELECT name, password_hash, created, last_seen, email, scram FROM accounts WHERE name_folded = ?"
            ),
            (folded,),
        )
        row = txn.fetchone()
        return None if row is None else Account(row[0], row[1], row[2], row[3], row[4], row[5])

    def set_password_hash(self, name: str, password_hash: str, scram: Optional[str] = None) -> defer.Deferred[None]:
        """Replace an account's password hash and SCRAM keys; fails with ``NoSuchAccount``."""
        return self._write(self._set_password_hash, name, password_hash, scram)

    def _set_password_hash(self, txn: Cursor, name: str, password_hash: str, scram: Optional[str]) -> None:
        txn.execute(
            self._q("UPDATE accounts SET password_hash = ?, scram = ? WHERE name_folded = ?"),
            (password_hash, scram, fold(name)),
        )
        if txn.rowcount == 0:
            raise NoSuchAccount(name)

    def set_scram_keys(self, name: str, scram: str, password_hash: str) -> defer.Deferred[bool]:
        """Store SCRAM keys made from the password whose hash is ``password_hash``; fires with
        False when the account's hash is another one by now (or the account is gone)."""
        return self._write(self._set_scram_keys, fold(name), scram, password_hash)

    def _set_scram_keys(self, txn: Cursor, folded: str, scram: str, password_hash: str) -> bool:
        txn.execute(
            self._q("UPDATE accounts SET scram = ? WHERE name_folded = ? AND password_hash = ?"),
            (scram, folded, password_hash),
        )
        return txn.rowcount > 0

    def touch_account(self, name: str, when: float) -> defer.Deferred[bool]:
        """Record a login time; fires with True if the account exists."""
        return self._write(self._touch_account, fold(name), when)

    def _touch_account(self, txn: Cursor, folded: str, when: float) -> bool:
        txn.execute(self._q("UPDATE accounts SET last_seen = ? WHERE name_folded = ?"), (when, folded))
        return txn.rowcount > 0

    def delete_account(self, name: str) -> defer.Deferred[bool]:
        """Remove an account; fires with True if it existed."""
        return self._write(self._delete_account, fold(name))

    def _delete_account(self, txn: Cursor, folded: str) -> bool:
        txn.execute(self._q("DELETE FROM accounts WHERE name_folded = ?"), (folded,))
        existed = txn.rowcount > 0
        # what it read goes with it: a later account of the name does not see it
        txn.execute(self._q("DELETE FROM read_markers WHERE account = ?"), (folded,))
        return existed

    def account_names(self) -> defer.Deferred[set[str]]:
        """Every account's folded name, as a set."""
        return self._read(self._account_names)

    def _account_names(self, txn: Cursor) -> set[str]:
        txn.execute("SELECT name_folded FROM accounts")
        return {row[0] for row in txn.fetchall()}
