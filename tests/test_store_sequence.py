"""Each conversation numbers its own events, under a row lock in the writer's transaction.

What the cluster (and any reader paging with AFTER) relies on: a reader that sees number N
of a conversation knows 1..N are committed, whichever writer (node) committed them. The
old schema took a table-wide identity at INSERT, so with two writers a reader could see 2
committed while 1 was still in flight, and page past it for ever (issue 12).
"""
from __future__ import annotations

import sqlite3

import pytest
import pytest_twisted
from twisted.internet import defer, reactor, task, threads

from chathub.events import Kind
from chathub.names import fold
from chathub.store.history import conversations_of, private_conversation, to_ms
from chathub.store.schema import LATEST_VERSION, MIGRATIONS, POSTGRES, SQLITE
from chathub.store.sql.history import encode_event
from tests.store_fixtures import *  # noqa: F401,F403 (fixtures)
from tests.store_fixtures import EventMaker


def texts(events):
    return [e.text for e in events]


class Groups:
    """What a store's ``when_committed`` listener was told, in order."""

    def __init__(self, store) -> None:
        self.groups: list = []
        store.when_committed(self.groups.append)

    @property
    def positions(self) -> dict[str, tuple]:
        return {event.id: positions for group in self.groups for event, positions in group}


@pytest_twisted.ensureDeferred
async def test_each_conversation_counts_from_one(store_factory):
    store = await store_factory()
    told = Groups(store)
    make = EventMaker()
    a1, b1, a2 = make.msg("alice", "#a", "a1"), make.msg("alice", "#b", "b1"), make.msg("bob", "#A", "a2")
    quit = make.msg("alice", "", "bye", kind=Kind.QUIT)
    private = make.msg("alice", "bob", "psst")
    await defer.gatherResults([store.append(a1), store.append(b1), store.append(a2)])
    await store.append(quit, rooms=["#a", "#b"])
    await store.append(private)
    pair = private_conversation("alice", "bob").key
    assert told.positions == {
        a1.id: (("#a", 1),),
        b1.id: (("#b", 1),),
        a2.id: (("#a", 2),),
        quit.id: (("#a", 3), ("#b", 2)),  # one event, a number in each room it is shown in
        private.id: ((pair, 1),),
    }
    assert await store.conversation_heads(["#a", "#b", pair, "#never"]) == {"#a": 3, "#b": 2, pair: 1}
    assert await store.conversation_range("#a", 1, 3) == [(2, a2), (3, quit)]
    assert await store.conversation_range("#a", 0, 3, limit=1) == [(1, a1)]
    # the same history as before, read from the one row per conversation
    assert texts(await store.latest("x", "#a", None, 10)) == ["a1", "a2", "bye"]
    assert texts(await store.after("x", "#b", ("msgid", b1.id), 10)) == ["bye"]


@pytest_twisted.ensureDeferred
async def test_an_event_appended_twice_keeps_its_numbers_and_is_told_them_again(store_factory):
    """A retry of a group whose commit landed while its answer was lost (a PostgreSQL
    connection dropped at COMMIT) finds its events stored: they keep their numbers, and the
    listener is told them, as the first commit, whose answer never came, told nobody (a
    cluster node's relay never heard of its own number and held the room until it passed
    over it). A second reaper's QUIT of the same id is told the same way."""
    store = await store_factory()
    told = Groups(store)
    make = EventMaker()
    first, second = make.msg("alice", "#dup", "one"), make.msg("alice", "#dup", "two")
    quit = make.msg("alice", "", "bye", kind=Kind.QUIT)
    await store.append(first)
    await store.append(quit, rooms=["#dup", "#other"])
    told.groups.clear()
    await defer.gatherResults([store.append(first), store.append(second), store.append(quit, rooms=["#dup", "#other"])])
    assert sorted((e.text, p) for group in told.groups for e, p in group) == [
        ("bye", (("#dup", 2), ("#other", 1))),
        ("one", (("#dup", 1),)),
        ("two", (("#dup", 3),)),
    ]
    assert await store.conversation_heads(["#dup", "#other"]) == {"#dup": 3, "#other": 1}
    assert texts(await store.latest("x", "#dup", None, 10)) == ["one", "bye", "two"]  # each once


@pytest_twisted.ensureDeferred
async def test_numbers_survive_retention_and_restart(store_factory):
    from chathub.config.storage import HistoryConfig

    store = await store_factory(HistoryConfig(max_per_target=2))
    make = EventMaker()
    for event in make.chat("alice", "#kept", 5):
        await store.append(event)
    assert await store.prune(make.now) == 3
    await store.close()
    again = await store_factory(HistoryConfig(max_per_target=2))
    told = Groups(again)
    later = make.msg("alice", "#kept", "later")
    await again.append(later)
    assert told.positions[later.id] == (("#kept", 6),)  # never a number given before
    assert [seq for seq, _ in await again.conversation_range("#kept", 0, 10)] == [4, 5, 6]


