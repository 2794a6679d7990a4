"""Credential checkers: argon2-hashed password file, guests, and account lookups for any checker."""
from __future__ import annotations

import os
import weakref
from typing import Any, Callable, Generic, Iterable, Optional, TypeVar, Union

from zope.interface import implementer

from twisted.cred import error
from twisted.cred.checkers import (
    ANONYMOUS,
    FilePasswordDB,
    ICredentialsChecker,
    InMemoryUsernamePasswordDatabaseDontUse,
)
from twisted.cred.credentials import IUsernamePassword, UsernamePassword
from twisted.internet import defer, task, threads
from twisted.logger import Logger
from twisted.python.failure import Failure

from chathub.auth.credentials import IGuestNick
from chathub.auth.hashing import PasswordHashing
from chathub.auth.limiter import lane_of
from chathub.interfaces import IAccountDirectory
from chathub.names import fold

#: the avatar id a guest login yields: no account
GUEST = ANONYMOUS


def _text(value) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def read_password_file(path: str) -> dict[str, str]:
    """Parse ``name:argon2hash`` lines (``#`` comments allowed) into a folded-name dict."""
    users: dict[str, str] = {}
    try:
        with open(path, encoding="utf-8") as f:
            for line in f:
                line = line.strip()
                if not line or line.startswith("#") or ":" not in line:
                    continue
                name, hashed = line.split(":", 1)
                users[fold(name.strip())] = hashed.strip()
    except FileNotFoundError:
        pass
    return users


FileVersion = Optional[tuple[int, int, int]]


