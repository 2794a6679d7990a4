"""Session tokens: a logged-in user's revocable, expiring key to log the same account in
again without its password (the web client's session after a reload; an IRC client's SASL
PLAIN password).

A token is 32 random bytes (``secrets``), so one sha256 pass is all the hashing it needs:
the store keeps only the digest, and nothing here logs a token. ``SessionTokens`` issues
and revokes them; ``TokenChecker`` is the twisted.cred checker that logs them in, so the
portal's checkers stay pluggable.
"""
from __future__ import annotations

import hashlib
import secrets
from typing import Any, Callable, Optional

from zope.interface import implementer

from twisted.cred import error
from twisted.cred.checkers import ICredentialsChecker
from twisted.internet import defer
from twisted.logger import Logger

from chathub.auth.credentials import TOKEN_PREFIX, ISessionToken, SessionToken
from chathub.names import fold
from chathub.store.interfaces import IStore, StorageError

__all__ = ["ISessionToken", "SessionToken", "SessionTokens", "TokenChecker", "digest"]

#: every token starts so, telling it apart from a password
PREFIX = TOKEN_PREFIX

#: what a refused token login says (expired, revoked and never issued read alike)
REFUSED_TOKEN = "unknown, expired or revoked session token"

#: seconds a revocation of an account's tokens is remembered: a session that starts
#: watching a token of that account meanwhile (its login checked the token just before the
#: revocation committed) has the token checked again in the store
RECENT_REVOCATION = 60.0


def digest(token: str) -> str:
    """The sha256 hex digest a token is stored as."""
    return hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()


