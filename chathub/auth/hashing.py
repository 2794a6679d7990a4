"""Argon2 hashing off the reactor, a bounded number at a time, in a fair order.

Each argon2 run costs tens of MiB and a core for a noticeable time, so a burst of logins
(IRC PASS/SASL, WebSocket, OPER, account registration) must neither block the reactor nor
fill the thread pool: all of them go through one ``PasswordHashing`` (built at start-up and
handed to every checker) whose ``FairQueue`` lets ``concurrency`` runs proceed at once.

The queue is where honest users would wait behind an attacker, so it is not first come,
first served: each run names its *lane* (the client address it is for, see
``chathub.auth.limiter``), lanes take turns, and lanes of addresses without recent failed
logins go before all others. An attacker's queued guesses then delay an honest login by
the runs already under way, not by the length of the attacker's queue.
"""
from __future__ import annotations

import dataclasses
from collections import OrderedDict, deque
from typing import Callable, Hashable, Optional

from argon2 import Parameters, PasswordHasher, extract_parameters
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from argon2.low_level import ARGON2_VERSION
from twisted.internet import defer, threads
from twisted.python.failure import Failure

#: how many argon2 runs may proceed at once, by default (``[auth] hash_concurrency``)
DEFAULT_CONCURRENCY = 2

#: what a dummy hash hides (any text would do: nobody's password is compared with it)
_DUMMY_PASSWORD = "chathub: no such account"
#: dummy hashes kept, one per argon2 parameter set in use (normally one or two)
_MAX_DUMMIES = 8


class Lane:
    """Whom a hashing run is for: ``key`` (a client address) and whether that address is in
    good standing (``first``: no recent failed login), which puts it ahead of the others."""

    __slots__ = ("key", "first")

    def __init__(self, key: Hashable, first: bool) -> None:
        self.key = key
        self.first = first

    def __repr__(self) -> str:
        return f"Lane({self.key!r}, first={self.first})"


class FairQueue:
    """A counting semaphore whose waiters are served by lane, not by arrival.

    Two tiers: lanes in good standing, then every other lane (work for no client, such as
    hashing a new account's password, is the lane ``None`` of the second tier). Within a
    tier the lanes take turns, one run each, in the order they first queued. The number
    of waiters is bounded by the callers (``LoginLimiter`` bounds logins in flight).
    """

    def __init__(self, concurrency: int = DEFAULT_CONCURRENCY) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self.limit = concurrency
        self.running = 0
        self.waiting = 0  # acquisitions waiting for a slot
        self._tiers: tuple[OrderedDict, OrderedDict] = (OrderedDict(), OrderedDict())

    def acquire(self, lane: Optional[Lane] = None) -> defer.Deferred:
        """Fires (with None) once a slot is this caller's; ``release()`` it afterwards."""
        d: defer.Deferred = defer.Deferred()
        if self.running < self.limit and not self.waiting:
            self.running += 1
            d.callback(None)
            return d
        tier = self._tiers[0 if lane is not None and lane.first else 1]
        key = None if lane is None else lane.key
        queue = tier.get(key)
        if queue is None:
            queue = tier[key] = deque()
        queue.append(d)
        self.waiting += 1
        return d

    def release(self) -> None:
        """Give a slot back: the next lane in turn gets it."""
        for tier in self._tiers:
            if tier:
                key, queue = tier.popitem(last=False)
                d = queue.popleft()
                if queue:
                    tier[key] = queue  # to the back: the other lanes go first
                self.waiting -= 1
                d.callback(None)  # the slot passes straight on: ``running`` stays
                return
        self.running -= 1

    def run(self, fn: Callable, *args, lane: Optional[Lane] = None) -> defer.Deferred:
        """``fn(*args)`` (which may return a Deferred) once a slot is free; the slot is
        released when it is done."""

        def go(_):
            d = defer.maybeDeferred(fn, *args)
            d.addBoth(done)
            return d

        def done(result):
            self.release()
            return result

        return self.acquire(lane).addCallback(go)


