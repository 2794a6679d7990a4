"""The login limiter (chathub/auth/limiter.py) on a task.Clock: the delays failed logins earn
per connection, address and account, the limits on attempts in flight, and the bounded tables.

The portal behind it is the server's own (``build_portal``) over an in-memory account
(``alice``), so every check answers at once and only the limiter's clock decides when."""
from __future__ import annotations

import threading

import pytest
import pytest_twisted
from argon2 import PasswordHasher
from twisted.cred import error
from twisted.cred.checkers import InMemoryUsernamePasswordDatabaseDontUse
from twisted.internet import defer, task, threads

from chathub.auth.checkers import Argon2FileChecker
from chathub.auth.credentials import GuestNick
from chathub.auth.hashing import PasswordHashing
from chathub.auth.limiter import LoginThrottled, address_key
from chathub.config import Config
from chathub.interfaces import IChatUser
from tests.support import CHEAP_HASHER, Chat, creds, until

MIND = object()


def limiter_world(**auth) -> Chat:
    """A hub and its limited portal (``portal``) with these ``[auth]`` settings, time from a Clock."""
    config = Config().with_overrides(auth={"checkers": [], **auth})
    checker = InMemoryUsernamePasswordDatabaseDontUse(alice=b"right", bob=b"right")
    return Chat(config, [checker], clock=task.Clock())


def login(world: Chat, address: str, name: str, password: str, client=None) -> defer.Deferred:
    client = client or world.portal.client(address)
    return client.login(creds(name, password), MIND, IChatUser)


def outcome(d: defer.Deferred):
    """What ``d`` has fired with: "ok", the failure's class, or None while it waits."""
    result = []
    d.addCallbacks(lambda r: result.append("ok"), lambda f: result.append(f.type))
    return result[0] if result else None


def waits_for(world: Chat, d: defer.Deferred, seconds: float):
    """Assert ``d`` is held exactly ``seconds`` of the world's clock; return its outcome."""
    if seconds > 0:
        world.clock.advance(seconds - 0.01)
        assert not d.called, f"answered before {seconds} s"
        world.clock.advance(0.01)
    return outcome(d)


def test_each_failure_doubles_the_wait_up_to_the_maximum(captured):
    world = limiter_world(login_delay=1.0, login_delay_max=60.0)
    attacker = world.portal.client("192.0.2.1")
    waits = []
    for failures in range(10):
        d = login(world, "", "alice", "guess", attacker)
        wait = world.portal.delay(failures)
        assert waits_for(world, d, wait) is error.UnauthorizedLogin
        waits.append(wait)
    assert waits == [0, 1, 2, 4, 8, 16, 32, 60, 60, 60]
    # one warning when the address, and the account, reach the longest delay
    warnings = [t for t in captured.texts() if "each further attempt waits 60 s" in t]
    assert warnings == [
        "7 failed logins from 192.0.2.1; each further attempt waits 60 s",
        "7 failed logins to account alice; each further attempt waits 60 s",
    ]
    # a new connection from the same address waits as long; another address not at all
    assert not login(world, "192.0.2.1", "bob", "right").called
    assert outcome(login(world, "192.0.2.2", "bob", "right")) == "ok"
    # nothing is held while nobody waits: the reactor only has the waiting attempt's timer
    assert len(world.clock.getDelayedCalls()) == 1


def test_the_owner_from_a_clean_address_is_not_held_back_by_guessers():
    world = limiter_world()
    # guessers from many addresses run alice's account count up (a first attempt from an
    # address is not held back by the account: the address has no failures yet)
    for i in range(8):
        assert outcome(login(world, f"198.51.100.{i}", "alice", "guess")) is error.UnauthorizedLogin
    assert world.portal.accounts.get("account alice", world.clock.seconds()).count == 8
    # a guesser that already failed waits for the account's delay ...
    held = login(world, "198.51.100.0", "alice", "guess2")
    assert not held.called
    # ... while alice from her own clean address logs in at once, and that resets the account
    assert outcome(login(world, "203.0.113.5", "alice", "right")) == "ok"
    assert world.portal.accounts.get("account alice", world.clock.seconds()) is None
    world.clock.advance(60)
    assert outcome(held) is error.UnauthorizedLogin


