"""The PostgreSQL store: the same schema and semantics as SQLite, through psycopg 3.

psycopg runs in an adbapi thread pool (the reactor stays whatever reactor it is). Writes
still go one transaction at a time through the group-commit writer, so their order is
the order they were asked for; reads use any free connection. A connection that breaks
(the server restarted) is replaced on the next use.
"""
from __future__ import annotations

from typing import Any, Optional

import psycopg
from psycopg.conninfo import conninfo_to_dict
from twisted.enterprise.adbapi import ConnectionLost, ConnectionPool
from twisted.python.failure import Failure

from chathub.config.storage import HistoryConfig
from chathub.store.interfaces import StorageError
from chathub.store.schema import POSTGRES, TABLES
from chathub.store.sql import SqlStore
from chathub.store.sql.database import Cursor

#: seconds to wait for the server when connecting, unless the DSN says otherwise
CONNECT_TIMEOUT = 10


def describe_dsn(dsn: str) -> str:
    """The connection string without its password, fit for logs and error messages."""
    try:
        params = conninfo_to_dict(dsn)
    except psycopg.Error:
        return "(an invalid storage.postgres_dsn)"
    shown = [f"{k}={params[k]}" for k in ("host", "port", "dbname", "user") if params.get(k)]
    return " ".join(shown) or "(libpq defaults)"


class PostgresStore(SqlStore):
    """``IStore`` on a PostgreSQL database named by a libpq connection string."""

    dialect = POSTGRES
    engine = "PostgreSQL"
    lock_rows = " FOR UPDATE"
    array_parameters = True
    # CREATE TABLE IF NOT EXISTS is not safe against a concurrent one (pg_type's unique
    # index fails): a transaction-scoped advisory lock, per database, serializes them
    schema_lock = "SELECT pg_advisory_xact_lock(7421730001)"

    def __init__(
        self,
        dsn: str,
        history: Optional[HistoryConfig] = None,
        pool_size: int = 4,
        reactor: Any = None,
    ) -> None:
        super().__init__(history, reactor)
        self.dsn = dsn
        self.pool_size = pool_size
        self._connect_kwargs: dict[str, Any] = {}
        self.description = f"PostgreSQL database ({describe_dsn(dsn)})"

    def _prepare(self) -> None:
        try:
            params = conninfo_to_dict(self.dsn)
        except psycopg.Error:
            # libpq's message may quote the string, password included: say less
            raise StorageError("storage.postgres_dsn is not a valid PostgreSQL connection string") from None
        self._connect_kwargs = {"application_name": "chathub"}
        if "connect_timeout" not in params:
            self._connect_kwargs["connect_timeout"] = CONNECT_TIMEOUT

    def _make_pools(self) -> tuple[ConnectionPool, ConnectionPool]:
        pool = ConnectionPool(
            "psycopg",
            conninfo=self.dsn,
            cp_min=1,
            cp_max=self.pool_size,
            cp_name="chathub-postgres",
            cp_reconnect=True,
            cp_reactor=self._reactor,
            **self._connect_kwargs,
        )
        return pool, pool

    def _connect(self) -> psycopg.Connection:
        return psycopg.connect(self.dsn, **self._connect_kwargs)

    def _begin_snapshot(self, txn: Cursor) -> None:
        txn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")

    def _size(self, txn: Cursor) -> int:
        # chathub's own tables (they may share a database), indexes and TOAST included
        txn.execute(
            "SELECT COALESCE(SUM(pg_total_relation_size(to_regclass(t))), 0) FROM unnest(%s::text[]) AS t",
            (list(TABLES),),
        )
        row = txn.fetchone()
        return int(row[0]) if row else 0

    def backup(self, path: str, replace: bool = False) -> int:
        """PostgreSQL has its own online backup: pg_dump (see docs/storage.md)."""
        raise StorageError(
            f"chathub does not copy a PostgreSQL database: use pg_dump while the server runs, e.g. "
            f"pg_dump --format=custom --file={path} '{describe_dsn(self.dsn)}' "
            "(a consistent snapshot; restore with pg_restore; docs/storage.md, Backups)"
        )

    def _transient(self, failure: Failure) -> bool:
        # adbapi replaces a connection whose rollback failed, so a retry gets a new one
        return failure.check(psycopg.OperationalError, ConnectionLost) is not None

    def _detail(self, exc: Optional[BaseException]) -> str:
        if isinstance(exc, psycopg.Error):
            primary = exc.diag.message_primary if exc.diag else None
            if primary:
                return primary
        return super()._detail(exc)

    def _open_error(self, failure: Failure) -> StorageError:
        e = failure.value
        if isinstance(e, psycopg.OperationalError):
            return StorageError(
                f"cannot connect to the {self.description}: {self._detail(e)}"
            )
        return super()._open_error(failure)
