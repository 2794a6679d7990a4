"""The portal as IRC sessions see it: every login throttled per connection, and a refused
PASS or SASL login logged the IRC way."""
from __future__ import annotations

from typing import Optional

from twisted.cred.credentials import IUsernamePassword
from twisted.cred.error import UnauthorizedLogin, UnhandledCredentials
from twisted.logger import Logger

from chathub.auth.credentials import TOKEN_PREFIX, SessionToken
from chathub.auth.limiter import client_portal
from chathub.auth.scram import MECHANISM as SCRAM
from chathub.auth.scram import IScramKeys, IScramProof, keys_source

log = Logger()


def _text(value) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def peer_of(session) -> str:
    """Who a log line is about: the nick when known, and the connection's host."""
    return f"{session.nick or '*'} from {session.host}"


class LoggedLogins:
    """The portal as IRC sessions see it: a refused PASS or SASL login is logged at info level
    with the peer, the nick, the account tried and the reason (never the password)."""

    __slots__ = ("portal",)  # one per connection (see ``client``)

    def __init__(self, portal) -> None:
        self.portal = portal

    @property
    def failures(self) -> int:
        """Failed logins this connection's view of the limiter counts (0 without a limiter)."""
        return int(getattr(self.portal, "count", 0))

    def client(self, address: Optional[str]) -> "LoggedLogins":
        """The logins of one connection from ``address``, throttled by the login limiter."""
        return LoggedLogins(client_portal(self.portal, address))

    def login(self, credentials, mind, *interfaces):
        """``portal.login``, logging a refused password login. A password that looks like a
        session token (SASL PLAIN or PASS) is tried as one, for that account, first; if it is
        none, as the password it may also be."""
        if IUsernamePassword.providedBy(credentials) and _text(credentials.password).startswith(TOKEN_PREFIX):
            token = SessionToken(_text(credentials.password), _text(credentials.username))
            d = self.portal.login(token, mind, *interfaces)

            def held(result):
                # the connection is ended when its token is revoked
                account = getattr(result[1], "account", None)
                if account is not None and hasattr(mind, "hold_token"):
                    mind.hold_token(token.token, account)
                return result

            def as_password(failure):
                failure.trap(UnauthorizedLogin, UnhandledCredentials)
                return self._password_login(credentials, mind, interfaces)

            return d.addCallbacks(held, as_password)
        return self._password_login(credentials, mind, interfaces)

    def _password_login(self, credentials, mind, interfaces):
        d = self.portal.login(credentials, mind, *interfaces)
        if IUsernamePassword.providedBy(credentials) or IScramProof.providedBy(credentials):
            d.addErrback(self._refused, _text(credentials.username), mind)
        return d

    def scram_keys(self) -> Optional[IScramKeys]:
        """Where SCRAM-SHA-256 exchanges get their salts, or None when the portal has no
        checker for SCRAM proofs (no account store)."""
        checkers = getattr(self.portal, "checkers", None) or {}
        return keys_source(checkers.get(IScramProof))

    def sasl_mechanisms(self) -> list[str]:
        """The SASL mechanisms to offer (``sasl`` cap value, 908)."""
        return ["PLAIN", SCRAM] if self.scram_keys() is not None else ["PLAIN"]

    @staticmethod
    def _refused(failure, account: str, session):
        if failure.check(UnauthorizedLogin):
            sasl = getattr(session, "sasl", None)
            method = f"SASL {sasl.mechanism}" if sasl is not None else "PASS"
            log.info(
                "IRC {method} login as {account} by {who} refused: {why}", event="login_failed",
                method=method, account=account, who=peer_of(session), nick=session.nick,
                host=session.host, why=failure.getErrorMessage(),
            )
        return failure

    def __getattr__(self, name):
        return getattr(self.portal, name)
