"""Argon2 hashing off the reactor, a bounded number at a time, shared by every password check.

Each argon2 run costs tens of MiB and a core for a noticeable time, so a burst of logins
(IRC PASS/SASL, WebSocket, OPER, account registration) must neither block the reactor nor
fill the thread pool: all of them go through one ``PasswordHashing`` whose semaphore lets
``concurrency`` runs proceed at once and queues the rest.
"""
from __future__ import annotations

from typing import Callable, Optional

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from twisted.internet import defer, threads

#: how many argon2 runs may proceed at once, server-wide
DEFAULT_CONCURRENCY = 2


#: the one limit every ``PasswordHashing`` shares unless given its own
SHARED_SLOTS = defer.DeferredSemaphore(DEFAULT_CONCURRENCY)


class PasswordHashing:
    """argon2 ``hash``/``verify``/``check`` returning Deferreds, run in the reactor's thread
    pool; all instances share ``SHARED_SLOTS`` (two runs at once) unless given ``concurrency``.

    A custom ``hasher`` (other argon2 parameters) still counts against the shared limit.
    """

    def __init__(
        self,
        hasher: Optional[PasswordHasher] = None,
        concurrency: Optional[int] = None,
        reactor=None,
    ) -> None:
        if reactor is None:
            from twisted.internet import reactor
        self._reactor = reactor
        self.hasher = hasher or PasswordHasher()
        self.slots = SHARED_SLOTS if concurrency is None else defer.DeferredSemaphore(concurrency)

    def run(self, fn: Callable, *args) -> defer.Deferred:
        """Run ``fn(*args)`` in a thread once a slot is free (for hashing work only)."""
        return self.slots.run(
            threads.deferToThreadPool, self._reactor, self._reactor.getThreadPool(), fn, *args
        )

    def hash(self, password: str) -> defer.Deferred:
        """Fires with an argon2 hash of ``password``."""
        return self.run(self.hasher.hash, password)

    def _check(self, hashed: str, password: str) -> tuple[bool, bool]:
        # runs in a thread
        try:
            self.hasher.verify(hashed, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False, False
        return True, self.hasher.check_needs_rehash(hashed)

    def verify(self, hashed: str, password: str) -> defer.Deferred:
        """Fires with True when ``password`` matches ``hashed`` (False for a malformed hash)."""
        return self.check(hashed, password).addCallback(lambda result: result[0])

    def check(self, hashed: str, password: str) -> defer.Deferred:
        """Fires with (matches, needs rehash): one thread hop for both answers."""
        return self.run(self._check, hashed, password)

    def needs_rehash(self, hashed: str) -> bool:
        """Whether ``hashed`` was made with weaker parameters than ours (cheap: no hashing)."""
        return self.hasher.check_needs_rehash(hashed)


_default: Optional[PasswordHashing] = None


def default_hashing() -> PasswordHashing:
    """A ``PasswordHashing`` with the default argon2 parameters on the global reactor."""
    global _default
    if _default is None:
        _default = PasswordHashing()
    return _default


__all__ = ["PasswordHashing", "default_hashing", "SHARED_SLOTS", "DEFAULT_CONCURRENCY"]
