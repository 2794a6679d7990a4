"""``SqlDatabase``: the life cycle every SQL store domain builds on.

Opening (directories, pools, schema migrations, the integrity check), ``preflight`` (the
same, blocking, before the reactor runs), closing, and running work off the reactor: writes
through one ``GroupCommitWriter`` (serial, batched), reads through the read pool, with a
lost connection's read tried once more. A backend (SQLite, PostgreSQL) supplies the pools,
the dialect, how a write transaction begins and how its errors read; each domain (history,
retention, accounts, rooms) is a subclass of this one, composed into ``SqlStore``.
"""
from __future__ import annotations

import functools
from contextlib import nullcontext
from typing import Any, Callable, ContextManager, Iterable, Optional, Protocol, Sequence, TypeVar

from twisted.enterprise.adbapi import ConnectionPool
from twisted.internet import defer, threads
from twisted.logger import Logger
from twisted.python.failure import Failure

from chathub.config.storage import HistoryConfig
from chathub.store.interfaces import StorageError, UnknownReference
from chathub.store.schema import LATEST_VERSION, MIGRATIONS, Dialect
from chathub.store.writer import GroupCommitWriter


class Cursor(Protocol):
    """The part of a DB-API cursor a transaction function uses (adbapi's ``Transaction``)."""

    rowcount: int

    def execute(self, query: str, params: Sequence[Any] = ...) -> Any:
        """Run one statement."""

    def executemany(self, query: str, params: Iterable[Sequence[Any]]) -> Any:
        """Run one statement for each parameter row."""

    def fetchone(self) -> Optional[Sequence[Any]]:
        """The next row of the last query, or None."""

    def fetchall(self) -> list[Sequence[Any]]:
        """The remaining rows of the last query."""


class Connection(Protocol):
    """The part of a DB-API connection ``preflight`` uses."""

    def cursor(self) -> Any:
        """A new cursor."""

    def commit(self) -> None:
        """Commit the transaction."""

    def rollback(self) -> None:
        """Roll the transaction back."""

    def close(self) -> None:
        """Close the connection."""


_Method = TypeVar("_Method", bound=Callable[..., Any])


def deferred(method: _Method) -> _Method:
    """Make bad arguments fail the returned Deferred instead of raising."""

    @functools.wraps(method)
    def wrapper(*args: Any, **kwargs: Any) -> defer.Deferred[Any]:
        return defer.maybeDeferred(method, *args, **kwargs)

    return wrapper  # type: ignore[return-value]


def _rewrite_version(txn: Cursor) -> None:
    # the one row of schema_version written back unchanged: the database must take a
    # write (a read-only file or mount, a connection made read-only, a lost server fail
    # it) and nothing is different afterwards
    txn.execute("UPDATE schema_version SET version = version")


def placeholders(n: int) -> str:
    """``?, ?, ...``: ``n`` parameters (the dialect turns ``?`` into the driver's own)."""
    return ", ".join("?" * n)


