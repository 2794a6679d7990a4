"""Credential checkers, the portal, and the passwd CLI."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest
import pytest_twisted
from twisted.cred import error, strcred
from twisted.cred.checkers import FilePasswordDB, ICredentialsChecker
from twisted.internet import defer
from zope.interface.verify import verifyObject

from chathub.auth.checkers import (
    GUEST,
    AnyOfCheckers,
    Argon2FileChecker,
    BytesOrTextChecker,
    CheckerDirectory,
    GuestChecker,
    answered_from_memory,
)
from chathub.auth.credentials import GuestNick
from chathub.config import Config
from chathub.interfaces import IAccountDirectory, IChatUser
from chathub.passwd import set_password
from tests.support import REPO, Chat, creds


@defer.inlineCallbacks
def refused(checker, credentials):
    """Fires with the UnauthorizedLogin the checker raised (fails the test if it accepted)."""
    try:
        avatar = yield defer.maybeDeferred(checker.requestAvatarId, credentials)
    except error.UnauthorizedLogin as e:
        return e
    raise AssertionError(f"accepted as {avatar!r}")


@pytest.fixture
def passwd(tmp_path):
    path = tmp_path / "passwd"
    set_password(str(path), "alice", "correct horse")
    return path


# checkers made here re-read their file only when asked (reload_interval=0): a periodic
# re-read is a reactor timer that would outlive the test (the one test of it stops it)


@pytest_twisted.inlineCallbacks
def test_argon2_file_checker(passwd):
    checker = Argon2FileChecker(str(passwd), reload_interval=0)
    verifyObject(ICredentialsChecker, checker)
    verifyObject(IAccountDirectory, checker)
    assert (yield checker.requestAvatarId(creds("alice", "correct horse"))) == "alice"
    assert (yield checker.requestAvatarId(creds("ALICE", "correct horse"))) == "alice"
    e = yield refused(checker, creds("alice", "wrong"))
    assert "wrong password" in str(e) and "correct horse" not in str(e)
    yield refused(checker, creds("mallory", "correct horse"))
    yield refused(checker, creds("alice", ""))
    assert checker.is_account("Alice") and not checker.is_account("bob")


@pytest_twisted.inlineCallbacks
def test_argon2_file_is_re_read_after_a_change(passwd):
    from twisted.internet import reactor

    checker = Argon2FileChecker(str(passwd), reload_interval=0.05)
    assert not checker.is_account("bob")
    set_password(str(passwd), "bob", "hunter22")
    assert not checker.is_account("BOB")  # the reactor never reads the file itself
    # the periodic re-read (in a thread) makes the nick stop being free before bob logs in
    while not checker.is_account("BOB"):
        yield checker.next_reload().addTimeout(5, reactor)
    checker.stop()
    assert (yield checker.requestAvatarId(creds("bob", "hunter22"))) == "bob"
    set_password(str(passwd), "alice", "new one")  # password changed
    yield refused(checker, creds("alice", "correct horse"))
    assert (yield checker.requestAvatarId(creds("alice", "new one"))) == "alice"
    passwd.write_text("# nobody\n")
    yield checker.reload()
    assert not checker.is_account("alice")
    yield refused(checker, creds("alice", "new one"))


@pytest_twisted.inlineCallbacks
def test_a_burst_of_reloads_shares_one_read_that_starts_after_them(passwd, monkeypatch):
    """Guest logins each ask for a fresh view of the file; those arriving while a read runs
    share the next read, which still sees a change made before they asked."""
    import chathub.auth.checkers as checkers_module

    reads = []
    real = checkers_module.read_if_changed

    def counting(path, version, parse):
        if path == str(passwd):  # not a late read of an earlier test's checker thread
            reads.append(path)
        return real(path, version, parse)

    monkeypatch.setattr(checkers_module, "read_if_changed", counting)
    checker = Argon2FileChecker(str(passwd), reload_interval=0)
    first = checker.reload()  # a read starts now
    set_password(str(passwd), "bob", "hunter22")  # changed after that read may have looked
    burst = [checker.reload() for _ in range(50)]
    yield defer.gatherResults([first] + burst)
    assert len(reads) == 2
    assert checker.is_account("bob")
    # a failed read fails the callers that waited for it, and the next one still runs
    monkeypatch.setattr(checkers_module, "read_if_changed", lambda path, version, parse: 1 / 0)
    failed = yield defer.DeferredList([checker.reload(), checker.reload()], consumeErrors=True)
    assert [ok for ok, _ in failed] == [False, False]
    monkeypatch.setattr(checkers_module, "read_if_changed", counting)
    yield checker.reload()
    assert len(reads) == 3


@pytest_twisted.inlineCallbacks
def test_argon2_file_missing_or_damaged(tmp_path):
    checker = Argon2FileChecker(str(tmp_path / "absent"), reload_interval=0)
    assert not checker.is_account("alice")
    yield refused(checker, creds("alice", "x"))
    damaged = tmp_path / "damaged"
    damaged.write_text("alice:not-a-hash\nno colon here\n\n# comment:x\n")
    checker = Argon2FileChecker(str(damaged), reload_interval=0)
    assert checker.is_account("alice") and not checker.is_account("# comment")
    yield refused(checker, creds("alice", "not-a-hash"))


@pytest_twisted.inlineCallbacks
def test_guest_checker():
    directory = CheckerDirectory([strcred.makeChecker("memory:owner:pw")])
    allowed = GuestChecker(directory, allow_guests=True)
    assert (yield allowed.requestAvatarId(GuestNick("visitor"))) is GUEST
    e = yield refused(allowed, GuestNick("Owner"))
    assert "registered" in str(e)
    closed = GuestChecker(directory, allow_guests=False)
    e = yield refused(closed, GuestNick("visitor"))
    assert "guests are not allowed" in str(e)


def test_checker_directory_knows_stock_checkers(tmp_path, passwd):
    stock_file = tmp_path / "stock"
    stock_file.write_text("carol:pw3\n")
    in_memory = answered_from_memory(FilePasswordDB(str(stock_file)))
    directory = CheckerDirectory(
        [strcred.makeChecker("memory:Bob:pw2"), in_memory, Argon2FileChecker(str(passwd), reload_interval=0)]
    )
    in_memory.stop()  # its periodic re-read: the names it read stay
    assert directory.is_account("bob") and directory.is_account("BOB")
    assert directory.is_account("carol")
    assert directory.is_account("alice")
    assert not directory.is_account("dave")


@pytest_twisted.inlineCallbacks
def test_stock_checkers_accept_bytes_credentials(tmp_path):
    memory = BytesOrTextChecker(strcred.makeChecker("memory:alice:secret"))
    assert (yield memory.requestAvatarId(creds("alice", "secret"))) == "alice"
    yield refused(memory, creds("alice", "wrong"))
    stock_file = tmp_path / "stock"
    stock_file.write_text("carol:pw3\n")
    in_memory = answered_from_memory(FilePasswordDB(str(stock_file)))
    in_memory.stop()  # its periodic re-read: a password check re-reads the file anyway
    stock = BytesOrTextChecker(in_memory)
    assert (yield stock.requestAvatarId(creds("carol", "pw3"))) == b"carol"
    yield refused(stock, creds("carol", "nope"))


@pytest_twisted.inlineCallbacks
def test_any_of_checkers(passwd):
    memory = BytesOrTextChecker(strcred.makeChecker("memory:bob:pw2"))
    both = AnyOfCheckers([Argon2FileChecker(str(passwd), reload_interval=0), memory])
    assert set(both.credentialInterfaces) == set(memory.credentialInterfaces)
    assert (yield both.requestAvatarId(creds("alice", "correct horse"))) == "alice"
    assert (yield both.requestAvatarId(creds("bob", "pw2"))) == "bob"
    yield refused(both, creds("bob", "correct horse"))
    yield refused(both, creds("nobody", "x"))
    # a checker for other credential kinds is skipped, not asked
    mixed = AnyOfCheckers([GuestChecker(CheckerDirectory([]), True), memory])
    assert (yield mixed.requestAvatarId(creds("bob", "pw2"))) == "bob"


@pytest_twisted.inlineCallbacks
def test_portal_logs_in_guests_and_accounts(passwd):
    config = Config().with_overrides(auth={"checkers": []})
    chat = Chat(config, [Argon2FileChecker(str(passwd), reload_interval=0), strcred.makeChecker("memory:bob:pw2")])
    hub, portal = chat.hub, chat.portal
    assert hub.accounts.is_account("alice") and hub.accounts.is_account("bob")
    mind = object()
    iface, guest, logout = yield portal.login(GuestNick("visitor"), mind, IChatUser)
    assert iface is IChatUser and guest.account is None and guest.participant is mind
    _, alice, _ = yield portal.login(creds("alice", "correct horse"), mind, IChatUser)
    assert alice.account == "alice"
    _, bob, _ = yield portal.login(creds("bob", "pw2"), mind, IChatUser)
    assert bob.account == "bob"
    with pytest.raises(error.UnauthorizedLogin):
        yield portal.login(creds("alice", "pw2"), mind, IChatUser)
    with pytest.raises(error.UnauthorizedLogin):
        yield portal.login(GuestNick("ALICE"), mind, IChatUser)


def run_passwd(*args: str, stdin: str, cwd) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.run(
        [sys.executable, "-m", "chathub.passwd", *args],
        input=stdin,
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=60,
    )


@pytest_twisted.inlineCallbacks
def test_passwd_cli_end_to_end(tmp_path):
    path = tmp_path / "data" / "passwd"
    result = run_passwd(str(path), "Alice", stdin="s3cret-pass\n", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "s3cret-pass" not in result.stdout + result.stderr
    text = path.read_text()
    assert text.startswith("Alice:$argon2id$") and "s3cret-pass" not in text
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    result = run_passwd(str(path), "bob", stdin="other-pass\n", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    result = run_passwd(str(path), "ALICE", stdin="changed-pass\n", cwd=tmp_path)  # replaces, any case
    assert result.returncode == 0, result.stderr
    lines = path.read_text().splitlines()
    assert [line.split(":")[0] for line in lines] == ["bob", "ALICE"]
    checker = Argon2FileChecker(str(path), reload_interval=0)
    assert (yield checker.requestAvatarId(creds("alice", "changed-pass"))) == "alice"
    assert (yield checker.requestAvatarId(creds("bob", "other-pass"))) == "bob"
    yield refused(checker, creds("alice", "s3cret-pass"))


def test_passwd_cli_refuses_bad_input(tmp_path):
    path = tmp_path / "passwd"
    result = run_passwd(str(path), "not a nick", stdin="pw\n", cwd=tmp_path)
    assert result.returncode != 0 and "not a valid nick" in result.stderr
    result = run_passwd(str(path), "alice", stdin="\n", cwd=tmp_path)
    assert result.returncode != 0 and "empty password" in result.stderr
    result = run_passwd(str(path), stdin="", cwd=tmp_path)
    assert result.returncode != 0
    assert not path.exists()
    result = run_passwd("--hash", stdin="for-an-operator\n", cwd=tmp_path)
    assert result.returncode == 0 and result.stdout.startswith("$argon2id$")
    assert "for-an-operator" not in result.stdout
