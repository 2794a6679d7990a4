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

from chathub.auth.credentials import TOKEN_PREFIX, ISessionToken, SessionToken
from chathub.names import fold
from chathub.store.interfaces import IStore, StorageError

__all__ = ["ISessionToken", "SessionToken", "SessionTokens", "TokenChecker", "digest"]

#: every token starts so, telling it apart from a password
PREFIX = TOKEN_PREFIX

#: what a refused token login says (expired, revoked and never issued read alike)
REFUSED_TOKEN = "unknown, expired or revoked session token"


def digest(token: str) -> str:
    """The sha256 hex digest a token is stored as."""
    return hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()


class SessionTokens:
    """Issues, checks and revokes the tokens of ``store``; ``lifetime`` seconds each, at most
    ``keep`` per account; ``clock`` tells the time (the reactor; a ``task.Clock`` in tests)."""

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

    def revoke(self, token: str) -> defer.Deferred:
        """Revoke one token; fires with True if it was live. The sessions using it are told
        once it is revoked."""
        key = digest(token)
        return self.store.revoke_token(key).addCallback(self._ended, [key])

    def revoke_all(self, account: str) -> defer.Deferred:
        """Revoke every token of ``account`` ("log out everywhere", a changed password);
        fires with how many. Every session using one of them is told once they are revoked."""
        folded = fold(account)
        return self.store.revoke_tokens(account).addCallback(
            lambda revoked: self._ended(revoked, [k for k, (owner, _) in self._sessions.items() if owner == folded])
        )

    def watch(self, token: str, account: str, revoked: Callable[[], None]) -> Callable[[], None]:
        """Call ``revoked`` when ``token`` (of ``account``) is revoked through this object,
        once; returns the function that stops watching (the session ended first)."""
        key = digest(token)
        watchers = self._sessions.setdefault(key, (fold(account), set()))[1]
        watchers.add(revoked)

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