# -- two writers on one PostgreSQL database (two nodes) -------------------------------------


#: two writers share a database only on PostgreSQL (a SQLite file is one node's)
on_postgres = pytest.mark.parametrize("store_factory", ["postgres"], indirect=True)


@pytest.fixture
def two_nodes(store_factory):
    return store_factory


async def _wait_for_lock_waiter(dsn: str, timeout: float = 10.0) -> None:
    """Until some session of this database waits for a row lock."""
    import psycopg

    def waiting() -> bool:
        with psycopg.connect(dsn, autocommit=True) as conn:
            (count,) = conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
            ).fetchone()
            return count > 0

    deadline = reactor.seconds() + timeout
    while not await threads.deferToThread(waiting):
        assert reactor.seconds() < deadline, "no writer ever waited for the conversation's lock"
        await task.deferLater(reactor, 0.02, lambda: None)


@on_postgres
@pytest_twisted.ensureDeferred
async def test_a_reader_never_sees_a_later_number_before_an_earlier_one_commits(two_nodes):
    import psycopg

    node_a = await two_nodes()
    node_b = await two_nodes()
    make = EventMaker()
    first = make.msg("alice", "#race", "first")
    await node_a.append(first)
    # node A is inside its commit of "from A": numbered 2, not yet committed
    from_a, from_b = make.msg("alice", "#race", "from A"), make.msg("bob", "#race", "from B")
    held = psycopg.connect(two_nodes.dsn)
    try:
        positions = node_a._write_events(held.cursor(), [(from_a, conversations_of(from_a))])
        assert positions == [(("#race", 2),)]
        # node B commits its message meanwhile: it waits for A's lock, not past it
        b_done = node_b.append(from_b)
        await _wait_for_lock_waiter(two_nodes.dsn)
        assert not b_done.called
        # a reader paging after "first" sees nothing new yet; with a table-wide identity it
        # saw "from B" here, and then never saw "from A" when paging on from it
        assert await node_b.after("x", "#race", ("msgid", first.id), 10) == []
        held.commit()
    finally:
        held.close()
    await b_done
    assert texts(await node_b.after("x", "#race", ("msgid", first.id), 10)) == ["from A", "from B"]
    assert await node_a.conversation_heads(["#race"]) == {"#race": 3}


@on_postgres
@pytest_twisted.ensureDeferred
async def test_two_nodes_writing_one_room_number_it_without_gaps_and_paging_skips_nothing(two_nodes):
    node_a = await two_nodes()
    node_b = await two_nodes()
    reader = await two_nodes()
    make = EventMaker(step=0.0005)
    count = 1000  # the figure: 1,000 from each of two writers
    sent = {"a": [], "b": []}
    appends = []
    for i in range(count):  # interleaved, so both writers' batches contend for the row
        for name, node in (("a", node_a), ("b", node_b)):
            event = make.msg(name, "#busy", f"{name}{i}")
            sent[name].append(event.text)
            appends.append(node.append(event))
    seen: list[str] = []
    last = None
    writes = defer.gatherResults(appends)
    commits = [0]  # groups either writer committed so far
    waiting: list[defer.Deferred] = []

    def committed(group) -> None:
        commits[0] += 1
        while waiting:
            waiting.pop().callback(None)

    node_a.when_committed(committed)
    node_b.when_committed(committed)
    while len(seen) < 2 * count:  # page AFTER while the writes go on
        finished = writes.called  # before this read: an empty page then means nothing is left
        commits_before = commits[0]
        page = (
            await reader.latest("x", "#busy", None, 50)
            if last is None
            else await reader.after("x", "#busy", ("msgid", last), 50)
        )
        if page and last is None:
            page = (await reader.before("x", "#busy", ("msgid", page[0].id), 2 * count)) + page
        if page:
            seen.extend(e.text for e in page)
            last = page[-1].id
        elif finished:
            break
        elif commits[0] == commits_before:  # nothing new was committed: wait for the next commit
            next_commit: defer.Deferred = defer.Deferred()
            waiting.append(next_commit)
            await next_commit.addTimeout(10, reactor)
    await writes
    assert sorted(seen) == sorted(sent["a"] + sent["b"])  # every message once: none skipped
    assert [t for t in seen if t.startswith("a")] == sent["a"]  # each node's in its own order
    assert [t for t in seen if t.startswith("b")] == sent["b"]
    numbered = await reader.conversation_range("#busy", 0, 10 * count, limit=10 * count)
    assert [seq for seq, _ in numbered] == list(range(1, 2 * count + 1))
    assert [e.text for _, e in numbered] == seen


# -- upgrading a version-2 database ---------------------------------------------------------


def _connect(store_factory):
    if store_factory.backend == "sqlite":
        import os

        os.makedirs(os.path.dirname(store_factory.sqlite_path), exist_ok=True)
        return sqlite3.connect(store_factory.sqlite_path, isolation_level=None), "?"
    import psycopg

    return psycopg.connect(store_factory.dsn, autocommit=True), "%s"


