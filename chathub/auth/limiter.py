"""Failed-login throttling: the one place every password check of every protocol goes through
(SASL SCRAM-SHA-256 proofs too).

``LoginLimiter`` wraps the portal. Each connection asks it for a ``ClientLogins`` (with
``client_portal(portal, address)``), which has the portal's ``login`` and a ``verify`` for
checks outside the portal (OPER). A password attempt then

1. is refused at once (``LoginThrottled``, an ``UnauthorizedLogin``) when too many attempts
   are already waiting or being checked: from its address (``login_checks_per_ip``), for
   its account name (``login_checks_per_account``) or on the whole server
   (``login_checks_max``), so an attacker can never fill the queue honest users wait in;
2. waits, on the reactor's clock (a Deferred, never a sleep), until the delay earned by
   earlier failures has passed: ``login_delay * 2**(n-1)`` seconds after the n-th failure,
   at most ``login_delay_max``, counted separately for the connection, the address and the
   account name, the longest of the three applying;
3. runs the check with its address as the ``Lane`` of the argon2 ``FairQueue``.

A failure then counts against the connection, the address and the account name. The account
limits (its delay and its checks in flight) only hold back addresses that have failed logins
of their own: an attacker guessing ``alice``'s password from elsewhere delays ``alice``'s
guessers, not ``alice`` logging in from a clean address. While the address table is full
(an attacker with more addresses than it holds) every address counts as suspect, so the
account limits hold for all: guessing from many addresses stays slow.

The tables are bounded (``failed_login_table_size`` entries each, the oldest forgotten
first) and forget an entry ``failed_login_memory`` seconds after its last failure; the
attempts in flight are bounded by the limits above. IPv6 addresses count per /64 (what one
subscriber gets).
"""
from __future__ import annotations

import functools
import ipaddress
from collections import OrderedDict
from typing import Callable, Hashable, Optional

from twisted.cred.credentials import IUsernamePassword, UsernamePassword
from twisted.cred.error import UnauthorizedLogin
from twisted.internet import defer, task
from twisted.logger import Logger
from twisted.python.failure import Failure

from chathub.auth.hashing import Lane, PasswordHashing
from chathub.auth.scram import IScramProof
from chathub.config.core import AuthConfig
from chathub.names import fold

#: the longest address or account key kept (longer names cannot be accounts: they share a key)
MAX_KEY = 64


class LoginThrottled(UnauthorizedLogin):
    """Refused without a check: too many attempts at once from this address, for this
    account, or on the server. Says nothing about whether the name exists."""


class LoginUnavailable(UnauthorizedLogin):
    """The accounts could not be read (the database is down): no guess was checked, so
    it does not count as a failed login."""


class ClientCredentials(UsernamePassword):
    """``IUsernamePassword`` with the ``Lane`` its argon2 check queues in (see ``lane_of``)."""

    def __init__(self, username, password, lane: Lane) -> None:
        super().__init__(username, password)
        self.lane = lane


def lane_of(credentials) -> Optional[Lane]:
    """The hashing lane a login's credentials carry (None: not through the limiter)."""
    return getattr(credentials, "lane", None)


def _text(value) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


@functools.lru_cache(maxsize=1024)  # every connection asks (the limiter, the connection limits)
def address_key(address: Optional[str]) -> str:
    """What failures are counted per: an IPv4 address, an IPv6 /64, or the text given."""
    if not address:
        return "?"
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return address[:MAX_KEY]
    if ip.version == 6:
        mapped = ip.ipv4_mapped
        if mapped is not None:
            return str(mapped)
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return address


def account_key(name: str) -> str:
    """What failures are counted per for an account name (folded, bounded)."""
    return fold(name)[:MAX_KEY]


class Failures:
    """Failed logins of one key: how many, and when the last one was."""

    __slots__ = ("count", "last", "warned")

    def __init__(self) -> None:
        self.count = 0
        self.last = 0.0
        self.warned = False


class FailureTable:
    """Failures per key, at most ``size`` keys, each forgotten ``memory`` seconds after its
    last failure.

    An OrderedDict in order of last failure: the oldest entry is at the front, so expired
    entries are dropped from there as new ones come, and when the table is full the entry
    pushed out is the one least recently failed. ``pushed_out`` is when a live entry last
    had to go (the table is under pressure)."""

    def __init__(self, size: int, memory: float) -> None:
        self.size = size
        self.memory = memory
        self._entries: "OrderedDict[Hashable, Failures]" = OrderedDict()
        self.pushed_out: Optional[float] = None

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: Hashable, now: float) -> Optional[Failures]:
        """The live failures of ``key``, or None."""
        entry = self._entries.get(key)
        if entry is not None and now - entry.last >= self.memory:
            del self._entries[key]
            return None
        return entry

    def failed(self, key: Hashable, now: float) -> Failures:
        """Count one more failure for ``key``."""
        entry = self.get(key, now)
        if entry is None:
            entry = self._entries[key] = Failures()
        else:
            self._entries.move_to_end(key)
        entry.count += 1
        entry.last = now
        self._trim(now)
        return entry

    def forget(self, key: Hashable) -> None:
        self._entries.pop(key, None)

    def under_pressure(self, now: float) -> bool:
        """Whether a live entry had to be pushed out within the last ``memory`` seconds."""
        return self.pushed_out is not None and now - self.pushed_out < self.memory

    def _trim(self, now: float) -> None:
        entries = self._entries
        while entries:
            key, oldest = next(iter(entries.items()))
            if now - oldest.last >= self.memory:
                entries.popitem(last=False)
            elif len(entries) > self.size:
                entries.popitem(last=False)
                self.pushed_out = now
            else:
                break