class SessionTokens:
    """Issues, checks and revokes the tokens of ``store``; ``lifetime`` seconds each, at most
    ``keep`` per account; ``clock`` tells the time (the reactor; a ``task.Clock`` in tests)."""

    log = Logger()

    def __init__(self, store: IStore, lifetime: float, keep: int, clock: Any = None) -> None:
        if clock is None:
            from twisted.internet import reactor as clock
        self.store = store
        self.lifetime = lifetime
        self.keep = keep
        self.clock = clock
        # the live sessions that logged in with (or were given) a token: digest -> (folded
        # account, {session's callback}); told when their token is revoked, so a "log out
        # everywhere" ends them too. Only digests are held, as in the store.
        self._sessions: dict[str, tuple[str, set[Callable[[], None]]]] = {}
        #: told ``announce(folded account)`` after this object revoked tokens of that
        #: account: in a cluster the hub rings the other nodes, whose sessions holding a
        #: revoked token end too (``check``); None on a lone node
        self.announce: Optional[Callable[[str], None]] = None
        #: folded account -> when its tokens were last revoked (here or on another node)
        self._revoked_at: dict[str, float] = {}

    def issue(self, account: str) -> defer.Deferred:
        """A new token for ``account``: fires with ``(token, expires)`` once stored."""
        token = PREFIX + secrets.token_urlsafe(32)
        now = self.clock.seconds()
        expires = now + self.lifetime
        d = self.store.add_token(digest(token), account, now, expires, self.keep)
        return d.addCallback(lambda _: (token, expires))

    def account_of(self, token: str) -> defer.Deferred:
        """The account ``token`` logs in (its name as registered), or None (unknown, expired
        or revoked)."""
        return self.store.token_account(digest(token), self.clock.seconds())

    def revoke(self, token: str, account: Optional[str] = None) -> defer.Deferred:
        """Revoke one token (of ``account``, when the caller knows it: in a cluster the
        other nodes are told to check that account's tokens); fires with True if it was
        live. The sessions using it are told once it is revoked."""
        key = digest(token)
        d = self.store.revoke_token(key).addCallback(self._ended, [key])
        if account is not None:
            d.addCallback(self._announced, fold(account))
        return d

    def revoke_all(self, account: str) -> defer.Deferred:
        """Revoke every token of ``account`` ("log out everywhere", a changed password);
        fires with how many. Every session using one of them is told once they are revoked."""
        folded = fold(account)
        d = self.store.revoke_tokens(account).addCallback(
            lambda revoked: self._ended(revoked, [k for k, (owner, _) in self._sessions.items() if owner == folded])
        )
        return d.addCallback(self._announced, folded)

    def _announced(self, result: Any, folded: str) -> Any:
        self._note_revocation(folded)
        if self.announce is not None:
            self.announce(folded)
        return result

    def check(self, account: Optional[str] = None) -> defer.Deferred:
        """End the watching sessions whose token is no longer in the store (revoked on
        another node, told by its doorbell, or missed while the doorbell was down): those
        of ``account``, or (None) every one. The store is the truth: a token issued after
        the revocation is still there, and its session stays. Fires with how many ended."""
        folded = None if account is None else fold(account)
        if folded is not None:
            self._note_revocation(folded)
        keys = [k for k, (owner, _) in self._sessions.items() if folded is None or owner == folded]
        return defer.gatherResults([self._check_one(k) for k in keys], consumeErrors=True).addCallback(sum)

    def _note_revocation(self, folded: str) -> None:
        now = self.clock.seconds()
        for old in [a for a, when in self._revoked_at.items() if now - when >= RECENT_REVOCATION]:
            del self._revoked_at[old]
        self._revoked_at[folded] = now

    def _check_one(self, key: str) -> defer.Deferred:
        # an expired token is not a revoked one: a session holding one goes on, as on a
        # lone node, so its row is looked up whatever its expiry (``now`` 0)
        def found(account: Optional[str]) -> int:
            if account is not None or key not in self._sessions:
                return 0
            self._ended(None, [key])
            return 1

        def failed(failure: Any) -> int:
            failure.trap(StorageError)
            # the session stays until the next check (a doorbell, a reconnect); the token
            # itself logs nobody in meanwhile: every login reads the store
            return 0

        return self.store.token_account(key, 0.0).addCallbacks(found, failed)

    def watch(self, token: str, account: str, revoked: Callable[[], None]) -> Callable[[], None]:
        """Call ``revoked`` when ``token`` (of ``account``) is revoked through this object,
        once; returns the function that stops watching (the session ended first)."""
        key = digest(token)
        folded = fold(account)
        watchers = self._sessions.setdefault(key, (folded, set()))[1]
        watchers.add(revoked)
        when = self._revoked_at.get(folded)
        if when is not None and self.clock.seconds() - when < RECENT_REVOCATION:
            # the login may have checked the token just before the revocation committed
            self._check_one(key).addErrback(lambda f: self.log.failure("checking a session token failed", f))

        def unwatch() -> None:
            watchers.discard(revoked)
            if not watchers and self._sessions.get(key, (None, None))[1] is watchers:
                del self._sessions[key]

        return unwatch

    def _ended(self, result: Any, keys: list[str]) -> Any:
        for key in keys:
            entry = self._sessions.pop(key, None)
            for revoked in list(entry[1]) if entry is not None else []:
                revoked()
        return result


@implementer(ICredentialsChecker)
class TokenChecker:
    """Logs ``ISessionToken`` credentials in as the token's account (its name as registered,
    the avatar id the store's password checker gives too)."""

    credentialInterfaces = (ISessionToken,)

    def __init__(self, tokens: SessionTokens) -> None:
        self.tokens = tokens

    @defer.inlineCallbacks
    def requestAvatarId(self, credentials: Any) -> Any:
        try:
            account: Optional[str] = yield self.tokens.account_of(str(credentials.token))
        except StorageError as e:
            raise error.UnauthorizedLogin("accounts are unavailable right now; try again later") from e
        claimed = getattr(credentials, "account", None)
        if account is None or (claimed is not None and fold(claimed) != fold(account)):
            raise error.UnauthorizedLogin(REFUSED_TOKEN)
        return account
