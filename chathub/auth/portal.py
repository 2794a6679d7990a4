"""Builds the one twisted.cred portal every protocol logs in through."""
from __future__ import annotations

from typing import Iterable, Optional

from twisted.cred.checkers import ICredentialsChecker
from twisted.cred.portal import Portal

from chathub.auth.checkers import AnyOfCheckers, Argon2FileChecker, CheckerDirectory, GuestChecker
from chathub.auth.realm import ChatRealm
from chathub.config import Config


def password_checkers(config: Config, extra: Iterable[ICredentialsChecker] = ()) -> list:
    """The password checkers: those given with ``--auth`` plus the one the config names."""
    checkers = list(extra)
    if config.auth.checker == "argon2file":
        checkers.append(Argon2FileChecker(config.data_path(config.auth.passwords_file)))
    return checkers


def build_portal(hub, config: Config, checkers: Iterable[ICredentialsChecker]) -> Portal:
    """A portal over ``checkers`` plus the guest checker, and set ``hub.accounts``."""
    checkers = list(checkers)
    directory = CheckerDirectory(checkers)
    hub.accounts = directory
    portal = Portal(ChatRealm(hub))
    if len(checkers) == 1:
        portal.registerChecker(checkers[0])
    elif checkers:
        portal.registerChecker(AnyOfCheckers(checkers))
    portal.registerChecker(GuestChecker(directory, config.auth.allow_guests))
    return portal
