"""No timing oracle (issue 10, item 10): a refused login does the same argon2 work whether or
not the name exists, for the password file, the store and OPER.

Not a timing assertion: a real ``PasswordHasher`` subclass records every verify and the
argon2 parameters of the hash it verified, and each refusal must be exactly one verify on a
hash of the same parameters. (``python bench/login_timing.py`` measures the times.)"""
from __future__ import annotations

import pytest
import pytest_twisted
from argon2 import PasswordHasher, extract_parameters
from twisted.cred.error import UnauthorizedLogin
from twisted.internet import task

from chathub.auth.accounts import StoreAccountChecker
from chathub.auth.checkers import AnyOfCheckers, Argon2FileChecker
from chathub.auth.hashing import PasswordHashing
from chathub.config import Config
from tests.store_fixtures import *  # noqa: F401,F403 (fixtures)
from tests.support import Chat, creds


class RecordingHasher(PasswordHasher):
    """Cheap argon2 that notes the parameters of every hash it verifies."""

    def __init__(self, time_cost: int = 1) -> None:
        super().__init__(time_cost=time_cost, memory_cost=1024, parallelism=1)
        self.verified: list = []

    def verify(self, hashed, password):
        self.verified.append(extract_parameters(hashed if isinstance(hashed, str) else hashed.decode()))
        return super().verify(hashed, password)

    def take(self) -> list:
        verified, self.verified = self.verified, []
        return verified


async def refused(checker, credentials) -> None:
    with pytest.raises(UnauthorizedLogin):
        await checker.requestAvatarId(credentials)


@pytest_twisted.ensureDeferred
async def test_password_file_alone_unknown_name_and_wrong_password_do_the_same_work(tmp_path):
    # the file's hashes were made with other parameters than the checker's hasher: the
    # dummy copies the file's, so it costs what a real one does
    file_hasher = PasswordHasher(time_cost=2, memory_cost=2048, parallelism=1)
    passwd = tmp_path / "passwd"
    passwd.write_text(f"alice:{file_hasher.hash('right')}\n")
    hasher = RecordingHasher(time_cost=1)
    checker = Argon2FileChecker(str(passwd), hashing=PasswordHashing(hasher), reload_interval=0)
    await refused(checker, creds("alice", "wrong"))
    wrong = hasher.take()
    await refused(checker, creds("mallory", "wrong"))
    unknown = hasher.take()
    assert len(wrong) == len(unknown) == 1
    assert wrong == unknown == [extract_parameters(file_hasher.hash("x"))]
    assert await checker.requestAvatarId(creds("alice", "right")) == "alice"
    assert len(hasher.take()) == 1


@pytest_twisted.ensureDeferred
async def test_store_then_file_as_configured_one_verify_whatever_the_name(tmp_path, store):
    """[auth] checkers = ["store", "argon2file"]: before, a wrong password for a file account
    cost two verifies (the store's dummy, then the file's) and an unknown name one."""
    hasher = RecordingHasher()
    hashing = PasswordHashing(hasher)
    accounts = StoreAccountChecker(store, hashing=hashing)
    await accounts.load()
    await accounts.create_account("bob", "right")
    passwd = tmp_path / "passwd"
    passwd.write_text(f"alice:{hasher.hash('right')}\n")
    both = AnyOfCheckers([accounts, Argon2FileChecker(str(passwd), hashing=hashing, reload_interval=0)])
    hasher.take()
    work = {}
    for label, name in (("unknown", "mallory"), ("file account", "alice"), ("store account", "bob")):
        await refused(both, creds(name, "wrong"))
        work[label] = hasher.take()
    ours = [extract_parameters(hasher.hash("x"))]
    assert work == {"unknown": ours, "file account": ours, "store account": ours}
    assert await both.requestAvatarId(creds("alice", "right")) == "alice"
    assert await both.requestAvatarId(creds("bob", "right")) == "bob"
    assert len(hasher.take()) == 2
    await accounts.idle()


@pytest_twisted.ensureDeferred
async def test_oper_unknown_name_and_wrong_password_do_the_same_work():
    operator_hasher = PasswordHasher(time_cost=2, memory_cost=2048, parallelism=1)
    config = Config().with_overrides(
        auth={"checkers": []},
        irc={
            "flood_exempt": ["127.0.0.0/8"],
            "operators": [{"name": "boss", "password_hash": operator_hasher.hash("right"), "hostmask": "*@10.*"}],
        },
    )
    hasher = RecordingHasher()
    world = Chat(config, clock=task.Clock(), hashing=PasswordHashing(hasher))
    replies = {}
    # each from its own address, so no attempt waits for another's failure
    for i, (label, line) in enumerate(
        (("unknown", "OPER nobody wrong"), ("wrong password", "OPER boss wrong"), ("wrong host", "OPER boss right"))
    ):
        c = world.irc_conn(host=f"127.0.0.{i + 2}")
        c.send(f"NICK u{i}", "USER u 0 * :U")
        await c.written("001")
        c.send(line)
        replies[label] = ([m.command for m in await c.written("464" if i < 2 else "491")], hasher.take())
    operator = [extract_parameters(operator_hasher.hash("x"))]
    # one verify, on a hash with the operators' parameters, whatever the name; the host is
    # only looked at after a right password, so 491 tells nothing to a guesser
    assert replies == {
        "unknown": (["464"], operator),
        "wrong password": (["464"], operator),
        "wrong host": (["491"], operator),
    }