def create_schema(conn, dialect, version: int) -> None:
    """Make the tables of schema ``version`` on ``conn``, as that chathub left them."""
    conn.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
    for _number, _summary, statements in MIGRATIONS[:version]:
        for statement in statements:
            conn.execute(dialect.ddl(statement))
    conn.execute(f"INSERT INTO schema_version (version) VALUES ({int(version)})")


def write_version_2(store_factory, make: EventMaker) -> dict:
    """A database as chathub with schema version 2 wrote it: a room made twice (its
    incarnation mark after its second message), a quit shown in two rooms, and a private
    conversation."""
    dialect = SQLITE if store_factory.backend == "sqlite" else POSTGRES
    conn, p = _connect(store_factory)
    sql = lambda q: q.replace("?", p)  # noqa: E731
    old = make.chat("alice", "#lobby", 2, "old")
    new = make.chat("alice", "#lobby", 2, "new")
    side = make.msg("bob", "#side", "side")
    quit = make.msg("alice", "", "bye", kind=Kind.QUIT)
    private = make.msg("alice", "bob", "psst")
    rows = [(e, [fold(e.target)]) for e in old + new + [side]]
    rows += [(quit, ["#lobby", "#side"])]
    pair = private_conversation("alice", "bob")
    rows += [(private, [pair.key])]
    try:
        create_schema(conn, dialect, 2)
        for seq, (event, convs) in enumerate(rows, start=1):
            conn.execute(
                sql("INSERT INTO events (msgid, at, kind, body) VALUES (?, ?, ?, ?)"),
                (event.id, event.time, event.kind, encode_event(event)),
            )
            for conv in convs:
                conn.execute(
                    sql("INSERT INTO timeline (conv, seq, ms, kind) VALUES (?, ?, ?, ?)"),
                    (conv, seq, to_ms(event.time), event.kind),
                )
        for key, a, b in (("#lobby", "#lobby", None), ("#side", "#side", None), (pair.key, pair.peer_a, pair.peer_b)):
            conn.execute(sql("INSERT INTO conversations (conv, peer_a, peer_b) VALUES (?, ?, ?)"), (key, a, b))
        conn.execute(sql("INSERT INTO room_epochs (conv, after_seq) VALUES (?, ?)"), ("#lobby", 2))
        conn.execute(sql("INSERT INTO room_epochs (conv, after_seq) VALUES (?, ?)"), ("#empty", 7))
    finally:
        conn.close()
    return {"new": new, "side": side, "quit": quit, "private": private, "pair": pair.key}


@pytest_twisted.ensureDeferred
async def test_version_2_database_is_upgraded_in_place(store_factory):
    make = EventMaker()
    written = write_version_2(store_factory, make)
    store = await store_factory()
    told = Groups(store)
    conn, _ = _connect(store_factory)
    try:
        assert conn.execute("SELECT version FROM schema_version").fetchall() == [(LATEST_VERSION,)]
        tables = {
            row[0]
            for row in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table'"
                if store_factory.backend == "sqlite"
                else "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()"
            ).fetchall()
        }
    finally:
        conn.close()
    assert {"events", "timeline", "room_epochs"}.isdisjoint(tables)
    # the same history as before the upgrade: the room's current incarnation only
    assert await store.latest("x", "#lobby", None, 10) == written["new"] + [written["quit"]]
    assert await store.latest("x", "#side", None, 10) == [written["side"], written["quit"]]
    assert await store.latest("alice", "bob", None, 10) == [written["private"]]
    paged = await store.after("x", "#lobby", ("msgid", written["new"][0].id), 10)
    assert paged == [written["new"][1], written["quit"]]
    # numbered in the old order, and numbering goes on from there
    assert await store.conversation_heads(["#lobby", "#side", written["pair"], "#empty"]) == {
        "#lobby": 5,
        "#side": 2,
        written["pair"]: 1,
        "#empty": 0,
    }
    more = make.msg("carol", "#lobby", "after the upgrade")
    await store.append(more)
    assert told.positions[more.id] == (("#lobby", 6),)
    assert texts(await store.latest("x", "#lobby", None, 2)) == ["bye", "after the upgrade"]


@on_postgres
@pytest_twisted.ensureDeferred
async def test_nodes_opening_a_new_database_at_once_migrate_it_one_after_the_other(store_factory):
    # cluster nodes started together: without the schema lock one failed with a duplicate
    # key in pg_type (CREATE TABLE IF NOT EXISTS is not safe against a concurrent one)
    stores = [await store_factory(open=False) for _ in range(4)]
    await defer.gatherResults([s.open() for s in stores])
    make = EventMaker()
    await stores[0].append(make.msg("alice", "#new", "hello"))
    assert texts(await stores[3].latest("x", "#new", None, 5)) == ["hello"]