class SqlDatabase:
    """The database under every domain of ``SqlStore``: pools, schema, the write queue."""

    log = Logger()
    dialect: Dialect
    #: "SQLite" or "PostgreSQL", for messages shown to users
    engine = "SQL"
    #: ``SELECT ... FOR UPDATE`` where the database has it
    lock_rows = ""
    #: the database takes a list as one array parameter (``= ANY(%b)``, ``unnest(%b)``, in
    #: psycopg's binary format): bulk statements then have one text whatever their row
    #: count, which the driver caches and the server prepares
    array_parameters = False
    #: run first in each schema transaction, so processes opening one database at once
    #: (cluster nodes starting together) migrate it one after the other
    schema_lock = ""

    def __init__(self, history: Optional[HistoryConfig] = None, reactor: Any = None) -> None:
        if reactor is None:
            from twisted.internet import reactor
        self._reactor = reactor
        self.history = history or HistoryConfig()
        self._write_pool: Optional[ConnectionPool] = None
        self._read_pool: Optional[ConnectionPool] = None
        self._writer: Optional[GroupCommitWriter] = None
        #: wrapped around the release of each committed group of writes (``wrap_releases``)
        self._around_release: Callable[[], ContextManager[object]] = nullcontext
        self.description = self.engine + " database"

    # -- what a backend provides -------------------------------------------------

    def _prepare(self) -> None:
        """Runs in a thread before the first connection (create directories, check files)."""

    def _make_pools(self) -> tuple[ConnectionPool, ConnectionPool]:
        """The write pool and the read pool (they may be the same)."""
        raise NotImplementedError

    def _connect(self) -> Connection:
        """A plain DB-API connection, for ``preflight`` (before the reactor runs)."""
        raise NotImplementedError

    def _begin(self, txn: Cursor) -> None:
        """Start a write transaction (when the driver does not start one itself)."""

    def _check(self, txn: Cursor) -> None:
        """Integrity check at open; raise ``StorageError`` when the database is damaged."""

    def _open_error(self, failure: Failure) -> StorageError:
        """A start-up failure as an operator-facing message naming the database."""
        return StorageError(f"cannot open the {self.description}: {self._detail(failure.value)}")

    def _transient(self, failure: Failure) -> bool:
        """True for a failure that trying again may cure (a lost server connection)."""
        return False

    def _detail(self, exc: Optional[BaseException]) -> str:
        """The driver's error message, short and without secrets."""
        return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__

    # -- what the history domain provides ----------------------------------------

    def _write_events(self, txn: Cursor, items: list[Any]) -> Any:
        """Write one group of appended items (the group-commit writer's batch function)."""
        raise NotImplementedError

    def _committed_batch(self, items: list[Any], result: Any) -> None:
        """A group written by ``_write_events`` (which returned ``result``) is committed."""

    # -- life cycle ----------------------------------------------------------------

    @defer.inlineCallbacks
    def _bring_up_to_date(self, run: Callable[..., defer.Deferred[Any]]) -> Any:
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
        conn: Optional[Connection] = None

        def run(fn: Callable[..., Any], *args: Any) -> defer.Deferred[Any]:
            assert conn is not None
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

        results: list[Any] = []
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
    def open(self) -> Any:
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
            committed=self._committed_batch,
            # as reads: once per connection the pool may hold (``_read``)
            retries=max(1, int(getattr(self._write_pool, "max", 1))),
        )
        self.log.info("{db} open", db=self.description)

    def wrap_releases(self, around: Callable[[], ContextManager[object]]) -> None:
        """Release each committed group of writes inside ``around()`` (the hub's fan-out
        batching, so a group reaches each member as one write)."""
        self._around_release = around

    @defer.inlineCallbacks
    def close(self) -> Any:
        """Commit what is queued, then close the connections."""
        writer = self._writer
        if writer is not None:
            yield writer.close()
            self.log.info(
                "{db}: wrote {items} events in {commits} transactions ({mean:.1f} a transaction)",
                db=self.description, items=writer.items_written, commits=writer.commits,
                mean=writer.items_written / max(1, writer.commits),
            )
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

    def _transaction(self, txn: Cursor, fn: Callable[..., Any], *args: Any) -> Any:
        self._begin(txn)
        return fn(txn, *args)

    def _run_write(self, fn: Callable[..., Any], *args: Any) -> defer.Deferred[Any]:
        assert self._write_pool is not None
        d: defer.Deferred[Any] = self._write_pool.runInteraction(self._transaction, fn, *args)
        return d

    def _explain(self, failure: Failure, what: str) -> StorageError:
        # not logged here: the writer logs a run of failures once (FailureEpisode)
        detail = self._detail(failure.value)
        return StorageError(f"the {self.engine} database could not be written: {detail}")

    def _write(self, fn: Callable[..., Any], *args: Any) -> defer.Deferred[Any]:
        """Run ``fn(txn, *args)`` as its own transaction, in turn with every other write."""
        if self._writer is None:
            return defer.fail(StorageError("storage is not open"))
        return self._writer.call(fn, *args)

    def check_writable(self) -> defer.Deferred[None]:
        """A real write, in turn with the others (``IStore.check_writable``)."""
        return self._write(_rewrite_version)

    def _read(self, fn: Callable[..., Any], *args: Any) -> defer.Deferred[Any]:
        """Run ``fn(txn, *args)`` on a read connection; a driver failure becomes a
        ``StorageError`` (logged), after retries while it was a lost connection: once per
        connection the pool may hold, since after a database restart every pooled
        connection is dead and a retry may be handed the next dead one (adbapi drops each
        one whose interaction failed this way, so the last retry gets a new connection)."""
        if self._read_pool is None:
            return defer.fail(StorageError("storage is not open"))
        d: defer.Deferred[Any] = self._read_pool.runInteraction(fn, *args)
        d.addErrback(self._read_again, fn, args, max(1, int(getattr(self._read_pool, "max", 1))))
        d.addErrback(self._read_failed)
        return d

    def _read_again(self, failure: Failure, fn: Callable[..., Any], args: tuple[Any, ...], left: int) -> Any:
        if left <= 0 or not self._transient(failure) or self._read_pool is None:
            return failure
        self.log.warn(
            "{db}: a read failed ({error}); trying it again", db=self.description, error=failure.getErrorMessage()
        )
        d: defer.Deferred[Any] = self._read_pool.runInteraction(fn, *args)
        return d.addErrback(self._read_again, fn, args, left - 1)

    def _read_failed(self, failure: Failure) -> Any:
        if failure.check(StorageError, UnknownReference, ValueError):
            return failure
        detail = self._detail(failure.value)
        self.log.failure("{db}: read failed: {detail}", failure, db=self.description, detail=detail)
        raise StorageError(f"the {self.engine} database could not be read: {detail}")

    def _q(self, query: str) -> str:
        """``query`` in this backend's dialect."""
        return self.dialect.sql(query)

    # -- schema ----------------------------------------------------------------------

    def _ensure_version_table(self, txn: Cursor) -> None:
        if self.schema_lock:
            txn.execute(self.schema_lock)
        txn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")

    def _current_version(self, txn: Cursor) -> int:
        txn.execute("SELECT version FROM schema_version")
        rows = txn.fetchall()
        if not rows:
            return 0
        return int(rows[0][0])

    def _migrate(self, txn: Cursor, number: int, statements: Sequence[str]) -> None:
        if self.schema_lock:
            txn.execute(self.schema_lock)
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