def file_version(path: str) -> FileVersion:
    """What tells a changed password file apart: chathub.passwd replaces the file (new
    inode), which a coarse mtime alone can miss."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_ino, st.st_size)


_Content = TypeVar("_Content")


def read_if_changed(
    path: str, version: FileVersion, parse: Callable[[str], _Content] = read_password_file  # type: ignore[assignment]
) -> Optional[tuple[FileVersion, _Content]]:
    """(new version, ``parse(path)``) when the file differs from ``version``, else None; blocking."""
    current = file_version(path)
    if current == version:
        return None
    return current, parse(path)


class ReloadingFile(Generic[_Content]):
    """A file's parsed content, kept in memory and re-read in a thread, never on the reactor.

    Read once when made (start-up, before the reactor serves anyone: blocking nobody), then
    re-read in the reactor's thread pool every ``reload_interval`` seconds (0: never by
    itself) and whenever ``reload()`` is asked; a read swaps the new ``content`` in on the
    reactor in one assignment, so readers see the old content or the new, never a mix. A
    file that cannot be read at start-up stops it, unless ``unreadable`` says what to hold
    meanwhile; a failed re-read keeps what was read last.
    """

    def __init__(
        self,
        path: str,
        parse: Callable[[str], _Content],
        reactor: Any = None,
        reload_interval: float = 5.0,
        log: Optional[Logger] = None,
        unreadable: Optional[_Content] = None,
    ) -> None:
        if reactor is None:
            from twisted.internet import reactor
        self.path = path
        self._parse = parse
        self._reactor = reactor
        self._log = log or Logger()
        self._version: FileVersion = file_version(path)
        #: when the read that gave ``content`` started (reactor time): it shows the file as
        #: it was then, or later
        self.checked_at: float = reactor.seconds()
        try:
            self.content: _Content = parse(path)
        except OSError as e:
            if unreadable is None:  # the caller's start-up fails with it
                raise
            # held until a re-read succeeds (no version: the next one reads whatever is there)
            self._log.error("cannot read {path}: {error}", path=path, error=e.strerror or str(e))
            self._version, self.content = None, unreadable
        self._reading: Optional[defer.Deferred] = None  # the read running now, if any
        self._reading_since = 0.0  # when it started
        self._reading_waiters: list[defer.Deferred] = []  # callers waiting for it
        self._queued: list[defer.Deferred] = []  # callers waiting for the read after it
        self._reload_waiters: list[defer.Deferred] = []
        self._reloader: Optional[task.LoopingCall] = None
        if reload_interval > 0:
            self._reloader = _periodic(self, reload_interval, reactor, self._log)

    def reload(self) -> defer.Deferred:
        """Re-read the file in a thread if it changed; fires once a read that started after
        this call has been swapped in (or fails with that read's error).

        Callers that arrive while a read runs share the one read after it: a burst of
        guest logins, each asking for a fresh view, costs two reads, not one each.
        """
        d: defer.Deferred = defer.Deferred()
        if self._reading is None:
            self._start_read([d])
        else:
            self._queued.append(d)
        return d

    def current(self, max_age: float = 1.0) -> defer.Deferred:
        """Fires once ``content`` shows the file as it was at most ``max_age`` seconds ago:
        at once (already fired) when a read that recent gave it, else after a read in a
        thread (one already running that recent is waited for, not another started).

        A guest login asks this (is its nick an account?): a burst of them costs at most
        one check of the file a second and none of them waits for a thread but the first.
        """
        now = self._reactor.seconds()
        if now - self.checked_at < max_age:
            return defer.succeed(None)
        if self._reading is not None and now - self._reading_since < max_age:
            d: defer.Deferred = defer.Deferred()
            self._reading_waiters.append(d)
            return d
        return self.reload()

    def _start_read(self, waiters: list[defer.Deferred]) -> None:
        self._reading_since = self._reactor.seconds()
        self._reading_waiters = waiters
        self._reading = threads.deferToThreadPool(
            self._reactor, self._reactor.getThreadPool(), read_if_changed, self.path, self._version, self._parse
        )
        self._reading.addCallbacks(self._read, self._read_failed, callbackArgs=(waiters,), errbackArgs=(waiters,))

    def _read(self, result: Optional[tuple[FileVersion, _Content]], waiters: list[defer.Deferred]) -> None:
        self.checked_at = self._reading_since
        if result is not None:
            self._version, self.content = result  # one assignment each: readers see old or new
        told, self._reload_waiters = self._reload_waiters, []
        self._next_read()
        for d in told + waiters:
            d.callback(None)

    def _read_failed(self, failure: Failure, waiters: list[defer.Deferred]) -> None:
        self._next_read()
        for d in waiters:
            d.errback(failure)

    def _next_read(self) -> None:
        self._reading = None
        if self._queued:
            queued, self._queued = self._queued, []
            self._start_read(queued)

    def next_reload(self) -> defer.Deferred:
        """Fires after the next re-read (periodic or not) has been swapped in."""
        d: defer.Deferred = defer.Deferred()
        self._reload_waiters.append(d)
        return d

    def stop(self) -> None:
        """Stop the periodic re-reading (the content in memory stays)."""
        if self._reloader is not None and self._reloader.running:
            self._reloader.stop()
        self._reloader = None


def _periodic(file: ReloadingFile, interval: float, reactor: Any, log: Logger) -> task.LoopingCall:
    # Holds the file weakly: a file nobody uses any more (its checker is gone) stops its
    # own re-reading.
    ref = weakref.ref(file)

    def tick() -> Optional[defer.Deferred]:
        current = ref()
        if current is None:
            loop.stop()
            return None
        d = current.reload()
        del current
        return d.addErrback(lambda f: log.failure("could not re-read {path}", f, path=path))

    path = file.path
    loop = task.LoopingCall(tick)
    loop.clock = reactor
    loop.start(interval, now=False).addErrback(lambda f: log.failure("re-reading {path} stopped", f, path=path))
    return loop


#: what every refused password login says, so it does not tell which accounts exist
REFUSED = "unknown account or wrong password"


class HashedPasswordChecker:
    """Base of the checkers that keep argon2 hashes (the password file, the store).

    A login looks the name up (``lookup``), then runs exactly one argon2 verify: against
    the stored hash, or, for a name nobody has, against a dummy hash with the same
    parameters (``dummy_like``), so a refusal costs the same work, and takes the same time,
    whether or not the name exists. The verify queues in the lane the credentials carry
    (``chathub.auth.limiter``). Subclasses give ``hashing`` and the three methods.
    """

    credentialInterfaces: tuple = (IUsernamePassword,)
    hashing: PasswordHashing

    def lookup(self, name: str) -> defer.Deferred:
        """Fires with (argon2 hash, what ``accepted`` needs) for ``name``, or None."""
        raise NotImplementedError

    def accepted(self, found, password: str, stale: bool):
        """The avatar id for a login whose password matched; ``stale``: hashed with weaker
        parameters than ours."""
        raise NotImplementedError

    def dummy_like(self) -> Optional[str]:
        """A stored hash whose parameters the dummy copies (None: the hasher's)."""
        return None

    def requestAvatarId(self, credentials):
        return check_hashed([self], credentials)


@defer.inlineCallbacks
def check_hashed(checkers: list, credentials, others=()):
    """Log ``credentials`` in against hashed ``checkers`` (tried in order) and stock
    ``others`` (tried after them); one dummy verify when no hashed checker knows the name."""
    name, password = _text(credentials.username), _text(credentials.password)
    lane = lane_of(credentials)
    failure: Exception = error.UnauthorizedLogin(REFUSED)
    known = False
    for checker in checkers:
        found = yield checker.lookup(name)
        if found is None:
            continue
        known = True
        matches, stale = yield checker.hashing.check(found[0], password, lane)
        if matches:
            return checker.accepted(found[1], password, stale)
    for checker in others:
        try:
            return (yield defer.maybeDeferred(checker.requestAvatarId, credentials))
        except error.UnauthorizedLogin as e:
            failure = e
    if not known and checkers:
        first = checkers[0]
        yield first.hashing.check_dummy(password, first.dummy_like(), lane)
    raise failure


@implementer(ICredentialsChecker, IAccountDirectory)
class Argon2FileChecker(HashedPasswordChecker):
    """Checks passwords against a file of argon2 hashes (see ``python -m chathub.passwd``).

    The reactor only ever reads the names in memory: the file is read once when the
    checker is made (start-up), then re-read in a thread every ``reload_interval`` seconds
    and before each password check, the new names swapped in on the reactor, so users
    added while the server runs can log in and their nicks stop being free for guests.
    Hashing goes through the server-wide ``PasswordHashing`` limit; an unknown name costs
    the same verify as a known one (``HashedPasswordChecker``).
    """

    log = Logger()

    def __init__(
        self,
        path: str,
        hashing: Optional[PasswordHashing] = None,
        reactor: Any = None,
        reload_interval: float = 5.0,
    ) -> None:
        self.path = path
        self.hashing = hashing or PasswordHashing(reactor=reactor)
        self.file = ReloadingFile(path, read_password_file, reactor, reload_interval, self.log)

    @property
    def _users(self) -> dict[str, str]:
        """Folded name -> argon2 hash, as last read."""
        return self.file.content

    def reload(self) -> defer.Deferred:
        """Re-read the file in a thread if it changed (``ReloadingFile.reload``)."""
        return self.file.reload()

    def next_reload(self) -> defer.Deferred:
        """Fires after the next re-read (periodic or not) has been swapped in."""
        return self.file.next_reload()

    def stop(self) -> None:
        """Stop the periodic re-reading (the checker keeps answering from memory)."""
        self.file.stop()

    def is_account(self, name: str) -> bool:
        return fold(name) in self._users

    def learned(self, name: str) -> None:
        """Nothing: this checker's accounts are its file's (re-read on its own)."""

    def load(self) -> defer.Deferred[int]:
        return defer.succeed(len(self._users))

    # -- HashedPasswordChecker -------------------------------------------------------------

    @defer.inlineCallbacks
    def lookup(self, name: str):
        """(hash, folded name) of ``name`` after a fresh read of the file, or None."""
        try:
            yield self.reload()
        except Exception:
            self.log.failure("could not re-read the password file {path}", path=self.path)
        folded = fold(name)
        hashed = self._users.get(folded)
        return None if hashed is None else (hashed, folded)

    def accepted(self, found, password: str, stale: bool):
        return found

    def dummy_like(self) -> Optional[str]:
        # the parameters of the file's hashes (made by chathub.passwd: all alike)
        return next(iter(self._users.values()), None)


def stock_file_reader(db: FilePasswordDB) -> Callable[[str], dict[bytes, bytes]]:
    """How ``db`` reads its file (delimiter, fields, case), as a blocking function of the path
    giving name -> password with the first line of a name winning, as ``db`` itself finds it."""
    delim, ufield, pfield, case_sensitive = db.delim, db.ufield, db.pfield, db.caseSensitive

    def read(path: str) -> dict[bytes, bytes]:
        users: dict[bytes, bytes] = {}
        try:
            with open(path, "rb") as f:
                for line in f:
                    parts = line.rstrip().split(delim)
                    if ufield >= len(parts) or pfield >= len(parts):
                        continue
                    name = parts[ufield] if case_sensitive else parts[ufield].lower()
                    users.setdefault(name, parts[pfield])
        except FileNotFoundError:
            pass
        return users

    return read


@implementer(ICredentialsChecker)
class InMemoryFilePasswordDB(FilePasswordDB):
    """``--auth file:PATH`` (twisted.cred's ``FilePasswordDB``: ``user:password`` lines),
    answered from memory.

    Twisted's checker reads its file on every lookup, on the reactor, and every nick check
    asked it whether a name is an account. This one reads the file as ``ReloadingFile``
    does (``password_checkers`` puts one in place of each ``FilePasswordDB``): once when
    made, then in a thread every ``reload_interval`` seconds, before each password check
    and before each guest login (``CheckerDirectory.refresh``). The password check itself
    is Twisted's (``FilePasswordDB.requestAvatarId``), over the names in memory.
    """

    log = Logger()

    def __init__(self, db: FilePasswordDB, reactor: Any = None, reload_interval: float = 5.0) -> None:
        super().__init__(db.filename, db.delim, db.ufield, db.pfield, db.caseSensitive, db.hash)
        # unreadable at start-up: no names (as Twisted's checker found none), the server starts
        empty: dict[bytes, bytes] = {}
        self.file = ReloadingFile(db.filename, stock_file_reader(db), reactor, reload_interval, self.log, empty)

    def names(self) -> list[bytes]:
        """The names in the file (lower-cased unless case-sensitive), as last read."""
        return list(self.file.content)

    def reload(self) -> defer.Deferred:
        """Re-read the file in a thread if it changed (``ReloadingFile.reload``)."""
        return self.file.reload()

    def stop(self) -> None:
        """Stop the periodic re-reading (the checker keeps answering from memory)."""
        self.file.stop()

    def getUser(self, username: bytes) -> tuple[bytes, bytes]:
        """``(name, password)`` from memory; ``KeyError`` for a name the file does not have."""
        if not self.caseSensitive:
            username = username.lower()
        return username, self.file.content[username]

    @defer.inlineCallbacks
    def requestAvatarId(self, credentials: Any) -> Any:
        """Twisted's check, after a fresh read (in a thread) of a changed file."""
        try:
            yield self.reload()
        except Exception:
            self.log.failure("could not re-read the password file {path}", path=self.filename)
        return (yield FilePasswordDB.requestAvatarId(self, credentials))


def answered_from_memory(checker: ICredentialsChecker, reactor: Any = None) -> ICredentialsChecker:
    """``checker``, or for a stock ``FilePasswordDB`` (``--auth file:``) the same file read
    into memory (``InMemoryFilePasswordDB``): no checker reads a file on the reactor."""
    if isinstance(checker, FilePasswordDB) and not isinstance(checker, InMemoryFilePasswordDB):
        return InMemoryFilePasswordDB(checker, reactor)
    return checker


@implementer(ICredentialsChecker)
class GuestChecker:
    """Lets a guest use a nick that is not a registered account, when guests are allowed."""

    credentialInterfaces = (IGuestNick,)

    def __init__(self, accounts: IAccountDirectory, allow_guests: bool) -> None:
        self.accounts = accounts
        self.allow_guests = allow_guests

    def requestAvatarId(self, credentials):
        if not self.allow_guests:
            return defer.fail(
                error.UnauthorizedLogin("guests are not allowed here: give a password")
            )
        # a directory that can re-read its source (off the reactor) does so first, so an
        # account added a moment ago is protected from guests at once
        refresh = getattr(self.accounts, "refresh", None)
        d = refresh() if refresh is not None else defer.succeed(None)
        return d.addCallback(self._answer, credentials.nick)

    def _answer(self, _, nick: str):
        if self.accounts.is_account(nick):
            raise error.UnauthorizedLogin(f"{nick} is a registered nick: give its password")
        return GUEST


def file_checkers(checkers: Iterable[Any]) -> list[Union["Argon2FileChecker", "InMemoryFilePasswordDB"]]:
    """The ``checkers`` that keep their accounts in a file (``ReloadingFile``)."""
    return [c for c in checkers if isinstance(c, (Argon2FileChecker, InMemoryFilePasswordDB))]


@implementer(IAccountDirectory)
class CheckerDirectory:
    """Answers ``is_account`` for twisted.cred's stock checkers (``--auth memory:``/``file:``)."""

    def __init__(self, checkers) -> None:
        self.checkers = list(checkers)
        self._files: Optional[list] = None

    def refresh(self) -> defer.Deferred:
        """Bring the checkers that keep their accounts in a file up to the file as it was at
        most a second ago (``ReloadingFile.current``: re-read in a thread if it changed,
        already fired when they are that recent); a failed re-read is logged by the checker
        and the names in memory stay in use."""
        files = self._files
        if files is None:  # the checkers are fixed once the portal is built
            files = self._files = [c.file for c in file_checkers(self.checkers)]
        if not files:
            return defer.succeed(None)
        if len(files) == 1:  # the usual case: fired already, or the read, its failure logged
            read = files[0].current()
            return read if read.called else read.addErrback(lambda _: None)
        reads = [f.current() for f in files]
        if all(d.called for d in reads):
            return defer.succeed(None)  # no list, no callbacks: the common case of a guest login
        return defer.DeferredList(reads, consumeErrors=True).addCallback(lambda _: None)

    def learned(self, name: str) -> None:
        for checker in self.checkers:
            if IAccountDirectory.providedBy(checker):
                checker.learned(name)

    def load(self) -> defer.Deferred[int]:
        counts = [checker.load() for checker in self.checkers if IAccountDirectory.providedBy(checker)]
        return defer.gatherResults(counts, consumeErrors=True).addCallback(sum)

    def is_account(self, name: str) -> bool:
        for checker in self.checkers:
            if IAccountDirectory.providedBy(checker):
                if checker.is_account(name):
                    return True
            elif _stored_name(checker, name) is not None:
                return True
        return False


def _stored_name(checker: ICredentialsChecker, name: str):
    """How a stock checker (``--auth memory:``/``file:``) spells ``name``, in any case, or None.

    Their names are case-sensitive ("Carol"), nicks are not: compared folded, so a guest
    cannot take "carol" from the account holder, who logs in as "carol" too."""
    folded = fold(name)
    if isinstance(checker, InMemoryUsernamePasswordDatabaseDontUse):
        names = list(checker.users)
    elif isinstance(checker, InMemoryFilePasswordDB):
        names = checker.names()  # from memory: a nick check never reads the file
    else:
        return None
    return next((n for n in names if fold(_text(n)) == folded), None)


@implementer(ICredentialsChecker)
class BytesOrTextChecker:
    """Runs a stock twisted.cred password checker with the name and password as bytes, then as text.

    Twisted's checkers disagree on the type: ``FilePasswordDB`` (``--auth file:``) compares
    bytes, while ``--auth memory:alice:pw`` stores str keys and passwords, so one type
    alone would refuse every login on the other kind.
    """

    credentialInterfaces = (IUsernamePassword,)

    def __init__(self, checker: ICredentialsChecker) -> None:
        self.checker = checker

    @defer.inlineCallbacks
    def requestAvatarId(self, credentials):
        stored = _stored_name(self.checker, _text(credentials.username))
        if stored is not None:  # the checker's own spelling of the name, in the caller's type
            given = credentials.username
            if isinstance(given, bytes) != isinstance(stored, bytes):
                stored = stored.encode("utf-8") if isinstance(given, bytes) else _text(stored)
            credentials = UsernamePassword(stored, credentials.password)
        try:
            return (yield defer.maybeDeferred(self.checker.requestAvatarId, credentials))
        except error.LoginFailed:
            if not isinstance(credentials.username, bytes) and not isinstance(credentials.password, bytes):
                raise
        text = UsernamePassword(_text(credentials.username), _text(credentials.password))
        return (yield defer.maybeDeferred(self.checker.requestAvatarId, text))


@implementer(ICredentialsChecker)
class AnyOfCheckers:
    """Accepts credentials that any one of several checkers accepts, tried in order.

    For passwords, the argon2 checkers (``HashedPasswordChecker``) are asked first, each
    only verifying a name it has, then the stock ones: a name none of them has costs one
    dummy verify, a known one its own verify, so the time of a refusal does not tell them
    apart."""

    def __init__(self, checkers) -> None:
        self.checkers = list(checkers)
        self.credentialInterfaces = tuple(
            {i for c in self.checkers for i in c.credentialInterfaces}
        )
        self.hashed = [c for c in self.checkers if isinstance(c, HashedPasswordChecker)]

    @defer.inlineCallbacks
    def requestAvatarId(self, credentials):
        if IUsernamePassword.providedBy(credentials) and self.hashed:
            others = [
                c for c in self.checkers
                if c not in self.hashed and IUsernamePassword in c.credentialInterfaces
            ]
            return (yield check_hashed(self.hashed, credentials, others))
        failure = error.UnauthorizedLogin(REFUSED)
        for checker in self.checkers:
            if not any(i.providedBy(credentials) for i in checker.credentialInterfaces):
                continue
            try:
                avatar_id = yield defer.maybeDeferred(checker.requestAvatarId, credentials)
            except error.UnauthorizedLogin as e:
                failure = e
                continue
            return avatar_id
        raise failure