def test_attempts_in_flight_are_limited_per_address_and_per_account():
    world = limiter_world(login_checks_per_ip=3, login_checks_per_account=2)
    assert outcome(login(world, "192.0.2.1", "alice", "guess")) is error.UnauthorizedLogin
    # the address's next attempts wait for its delay; past three at once, refused at once
    waiting = [login(world, "192.0.2.1", f"name{i}", "guess") for i in range(3)]
    assert not any(d.called for d in waiting)
    assert outcome(login(world, "192.0.2.1", "name3", "guess")) is LoginThrottled
    assert world.portal.in_flight == {"192.0.2.1": 3}
    # other addresses are not affected
    assert outcome(login(world, "192.0.2.2", "bob", "right")) == "ok"
    world.clock.advance(60)
    for d in waiting:
        assert outcome(d) is error.UnauthorizedLogin
    # per account: addresses with failures of their own may have two attempts at bob waiting
    for i in range(3, 6):
        assert outcome(login(world, f"192.0.2.{i}", "carol", "x")) is error.UnauthorizedLogin
    bob = [login(world, f"192.0.2.{i}", "bob", "x") for i in (3, 4)]
    assert outcome(login(world, "192.0.2.5", "bob", "x")) is LoginThrottled
    # a clean address is never refused for what others do to the account
    assert outcome(login(world, "192.0.2.9", "bob", "right")) == "ok"
    world.clock.advance(60)
    assert [outcome(d) for d in bob] == [error.UnauthorizedLogin] * 2
    # everything answered: nothing left in the in-flight tables
    assert world.portal.in_flight == {} and world.portal.in_flight_accounts == {}
    assert world.portal.pending == 0


def test_the_server_wide_bound_refuses_at_once():
    world = limiter_world(login_checks_max=5, login_checks_per_ip=1)
    for i in range(5):
        assert outcome(login(world, f"192.0.2.{i}", "alice", "x")) is error.UnauthorizedLogin
    waiting = [login(world, f"192.0.2.{i}", f"name{i}", "x") for i in range(5)]
    assert world.portal.pending == 5
    throttled = []
    login(world, "192.0.2.99", "bob", "right").addErrback(throttled.append)
    assert throttled[0].check(LoginThrottled) and "busy" in throttled[0].getErrorMessage()
    world.clock.advance(60)
    assert all(d.called for d in waiting) and world.portal.pending == 0


def test_guest_logins_are_never_throttled():
    world = limiter_world(login_checks_per_ip=1)
    assert outcome(login(world, "192.0.2.1", "alice", "x")) is error.UnauthorizedLogin
    held = login(world, "192.0.2.1", "alice", "x")
    assert outcome(login(world, "192.0.2.1", "alice", "x")) is LoginThrottled
    guest = world.portal.client("192.0.2.1").login(GuestNick("visitor"), MIND, IChatUser)
    assert outcome(guest) == "ok"
    world.clock.advance(60)
    assert held.called


def test_success_clears_the_connection_but_not_the_address():
    world = limiter_world()
    client = world.portal.client("192.0.2.1")
    assert outcome(login(world, "", "alice", "x", client)) is error.UnauthorizedLogin
    d = login(world, "", "alice", "right", client)
    assert waits_for(world, d, 1.0) == "ok"
    assert client.count == 0
    # one's own account does not buy more guesses at others': the address keeps counting
    assert world.portal.addresses.get("192.0.2.1", world.clock.seconds()).count == 1
    assert outcome(login(world, "192.0.2.1", "bob", "x")) is error.UnauthorizedLogin
    assert waits_for(world, login(world, "192.0.2.1", "bob", "x"), 2.0) is error.UnauthorizedLogin


def test_failures_are_forgotten_after_the_memory_time():
    world = limiter_world(failed_login_memory=100.0, login_delay_max=60.0)
    client = world.portal.client("192.0.2.1")
    for _ in range(3):
        d = login(world, "", "alice", "x", client)
        world.clock.advance(60)
        assert outcome(d) is error.UnauthorizedLogin
    world.clock.advance(100)
    assert world.portal.addresses.get("192.0.2.1", world.clock.seconds()) is None
    assert outcome(login(world, "", "alice", "right", client)) == "ok"


def test_the_tables_stay_bounded_under_many_addresses_and_names():
    world = limiter_world(failed_login_table_size=50, login_checks_max=100000)
    now = world.clock.seconds
    for i in range(5000):
        address = f"10.{i // 65536}.{i // 256 % 256}.{i % 256}"
        assert outcome(login(world, address, f"name{i}", "x")) is error.UnauthorizedLogin
    assert len(world.portal.addresses) == 50 and len(world.portal.accounts) == 50
    assert world.portal.in_flight == {} and world.portal.in_flight_accounts == {}
    # while addresses are pushed out, every address counts as suspect: the account limits hold
    # even for one never seen
    assert world.portal.addresses.under_pressure(now())
    d = login(world, "10.200.0.1", "name4999", "x")
    assert waits_for(world, d, 1.0) is error.UnauthorizedLogin
    # everything is forgotten after the memory time; new failures do not find the old entries
    world.clock.advance(world.config.auth.failed_login_memory)
    assert not world.portal.addresses.under_pressure(now())
    assert outcome(login(world, "10.200.0.2", "alice", "x")) is error.UnauthorizedLogin
    assert len(world.portal.addresses) == 1 and len(world.portal.accounts) == 1


