"""Accounts kept in the store: a twisted.cred checker, the hub's account directory and its
account_creator, over any ``IStore`` (auth builds on the store; the store knows nothing of auth).

Argon2 hashing and verification are CPU-heavy, so they run in threads (never on the
reactor) through ``chathub.auth.hashing.PasswordHashing``; the server hands the checker
the one instance every password check shares (``[auth] hash_concurrency`` at a time), so
a burst of logins cannot starve the thread pool or eat memory (each argon2 run uses tens
of MiB).
"""
from __future__ import annotations

import time
from typing import Optional

from zope.interface import implementer

from argon2 import PasswordHasher
from twisted.cred.checkers import ICredentialsChecker
from twisted.internet import defer
from twisted.logger import Logger

from chathub.auth.checkers import REFUSED, HashedPasswordChecker
from chathub.auth.hashing import PasswordHashing
from chathub.auth.limiter import LoginUnavailable
from chathub.interfaces import IAccountCreator, IAccountDirectory
from chathub.names import fold
from chathub.store.interfaces import Account, AccountExists, IStore, NoSuchAccount, StorageError


@implementer(ICredentialsChecker, IAccountDirectory, IAccountCreator)
class StoreAccountChecker(HashedPasswordChecker):
    """Checks ``IUsernamePassword`` against the argon2 hashes in an ``IStore``; a name with
    no account costs the same verify, against a dummy hash (``HashedPasswordChecker``).

    Also the hub's ``IAccountDirectory``: ``is_account`` is answered from a set of
    folded names loaded by ``load()`` and kept up to date by ``register()``; and its
    ``IAccountCreator``: ``create_account()`` creates accounts. The avatar id of a successful
    login is the account name as it was registered (``coolAcct``, whatever case the client
    logged in with): IRC shows it in 900, WHOX ``%a`` and the ``account`` tag.
    """

    log = Logger()

    def __init__(
        self,
        store: IStore,
        hasher: Optional[PasswordHasher] = None,
        concurrency: Optional[int] = None,
        reactor=None,
        hashing: Optional[PasswordHashing] = None,
    ) -> None:
        self.store = store
        # the server passes its shared ``hashing``; alone (tests, tools) the checker has its own
        self.hashing = hashing or PasswordHashing(hasher, concurrency, reactor)
        self.hasher = self.hashing.hasher
        self._names: set[str] = set()
        self._background: set[defer.Deferred] = set()

    # -- IAccountDirectory -------------------------------------------------------------

    @defer.inlineCallbacks
    def load(self):
        """Read the account names from the store (call once the store is open)."""
        names = yield self.store.account_names()
        self._names = set(names)
        return len(self._names)

    def is_account(self, name: str) -> bool:
        return fold(name) in self._names

    # -- hashing off the reactor -------------------------------------------------------

    def hash_password(self, password: str) -> defer.Deferred:
        """An argon2 hash of ``password``, computed in a thread."""
        return self.hashing.hash(password)

    # -- ICredentialsChecker (HashedPasswordChecker) ----------------------------------

    @defer.inlineCallbacks
    def lookup(self, name: str):
        """(hash, ``Account``) of ``name``, or None; the store's failure refuses the login
        without counting it as a failed guess."""
        try:
            account = yield self.store.get_account(name)
        except StorageError as e:
            self.log.error("login of {name} refused: {error}", name=name, error=str(e))
            raise LoginUnavailable("accounts are unavailable right now; try again later") from e
        return None if account is None else (account.password_hash, account)

    def accepted(self, account: Account, password: str, stale: bool) -> str:
        folded = fold(account.name)
        self._names.add(folded)
        if stale:
            # the hasher's parameters were raised since: upgrade the stored hash
            rehash = self.hash_password(password)
            rehash.addCallback(lambda hashed: self.store.set_password_hash(account.name, hashed))
            self._in_background(rehash, "could not upgrade the password hash of {name}", account.name)
        self._in_background(
            self.store.touch_account(account.name, time.time()),
            "could not record the login of {name}",
            account.name,
        )
        return account.name

    def _in_background(self, d: defer.Deferred, failed: str, name: str) -> None:
        """Work a login does not wait for: logged if it fails, awaited by ``idle()``."""
        self._background.add(d)
        d.addErrback(lambda f: self.log.failure(failed, f, name=name))
        d.addBoth(lambda _: self._background.discard(d))

    def idle(self) -> defer.Deferred:
        """Fires once the background work of past logins (rehash, last-seen) is done."""
        return defer.DeferredList(list(self._background)).addCallback(lambda _: None)

    # -- registration ------------------------------------------------------------------

    @defer.inlineCallbacks
    def create_account(self, name: str, password: str, email: Optional[str] = None):
        """Create an account (hashing in a thread); fires with the ``Account``.

        Fails with ``AccountExists`` when the name (in any case) is taken. Checking that
        ``name`` is a valid nick, and that the password is acceptable, is the caller's job.
        """
        if self.is_account(name):
            raise AccountExists(name)
        hashed = yield self.hash_password(password)
        try:
            account = yield self.store.create_account(name, hashed, email=email)
        except AccountExists:
            self._names.add(fold(name))
            raise
        self._names.add(fold(name))
        self.log.info("account {name} registered", name=name)
        return account

    @defer.inlineCallbacks
    def set_password(self, name: str, password: str):
        """Replace an account's password; fails with ``NoSuchAccount``."""
        hashed = yield self.hash_password(password)
        yield self.store.set_password_hash(name, hashed)

    @defer.inlineCallbacks
    def unregister(self, name: str):
        """Delete an account; fires with True if it existed."""
        existed = yield self.store.delete_account(name)
        self._names.discard(fold(name))
        return existed


__all__ = ["StoreAccountChecker", "Account", "AccountExists", "NoSuchAccount", "REFUSED"]
