"""Builds the one twisted.cred portal every protocol logs in through, behind the login limiter."""
from __future__ import annotations

from typing import Iterable, Optional

from twisted.cred.checkers import ICredentialsChecker
from twisted.cred.credentials import IUsernamePassword
from twisted.cred.portal import Portal

from chathub.auth.checkers import (
    AnyOfCheckers,
    Argon2FileChecker,
    BytesOrTextChecker,
    CheckerDirectory,
    GuestChecker,
    HashedPasswordChecker,
    answered_from_memory,
)
from chathub.auth.cloak import HostCloak, build_cloak
from chathub.auth.hashing import PasswordHashing
from chathub.auth.limiter import LoginLimiter
from chathub.auth.realm import ChatRealm
from chathub.auth.tokens import SessionTokens, TokenChecker
from chathub.config import Config
from chathub.interfaces import IAccountDirectory


def password_checkers(
    config: Config,
    extra: Iterable[ICredentialsChecker] = (),
    store_checker: Optional[ICredentialsChecker] = None,
    hashing: Optional[PasswordHashing] = None,
) -> list:
    """The password checkers: those given with ``--auth``, then those ``auth.checkers`` names.

    The password file checker hashes with ``hashing``, else the store checker's, else a new
    one of ``[auth] hash_concurrency`` slots: one limit for every password check. An
    ``--auth file:`` checker is replaced by one that answers from memory and re-reads its
    file in a thread (``answered_from_memory``)."""
    if hashing is None:
        hashing = getattr(store_checker, "hashing", None) or PasswordHashing(concurrency=config.auth.hash_concurrency)
    checkers = [answered_from_memory(checker) for checker in extra]
    for name in config.auth.checkers:
        if name == "argon2file":
            checkers.append(Argon2FileChecker(config.data_path(config.auth.passwords_file), hashing=hashing))
        elif name == "store" and store_checker is not None:
            checkers.append(store_checker)
    return checkers


def account_directory(checkers: Iterable[ICredentialsChecker]) -> IAccountDirectory:
    """Which nicks belong to an account of one of ``checkers``: give it to ``ChatHub``."""
    return CheckerDirectory(checkers)


def build_portal(
    hub,
    config: Config,
    checkers: Iterable[ICredentialsChecker],
    *,
    cloak: Optional[HostCloak] = None,
    clock=None,
    hashing: Optional[PasswordHashing] = None,
    tokens: Optional[SessionTokens] = None,
) -> LoginLimiter:
    """A portal over ``checkers`` plus the guest checker, behind a ``LoginLimiter`` (give
    each connection ``client_portal(portal, address)``); guests may not take a nick that
    ``hub.accounts`` (see ``account_directory``) says belongs to an account.

    Users' hosts are cloaked with ``cloak`` (the server's: ``chathub.auth.cloak.open_cloak``;
    None: one keyed for this process only). ``clock`` times the failed-login delays (the
    reactor by default); ``hashing`` is what OPER checks with, by default the argon2
    checkers' own; ``tokens`` (``SessionTokens``, None: no token logins) are logged in by a
    ``TokenChecker`` and issued by protocols through ``hub.session_tokens``."""
    checkers = list(checkers)
    if hashing is None:
        hashing = next((c.hashing for c in checkers if isinstance(c, HashedPasswordChecker)), None)
    # stock checkers (--auth) get the credentials in whichever type they expect
    checkers = [
        BytesOrTextChecker(c)
        if IUsernamePassword in c.credentialInterfaces and not IAccountDirectory.providedBy(c)
        else c
        for c in checkers
    ]
    portal = Portal(ChatRealm(hub, cloak or build_cloak(config.privacy)))
    if len(checkers) == 1:
        portal.registerChecker(checkers[0])
    elif checkers:
        portal.registerChecker(AnyOfCheckers(checkers))
    portal.registerChecker(GuestChecker(hub.accounts, config.auth.allow_guests))
    if tokens is not None:
        # session tokens log in through their own checker; the hub hands them to protocols
        hub.session_tokens = tokens
        portal.registerChecker(TokenChecker(tokens))
    return LoginLimiter(portal, config.auth, clock, hashing)
