"""SQLite specifics: the file, its directory, start-up failures, durability settings, disk full."""
from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import pytest_twisted
from twisted.internet import defer

from chathub.config import Config, parse_config
from chathub.store import StorageError, open_store
from chathub.store.schema import LATEST_VERSION
from chathub.store.sqlite import SqliteStore
from tests.store_fixtures import EventMaker

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def db_path(tmp_path):
    return str(tmp_path / "var" / "deep" / "chathub.sqlite3")


async def opened(path, **kw):
    store = SqliteStore(path, **kw)
    await store.open()
    return store


@pytest_twisted.ensureDeferred
async def test_created_on_first_start_in_wal_mode(db_path):
    store = await opened(db_path)
    try:
        assert os.path.isfile(db_path)
        conn = sqlite3.connect(db_path)
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("SELECT version FROM schema_version").fetchall() == [(LATEST_VERSION,)]
        conn.close()
    finally:
        await store.close()
    # a second start finds the schema current and keeps the data
    store = await opened(db_path)
    await store.close()


@pytest_twisted.ensureDeferred
async def test_open_store_follows_the_config(tmp_path):
    config = parse_config(
        f'[server]\ndata_dir = "{tmp_path / "data"}"\n[storage]\nsqlite_path = "h.db"\nsqlite_synchronous = "full"\n'
    )
    store = open_store(config)
    assert isinstance(store, SqliteStore)
    assert store.path == str(tmp_path / "data" / "h.db")
    assert store.synchronous == "FULL"
    await store.open()
    await store.close()
    assert isinstance(open_store(Config()), SqliteStore)


def garbage(path: str) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(b"this is not an SQLite database, it is garbage\n" * 200)


@pytest_twisted.ensureDeferred
async def test_corrupt_file_stops_start_up_naming_the_file(db_path):
    garbage(db_path)
    store = SqliteStore(db_path)
    with pytest.raises(StorageError) as e:
        await store.open()
    message = str(e.value)
    assert db_path in message
    assert "corrupt" in message
    # the synchronous check for the twistd plugin says the same
    with pytest.raises(StorageError) as e:
        SqliteStore(db_path).preflight()
    assert str(e.value) == message
    # nothing was overwritten
    with open(db_path, "rb") as f:
        assert f.read(20) == b"this is not an SQLit"


@pytest_twisted.ensureDeferred
async def test_damaged_pages_are_found_at_start(db_path):
    store = await opened(db_path)
    events = EventMaker().chat("alice", "#big", 300, prefix="x" * 200)
    await defer.gatherResults([store.append(e) for e in events])
    await store.close()
    size = os.path.getsize(db_path)
    with open(db_path, "r+b") as f:  # scribble over the middle of the file, past the header
        f.seek(size // 2)
        f.write(b"\xff\x00\x13\x37" * 2048)
    with pytest.raises(StorageError) as e:
        SqliteStore(db_path).preflight()
    assert db_path in str(e.value)
    assert "damaged" in str(e.value) or "corrupt" in str(e.value)


@pytest_twisted.ensureDeferred
async def test_unusable_data_directory_stops_start_up(tmp_path):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the data directory should be")
    path = str(blocker / "var" / "chathub.sqlite3")
    with pytest.raises(StorageError) as e:
        await SqliteStore(path).open()
    assert str(blocker / "var") in str(e.value)
    assert "cannot create the data directory" in str(e.value)
    with pytest.raises(StorageError):
        SqliteStore(path).preflight()


@pytest_twisted.ensureDeferred
async def test_database_path_that_is_a_directory(tmp_path):
    os.makedirs(tmp_path / "db.sqlite3")
    with pytest.raises(StorageError) as e:
        await SqliteStore(str(tmp_path / "db.sqlite3")).open()
    assert "is a directory" in str(e.value)


READ_ONLY_CHECK = """
import sys
from chathub.store import StorageError
from chathub.store.sqlite import SqliteStore
try:
    SqliteStore(sys.argv[1]).preflight()
except StorageError as e:
    print(e)
    sys.exit(3)
"""


def test_read_only_directory_stops_start_up(tmp_path):
    """The data directory on a read-only mount (a private mount namespace, so it works as
    root too): start-up stops with a message naming it."""
    data = tmp_path / "data"
    path = str(data / "chathub.sqlite3")
    SqliteStore(path).preflight()  # an existing, healthy database
    env = dict(os.environ, PYTHONPATH=str(REPO))
    script = f'mount --bind "{data}" "{data}" && mount -o remount,ro,bind "{data}" && exec "$0" -c "$1" "$2"'
    result = subprocess.run(
        ["unshare", "--map-root-user", "--mount", "sh", "-c", script, sys.executable, READ_ONLY_CHECK, path],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert result.returncode == 3, result.stderr
    assert f"the data directory {data} is not writable" in result.stdout


@pytest_twisted.ensureDeferred
async def test_newer_schema_is_refused(db_path):
    store = await opened(db_path)
    await store.close()
    conn = sqlite3.connect(db_path)
    conn.execute("UPDATE schema_version SET version = 999")
    conn.commit()
    conn.close()
    with pytest.raises(StorageError) as e:
        await SqliteStore(db_path).open()
    assert "999" in str(e.value) and "newer" in str(e.value)


@pytest_twisted.ensureDeferred
async def test_preflight_migrates_before_the_reactor_is_needed(db_path):
    SqliteStore(db_path).preflight()
    conn = sqlite3.connect(db_path)
    assert conn.execute("SELECT version FROM schema_version").fetchone() == (LATEST_VERSION,)
    conn.close()
    store = await opened(db_path)
    await store.close()


@pytest_twisted.ensureDeferred
async def test_disk_full_fails_the_write_and_recovers(db_path):
    """SQLite's page limit makes the disk 'full' for the store's own connection."""
    store = await opened(db_path)
    try:
        make = EventMaker()
        await store.append(make.msg("alice", "#full", "fits"))

        def limit(txn, pages):
            txn.execute("PRAGMA page_count")
            count = txn.fetchone()[0]
            txn.execute(f"PRAGMA max_page_count = {pages or count}")

        await store._write_pool.runInteraction(limit, None)
        # bigger than the free pages a new database has (its migrations drop old tables)
        big = [make.msg("alice", "#full", "y" * 200_000 + str(i)) for i in range(5)]
        results = await defer.DeferredList([store.append(e) for e in big], consumeErrors=True)
        assert all(not ok for ok, _ in results)
        message = results[0][1].getErrorMessage()
        assert "full" in message
        await store._write_pool.runInteraction(limit, 1_000_000)
        after = make.msg("alice", "#full", "fits again")
        await store.append(after)
        history = await store.latest("alice", "#full", None, 10)
        assert [e.text for e in history] == ["fits", "fits again"]
    finally:
        await store.close()


@pytest_twisted.ensureDeferred
async def test_closing_says_how_the_writes_were_grouped(db_path, captured):
    """One line at shutdown: how many events in how many transactions (the group commit's
    effect, for an operator reading the log)."""
    store = await opened(db_path)
    events = EventMaker().chat("ann", "#r", 5)
    await defer.gatherResults([store.append(event) for event in events])  # one reactor turn: one commit
    await store.close()
    said = [e for e in captured.events if "transactions" in e.get("log_format", "")]
    assert len(said) == 1
    assert (said[0]["items"], said[0]["commits"]) == (5, 1)
