"""StoreAccountChecker: twisted.cred logins and registration over stored argon2 hashes."""
from __future__ import annotations

import threading

import pytest
import pytest_twisted
from argon2 import PasswordHasher
from twisted.cred.checkers import ICredentialsChecker
from twisted.cred.credentials import UsernamePassword
from twisted.cred.error import UnauthorizedLogin
from twisted.cred.portal import IRealm, Portal
from zope.interface import implementer
from zope.interface.verify import verifyObject

from chathub.auth.accounts import REFUSED, StoreAccountChecker
from chathub.interfaces import IAccountDirectory, IAccountCreator
from chathub.store import AccountExists, NoSuchAccount
from tests.store_fixtures import *  # noqa: F401,F403 (fixtures)


def cheap_hasher(time_cost: int = 1) -> PasswordHasher:
    """Fast parameters for tests; production uses argon2-cffi's defaults."""
    return PasswordHasher(time_cost=time_cost, memory_cost=1024, parallelism=1)


class RecordingHasher(PasswordHasher):
    """Notes the thread each hash/verify runs in."""

    def __init__(self, **kw) -> None:
        super().__init__(**kw)
        self.threads: list[str] = []

    def hash(self, *a, **kw):
        self.threads.append(threading.current_thread().name)
        return super().hash(*a, **kw)

    def verify(self, *a, **kw):
        self.threads.append(threading.current_thread().name)
        return super().verify(*a, **kw)


@pytest_twisted.async_fixture
async def checker(store):
    c = StoreAccountChecker(store, RecordingHasher(time_cost=1, memory_cost=1024, parallelism=1))
    await c.load()
    return c


def test_provides_the_interfaces(checker):
    for interface in (ICredentialsChecker, IAccountDirectory, IAccountCreator):
        assert verifyObject(interface, checker)


@pytest_twisted.ensureDeferred
async def test_register_then_login(checker, store):
    account = await checker.create_account("Alice", "correct horse")
    assert account.name == "Alice"
    stored = await store.get_account("alice")
    assert stored.password_hash.startswith("$argon2id$")
    assert "correct horse" not in stored.password_hash
    assert checker.is_account("ALICE") and not checker.is_account("bob")
    # the account logs in under its name as registered, whatever case the client gave
    assert await checker.requestAvatarId(UsernamePassword(b"alice", b"correct horse")) == "Alice"
    assert await checker.requestAvatarId(UsernamePassword("ALICE", "correct horse")) == "Alice"
    await checker.idle()
    assert (await store.get_account("alice")).last_seen is not None  # recorded in the background
    # hashing and verifying never ran on the reactor thread
    main = threading.main_thread().name
    assert checker.hasher.threads and main not in checker.hasher.threads


@pytest_twisted.ensureDeferred
async def test_refusals_do_not_tell_which_accounts_exist(checker):
    await checker.create_account("alice", "pw")
    with pytest.raises(UnauthorizedLogin) as wrong:
        await checker.requestAvatarId(UsernamePassword(b"alice", b"nope"))
    with pytest.raises(UnauthorizedLogin) as unknown:
        await checker.requestAvatarId(UsernamePassword(b"mallory", b"pw"))
    assert str(wrong.value) == str(unknown.value) == REFUSED


@pytest_twisted.ensureDeferred
async def test_register_refuses_a_taken_name_in_any_case(checker, store):
    await checker.create_account("alice", "pw")
    with pytest.raises(AccountExists):
        await checker.create_account("ALICE", "other")
    # taken by another server sharing the database: the store refuses, the set learns
    await store.create_account("bob", "hash-from-elsewhere")
    assert not checker.is_account("bob")
    with pytest.raises(AccountExists):
        await checker.create_account("Bob", "pw")
    assert checker.is_account("bob")


@pytest_twisted.ensureDeferred
async def test_load_primes_is_registered(store):
    await store.create_account("Carol", "h")
    fresh = StoreAccountChecker(store, cheap_hasher())
    assert not fresh.is_account("carol")
    assert await fresh.load() == 1
    assert fresh.is_account("CAROL")


@pytest_twisted.ensureDeferred
async def test_outdated_hash_is_upgraded_on_login(store):
    old = cheap_hasher(time_cost=1)
    await store.create_account("dave", old.hash("pw"))
    checker = StoreAccountChecker(store, cheap_hasher(time_cost=2))
    await checker.load()
    assert await checker.requestAvatarId(UsernamePassword(b"dave", b"pw")) == "dave"
    await checker.idle()
    upgraded = await store.get_account("dave")
    assert not checker.hasher.check_needs_rehash(upgraded.password_hash)
    assert await checker.requestAvatarId(UsernamePassword(b"dave", b"pw")) == "dave"


@pytest_twisted.ensureDeferred
async def test_set_password_and_unregister(checker, store):
    await checker.create_account("erin", "old")
    await checker.set_password("Erin", "new")
    with pytest.raises(UnauthorizedLogin):
        await checker.requestAvatarId(UsernamePassword(b"erin", b"old"))
    assert await checker.requestAvatarId(UsernamePassword(b"erin", b"new")) == "erin"
    with pytest.raises(NoSuchAccount):
        await checker.set_password("nobody", "x")
    assert await checker.unregister("ERIN") is True
    assert not checker.is_account("erin")


@implementer(IRealm)
class EchoRealm:
    def requestAvatar(self, avatar_id, mind, *interfaces):
        return interfaces[0], avatar_id, lambda: None


@pytest_twisted.ensureDeferred
async def test_works_through_a_portal(checker):
    await checker.create_account("frank", "pw")
    portal = Portal(EchoRealm(), [checker])
    _, avatar, _ = await portal.login(UsernamePassword(b"frank", b"pw"), None, IAccountDirectory)
    assert avatar == "frank"


@pytest_twisted.ensureDeferred
async def test_login_while_the_database_is_unavailable(checker, store):
    await checker.create_account("gina", "pw")
    await store.close()
    with pytest.raises(UnauthorizedLogin) as e:
        await checker.requestAvatarId(UsernamePassword(b"gina", b"pw"))
    assert "unavailable" in str(e.value)
