"""Fixtures for the storage tests: one store factory parametrised over SQLite and PostgreSQL.

PostgreSQL: the session creates its own uniquely named database on the server named by
``CHATHUB_TEST_POSTGRES_DSN`` (default ``host=127.0.0.1 port=5432 user=postgres
dbname=postgres``) and drops it at the end; each test gets its own schema in it. When the
server cannot be reached the PostgreSQL tests are skipped, unless
``CHATHUB_REQUIRE_POSTGRES=1`` (CI), where they fail.

Import the fixtures into a test module with ``from tests.store_fixtures import *``.
"""
from __future__ import annotations

import itertools
import os
import uuid
from typing import Optional

import pytest
import pytest_twisted
from twisted.internet import defer

from chathub.config.storage import HistoryConfig
from chathub.events import Event, EventIds, Kind, Source

ADMIN_DSN_DEFAULT = "host=127.0.0.1 port=5432 user=postgres dbname=postgres"
BACKENDS = ["sqlite", "postgres"]

__all__ = [
    "BACKENDS",
    "EventMaker",
    "postgres_database",
    "postgres_dsn",
    "store_factory",
    "store",
]


def _admin_dsn() -> str:
    return os.environ.get("CHATHUB_TEST_POSTGRES_DSN", ADMIN_DSN_DEFAULT)


def _require_postgres() -> bool:
    return os.environ.get("CHATHUB_REQUIRE_POSTGRES") == "1"


@pytest.fixture(scope="session")
def postgres_database():
    """The connection string of a fresh database, created for this test session."""
    import psycopg
    from psycopg.conninfo import make_conninfo

    admin = _admin_dsn()
    name = f"chathub_test_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    try:
        with psycopg.connect(admin, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
    except psycopg.Error as e:
        reason = f"PostgreSQL is not reachable at {admin!r}: {str(e).strip().splitlines()[0]}"
        if _require_postgres():
            pytest.fail(f"{reason} (CHATHUB_REQUIRE_POSTGRES=1)")
        pytest.skip(f"{reason}; set CHATHUB_REQUIRE_POSTGRES=1 to make this a failure")
    yield make_conninfo(admin, dbname=name)
    with psycopg.connect(admin, autocommit=True, connect_timeout=5) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


_schemas = itertools.count(1)


@pytest.fixture
def postgres_dsn(postgres_database):
    """A DSN whose tables land in a schema of their own, dropped after the test."""
    import psycopg
    from psycopg.conninfo import make_conninfo

    schema = f"t{next(_schemas)}"
    with psycopg.connect(postgres_database, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    yield make_conninfo(postgres_database, options=f"-c search_path={schema}")
    with psycopg.connect(postgres_database, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA {schema} CASCADE")


@pytest_twisted.async_yield_fixture(params=BACKENDS)
async def store_factory(request, tmp_path):
    """``await make(history=None)``: an open store of this backend, on the same database
    every time within a test (so a second store sees what the first committed)."""
    backend = request.param
    dsn = request.getfixturevalue("postgres_dsn") if backend == "postgres" else None
    stores = []

    async def make(history: Optional[HistoryConfig] = None, open: bool = True):
        if backend == "postgres":
            from chathub.store.postgres import PostgresStore

            s = PostgresStore(dsn, history, pool_size=2)
        else:
            from chathub.store.sqlite import SqliteStore

            s = SqliteStore(str(tmp_path / "data" / "chathub.sqlite3"), history)
        stores.append(s)
        if open:
            await s.open()
        return s

    make.backend = backend
    make.dsn = dsn
    make.sqlite_path = str(tmp_path / "data" / "chathub.sqlite3")
    yield make
    for s in stores:
        await s.close()


@pytest_twisted.async_fixture
async def store(store_factory):
    """An open store with default [history] settings."""
    return await store_factory()


async def append_all(store, events) -> None:
    """Append ``events`` in one reactor turn (one group commit) and wait for their commit."""
    await defer.gatherResults([store.append(e) for e in events])


def texts(events) -> list[str]:
    """The text of each event, in order."""
    return [e.text for e in events]


class EventMaker:
    """Makes events with distinct, increasing times (one second apart by default)."""

    def __init__(self, start: float = 1_700_000_000.0, step: float = 1.0, node: Optional[bytes] = None) -> None:
        self.now = start
        self.step = step
        self.ids = EventIds(node, clock=self._clock)  # ``node``: that of the node making them

    def _clock(self) -> float:
        t = self.now
        self.now += self.step
        return t

    def msg(self, sender: str, target: str, text: str = "", kind: str = Kind.MESSAGE, **kw) -> Event:
        return self.ids.make(kind, Source(nick=sender, user=sender.lower(), host="example.test"), target, text, **kw)

    def chat(self, sender: str, target: str, count: int, prefix: str = "m") -> list[Event]:
        return [self.msg(sender, target, f"{prefix}{i}") for i in range(count)]