class LoginLimiter:
    """The portal as the protocols see it: failed logins are throttled (see the module).

    ``settings`` is the ``[auth]`` section; ``clock`` the reactor (a ``task.Clock`` in
    tests); ``hashing`` the server's ``PasswordHashing`` (OPER checks with it)."""

    log = Logger()

    def __init__(self, portal, settings: AuthConfig, clock=None, hashing: Optional[PasswordHashing] = None) -> None:
        if clock is None:
            from twisted.internet import reactor as clock
        self.portal = portal
        self.settings = settings
        self.clock = clock
        self.hashing = hashing if hashing is not None else PasswordHashing(concurrency=settings.hash_concurrency)
        self.addresses = FailureTable(settings.failed_login_table_size, settings.failed_login_memory)
        self.accounts = FailureTable(settings.failed_login_table_size, settings.failed_login_memory)
        # attempts waiting or being checked: per address, per account key, in all
        self.in_flight: dict[str, int] = {}
        self.in_flight_accounts: dict[str, int] = {}
        self.pending = 0
        #: wrong passwords, and attempts refused for too many at once (read by /metrics)
        self.failed_logins = 0
        self.throttled_logins = 0
        self._pressure_logged = False
        self._unknown = ClientLogins(self, None)

    # -- what protocols call ----------------------------------------------------------------

    @property
    def realm(self):
        """The realm of the portal behind this limiter."""
        return self.portal.realm

    def client(self, address: Optional[str]) -> "ClientLogins":
        """The logins of one connection from ``address`` (its IP address as text)."""
        return ClientLogins(self, address)

    def login(self, credentials, mind, *interfaces) -> defer.Deferred:
        """A login whose connection is not known: all such share one address ("?")."""
        return self._unknown.login(credentials, mind, *interfaces)

    def delay(self, failures: int) -> float:
        """Seconds the next attempt waits after ``failures`` failed ones."""
        if failures <= 0 or self.settings.login_delay <= 0:
            return 0.0
        return min(self.settings.login_delay * 2 ** min(failures - 1, 62), self.settings.login_delay_max)

    # -- the attempt --------------------------------------------------------------------------

    def attempt(self, client: "ClientLogins", account: str, check: Callable[[Lane], defer.Deferred]) -> defer.Deferred:
        """Run ``check(lane)`` for ``client`` and ``account`` (a kind and a name: "account
        alice", "operator admin") when the limits allow it.

        ``check`` fails with ``UnauthorizedLogin`` for a wrong password (a failure, counted);
        ``LoginThrottled`` and ``LoginUnavailable`` are not counted."""
        settings = self.settings
        now = self.clock.seconds()
        address = client.key
        name = account_key(account)
        by_address = self.addresses.get(address, now)
        by_account = self.accounts.get(name, now)
        by_connection = client.failures(now)
        suspect = by_address is not None or by_connection > 0 or self.addresses.under_pressure(now)
        refusal = None
        if self.pending >= settings.login_checks_max:
            refusal = "the server is busy checking passwords; try again in a minute"
        elif self.in_flight.get(address, 0) >= settings.login_checks_per_ip:
            refusal = "too many logins from your address at once; wait for their answers"
        elif suspect and self.in_flight_accounts.get(name, 0) >= settings.login_checks_per_account:
            refusal = "too many logins to this account at once; try again later"
        if refusal is not None:
            self.throttled_logins += 1
            return defer.fail(LoginThrottled(refusal))
        until = client.last + self.delay(by_connection)
        if by_address is not None:
            until = max(until, by_address.last + self.delay(by_address.count))
        if suspect and by_account is not None:
            until = max(until, by_account.last + self.delay(by_account.count))
        self.pending += 1
        self.in_flight[address] = self.in_flight.get(address, 0) + 1
        self.in_flight_accounts[name] = self.in_flight_accounts.get(name, 0) + 1
        lane = Lane(address, first=not suspect)
        wait = until - now
        if wait > 0:
            d = task.deferLater(self.clock, wait, check, lane)
        else:
            d = defer.maybeDeferred(check, lane)
        return d.addBoth(self._done, client, address, name, account)

    def _done(self, result, client: "ClientLogins", address: str, name: str, account: str):
        self.pending -= 1
        _decrement(self.in_flight, address)
        _decrement(self.in_flight_accounts, name)
        if not isinstance(result, Failure):
            client.succeeded()
            self.accounts.forget(name)  # its owner is here: the guessers start over
            return result
        if result.check(LoginThrottled, LoginUnavailable) or not result.check(UnauthorizedLogin):
            return result
        self.failed_logins += 1
        now = self.clock.seconds()
        client.failed(now)
        self._warn(self.addresses.failed(address, now), "from {what}", address)
        self._warn(self.accounts.failed(name, now), "to {what}", account[:MAX_KEY])
        if self.addresses.under_pressure(now) and not self._pressure_logged:
            self._pressure_logged = True
            self.log.warn(
                "failed logins come from more than {size} addresses: the oldest are forgotten, "
                "and account limits now hold for every address",
                size=self.settings.failed_login_table_size,
            )
        return result

    def _warn(self, failures: Failures, where: str, what: str) -> None:
        # once per episode, when the delay reaches its maximum: an attack, not a typo
        if failures.warned or self.delay(failures.count) < self.settings.login_delay_max:
            return
        failures.warned = True
        self.log.warn(
            "{count} failed logins " + where + "; each further attempt waits {delay:g} s",
            count=failures.count, what=what, delay=self.settings.login_delay_max,
        )


