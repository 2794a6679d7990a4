"""Credentials beyond twisted.cred's own: a guest asking for a nick without a password."""
from __future__ import annotations

from typing import Optional

from zope.interface import Attribute, implementer

from twisted.cred.credentials import ICredentials


class IGuestNick(ICredentials):
    """A request to chat under a nick without an account."""

    nick = Attribute("The nick asked for (str).")


@implementer(IGuestNick)
class GuestNick:
    """Guest credentials for ``nick``."""

    def __init__(self, nick: str) -> None:
        self.nick = nick


class ISessionToken(ICredentials):
    """A session token offered to log in (``chathub.auth.tokens``)."""

    token = Attribute("The token (str).")


#: every session token starts so, telling it apart from a password (IRC SASL PLAIN takes either)
TOKEN_PREFIX = "cht_"


@implementer(ISessionToken)
class SessionToken:
    """Credentials: a session ``token``; with ``account``, only a token of that account."""

    def __init__(self, token: str, account: Optional[str] = None) -> None:
        self.token = token
        self.account = account
