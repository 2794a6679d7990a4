"""``--auth file:PATH``: the names come from memory; the file is read in a thread.

Twisted's ``FilePasswordDB`` reads its file on every lookup, and every nick check asked it
whether the nick is an account: one open and read of the file on the reactor per NICK,
JOIN-time check or guest login. Here the opens of a real file are counted (a Python audit
hook sees every ``open()`` of the process, and notes the thread that made it) while the hub
checks nicks, and while a name is added to the file and re-read.
"""
from __future__ import annotations

import os
import sys
import threading
from contextlib import contextmanager
from typing import Iterator

import pytest
import pytest_twisted
from twisted.cred import error, strcred
from twisted.cred.checkers import FilePasswordDB
from twisted.internet import reactor, task

from chathub.auth.checkers import InMemoryFilePasswordDB, ReloadingFile, read_password_file
from chathub.auth.credentials import GuestNick
from chathub.auth.portal import password_checkers
from chathub.config import Config
from chathub.hub import errors
from chathub.interfaces import IChatUser
from tests.support import Chat, creds

#: path -> the threads that opened it, for the files a test watches (see ``opened``)
_watched: dict[str, list[str]] = {}


def _count_opens(event: str, args: tuple) -> None:
    # an audit hook stays for the life of the process: it costs a dict lookup per open
    if event == "open" and _watched and isinstance(args[0], (str, bytes, os.PathLike)):
        threads = _watched.get(os.fsdecode(args[0]))
        if threads is not None:
            threads.append(threading.current_thread().name)


sys.addaudithook(_count_opens)


@contextmanager
def opened(path) -> Iterator[list[str]]:
    """The names of the threads that open ``path`` while in the block, one per open."""
    threads = _watched[str(path)] = []
    try:
        yield threads
    finally:
        del _watched[str(path)]


def append(path, line: str) -> None:
    """Add a line to the file, as an operator would (the test's own open, on its thread)."""
    with path.open("a") as f:
        f.write(line + "\n")


def assert_read_in_threads(opens: list[str], reactor_thread: str) -> None:
    """``opens`` (since just before one ``append``) are that append and reads in other threads."""
    assert opens.count(reactor_thread) == 1, opens  # the append itself
    assert len(opens) > 1, "the file was never read again"


def test_password_checkers_keep_auth_file_in_memory(tmp_path):
    path = tmp_path / "users"
    path.write_text("alice:pw1\n")
    config = Config().with_overrides(auth={"checkers": []})
    (checker,) = password_checkers(config, [strcred.makeChecker(f"file:{path}")])
    assert isinstance(checker, InMemoryFilePasswordDB)
    checker.stop()
    assert checker.names() == [b"alice"]


@pytest_twisted.inlineCallbacks
def test_nick_checks_never_open_the_file_and_a_new_name_is_read_in_a_thread(tmp_path):
    path = tmp_path / "users"
    path.write_text("alice:pw1\nCarol:pw3\n")
    checker = InMemoryFilePasswordDB(FilePasswordDB(str(path)), reload_interval=0.05)
    chat = Chat(Config().with_overrides(auth={"checkers": []}), [checker])
    hub, portal = chat.hub, chat.portal
    reactor_thread = threading.current_thread().name
    try:
        with opened(path) as opens:
            for _ in range(200):  # the file does not change: not one open, on any thread
                with pytest.raises(errors.NickRegistered):
                    hub.check_nick("ALICE")
                with pytest.raises(errors.NickRegistered):
                    hub.check_nick("carol")
                hub.check_nick("dave")
            yield checker.file.next_reload().addTimeout(5, reactor)  # a periodic re-read ran meanwhile
            assert opens == []

            mark = len(opens)
            append(path, "dave:pw2")
            hub.check_nick("dave")  # the reactor does not read the file: still free ...
            while not hub.accounts.is_account("dave"):  # ... until the periodic re-read
                yield checker.file.next_reload().addTimeout(5, reactor)
            with pytest.raises(errors.NickRegistered):
                hub.check_nick("DAVE")
            assert_read_in_threads(opens[mark:], reactor_thread)

            # a guest login re-reads the file first (in a thread) when it was last checked
            # a second ago or more, so a name added is an account for guests within a
            # second; a password login reads it too
            checker.stop()
            mark = len(opens)
            append(path, "erin:pw4")
            checker.file.checked_at -= 1.0  # as if that second had passed
            with pytest.raises(error.UnauthorizedLogin):
                yield portal.login(GuestNick("erin"), object(), IChatUser)
            _, erin, _ = yield portal.login(creds("Erin", "pw4"), object(), IChatUser)
            assert erin.account == "erin"
            _, dave, _ = yield portal.login(creds("dave", "pw2"), object(), IChatUser)
            assert dave.account == "dave"
            assert_read_in_threads(opens[mark:], reactor_thread)
    finally:
        checker.stop()


