"""``SqlStore``: the ``IStore`` logic shared by the SQLite and PostgreSQL backends.

Everything runs in ``twisted.enterprise.adbapi`` thread pools: writes go through one
``GroupCommitWriter`` (serial, batched), reads through the read pool. A backend supplies
the pools, the dialect, how a write transaction begins, and how its errors read.
"""
from __future__ import annotations

import functools
import json
import time
from contextlib import nullcontext
from typing import Any, Callable, Collection, ContextManager, Iterable, NamedTuple, Optional, Sequence

from twisted.enterprise.adbapi import ConnectionPool
from twisted.internet import defer, threads
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from chathub.config.storage import HistoryConfig
from chathub.events import Event
from chathub.names import fold
from chathub.records import Ban, RoomRecord
from chathub.store.history import (
    Conversation,
    centred_window,
    check_ref,
    conversation_for,
    conversations_of,
    peer_name,
    room_conversation,
    to_ms,
)
from chathub.store.interfaces import (
    Account,
    AccountExists,
    IStore,
    NoSuchAccount,
    StorageError,
    UnknownReference,
)
from chathub.store.schema import LATEST_VERSION, MIGRATIONS, Dialect
from chathub.store.writer import GroupCommitWriter

#: rows deleted per pruning transaction, so appends never wait long behind retention
PRUNE_CHUNK = 500

#: a conversation's history starts after its room's latest incarnation began (``begin_room``);
#: uncorrelated, so the database computes it once and seeks the (conv, seq) index past it
IN_INCARNATION = "t.seq > COALESCE((SELECT r.after_seq FROM room_epochs r WHERE r.conv = ?), 0)"


class _Bound(NamedTuple):
    """A resolved history reference: a message (``seq`` set) or a point in time."""

    ms: int
    seq: Optional[int]

    def after(self) -> tuple[str, int]:
        return ("t.seq > ?", self.seq) if self.seq is not None else ("t.ms > ?", self.ms)

    def before(self) -> tuple[str, int]:
        return ("t.seq < ?", self.seq) if self.seq is not None else ("t.ms < ?", self.ms)

    def precedes(self, other: "_Bound") -> bool:
        if self.ms != other.ms or self.seq is None or other.seq is None:
            return self.ms <= other.ms
        return self.seq < other.seq


#: one encoder for every event (json.dumps with options builds a new one per call)
_EVENT_JSON = json.JSONEncoder(separators=(",", ":"), ensure_ascii=True)


_quote = json.encoder.encode_basestring_ascii


def encode_event(event: Event) -> str:
    """The stored form of an event: its dict as ASCII JSON (safe for any database).

    The same text as ``_EVENT_JSON.encode(event.to_dict())``, assembled directly: every
    stored message passes here, and the generic encoder spent most of its time walking
    the nested dicts rather than quoting the strings.
    """
    s = event.source
    t = event.time
    return (
        f'{{"id":{_quote(event.id)},"time":{float.__repr__(t) if type(t) is float else _EVENT_JSON.encode(t)},'
        f'"kind":{_quote(event.kind)},"source":{{"nick":{_quote(s.nick)},"user":{_quote(s.user)},'
        f'"host":{_quote(s.host)},"account":{"null" if s.account is None else _quote(s.account)},'
        f'"realname":{_quote(s.realname)},"protocol":{_quote(s.protocol)},"session":{_quote(s.session)}}},'
        f'"target":{_quote(event.target)},"text":{_quote(event.text)},'
        f'"tags":{_EVENT_JSON.encode(dict(event.tags)) if event.tags else "{}"},'
        f'"data":{_EVENT_JSON.encode(dict(event.data)) if event.data else "{}"}}}'
    )


def decode_event(body: str) -> Event:
    """Inverse of ``encode_event``."""
    return Event.from_dict(json.loads(body))


def _deferred(method: Callable) -> Callable:
    """Make bad arguments fail the returned Deferred instead of raising."""

    @functools.wraps(method)
    def wrapper(*args, **kwargs):
        return defer.maybeDeferred(method, *args, **kwargs)

    return wrapper


#: rows per multi-row INSERT: 4 columns x 200 stays far below SQLite's 32,766 parameters
ROWS_PER_STATEMENT = 200


def _placeholders(n: int) -> str:
    return ", ".join("?" * n)