def _decrement(counts: dict, key) -> None:
    left = counts[key] - 1
    if left:
        counts[key] = left
    else:
        del counts[key]  # only keys with attempts in flight stay: bounded by those


class ClientLogins:
    """One connection's view of the portal: ``login`` (the portal's signature) and ``verify``,
    throttled by the ``LoginLimiter`` for the connection's address.

    One exists per connection, so it is small; the address key is worked out at the first
    password attempt."""

    __slots__ = ("limiter", "address", "_key", "count", "last")

    def __init__(self, limiter: LoginLimiter, address: Optional[str]) -> None:
        self.limiter = limiter
        self.address = address
        self._key: Optional[str] = None
        self.count = 0  # failed logins on this connection
        self.last = 0.0  # when the last one was

    @property
    def key(self) -> str:
        """The address key failures are counted under."""
        if self._key is None:
            self._key = address_key(self.address)
        return self._key

    def failures(self, now: float) -> int:
        """Failed logins on this connection still remembered."""
        if self.count and now - self.last >= self.limiter.settings.failed_login_memory:
            self.count = 0
        return self.count

    def failed(self, now: float) -> None:
        self.count += 1
        self.last = now

    def succeeded(self) -> None:
        self.count = 0

    def login(self, credentials, mind, *interfaces) -> defer.Deferred:
        """``Portal.login``: password logins and SCRAM proofs are throttled, guest logins go
        straight through."""
        portal = self.limiter.portal
        if IScramProof.providedBy(credentials):
            # a proof is cheap to check, but each is a guess at the password all the same
            return self.limiter.attempt(
                self, "account " + credentials.username, lambda _lane: portal.login(credentials, mind, *interfaces)
            )
        if not IUsernamePassword.providedBy(credentials):
            return portal.login(credentials, mind, *interfaces)
        username, password = credentials.username, credentials.password

        def check(lane: Lane) -> defer.Deferred:
            return portal.login(ClientCredentials(username, password, lane), mind, *interfaces)

        return self.limiter.attempt(self, "account " + _text(username), check)

    def verify(
        self, kind: str, name: str, hashed: Optional[str], password: str, like: Optional[str] = None
    ) -> defer.Deferred:
        """Check ``password`` against ``hashed`` (each ``kind`` of name, e.g. "operator",
        has its own failure counts), throttled like a login; fires with True or False, or
        fails with ``LoginThrottled``.

        ``hashed`` None (no such name) verifies a dummy hash with the parameters of ``like``:
        the same work, so the answer takes as long whether or not the name exists."""
        hashing = self.limiter.hashing

        def check(lane: Lane) -> defer.Deferred:
            if hashed is None:
                d = hashing.check_dummy(password, like, lane)
            else:
                d = hashing.check(hashed, password, lane)
            return d.addCallback(matched)

        def matched(result) -> bool:
            if not result[0]:
                raise UnauthorizedLogin("wrong password")
            return True

        def refused(failure) -> bool:
            failure.trap(UnauthorizedLogin)
            if failure.check(LoginThrottled):
                return failure
            return False

        return self.limiter.attempt(self, f"{kind} {name}", check).addErrback(refused)

    def __getattr__(self, name):
        # the rest of the portal (realm, checkers) for whoever looks
        return getattr(self.limiter.portal, name)


def client_portal(portal, address: Optional[str]):
    """What a connection from ``address`` logs in through: ``portal.client(address)`` when
    ``portal`` is a ``LoginLimiter`` (or wraps one), else ``portal`` itself."""
    client = getattr(portal, "client", None)
    return client(address) if client is not None else portal


__all__ = [
    "LoginLimiter",
    "ClientLogins",
    "LoginThrottled",
    "LoginUnavailable",
    "ClientCredentials",
    "FailureTable",
    "client_portal",
    "lane_of",
    "address_key",
]
