"""The embedded default store: one SQLite file in WAL mode.

Two adbapi pools of one thread each: a writer connection (every write, in order, batched
by the group-commit writer) and a read-only connection, so history queries never wait
behind a commit. With ``synchronous=NORMAL`` in WAL mode a committed transaction is in
the operating system's hands when the commit returns, so it survives ``kill -9`` of the
server; ``sqlite_synchronous = "full"`` also makes it survive a power loss.
"""
from __future__ import annotations

import os
import sqlite3
import tempfile
from typing import Any, Callable, Optional

from twisted.enterprise.adbapi import ConnectionPool
from twisted.python.failure import Failure

from chathub.config.storage import HistoryConfig
from chathub.privatefiles import private_directory, private_file, tighten_if_present
from chathub.store.interfaces import StorageError
from chathub.store.schema import SQLITE
from chathub.store.sql import SqlStore
from chathub.store.sql.database import Cursor

#: how long a connection waits for a lock held by another process before failing
BUSY_TIMEOUT_SECONDS = 30.0


class SqliteStore(SqlStore):
    """``IStore`` on an SQLite file, created (with its directory) on first start."""

    dialect = SQLITE
    engine = "SQLite"

    def __init__(
        self,
        path: str,
        history: Optional[HistoryConfig] = None,
        synchronous: str = "normal",
        check_on_start: bool = True,
        reactor: Any = None,
    ) -> None:
        super().__init__(history, reactor)
        self.path = os.path.abspath(path)
        self.synchronous = synchronous.upper()
        self.check_on_start = check_on_start
        self.description = f"SQLite database {self.path}"

    def _prepare(self) -> None:
        directory = os.path.dirname(self.path)
        try:
            if not os.path.isdir(directory):
                private_directory(directory)
        except OSError as e:
            raise StorageError(
                f"cannot create the data directory {directory} for the SQLite database "
                f"{self.path}: {e.strerror or e}"
            ) from None
        if not os.path.isdir(directory):
            raise StorageError(f"the data directory {directory} is not a directory")
        if os.path.isdir(self.path):
            raise StorageError(f"the SQLite database {self.path} is a directory, not a file")
        if not os.access(directory, os.W_OK | os.X_OK):
            # WAL mode needs to create its -wal and -shm files next to the database
            raise StorageError(
                f"the data directory {directory} is not writable, so the SQLite database "
                f"{self.path} cannot be used"
            )
        if os.path.exists(self.path) and not os.access(self.path, os.R_OK | os.W_OK):
            raise StorageError(f"the SQLite database {self.path} is not readable and writable")
        # password hashes and private messages: SQLite gives its -wal and -shm files the
        # database file's permissions, so a private database keeps them private too
        try:
            tightened = private_file(self.path)
            for suffix in ("-wal", "-shm", "-journal"):
                tightened = tighten_if_present(self.path + suffix) or tightened
        except OSError as e:
            raise StorageError(f"cannot make the SQLite database {self.path} private: {e.strerror or e}") from None
        if tightened:
            self.log.warn("{db} was readable by other users; it is now private (0600)", db=self.description)

    def _make_pools(self) -> tuple[ConnectionPool, ConnectionPool]:
        def pool(name: str, openfun: Callable[[sqlite3.Connection], None]) -> ConnectionPool:
            return ConnectionPool(
                "sqlite3",
                self.path,
                timeout=BUSY_TIMEOUT_SECONDS,
                check_same_thread=False,  # adbapi closes connections from the reactor thread
                isolation_level=None,  # we say BEGIN ourselves (and DDL is transactional)
                cp_min=1,
                cp_max=1,
                cp_name=name,
                cp_openfun=openfun,
                cp_reactor=self._reactor,
            )

        return pool("chathub-sqlite-write", self._setup_writer), pool(
            "chathub-sqlite-read", self._setup_reader
        )

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_SECONDS, isolation_level=None)
        self._setup_writer(conn)
        return conn

    def _setup_writer(self, conn: sqlite3.Connection) -> None:
        try:
            mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                self.log.warn(
                    "{db}: the file system does not allow WAL mode (journal mode is {mode})",
                    db=self.description,
                    mode=mode,
                )
            conn.execute(f"PRAGMA synchronous={self.synchronous}")
        except BaseException:
            conn.close()
            raise

    # -- for the admin command (blocking, a connection of its own) ---------------------

    def _connect_existing(self) -> sqlite3.Connection:
        if not os.path.isfile(self.path):
            raise StorageError(
                f"there is no SQLite database at {self.path}: check --config / --data-dir "
                "(the server makes it on its first start)"
            )
        # read and write, not mode=ro: a read-only connection cannot open a WAL database
        # whose -shm file is missing; nothing here writes
        return sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_SECONDS, isolation_level=None)

    def _begin_snapshot(self, txn: Cursor) -> None:
        txn.execute("BEGIN")  # WAL: a reader sees one moment and the server's writer goes on

    def _size(self, txn: Cursor) -> int:
        return sum(os.path.getsize(p) for p in (self.path, self.path + "-wal") if os.path.exists(p))

    def backup(self, path: str, replace: bool = False) -> int:
        """Copy the live database with SQLite's online backup API into a new file ``path``
        (mode 0600, one self-contained file, checked before it takes the name); returns its
        size. In WAL mode the copy is one read transaction: it is the database as of one
        commit, and the server goes on committing meanwhile."""
        target = os.path.abspath(path)
        if target in {self.path + suffix for suffix in ("", "-wal", "-shm", "-journal")}:
            raise StorageError(f"{target} is the live database itself; choose another file")
        if os.path.isdir(target):
            raise StorageError(f"{target} is a directory; name the backup file")
        if os.path.exists(target) and not replace:
            raise StorageError(f"{target} exists; choose another name, or --replace it")
        source = self._connect_existing()
        try:
            # mkstemp makes the file 0600 whatever the umask: the copy holds password hashes
            # and private messages, like the database
            fd, partial = tempfile.mkstemp(dir=os.path.dirname(target), prefix=".chathub-backup-", suffix=".part")
        except OSError as e:
            source.close()
            raise StorageError(f"cannot write a backup next to {target}: {e.strerror or e}") from None
        os.close(fd)
        try:
            copy = sqlite3.connect(partial, isolation_level=None)
            try:
                # pages=-1: the whole database in one step, so in one read transaction
                source.backup(copy, pages=-1)
                # the copy is one file: no -wal beside it to lose
                copy.execute("PRAGMA journal_mode=DELETE")
                problems = [row[0] for row in copy.execute("PRAGMA quick_check(5)") if row[0] != "ok"]
                if problems:
                    raise StorageError(f"the backup failed its integrity check: {'; '.join(problems)}")
            finally:
                copy.close()
            with open(partial, "rb") as f:
                os.fsync(f.fileno())
            os.replace(partial, target)
            partial = ""
            directory = os.open(os.path.dirname(target), os.O_RDONLY)
            try:
                os.fsync(directory)
            finally:
                os.close(directory)
            return os.path.getsize(target)
        except sqlite3.Error as e:
            raise StorageError(f"the backup of {self.description} failed: {self._detail(e)}") from None
        except OSError as e:
            raise StorageError(f"cannot write the backup {target}: {e.strerror or e}") from None
        finally:
            source.close()
            if partial:
                for leftover in (partial, partial + "-journal"):
                    if os.path.exists(leftover):
                        os.unlink(leftover)

    def _setup_reader(self, conn: sqlite3.Connection) -> None:
        try:
            conn.execute("PRAGMA query_only=ON")
        except BaseException:
            conn.close()
            raise

    def _begin(self, txn: Cursor) -> None:
        # take the write lock now, not halfway through the transaction
        txn.execute("BEGIN IMMEDIATE")

    def _check(self, txn: Cursor) -> None:
        if not self.check_on_start:
            return
        txn.execute("PRAGMA quick_check(5)")
        problems = [row[0] for row in txn.fetchall() if row[0] != "ok"]
        if problems:
            raise StorageError(
                f"the SQLite database {self.path} is damaged ({'; '.join(problems)}): restore it "
                "from a backup, or move it away to start with an empty one"
            )

    def _open_error(self, failure: Failure) -> StorageError:
        e = failure.value
        detail = self._detail(e)
        if isinstance(e, sqlite3.DatabaseError):
            lowered = detail.lower()
            if "not a database" in lowered or "malformed" in lowered or "corrupt" in lowered:
                return StorageError(
                    f"the SQLite database {self.path} is corrupt or is not an SQLite file "
                    f"({detail}): restore it from a backup, or move it away to start with an empty one"
                )
            if "unable to open" in lowered:
                return StorageError(
                    f"cannot open the SQLite database {self.path}: unable to open the file "
                    "(check that its directory exists and is writable)"
                )
            if "readonly" in lowered or "read-only" in lowered:
                return StorageError(f"the SQLite database {self.path} is read-only ({detail})")
            if "locked" in lowered or "busy" in lowered:
                return StorageError(
                    f"the SQLite database {self.path} is locked by another process ({detail})"
                )
        return StorageError(f"cannot open the SQLite database {self.path}: {detail}")
