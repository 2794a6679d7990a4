"""The shared argon2 limit: every password check runs in a thread, a bounded number at once."""
from __future__ import annotations

import threading

import pytest_twisted
from argon2 import PasswordHasher
from twisted.internet import defer

from chathub.auth import hashing
from chathub.auth.checkers import Argon2FileChecker
from chathub.auth.hashing import SHARED_SLOTS, PasswordHashing, default_hashing
from chathub.store.accounts import StoreAccountChecker


def cheap() -> PasswordHasher:
    return PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)


class CountingHasher(PasswordHasher):
    """Counts the argon2 runs in progress at once (in the worker threads, under a lock)."""

    def __init__(self, release: threading.Event) -> None:
        super().__init__(time_cost=1, memory_cost=1024, parallelism=1)
        self.lock = threading.Lock()
        self.running = 0
        self.most = 0
        self.threads: set[int] = set()
        self.started = threading.Semaphore(0)
        self.release = release

    def verify(self, hashed, password):
        with self.lock:
            self.running += 1
            self.most = max(self.most, self.running)
            self.threads.add(threading.get_ident())
        self.started.release()
        try:
            # hold the slot until the test lets go, so the others pile up behind it
            assert self.release.wait(10)
            return super().verify(hashed, password)
        finally:
            with self.lock:
                self.running -= 1


@pytest_twisted.inlineCallbacks
def test_hash_and_verify_run_in_threads():
    h = PasswordHashing(cheap())
    hashed = yield h.hash("s3cret")
    assert hashed.startswith("$argon2id$") and "s3cret" not in hashed
    assert (yield h.verify(hashed, "s3cret")) is True
    assert (yield h.verify(hashed, "wrong")) is False
    assert (yield h.verify("not-a-hash", "s3cret")) is False
    assert (yield h.check(hashed, "s3cret")) == (True, False)
    assert not h.needs_rehash(hashed)
    assert PasswordHashing(PasswordHasher(time_cost=5, memory_cost=1024, parallelism=1)).needs_rehash(hashed)


@pytest_twisted.inlineCallbacks
def test_at_most_two_verifications_at_once():
    release = threading.Event()
    hasher = CountingHasher(release)
    h = PasswordHashing(hasher, concurrency=2)
    hashed = cheap().hash("pw")
    results = [h.verify(hashed, "pw") for _ in range(5)]
    # wait (in a thread, off the reactor) until two runs have started, then let them all go
    from twisted.internet import threads

    started = yield threads.deferToThread(lambda: hasher.started.acquire(timeout=10) and hasher.started.acquire(timeout=10))
    assert started
    assert hasher.running == 2  # the other three wait for a slot, not for a thread
    release.set()
    assert (yield defer.gatherResults(results)) == [True] * 5
    assert hasher.most == 2
    assert threading.get_ident() not in hasher.threads


def test_every_password_check_shares_one_limit(tmp_path):
    # the store checker, the password file checker and OPER (default_hashing) use SHARED_SLOTS
    assert SHARED_SLOTS.limit == hashing.DEFAULT_CONCURRENCY == 2
    assert StoreAccountChecker(store=None, hasher=cheap()).hashing.slots is SHARED_SLOTS
    checker = Argon2FileChecker(str(tmp_path / "absent"), reload_interval=0)
    assert checker.hashing.slots is SHARED_SLOTS
    assert default_hashing().slots is SHARED_SLOTS