class PasswordHashing:
    """argon2 ``hash``/``verify``/``check`` returning Deferreds, run in the reactor's thread
    pool under a ``FairQueue`` of ``concurrency`` slots (or the ``queue`` given, to share it).

    One instance is made at start-up and handed to every checker and to OPER, so one limit
    covers every password check of the server.
    """

    def __init__(
        self,
        hasher: Optional[PasswordHasher] = None,
        concurrency: Optional[int] = None,
        reactor=None,
        queue: Optional[FairQueue] = None,
    ) -> None:
        if reactor is None:
            from twisted.internet import reactor
        self._reactor = reactor
        self.hasher = hasher or PasswordHasher()
        self.queue = queue or FairQueue(concurrency or DEFAULT_CONCURRENCY)
        # argon2 parameters (as a tuple) -> dummy hash, or the Deferreds waiting while it is made
        self._dummies: dict[tuple, "str | list[defer.Deferred]"] = {}

    def run(self, fn: Callable, *args, lane: Optional[Lane] = None) -> defer.Deferred:
        """Run ``fn(*args)`` in a thread once a slot is free (for hashing work only)."""
        return self.queue.run(
            threads.deferToThreadPool, self._reactor, self._reactor.getThreadPool(), fn, *args, lane=lane
        )

    def hash(self, password: str, lane: Optional[Lane] = None) -> defer.Deferred:
        """Fires with an argon2 hash of ``password``."""
        return self.run(self.hasher.hash, password, lane=lane)

    def _check(self, hashed: str, password: str) -> tuple[bool, bool]:
        # runs in a thread
        try:
            self.hasher.verify(hashed, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False, False
        return True, self.hasher.check_needs_rehash(hashed)

    def verify(self, hashed: str, password: str, lane: Optional[Lane] = None) -> defer.Deferred:
        """Fires with True when ``password`` matches ``hashed`` (False for a malformed hash)."""
        return self.check(hashed, password, lane).addCallback(lambda result: result[0])

    def check(self, hashed: str, password: str, lane: Optional[Lane] = None) -> defer.Deferred:
        """Fires with (matches, needs rehash): one thread hop for both answers."""
        return self.run(self._check, hashed, password, lane=lane)

    def needs_rehash(self, hashed: str) -> bool:
        """Whether ``hashed`` was made with weaker parameters than ours (cheap: no hashing)."""
        return self.hasher.check_needs_rehash(hashed)

    # -- the same work for a name that does not exist -------------------------------------

    def dummy_hash(self, like: Optional[str] = None) -> defer.Deferred:
        """Fires with a hash of nobody's password made with the argon2 parameters of
        ``like`` (a stored hash), or of our hasher when ``like`` is None or unreadable.

        Made once per parameter set, in a thread, and kept."""
        key = dataclasses.astuple(self._parameters(like))
        made = self._dummies.get(key)
        if isinstance(made, str):
            return defer.succeed(made)
        d: defer.Deferred = defer.Deferred()
        if made is not None:
            made.append(d)  # being made: wait for that one
            return d
        if len(self._dummies) >= _MAX_DUMMIES:
            self._dummies.clear()
        waiters = self._dummies[key] = [d]
        hasher = PasswordHasher.from_parameters(Parameters(*key))
        self.run(hasher.hash, _DUMMY_PASSWORD).addBoth(self._dummy_made, key, waiters)
        return d

    def _dummy_made(self, result, key: tuple, waiters: list) -> None:
        if isinstance(result, Failure):
            self._dummies.pop(key, None)
            for d in waiters:
                d.errback(result)
            return
        self._dummies[key] = result
        for d in waiters:
            d.callback(result)

    def _parameters(self, like: Optional[str]) -> Parameters:
        if like:
            try:
                return extract_parameters(like)
            except (InvalidHashError, ValueError, TypeError):
                pass  # a damaged stored hash: our own parameters
        h = self.hasher
        return Parameters(
            type=h.type, version=ARGON2_VERSION, salt_len=h.salt_len, hash_len=h.hash_len,
            time_cost=h.time_cost, memory_cost=h.memory_cost, parallelism=h.parallelism,
        )

    def check_dummy(self, password: str, like: Optional[str] = None, lane: Optional[Lane] = None) -> defer.Deferred:
        """Verify ``password`` against a dummy hash with the parameters of ``like``: the work
        of a real check, for a name nobody has, so a refusal takes as long either way.
        Fires with (False, False)."""
        d = self.dummy_hash(like)
        d.addCallback(lambda dummy: self.check(dummy, password, lane))
        return d.addCallback(lambda _: (False, False))


__all__ = ["PasswordHashing", "FairQueue", "Lane", "DEFAULT_CONCURRENCY"]