class _ClockedReactor:
    """The reactor's thread pool (each job it is given counted in ``jobs``) and a
    ``task.Clock``'s time, for a ``ReloadingFile`` whose seconds the test moves."""

    def __init__(self) -> None:
        self.clock = task.Clock()
        self.jobs = 0

    def seconds(self) -> float:
        return self.clock.seconds()

    def getThreadPool(self):
        return self

    def callInThreadWithCallback(self, *args, **kwargs) -> None:
        self.jobs += 1
        reactor.getThreadPool().callInThreadWithCallback(*args, **kwargs)

    def callFromThread(self, f, *args, **kwargs) -> None:
        reactor.callFromThread(f, *args, **kwargs)


@pytest_twisted.inlineCallbacks
def test_guest_logins_check_the_file_at_most_once_a_second(tmp_path):
    """A guest login asks whether its nick is an account: from memory when the file was
    checked less than a second ago (the login completes at once, no thread, no open), else
    after one check in a thread, which the logins that come meanwhile share."""
    path = tmp_path / "users"
    path.write_text("alice:pw1\n")
    fake = _ClockedReactor()
    checker = InMemoryFilePasswordDB(FilePasswordDB(str(path)), fake, reload_interval=0)
    portal = Chat(Config().with_overrides(auth={"checkers": []}), [checker]).portal
    with opened(path) as opens:
        for i in range(100):
            d = portal.login(GuestNick(f"guest{i}"), object(), IChatUser)
            assert d.called  # answered without waiting for anything
            _, user, logout = d.result
            logout()
        assert (fake.jobs, opens) == (0, [])
        append(path, "bob:pw2")
        fake.clock.advance(0.9)  # still within the second: memory says bob is free
        d = portal.login(GuestNick("bob"), object(), IChatUser)
        assert d.called and d.result[1].nick is None
        d.result[2]()
        fake.clock.advance(0.2)
        first = portal.login(GuestNick("bob"), object(), IChatUser)
        second = portal.login(GuestNick("BOB"), object(), IChatUser)
        assert not first.called and not second.called  # both wait for the one check
        for d in (first, second):
            with pytest.raises(error.UnauthorizedLogin):
                yield d
        assert fake.jobs == 1 and len(opens) == 2  # the append, and one read
        assert_read_in_threads(opens, threading.current_thread().name)
        # the check that found bob is the new second: memory again, at once
        d = portal.login(GuestNick("carol"), object(), IChatUser)
        assert d.called and fake.jobs == 1
        d.result[2]()


def test_a_reloading_file_is_current_from_its_first_read(tmp_path):
    path = tmp_path / "users"
    path.write_text("alice:pw1\n")
    fake = _ClockedReactor()
    file = ReloadingFile(str(path), read_password_file, fake, reload_interval=0)
    assert file.current().called and fake.jobs == 0
    fake.clock.advance(1.0)
    assert not file.current().called and fake.jobs == 1


@pytest_twisted.inlineCallbacks
def test_a_guest_login_goes_on_when_the_file_cannot_be_read_again(tmp_path):
    """The re-read a guest login waits for fails (the file became a directory): the
    failure is the checker's to log, the names in memory stay in use, the login succeeds
    and an account in memory stays protected."""
    path = tmp_path / "users"
    path.write_text("alice:pw1\n")
    fake = _ClockedReactor()
    checker = InMemoryFilePasswordDB(FilePasswordDB(str(path)), fake, reload_interval=0)
    portal = Chat(Config().with_overrides(auth={"checkers": []}), [checker]).portal
    path.unlink()
    path.mkdir()
    fake.clock.advance(1.5)
    d = portal.login(GuestNick("dave"), object(), IChatUser)
    assert not d.called  # waits for the re-read in a thread
    _, user, logout = yield d
    assert user.nick is None and fake.jobs == 1
    logout()
    fake.clock.advance(1.5)
    with pytest.raises(error.UnauthorizedLogin):
        yield portal.login(GuestNick("alice"), object(), IChatUser)