def test_long_names_and_ipv6_addresses_are_bounded_keys():
    world = limiter_world()
    assert outcome(login(world, "2001:db8::1", "a" * 10000, "x")) is error.UnauthorizedLogin
    (key,) = world.portal.accounts._entries
    assert len(key) == 64
    # another address in the same /64 is the same subscriber
    assert address_key("2001:db8::ffff") == address_key("2001:db8::1") == "2001:db8::/64"
    assert address_key("::ffff:192.0.2.1") == "192.0.2.1"
    assert not login(world, "2001:db8::2", "bob", "right").called


def test_a_zero_delay_turns_delays_off_but_keeps_the_limits():
    world = limiter_world(login_delay=0.0, login_delay_max=0.0)
    for _ in range(5):
        assert outcome(login(world, "192.0.2.1", "alice", "x")) is error.UnauthorizedLogin
    assert outcome(login(world, "192.0.2.1", "alice", "right")) == "ok"


# -- the argon2 queue: an attacker's queued checks do not hold up an honest one ---------------


class GatedHasher(PasswordHasher):
    """Cheap argon2 whose verifies wait (in their worker thread) until the test opens the
    gate, recording the order the verifies started in (by password)."""

    def __init__(self) -> None:
        super().__init__(time_cost=1, memory_cost=1024, parallelism=1)
        self.gate = threading.Event()
        self.started: list[str] = []
        self.lock = threading.Lock()
        self.running = threading.Semaphore(0)

    def verify(self, hashed, password):
        with self.lock:
            self.started.append(password if isinstance(password, str) else password.decode())
        self.running.release()
        assert self.gate.wait(10)
        return super().verify(hashed, password)


@pytest_twisted.inlineCallbacks
def test_an_honest_check_goes_before_the_attackers_queued_ones(tmp_path):
    hasher = GatedHasher()
    passwd = tmp_path / "passwd"
    passwd.write_text(f"alice:{CHEAP_HASHER.hash('right')}\n")
    hashing = PasswordHashing(hasher, concurrency=1)
    checker = Argon2FileChecker(str(passwd), hashing=hashing, reload_interval=0)
    config = Config().with_overrides(
        auth={"checkers": [], "login_delay": 0.0, "login_delay_max": 0.0, "login_checks_per_account": 10}
    )
    limiter = Chat(config, [checker]).portal
    # two attacker addresses, each with a failure behind it, fill the slot and queue more
    hasher.gate.set()
    for address in ("192.0.2.1", "192.0.2.2"):
        with pytest.raises(error.UnauthorizedLogin):
            yield limiter.client(address).login(creds("alice", f"first-{address}"), MIND, IChatUser)
    hasher.gate.clear()
    del hasher.started[:]
    attacks = [
        limiter.client(address).login(creds("alice", f"guess-{address}-{i}"), MIND, IChatUser)
        for i in range(3)
        for address in ("192.0.2.1", "192.0.2.2")
    ]
    assert (yield threads.deferToThread(hasher.running.acquire, timeout=10))
    yield defer.DeferredList([checker.reload()])  # the last lookup's file check is done
    assert hashing.queue.running == 1 and hashing.queue.waiting == 5
    honest = limiter.client("203.0.113.7").login(creds("alice", "right"), MIND, IChatUser)
    # the honest login re-reads the file (in a thread) before it queues its check: open the
    # gate only once it waits with the others, or an attacker's check may start first
    yield defer.ensureDeferred(until(lambda: hashing.queue.waiting == 6))
    hasher.gate.set()
    _, user, _ = yield honest
    assert user.account == "alice"
    yield defer.DeferredList(attacks, consumeErrors=True)
    # the honest check was the first to start after the one already running, and the
    # attackers' took turns, address by address
    assert hasher.started == [
        "guess-192.0.2.1-0", "right", "guess-192.0.2.2-0", "guess-192.0.2.1-1",
        "guess-192.0.2.2-1", "guess-192.0.2.1-2", "guess-192.0.2.2-2",
    ]
