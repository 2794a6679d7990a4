"""Durable storage: history, accounts and persistent rooms behind ``IStore``.

``open_store(config)`` picks the backend the [storage] section names; call ``open()`` on
the result before use (``StoreService`` does that as part of the service tree).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from chathub.store.interfaces import (
    Account,
    AccountExists,
    IStore,
    NoSuchAccount,
    StorageError,
    UnknownReference,
)

if TYPE_CHECKING:
    from chathub.config import Config

__all__ = [
    "Account",
    "AccountExists",
    "IStore",
    "NoSuchAccount",
    "StorageError",
    "UnknownReference",
    "open_store",
]


def open_store(config: Config, reactor: Any = None) -> IStore:
    """The store ``config`` ([storage], [history], server.data_dir) asks for, not yet opened."""
    storage = config.storage
    if storage.backend == "postgres":
        from chathub.store.postgres import PostgresStore

        return PostgresStore(
            storage.postgres_dsn,
            config.history,
            pool_size=storage.postgres_pool_size,
            reactor=reactor,
        )
    from chathub.store.sqlite import SqliteStore

    return SqliteStore(
        config.data_path(storage.sqlite_path),
        config.history,
        synchronous=storage.sqlite_synchronous,
        check_on_start=storage.sqlite_check_on_start,
        reactor=reactor,
    )