@implementer(IStore)
class SqlStore:
    """History, accounts and rooms in an SQL database reached through adbapi."""

    log = Logger()
    dialect: Dialect
    #: "SQLite" or "PostgreSQL", for messages shown to users
    engine = "SQL"
    #: ``SELECT ... FOR UPDATE`` where the database has it
    lock_rows = ""

    def __init__(self, history: Optional[HistoryConfig] = None, reactor=None) -> None:
        if reactor is None:
            from twisted.internet import reactor
        self._reactor = reactor
        self.history = history or HistoryConfig()
        self._write_pool: Optional[ConnectionPool] = None
        self._read_pool: Optional[ConnectionPool] = None
        self._writer: Optional[GroupCommitWriter] = None
        #: room conversation -> fires once its latest ``begin_room`` is committed: a query
        #: for the room waits for it, or it could read the old room's history meanwhile
        self._beginning: dict[str, defer.Deferred] = {}
        #: wrapped around the release of each committed group of writes (``wrap_releases``)
        self._around_release: Callable[[], ContextManager] = nullcontext
        self.description = self.engine + " database"

    # -- what a backend provides -------------------------------------------------

    def _prepare(self) -> None:
        """Runs in a thread before the first connection (create directories, check files)."""

    def _make_pools(self) -> tuple[ConnectionPool, ConnectionPool]:
        """The write pool and the read pool (they may be the same)."""
        raise NotImplementedError

    def _begin(self, txn) -> None:
        """Start a write transaction (when the driver does not start one itself)."""

    def _check(self, txn) -> None:
        """Integrity check at open; raise ``StorageError`` when the database is damaged."""

    def _open_error(self, failure: Failure) -> StorageError:
        """A start-up failure as an operator-facing message naming the database."""
        return StorageError(f"cannot open the {self.description}: {self._detail(failure.value)}")

    def _transient(self, failure: Failure) -> bool:
        """True for a failure that trying again may cure (a lost server connection)."""
        return False

    def _detail(self, exc: BaseException) -> str:
        """The driver's error message, short and without secrets."""
        return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__

    # -- life cycle ----------------------------------------------------------------

    def _connect(self):
        """A plain DB-API connection, for ``preflight`` (before the reactor runs)."""
        raise NotImplementedError

    @defer.inlineCallbacks
    def _bring_up_to_date(self, run: Callable[..., defer.Deferred]):
        """Create the version table, run pending migrations, check integrity.

        ``run(fn, *args)`` runs ``fn(txn, *args)`` in one write transaction.
        """
        yield run(self._ensure_version_table)
        version = yield run(self._current_version)
        if version > LATEST_VERSION:
            raise StorageError(
                f"the {self.description} has schema version {version}, newer than this "
                f"chathub knows ({LATEST_VERSION}): run the newer chathub, or restore a backup"
            )
        for number, summary, statements in MIGRATIONS:
            if number > version:
                yield run(self._migrate, number, statements)
                self.log.info(
                    "{db}: schema migrated to version {number} ({summary})",
                    db=self.description,
                    number=number,
                    summary=summary,
                )
        yield run(self._check)

    def _start_up_error(self, failure: Failure) -> StorageError:
        if isinstance(failure.value, StorageError):
            return failure.value
        return self._open_error(failure)

    def preflight(self) -> None:
        """Blocking ``open()`` checks and migrations, for start-up before the reactor runs.

        Raises ``StorageError`` with the message to print. Leaves no connection open;
        ``open()`` must still be called (it then finds nothing to migrate).
        """
        conn = None

        def run(fn, *args):
            cursor = conn.cursor()
            try:
                self._begin(cursor)
                result = fn(cursor, *args)
                conn.commit()
                return defer.succeed(result)
            except BaseException:
                conn.rollback()
                raise
            finally:
                cursor.close()

        results: list = []
        try:
            self._prepare()
            conn = self._connect()
            self._bring_up_to_date(run).addBoth(results.append)
        except Exception:
            raise self._start_up_error(Failure()) from None
        finally:
            if conn is not None:
                conn.close()
        (result,) = results  # every step ran synchronously
        if isinstance(result, Failure):
            raise self._start_up_error(result) from None

    @defer.inlineCallbacks
    def open(self):
        """Create the database if needed and bring its schema up to date."""
        try:
            yield threads.deferToThreadPool(
                self._reactor, self._reactor.getThreadPool(), self._prepare
            )
            self._write_pool, self._read_pool = self._make_pools()
            yield self._bring_up_to_date(self._run_write)
        except Exception:
            failure = Failure()
            self._close_pools()
            raise self._start_up_error(failure) from None
        self._writer = GroupCommitWriter(
            self._run_write,
            self._write_events,
            self._explain,
            self._reactor,
            transient=self._transient,
            around_release=lambda: self._around_release(),
            name=self.description,
        )
        self.log.info("{db} open", db=self.description)

    def wrap_releases(self, around: Callable[[], ContextManager]) -> None:
        """Release each committed group of writes inside ``around()`` (the hub's fan-out
        batching, so a group reaches each member as one write)."""
        self._around_release = around

    @defer.inlineCallbacks
    def close(self):
        """Commit what is queued, then close the connections."""
        if self._writer is not None:
            yield self._writer.close()
        self._close_pools()

    def _close_pools(self) -> None:
        for pool in {id(p): p for p in (self._read_pool, self._write_pool) if p is not None}.values():
            pool.close()
        self._read_pool = self._write_pool = None

    @property
    def writer(self) -> Optional[GroupCommitWriter]:
        """The group-commit writer (its counters show how writes were batched)."""
        return self._writer

    # -- running work in the pools -------------------------------------------------------

    def _transaction(self, txn, fn: Callable, *args):
        self._begin(txn)
        return fn(txn, *args)

    def _run_write(self, fn: Callable, *args) -> defer.Deferred:
        return self._write_pool.runInteraction(self._transaction, fn, *args)

    def _explain(self, failure: Failure, what: str) -> StorageError:
        # not logged here: the writer logs a run of failures once (FailureEpisode)
        detail = self._detail(failure.value)
        return StorageError(f"the {self.engine} database could not be written: {detail}")

    def _write(self, fn: Callable, *args) -> defer.Deferred:
        if self._writer is None:
            return defer.fail(StorageError("storage is not open"))
        return self._writer.call(fn, *args)

    def _read(self, fn: Callable, *args) -> defer.Deferred:
        if self._read_pool is None:
            return defer.fail(StorageError("storage is not open"))
        d = self._read_pool.runInteraction(fn, *args)
        d.addErrback(self._read_again, fn, args)
        d.addErrback(self._read_failed)
        return d

    def _read_again(self, failure: Failure, fn: Callable, args: tuple):
        if not self._transient(failure) or self._read_pool is None:
            return failure
        self.log.warn("{db}: a read failed ({error}); trying it again", db=self.description, error=failure.getErrorMessage())
        return self._read_pool.runInteraction(fn, *args)

    def _read_failed(self, failure: Failure):
        if failure.check(StorageError, UnknownReference, ValueError):
            return failure
        detail = self._detail(failure.value)
        self.log.failure("{db}: read failed: {detail}", failure, db=self.description, detail=detail)
        raise StorageError(f"the {self.engine} database could not be read: {detail}")

    def _q(self, query: str) -> str:
        return self.dialect.sql(query)

    # -- schema ----------------------------------------------------------------------

    def _ensure_version_table(self, txn) -> None:
        txn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")

    def _current_version(self, txn) -> int:
        txn.execute("SELECT version FROM schema_version")
        rows = txn.fetchall()
        if not rows:
            return 0
        return int(rows[0][0])

    def _migrate(self, txn, number: int, statements: Sequence[str]) -> None:
        txn.execute("SELECT version FROM schema_version" + self.lock_rows)
        rows = txn.fetchall()
        current = int(rows[0][0]) if rows else 0
        if current >= number:  # another process got there first
            return
        for statement in statements:
            txn.execute(self.dialect.ddl(statement))
        if rows:
            txn.execute(self._q("UPDATE schema_version SET version = ?"), (number,))
        else:
            txn.execute(self._q("INSERT INTO schema_version (version) VALUES (?)"), (number,))

    # -- history: writing --------------------------------------------------------------

    def append(self, event: Event, rooms: Sequence[str] = (), notify=None) -> Optional[defer.Deferred]:
        """Queue ``event``; fires (or calls ``notify``) once it is committed (group commit)."""
        if self._writer is None:
            failure = Failure(StorageError("storage is not open"))
            if notify is None:
                return defer.fail(failure)
            notify(failure)
            return None
        if self.history.enabled:
            conversations = conversations_of(event, rooms, private=self.history.private)
        else:
            conversations = []
        return self._writer.append((event, conversations), bool(conversations), notify)

    def begin_room(self, name: str) -> defer.Deferred:
        """Start a new incarnation of room ``name``: its history queries see only what is
        appended from now on."""
        if self._writer is None:
            return defer.fail(StorageError("storage is not open"))
        conv = room_conversation(name)
        # queued among the appends (event None), so it falls exactly between the events
        # the hub stored before the room was made and those after
        d = self._writer.append((None, [conv]))
        begun = self._beginning[conv.key] = defer.Deferred()

        def committed(result):
            # writes commit in order: the latest begin of a room settles every earlier one
            if self._beginning.get(conv.key) is begun:
                del self._beginning[conv.key]
            begun.callback(None)
            return result

        return d.addBoth(committed)

    def _once_begun(self, convs: Iterable[str]) -> Optional[defer.Deferred]:
        """A Deferred that fires once no room among ``convs`` has a ``begin_room`` still
        being committed, or None when none has."""
        pending = [self._beginning[c] for c in convs if c in self._beginning]
        if not pending:
            return None
        waiters = []
        for begun in pending:
            waiter: defer.Deferred = defer.Deferred()
            begun.addCallback(lambda _, w=waiter: w.callback(None))
            waiters.append(waiter)
        return defer.gatherResults(waiters)

    def _write_events(self, txn, items: list[tuple[Optional[Event], list[Conversation]]]) -> None:
        start = 0
        for i, (event, convs) in enumerate(items):
            if event is None:  # a room begins (begin_room): after what came before it
                if i > start:
                    self._write_rows(txn, items[start:i])
                self._begin_incarnation(txn, convs[0].key)
                start = i + 1
        if start < len(items):
            self._write_rows(txn, items[start:] if start else items)

    def _begin_incarnation(self, txn, conv: str) -> None:
        txn.execute("SELECT COALESCE(MAX(seq), 0) FROM events")
        (after_seq,) = txn.fetchone()
        txn.execute(
            self._q(
                "INSERT INTO room_epochs (conv, after_seq) VALUES (?, ?) "
                "ON CONFLICT (conv) DO UPDATE SET after_seq = excluded.after_seq"
            ),
            (conv, int(after_seq)),
        )

    def _write_rows(self, txn, items: list[tuple[Event, list[Conversation]]]) -> None:
        # A few multi-row statements for the whole batch, not one per event: on SQLite each
        # statement step hands the GIL to the reactor thread and back, and on PostgreSQL it
        # is a round trip. The timeline finds each event's seq by its msgid inside the
        # database; an event stored already (a retried batch, another node's copy) is
        # skipped by every statement, its timeline rows being there.
        rows: list[tuple] = []
        timeline: list[tuple] = []
        conversations: dict[str, Conversation] = {}
        for event, convs in items:
            if not convs:
                continue
            eid, at, kind = event.id, event.time, event.kind
            rows.append((eid, at, kind, encode_event(event)))
            ms = to_ms(at)
            for conv in convs:
                timeline.append((conv.key, ms, kind, eid))
                conversations[conv.key] = conv
        if not rows:
            return
        self._insert_rows(
            txn, "INSERT INTO events (msgid, at, kind, body) VALUES {rows} ON CONFLICT (msgid) DO NOTHING", rows
        )
        self._insert_rows(
            txn,
            "INSERT INTO timeline (conv, seq, ms, kind) "
            "SELECT v.column1, e.seq, v.column2, v.column3 FROM (VALUES {rows}) AS v "
            "JOIN events e ON e.msgid = v.column4 WHERE true ON CONFLICT DO NOTHING",
            timeline,
        )
        self._insert_rows(
            txn,
            "INSERT INTO conversations (conv, peer_a, peer_b) VALUES {rows} ON CONFLICT (conv) DO NOTHING",
            [(c.key, c.peer_a, c.peer_b) for c in conversations.values()],
        )

    def _insert_rows(self, txn, template: str, rows: list[tuple]) -> None:
        """Run ``template`` with ``{rows}`` as a VALUES list, ``ROWS_PER_STATEMENT`` rows at a time."""
        width = len(rows[0])
        row = "(" + _placeholders(width) + ")"
        for start in range(0, len(rows), ROWS_PER_STATEMENT):
            chunk = rows[start : start + ROWS_PER_STATEMENT]
            # a full chunk always has the same text, so the driver's statement cache keeps it
            txn.execute(
                self._q(template.format(rows=", ".join([row] * len(chunk)))),
                [value for r in chunk for value in r],
            )

    # -- history: queries -------------------------------------------------------------

    def _select(
        self,
        txn,
        conv: str,
        conds: Iterable[tuple[str, Any]],
        kinds: Optional[Collection[str]],
        descending: bool,
        limit: int,
    ) -> list[Event]:
        where = ["t.conv = ?", IN_INCARNATION]
        params: list[Any] = [conv, conv]
        for cond, value in conds:
            where.append(cond)
            params.append(value)
        if kinds is not None:
            kinds = sorted(kinds)
            where.append(f"t.kind IN ({_placeholders(len(kinds))})")
            params.extend(kinds)
        params.append(limit)
        txn.execute(
            self._q(
                "SELECT e.body FROM timeline t JOIN events e ON e.seq = t.seq "
                f"WHERE {' AND '.join(where)} ORDER BY t.seq {'DESC' if descending else 'ASC'} LIMIT ?"
            ),
            params,
        )
        events = [decode_event(row[0]) for row in txn.fetchall()]
        if descending:
            events.reverse()
        return events

    def _bound(self, txn, conv: str, ref) -> _Bound:
        kind, value = check_ref(ref)
        if kind == "timestamp":
            return _Bound(to_ms(value), None)
        txn.execute(
            self._q(
                "SELECT t.seq, t.ms FROM events e JOIN timeline t ON t.seq = e.seq "
                f"WHERE e.msgid = ? AND t.conv = ? AND {IN_INCARNATION}"
            ),
            (value, conv, conv),
        )
        row = txn.fetchone()
        if row is None:
            raise UnknownReference(value)
        return _Bound(int(row[1]), int(row[0]))

    def _history(self, fn: Callable, viewer: str, target: str, limit: int, *args) -> defer.Deferred:
        if limit <= 0:
            return defer.succeed([])
        conv = conversation_for(fold(viewer), target).key
        begun = self._once_begun((conv,))
        if begun is not None:
            return begun.addCallback(lambda _: self._read(fn, conv, limit, *args))
        return self._read(fn, conv, limit, *args)

    @_deferred
    def latest(self, viewer, target, after_ref=None, limit=50, kinds=None):
        """The newest ``limit`` events, after ``after_ref`` (exclusive) when given."""
        if after_ref is not None:
            check_ref(after_ref)
        return self._history(self._latest, viewer, target, limit, after_ref, kinds)

    def _latest(self, txn, conv, limit, after_ref, kinds):
        conds = [] if after_ref is None else [self._bound(txn, conv, after_ref).after()]
        return self._select(txn, conv, conds, kinds, True, limit)

    @_deferred
    def before(self, viewer, target, ref, limit=50, kinds=None):
        """The ``limit`` events just before ``ref`` (exclusive), oldest first."""
        check_ref(ref)
        return self._history(self._before, viewer, target, limit, ref, kinds)

    def _before(self, txn, conv, limit, ref, kinds):
        return self._select(txn, conv, [self._bound(txn, conv, ref).before()], kinds, True, limit)

    @_deferred
    def after(self, viewer, target, ref, limit=50, kinds=None):
        """The ``limit`` events just after ``ref`` (exclusive)."""
        check_ref(ref)
        return self._history(self._after, viewer, target, limit, ref, kinds)

    def _after(self, txn, conv, limit, ref, kinds):
        return self._select(txn, conv, [self._bound(txn, conv, ref).after()], kinds, False, limit)

    @_deferred
    def around(self, viewer, target, ref, limit=50, kinds=None):
        """Up to ``limit`` events centred on ``ref``; a msgid reference includes its message."""
        check_ref(ref)
        return self._history(self._around, viewer, target, limit, ref, kinds)

    def _around(self, txn, conv, limit, ref, kinds):
        bound = self._bound(txn, conv, ref)
        earlier = self._select(txn, conv, [bound.before()], kinds, True, limit)
        if bound.seq is not None:
            itself = self._select(txn, conv, [("t.seq = ?", bound.seq)], kinds, False, 1)
            later = self._select(txn, conv, [bound.after()], kinds, False, limit)
            items = earlier + itself + later
            return centred_window(items, len(earlier), limit, pivot_is_item=bool(itself))
        later = self._select(txn, conv, [("t.ms >= ?", bound.ms)], kinds, False, limit)
        return centred_window(earlier + later, len(earlier), limit, pivot_is_item=False)

    @_deferred
    def between(self, viewer, target, ref1, ref2, limit=50, kinds=None):
        """Up to ``limit`` events strictly between two references, counted from ``ref1``."""
        check_ref(ref1)
        check_ref(ref2)
        return self._history(self._between, viewer, target, limit, ref1, ref2, kinds)

    def _between(self, txn, conv, limit, ref1, ref2, kinds):
        first, second = self._bound(txn, conv, ref1), self._bound(txn, conv, ref2)
        if first.precedes(second):
            return self._select(txn, conv, [first.after(), second.before()], kinds, False, limit)
        return self._select(txn, conv, [first.before(), second.after()], kinds, True, limit)

    @_deferred
    def targets(self, viewer, start_time, end_time, limit=50, rooms=(), kinds=None):
        """Conversations with events strictly between two times: ``[(name, latest_time)]``.

        Counted from ``start_time`` (which may be the later bound), returned oldest first.
        """
        if limit <= 0:
            return defer.succeed([])
        room_names = {fold(r): r for r in rooms}
        args = (fold(viewer), to_ms(start_time), to_ms(end_time), limit, room_names, kinds)
        begun = self._once_begun(room_names)
        if begun is not None:
            return begun.addCallback(lambda _: self._read(self._targets, *args))
        return self._read(self._targets, *args)

    def _targets(self, txn, viewer, start_ms, end_ms, limit, room_names, kinds):
        low, high = sorted((start_ms, end_ms))
        where = ["t.ms > ?", "t.ms < ?"]
        params: list[Any] = [low, high]
        who = "(c.peer_b IS NOT NULL AND (c.peer_a = ? OR c.peer_b = ?))"
        params += [viewer, viewer]
        if room_names:
            who = f"({who} OR t.conv IN ({_placeholders(len(room_names))}))"
            params += sorted(room_names)
        where.append(who)
        if kinds is not None:
            kinds = sorted(kinds)
            where.append(f"t.kind IN ({_placeholders(len(kinds))})")
            params += kinds
        order = "ASC" if start_ms <= end_ms else "DESC"
        params.append(limit)
        txn.execute(
            self._q(
                "SELECT t.conv, c.peer_b, MAX(t.ms) AS latest, MAX(t.seq) AS last_seq "
                "FROM timeline t JOIN conversations c ON c.conv = t.conv "
                "LEFT JOIN room_epochs r ON r.conv = t.conv "
                f"WHERE {' AND '.join(where)} AND t.seq > COALESCE(r.after_seq, 0) "
                "GROUP BY t.conv, c.peer_b "
                f"ORDER BY latest {order}, t.conv {order} LIMIT ?"
            ),
            params,
        )
        rows = txn.fetchall()
        private_seqs = [row[3] for row in rows if row[1] is not None]
        last_events: dict[int, Event] = {}
        if private_seqs:
            txn.execute(
                self._q(f"SELECT seq, body FROM events WHERE seq IN ({_placeholders(len(private_seqs))})"),
                private_seqs,
            )
            last_events = {seq: decode_event(body) for seq, body in txn.fetchall()}
        found = []
        for conv, peer_b, latest, last_seq in rows:
            if peer_b is None:
                name = room_names.get(conv, conv)
            else:
                name = peer_name(last_events[last_seq], viewer)
            found.append((name, int(latest) / 1000.0))
        found.sort(key=lambda pair: (pair[1], fold(pair[0])))
        return found

    # -- accounts ---------------------------------------------------------------------

    def create_account(self, name: str, password_hash: str, email: Optional[str] = None, created: Optional[float] = None):
        """Store a new account; fails with ``AccountExists``. Fires with the ``Account``."""
        account = Account(name, password_hash, created if created is not None else time.time(), None, email)
        return self._write(self._create_account, account)

    def _create_account(self, txn, account: Account) -> Account:
        txn.execute(
            self._q(
                "INSERT INTO accounts (name_folded, name, password_hash, email, created, last_seen) "
                "VALUES (?, ?, ?, ?, ?, NULL) ON CONFLICT (name_folded) DO NOTHING RETURNING name"
            ),
            (fold(account.name), account.name, account.password_hash, account.email, account.created),
        )
        if txn.fetchone() is None:
            raise AccountExists(account.name)
        return account

    def get_account(self, name: str):
        """The ``Account`` called ``name`` in any case, or None."""
        return self._read(self._get_account, fold(name))

    def _get_account(self, txn, folded: str) -> Optional[Account]:
        txn.execute(
            self._q(
                "SELECT name, password_hash, created, last_seen, email FROM accounts WHERE name_folded = ?"
            ),
            (folded,),
        )
        row = txn.fetchone()
        return None if row is None else Account(row[0], row[1], row[2], row[3], row[4])

    def set_password_hash(self, name: str, password_hash: str):
        """Replace an account's password hash; fails with ``NoSuchAccount``."""
        return self._write(self._set_password_hash, name, password_hash)

    def _set_password_hash(self, txn, name: str, password_hash: str) -> None:
        txn.execute(
            self._q("UPDATE accounts SET password_hash = ? WHERE name_folded = ?"),
            (password_hash, fold(name)),
        )
        if txn.rowcount == 0:
            raise NoSuchAccount(name)

    def touch_account(self, name: str, when: float):
        """Record a login time; fires with True if the account exists."""
        return self._write(self._touch_account, fold(name), when)

    def _touch_account(self, txn, folded: str, when: float) -> bool:
        txn.execute(self._q("UPDATE accounts SET last_seen = ? WHERE name_folded = ?"), (when, folded))
        return txn.rowcount > 0

    def delete_account(self, name: str):
        """Remove an account; fires with True if it existed."""
        return self._write(self._delete_account, fold(name))

    def _delete_account(self, txn, folded: str) -> bool:
        txn.execute(self._q("DELETE FROM accounts WHERE name_folded = ?"), (folded,))
        return txn.rowcount > 0

    def account_names(self):
        """Every account's folded name, as a set."""
        return self._read(self._account_names)

    def _account_names(self, txn) -> set[str]:
        txn.execute("SELECT name_folded FROM accounts")
        return {row[0] for row in txn.fetchall()}

    # -- rooms ------------------------------------------------------------------------

    def save_room(self, record: RoomRecord):
        """Insert or replace a registered room."""
        return self._write(self._save_room, record)

    def _save_room(self, txn, r: RoomRecord) -> None:
        folded = fold(r.name)
        txn.execute(
            self._q(
                "INSERT INTO rooms (name_folded, name, topic, topic_setter, topic_time, modes, "
                "room_key, user_limit, created, founder) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (name_folded) DO UPDATE SET name = excluded.name, "
                "topic = excluded.topic, topic_setter = excluded.topic_setter, "
                "topic_time = excluded.topic_time, modes = excluded.modes, "
                "room_key = excluded.room_key, user_limit = excluded.user_limit, "
                "created = excluded.created, founder = excluded.founder"
            ),
            (folded, r.name, r.topic, r.topic_setter, r.topic_time, r.modes, r.key, r.limit, r.created, r.founder),
        )
        self._delete_room_lists(txn, folded)
        if r.bans:
            txn.executemany(
                self._q("INSERT INTO room_bans (room, position, mask, setter, set_at) VALUES (?, ?, ?, ?, ?)"),
                [(folded, i, b.mask, b.setter, b.time) for i, b in enumerate(r.bans)],
            )
        if r.operators:
            txn.executemany(
                self._q("INSERT INTO room_operators (room, position, name) VALUES (?, ?, ?)"),
                [(folded, i, op) for i, op in enumerate(r.operators)],
            )

    def _delete_room_lists(self, txn, folded: str) -> None:
        for table in ("room_bans", "room_operators"):
            txn.execute(self._q(f"DELETE FROM {table} WHERE room = ?"), (folded,))

    def delete_room(self, name: str):
        """Forget a registered room; fires with True if it existed."""
        return self._write(self._delete_room, fold(name))

    def _delete_room(self, txn, folded: str) -> bool:
        self._delete_room_lists(txn, folded)
        txn.execute(self._q("DELETE FROM rooms WHERE name_folded = ?"), (folded,))
        return txn.rowcount > 0

    def load_rooms(self):
        """Every registered room, as ``RoomRecord``s ordered by name."""
        return self._read(self._load_rooms)

    def _load_rooms(self, txn) -> list[RoomRecord]:
        bans: dict[str, list[Ban]] = {}
        txn.execute("SELECT room, mask, setter, set_at FROM room_bans ORDER BY room, position")
        for room, mask, setter, set_at in txn.fetchall():
            bans.setdefault(room, []).append(Ban(mask, setter, set_at))
        operators: dict[str, list[str]] = {}
        txn.execute("SELECT room, name FROM room_operators ORDER BY room, position")
        for room, name in txn.fetchall():
            operators.setdefault(room, []).append(name)
        txn.execute(
            "SELECT name_folded, name, topic, topic_setter, topic_time, modes, room_key, "
            "user_limit, created, founder FROM rooms ORDER BY name_folded"
        )
        return [
            RoomRecord(
                name=name,
                topic=topic,
                topic_setter=setter,
                topic_time=topic_time,
                modes=modes,
                key=key,
                limit=None if limit is None else int(limit),
                bans=tuple(bans.get(folded, ())),
                operators=tuple(operators.get(folded, ())),
                created=created,
                founder=founder,
            )
            for folded, name, topic, setter, topic_time, modes, key, limit, created, founder in txn.fetchall()
        ]

    # -- retention --------------------------------------------------------------------

    @defer.inlineCallbacks
    def prune(self, now: Optional[float] = None):
        """Apply [history] max_age_days and max_per_target; fires with events removed."""
        now = time.time() if now is None else now
        removed = 0
        if self.history.max_age_days > 0:
            cutoff = to_ms(now - self.history.max_age_days * 86400)
            while True:
                count, more = yield self._write(self._prune_old, cutoff)
                removed += count
                if not more:
                    break
        keep = self.history.max_per_target
        if keep > 0:
            crowded = yield self._read(self._crowded_conversations, keep)
            for conv in crowded:
                while True:
                    count, more = yield self._write(self._prune_conversation, conv, keep)
                    removed += count
                    if not more:
                        break
        if removed:
            yield self._write(self._drop_empty_conversations)
            self.log.info("{db}: retention removed {count} events", db=self.description, count=removed)
        return removed

    def _prune_old(self, txn, cutoff_ms: int) -> tuple[int, bool]:
        txn.execute(
            self._q("SELECT DISTINCT seq FROM timeline WHERE ms < ? ORDER BY seq LIMIT ?"),
            (cutoff_ms, PRUNE_CHUNK),
        )
        seqs = [row[0] for row in txn.fetchall()]
        if seqs:
            txn.execute(self._q(f"DELETE FROM timeline WHERE seq IN ({_placeholders(len(seqs))})"), seqs)
        return self._drop_orphans(txn, seqs), len(seqs) == PRUNE_CHUNK

    def _crowded_conversations(self, txn, keep: int) -> list[str]:
        txn.execute(
            self._q("SELECT conv FROM timeline GROUP BY conv HAVING COUNT(*) > ? ORDER BY conv"), (keep,)
        )
        return [row[0] for row in txn.fetchall()]

    def _prune_conversation(self, txn, conv: str, keep: int) -> tuple[int, bool]:
        txn.execute(
            self._q("SELECT seq FROM timeline WHERE conv = ? ORDER BY seq DESC LIMIT 1 OFFSET ?"),
            (conv, keep - 1),
        )
        row = txn.fetchone()
        if row is None:
            return 0, False
        txn.execute(
            self._q("SELECT seq FROM timeline WHERE conv = ? AND seq < ? ORDER BY seq LIMIT ?"),
            (conv, row[0], PRUNE_CHUNK),
        )
        seqs = [r[0] for r in txn.fetchall()]
        if seqs:
            txn.execute(
                self._q(f"DELETE FROM timeline WHERE conv = ? AND seq IN ({_placeholders(len(seqs))})"),
                [conv, *seqs],
            )
        return self._drop_orphans(txn, seqs), len(seqs) == PRUNE_CHUNK

    def _drop_orphans(self, txn, seqs: list[int]) -> int:
        """Delete the events among ``seqs`` that no conversation shows any more."""
        if not seqs:
            return 0
        txn.execute(
            self._q(
                f"DELETE FROM events WHERE seq IN ({_placeholders(len(seqs))}) "
                "AND NOT EXISTS (SELECT 1 FROM timeline t WHERE t.seq = events.seq)"
            ),
            seqs,
        )
        return max(txn.rowcount, 0)

    def _drop_empty_conversations(self, txn) -> None:
        # a room's incarnation marker goes with the last of its history: nothing older is
        # left for it to hide
        for table in ("conversations", "room_epochs"):
            txn.execute(
                f"DELETE FROM {table} WHERE NOT EXISTS "
                f"(SELECT 1 FROM timeline t WHERE t.conv = {table}.conv)"
            )
