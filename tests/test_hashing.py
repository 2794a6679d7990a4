"""The shared argon2 limit: every password check runs in a thread, a bounded number at once,
in a fair order (clean addresses first, then the other lanes in turn)."""
from __future__ import annotations

import threading

import pytest_twisted
from argon2 import PasswordHasher
from twisted.internet import defer

from twisted.cred import strcred
from twisted.cred.credentials import IUsernamePassword

from chathub.app import ChathubService
from chathub.auth.checkers import Argon2FileChecker
from chathub.auth.hashing import DEFAULT_CONCURRENCY, FairQueue, Lane, PasswordHashing
from chathub.config import Config


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
    # the store checker, the password file checker and OPER (the limiter's) use one queue,
    # built by the server with [auth] hash_concurrency slots
    config = Config().with_overrides(server={"data_dir": str(tmp_path)}, auth={"hash_concurrency": 3})
    server = ChathubService(config, [strcred.makeChecker("memory:bob:pw")])
    checkers = server.portal.portal.checkers[IUsernamePassword].checkers
    file_checker = next(c for c in checkers if isinstance(c, Argon2FileChecker))
    queue = server.accounts.hashing.queue
    assert queue.limit == 3 and DEFAULT_CONCURRENCY == 2
    assert file_checker.hashing.queue is queue
    assert server.portal.hashing.queue is queue
    file_checker.stop()


def _order(queue: FairQueue, lanes) -> list:
    """Queue one acquisition per lane (all slots taken first), release them one by one, and
    return the lanes in the order they got a slot."""
    served: list = []
    for lane in lanes:
        queue.acquire(lane).addCallback(lambda _, lane=lane: served.append(lane))
    while len(served) < len(lanes):
        queue.release()
    return served


def test_fair_queue_serves_clean_addresses_first_then_lanes_in_turn():
    queue = FairQueue(2)
    held = [queue.acquire(None), queue.acquire(None)]
    assert all(d.called for d in held) and queue.running == 2
    attacker = [Lane("10.0.0.1", first=False) for _ in range(5)]
    other = Lane("10.0.0.2", first=False)
    honest = Lane("10.0.0.9", first=True)
    registration = None  # work for no client: the lane None, with the others
    served = _order(queue, attacker + [other, registration, honest])
    # the clean address first, whatever queued before it; then one run per lane in turn
    assert served[0] is honest
    assert served[1:4] == [attacker[0], other, registration]
    assert served[4:] == attacker[1:]
    assert queue.running == 2 and queue.waiting == 0
    queue.release()
    queue.release()
    assert queue.running == 0


def test_fair_queue_bounds_what_runs():
    queue = FairQueue(1)
    ran: list[int] = []
    gates = [defer.Deferred() for _ in range(3)]

    def job(i):
        ran.append(i)
        return gates[i]

    results = [queue.run(job, i, lane=Lane(f"a{i}", first=False)) for i in range(3)]
    assert ran == [0] and queue.waiting == 2
    gates[0].callback("done")
    assert ran == [0, 1] and results[0].result == "done"
    gates[1].errback(ValueError("x"))  # a failed run gives its slot back too
    assert ran == [0, 1, 2]
    results[1].addErrback(lambda f: f.trap(ValueError))
    gates[2].callback(None)
    assert queue.running == 0 and queue.waiting == 0
