"""PostgreSQL specifics: connection failures at start-up, and surviving dropped connections."""
from __future__ import annotations

import pytest
import pytest_twisted

from chathub.config import parse_config
from chathub.store import StorageError, open_store
from chathub.store.postgres import PostgresStore, describe_dsn
from tests.store_fixtures import EventMaker, postgres_database, postgres_dsn  # noqa: F401 (fixtures)


def test_describe_dsn_hides_the_password():
    assert describe_dsn("host=db port=5433 dbname=chat user=hub password=hunter2") == (
        "host=db port=5433 dbname=chat user=hub"
    )
    assert "hunter2" not in describe_dsn("postgresql://hub:hunter2@db:5433/chat")
    assert "hunter2" not in describe_dsn("host=db password='hunter2")


def test_open_store_selects_postgres():
    config = parse_config('[storage]\nbackend = "postgres"\npostgres_dsn = "host=db dbname=chat"\npostgres_pool_size = 3')
    store = open_store(config)
    assert isinstance(store, PostgresStore)
    assert store.pool_size == 3
    assert store.description == "PostgreSQL database (host=db dbname=chat)"


@pytest_twisted.ensureDeferred
async def test_unreachable_server_stops_start_up_without_leaking_the_password():
    dsn = "host=127.0.0.1 port=1 dbname=chat user=hub password=hunter2 connect_timeout=3"
    with pytest.raises(StorageError) as e:
        await PostgresStore(dsn).open()
    message = str(e.value)
    assert message.startswith("cannot connect to the PostgreSQL database (host=127.0.0.1 port=1 dbname=chat user=hub)")
    assert "hunter2" not in message
    with pytest.raises(StorageError) as e:
        PostgresStore(dsn).preflight()
    assert "hunter2" not in str(e.value) and "port=1" in str(e.value)


@pytest_twisted.ensureDeferred
async def test_invalid_dsn():
    with pytest.raises(StorageError) as e:
        await PostgresStore("host=db password='hunter2").open()
    assert "not a valid PostgreSQL connection string" in str(e.value)
    assert "hunter2" not in str(e.value)


@pytest_twisted.ensureDeferred
async def test_survives_the_server_dropping_its_connections(postgres_dsn):  # noqa: F811
    import psycopg

    store = PostgresStore(postgres_dsn, pool_size=1)
    await store.open()
    try:
        make = EventMaker()
        await store.append(make.msg("alice", "#pg", "before"))
        with psycopg.connect(postgres_dsn, autocommit=True) as admin:
            killed = admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE application_name = 'chathub' AND datname = current_database()"
            ).fetchall()
        assert killed  # the store's connection is gone
        after = make.msg("alice", "#pg", "after")
        await store.append(after)  # retried on a new connection
        assert [e.text for e in await store.latest("alice", "#pg", None, 10)] == ["before", "after"]
    finally:
        await store.close()
