"""Credential checkers: argon2-hashed password file, guests, and account lookups for any checker."""
from __future__ import annotations

import os
from typing import Optional

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from zope.interface import implementer

from twisted.cred import error
from twisted.cred.checkers import ANONYMOUS, FilePasswordDB, ICredentialsChecker, InMemoryUsernamePasswordDatabaseDontUse
from twisted.cred.credentials import IUsernamePassword, UsernamePassword
from twisted.internet import defer, threads
from twisted.logger import Logger

from chathub.auth.credentials import IGuestNick
from chathub.hub.names import fold
from chathub.interfaces import IAccountDirectory

#: the avatar id a guest login yields: no account
GUEST = ANONYMOUS


def _text(value) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def read_password_file(path: str) -> dict[str, str]:
    """Parse ``name:argon2hash`` lines (``#`` comments allowed) into a folded-name dict."""
    users: dict[str, str] = {}
    try:
        with open(path, encoding="utf-8") as f:
            for line in f:
                line = line.strip()
                if not line or line.startswith("#") or ":" not in line:
                    continue
                name, hashed = line.split(":", 1)
                users[fold(name.strip())] = hashed.strip()
    except FileNotFoundError:
        pass
    return users


@implementer(ICredentialsChecker, IAccountDirectory)
class Argon2FileChecker:
    """Checks passwords against a file of argon2 hashes (see ``python -m chathub.passwd``).

    Hashing runs in a thread, never on the reactor. The file is re-read when it changes,
    so users added while the server runs can log in.
    """

    credentialInterfaces = (IUsernamePassword,)
    log = Logger()

    def __init__(self, path: str) -> None:
        self.path = path
        self._hasher = PasswordHasher()
        self._version: Optional[tuple[int, int, int]] = None
        self._users: dict[str, str] = {}
        self._reload()

    def _reload(self) -> None:
        # chathub.passwd replaces the file (new inode), which a coarse mtime alone can miss
        try:
            st = os.stat(self.path)
            version = (st.st_mtime_ns, st.st_ino, st.st_size)
        except OSError:
            version = None
        if version != self._version:
            self._users = read_password_file(self.path)
            self._version = version

    def is_registered(self, name: str) -> bool:
        # Re-read here too: a nick added while the server runs must stop being free for
        # guests at once, not only after its owner's first login (one stat, no hashing).
        self._reload()
        return fold(name) in self._users

    def requestAvatarId(self, credentials):
        name = fold(_text(credentials.username))
        password = _text(credentials.password)
        return threads.deferToThread(self._verify, name, password)

    def _verify(self, name: str, password: str) -> str:
        self._reload()
        hashed = self._users.get(name)
        if hashed is None:
            raise error.UnauthorizedLogin("unknown account or wrong password")
        try:
            self._hasher.verify(hashed, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            raise error.UnauthorizedLogin("unknown account or wrong password")
        return name


@implementer(ICredentialsChecker)
class GuestChecker:
    """Lets a guest use a nick that is not a registered account, when guests are allowed."""

    credentialInterfaces = (IGuestNick,)

    def __init__(self, accounts: IAccountDirectory, allow_guests: bool) -> None:
        self.accounts = accounts
        self.allow_guests = allow_guests

    def requestAvatarId(self, credentials):
        if not self.allow_guests:
            return defer.fail(
                error.UnauthorizedLogin("guests are not allowed here: give a password")
            )
        if self.accounts.is_registered(credentials.nick):
            return defer.fail(
                error.UnauthorizedLogin(f"{credentials.nick} is a registered nick: give its password")
            )
        return defer.succeed(GUEST)


@implementer(IAccountDirectory)
class CheckerDirectory:
    """Answers ``is_registered`` for twisted.cred's stock checkers (``--auth memory:``/``file:``)."""

    def __init__(self, checkers) -> None:
        self.checkers = list(checkers)

    def is_registered(self, name: str) -> bool:
        folded = fold(name)
        for checker in self.checkers:
            if IAccountDirectory.providedBy(checker):
                if checker.is_registered(name):
                    return True
            elif isinstance(checker, InMemoryUsernamePasswordDatabaseDontUse):
                if any(fold(_text(u)) == folded for u in checker.users):
                    return True
            elif isinstance(checker, FilePasswordDB):
                try:
                    checker.getUser(name.encode("utf-8"))
                    return True
                except KeyError:
                    pass
        return False


@implementer(ICredentialsChecker)
class BytesOrTextChecker:
    """Runs a stock twisted.cred password checker with the name and password as bytes, then as text.

    Twisted's checkers disagree on the type: ``FilePasswordDB`` (``--auth file:``) compares
    bytes, while ``--auth memory:alice:pw`` stores str keys and passwords, so one type
    alone would refuse every login on the other kind.
    """

    credentialInterfaces = (IUsernamePassword,)

    def __init__(self, checker: ICredentialsChecker) -> None:
        self.checker = checker

    @defer.inlineCallbacks
    def requestAvatarId(self, credentials):
        try:
            return (yield defer.maybeDeferred(self.checker.requestAvatarId, credentials))
        except error.LoginFailed:
            if not isinstance(credentials.username, bytes) and not isinstance(credentials.password, bytes):
                raise
        text = UsernamePassword(_text(credentials.username), _text(credentials.password))
        return (yield defer.maybeDeferred(self.checker.requestAvatarId, text))


@implementer(ICredentialsChecker)
class AnyOfCheckers:
    """Accepts credentials that any one of several checkers accepts, tried in order."""

    def __init__(self, checkers) -> None:
        self.checkers = list(checkers)
        self.credentialInterfaces = tuple(
            {i for c in self.checkers for i in c.credentialInterfaces}
        )

    @defer.inlineCallbacks
    def requestAvatarId(self, credentials):
        failure = error.UnauthorizedLogin("unknown account or wrong password")
        for checker in self.checkers:
            if not any(i.providedBy(credentials) for i in checker.credentialInterfaces):
                continue
            try:
                avatar_id = yield defer.maybeDeferred(checker.requestAvatarId, credentials)
            except error.UnauthorizedLogin as e:
                failure = e
                continue
            return avatar_id
        raise failure
