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
from twisted.cred import error
from twisted.cred.checkers import ICredentialsChecker
from twisted.cred.credentials import IUsernamePassword
from twisted.internet import defer
from twisted.logger import Logger

from chathub.auth.checkers import REFUSED, HashedPasswordChecker
from chathub.auth.hashing import PasswordHashing
from chathub.auth.limiter import LoginUnavailable
from chathub.auth.scram import IScramKeys, IScramProof, MadeUpParameters, ScramKeys, keys_or_none
from chathub.interfaces import IAccountCreator, IAccountDirectory
from chathub.names import fold
from chathub.store.interfaces import Account, AccountExists, IStore, NoSuchAccount, StorageError


def _hash_with_keys(hasher: PasswordHasher, password: str) -> tuple[str, Optional[str]]:
    """The argon2 hash of ``password`` and its SCRAM keys (stored form), in one thread hop."""
    return hasher.hash(password), keys_or_none(password)


@implementer(ICredentialsChecker, IAccountDirectory, IAccountCreator, IScramKeys)
class StoreAccountChecker(HashedPasswordChecker):
    """Checks ``IUsernamePassword`` against the argon2 hashes in an ``IStore``; a name with
    no account costs the same verify, against a dummy hash (``HashedPasswordChecker``).

    Also the hub's ``IAccountDirectory``: ``is_account`` is answered from a set of
    folded names loaded by ``load()`` and kept up to date by ``register()``; and its
    ``IAccountCreator``: ``create_account()`` creates accounts. The avatar id of a successful
    login is the account name as it was registered (``coolAcct``, whatever case the client
    logged in with): IRC shows it in 900, WHOX ``%a`` and the ``account`` tag.

    It also checks SCRAM-SHA-256 proofs (``IScramProof``) against the keys stored beside
    each hash (``chathub.auth.scram``), made when a password is set and, for accounts
    registered before, at their next password login; ``scram_parameters`` gives an exchange
    the salt and iteration count to send.
    """

    credentialInterfaces = (IUsernamePassword, IScramProof)

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
        self._made_up = MadeUpParameters()

    # -- IAccountDirectory -------------------------------------------------------------

    @defer.inlineCallbacks
    def load(self):
        """Read the account names from the store (call once the store is open)."""
        names = yield self.store.account_names()
        self._names = set(names)
        return len(self._names)

    def is_account(self, name: str) -> bool:
        return fold(name) in self._names

    def learned(self, name: str) -> None:
        self._names.add(fold(name))

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
            # the hasher's parameters were raised since: upgrade the stored hash (and keys)
            rehash = self.hashing.run(_hash_with_keys, self.hasher, password)
            rehash.addCallback(lambda made: self.store.set_password_hash(account.name, *made))
            self._in_background(rehash, "could not upgrade the password hash of {name}", account.name)
        elif account.scram is None:
            # registered before SCRAM keys were kept: this login has the password to make them
            # (stored only if the password is still the one checked)
            keys = self.hashing.run(keys_or_none, password)
            keys.addCallback(self._store_keys, account)
            self._in_background(keys, "could not store the SCRAM keys of {name}", account.name)
        self._in_background(
            self.store.touch_account(account.name, time.time()),
            "could not record the login of {name}",
            account.name,
        )
        return account.name

    def _store_keys(self, scram: Optional[str], account: Account):
        if scram is not None:
            return self.store.set_scram_keys(account.name, scram, account.password_hash)
        return None

    # -- SCRAM-SHA-256 -----------------------------------------------------------------

    def requestAvatarId(self, credentials):
        if IScramProof.providedBy(credentials):
            return self._check_scram(credentials)
        return super().requestAvatarId(credentials)

    @defer.inlineCallbacks
    def _stored_keys(self, name: str):
        found = yield self.lookup(name)
        account = None if found is None else found[1]
        keys = None if account is None or account.scram is None else ScramKeys.decode(account.scram)
        return account, keys

    @defer.inlineCallbacks
    def scram_parameters(self, name: str):
        """``(salt, iterations)`` of ``name``'s keys, or a made-up pair for a name without."""
        _account, keys = yield self._stored_keys(name)
        if keys is None:
            return self._made_up.for_name(fold(name))
        return keys.salt, keys.iterations

    @defer.inlineCallbacks
    def _check_scram(self, proof):
        account, keys = yield self._stored_keys(proof.username)
        if account is None or keys is None or not proof.check(keys):
            raise error.UnauthorizedLogin(REFUSED)
        self._names.add(fold(account.name))
        self._in_background(
            self.store.touch_account(account.name, time.time()), "could not record the login of {name}", account.name
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
        hashed, scram = yield self.hashing.run(_hash_with_keys, self.hasher, password)
        try:
            account = yield self.store.create_account(name, hashed, email=email, scram=scram)
        except AccountExists:
            self._names.add(fold(name))
            raise
        self._names.add(fold(name))
        self.log.info("account {name} registered", name=name)
        return account

    @defer.inlineCallbacks
    def set_password(self, name: str, password: str):
        """Replace an account's password (and its SCRAM keys); fails with ``NoSuchAccount``."""
        hashed, scram = yield self.hashing.run(_hash_with_keys, self.hasher, password)
        yield self.store.set_password_hash(name, hashed, scram)

    @defer.inlineCallbacks
    def unregister(self, name: str):
        """Delete an account; fires with True if it existed."""
        existed = yield self.store.delete_account(name)
        self._names.discard(fold(name))
        return existed


__all__ = ["StoreAccountChecker", "Account", "AccountExists", "NoSuchAccount", "REFUSED"]
