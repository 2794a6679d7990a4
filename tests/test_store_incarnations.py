"""Room incarnations in the store (issue 10, item 7), on SQLite and PostgreSQL: a room made
anew (``begin_room``) never reads what an earlier room of its name said, while a room that
is not made anew (a registered room restored after a restart) keeps its whole history; and
schema version 2 upgrades a version-1 database in place."""
from __future__ import annotations

import sqlite3

import pytest
import pytest_twisted
from twisted.internet import defer

from chathub.config.storage import HistoryConfig
from chathub.events import Kind
from chathub.names import fold
from chathub.records import RoomRecord
from chathub.store import UnknownReference
from chathub.store.history import to_ms
from chathub.store.schema import LATEST_VERSION, MIGRATIONS
from chathub.store.sql.history import encode_event
from tests.store_fixtures import *  # noqa: F401,F403 (fixtures)
from tests.store_fixtures import EventMaker, append_all, texts


@pytest_twisted.ensureDeferred
async def test_a_new_incarnation_reads_nothing_of_the_old_one(store_factory):
    store = await store_factory()
    make = EventMaker()
    old = make.chat("alice", "#secret", 5, "old")
    other = make.msg("alice", "#elsewhere", "untouched")
    await append_all(store, old + [other])
    await store.begin_room("#Secret")  # any case of the name
    new = make.chat("bob", "#secret", 3, "new")
    await append_all(store, new)

    assert texts(await store.latest("bob", "#secret", None, 50)) == ["new0", "new1", "new2"]
    assert texts(await store.before("bob", "#secret", ("timestamp", make.now), 50)) == ["new0", "new1", "new2"]
    assert texts(await store.after("bob", "#secret", ("timestamp", 0), 50)) == ["new0", "new1", "new2"]
    assert texts(await store.around("bob", "#secret", ("timestamp", old[2].time), 4)) == ["new0", "new1", "new2"]
    assert texts(await store.between("bob", "#secret", ("timestamp", 0), ("timestamp", make.now), 50)) == [
        "new0", "new1", "new2",
    ]
    # an id of the old room is no message of this one
    for query in (store.before, store.after, store.around):
        with pytest.raises(UnknownReference):
            await query("bob", "#secret", ("msgid", old[-1].id), 10)
    assert await store.latest("bob", "#secret", ("msgid", new[0].id), 10) == new[1:]
    # TARGETS counts only the new room's activity
    assert await store.targets("bob", 0, old[-1].time + 0.5, 10, rooms=["#secret"]) == []
    listed = await store.targets("bob", 0, make.now, 10, rooms=["#secret", "#elsewhere"])
    assert listed == [("#elsewhere", other.time), ("#secret", new[-1].time)]
    # other rooms are untouched, and the bound outlives a restart of the store
    again = await store_factory()
    assert texts(await again.latest("x", "#elsewhere", None, 10)) == ["untouched"]
    assert texts(await again.latest("x", "#secret", None, 10)) == ["new0", "new1", "new2"]


@pytest_twisted.ensureDeferred
async def test_a_room_that_is_not_made_anew_keeps_its_whole_history(store_factory):
    store = await store_factory()
    make = EventMaker()
    await store.begin_room("#club")
    first = make.chat("alice", "#club", 3, "first")
    await append_all(store, first)
    await store.close()
    restarted = await store_factory()  # a registered room is restored, not begun again
    later = make.chat("alice", "#club", 2, "later")
    await defer.gatherResults([restarted.append(e) for e in later])
    assert texts(await restarted.latest("bob", "#club", None, 10)) == texts(first + later)


@pytest_twisted.ensureDeferred
async def test_begin_falls_exactly_between_appends_of_one_batch(store_factory):
    """The room vanishes and is made again within one reactor turn: the old room's last
    event and the new room's first share a commit, and still fall on their own sides."""
    store = await store_factory()
    make = EventMaker()
    before = [store.append(e) for e in make.chat("alice", "#r", 3, "gone")]
    part = make.msg("alice", "#r", "", Kind.PART)
    before.append(store.append(part, ["#r"]))
    begun = store.begin_room("#r")
    join = make.msg("mallory", "#r", "", Kind.JOIN)
    after = [store.append(join, ["#r"])] + [store.append(e) for e in make.chat("mallory", "#r", 2, "mine")]
    await defer.gatherResults(before + [begun] + after)
    history = await store.latest("mallory", "#r", None, 50)
    assert [(e.kind, e.text) for e in history] == [(Kind.JOIN, ""), (Kind.MESSAGE, "mine0"), (Kind.MESSAGE, "mine1")]


@pytest_twisted.ensureDeferred
async def test_a_query_right_after_begin_waits_for_it(store_factory):
    """The newcomer's CHATHISTORY can reach the store before ``begin_room`` is committed:
    it must not read the old room meanwhile."""
    store = await store_factory()
    make = EventMaker()
    await defer.gatherResults([store.append(e) for e in make.chat("alice", "#quick", 4, "old")])
    begun = store.begin_room("#quick")
    latest = store.latest("bob", "#quick", None, 50)  # asked in the same reactor turn
    targets = store.targets("bob", 0, make.now, 10, rooms=["#quick"])
    again = store.begin_room("#quick")  # made again at once: the later begin settles both
    third = store.latest("bob", "#QUICK", None, 50)
    assert await latest == [] and await targets == [] and await third == []
    await defer.gatherResults([begun, again])
    assert store._rewriting == {}


@pytest_twisted.ensureDeferred
async def test_void_events_leave_history_and_a_query_asked_meanwhile_waits_for_it(store_factory):
    """A cluster found events void at their number (``IStore.void_events``): history never
    shows them again, even to a query that reached the store before the delete committed."""
    store = await store_factory()
    make = EventMaker()
    events = make.chat("bob", "#void", 4)
    await defer.gatherResults([store.append(e) for e in events])
    voided = store.void_events("#void", [events[1].id, events[3].id])
    latest = store.latest("carol", "#void", None, 50)  # asked in the same reactor turn
    assert [e.text for e in await latest] == ["m0", "m2"]
    await voided
    assert store._rewriting == {}
    assert [seq for seq, _ in await store.conversation_range("#void", 0, 10)] == [1, 3]  # numbers stay taken
    after = make.msg("bob", "#void", "next")
    await store.append(after)
    assert [seq for seq, _ in await store.conversation_range("#void", 0, 10)] == [1, 3, 5]


@pytest_twisted.ensureDeferred
async def test_retention_drops_the_marks_of_rooms_without_history(store_factory):
    store = await store_factory(HistoryConfig(max_age_days=1))
    make = EventMaker(start=1_000_000.0)
    await defer.gatherResults([store.append(e) for e in make.chat("alice", "#old", 2, "m")])
    await store.begin_room("#old")
    await store.begin_room("#busy")
    busy = make.msg("bob", "#busy", "recent")
    await store.append(busy)

    def marks(txn):
        txn.execute("SELECT conv FROM room_incarnations ORDER BY conv")
        return [row[0] for row in txn.fetchall()]

    assert await store._read(marks) == ["#busy", "#old"]
    assert await store.prune(make.now + 2 * 86400) == 3
    assert await store._read(marks) == []  # #busy's history aged too: nothing left to hide
    await store.begin_room("#busy")
    fresh = make.msg("bob", "#busy", "fresh")
    await store.append(fresh)
    assert texts(await store.latest("bob", "#busy", None, 10)) == ["fresh"]


# -- upgrading a version-1 database ---------------------------------------------------------


def _connect(store_factory):
    if store_factory.backend == "sqlite":
        import os

        os.makedirs(os.path.dirname(store_factory.sqlite_path), exist_ok=True)
        return sqlite3.connect(store_factory.sqlite_path, isolation_level=None), "?"
    import psycopg

    return psycopg.connect(store_factory.dsn, autocommit=True), "%s"


def write_version_1(store_factory, make: EventMaker):
    """A database as chathub with schema version 1 wrote it: two registered rooms (one with
    a single stored operator, one with two) and history of a registered and a guest room."""
    from chathub.store.schema import POSTGRES, SQLITE

    dialect = SQLITE if store_factory.backend == "sqlite" else POSTGRES
    number, _summary, statements = MIGRATIONS[0]
    assert number == 1
    conn, p = _connect(store_factory)
    sql = lambda q: q.replace("?", p)  # noqa: E731
    try:
        conn.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
        for statement in statements:
            conn.execute(dialect.ddl(statement))
        conn.execute("INSERT INTO schema_version (version) VALUES (1)")
        rooms = [("#lobby", ["alice"]), ("#shared", ["bob", "carol"])]
        for name, ops in rooms:
            conn.execute(
                sql("INSERT INTO rooms (name_folded, name, topic, topic_setter, topic_time, modes, "
                    "room_key, user_limit, created) VALUES (?, ?, ?, '', 0, 'nt', NULL, NULL, 1)"),
                (fold(name), name, f"topic of {name}"),
            )
            for position, op in enumerate(ops):
                conn.execute(sql("INSERT INTO room_operators (room, position, name) VALUES (?, ?, ?)"), (fold(name), position, op))
        events = make.chat("alice", "#lobby", 3, "lobby") + make.chat("eve", "#guests", 2, "guest")
        for seq, event in enumerate(events, start=1):
            if dialect is SQLITE:
                conn.execute(
                    "INSERT INTO events (seq, msgid, at, kind, body) VALUES (?, ?, ?, ?, ?)",
                    (seq, event.id, event.time, event.kind, encode_event(event)),
                )
            else:
                conn.execute(
                    "INSERT INTO events (msgid, at, kind, body) VALUES (%s, %s, %s, %s)",
                    (event.id, event.time, event.kind, encode_event(event)),
                )
            conv = fold(event.target)
            conn.execute(sql("INSERT INTO timeline (conv, seq, ms, kind) VALUES (?, ?, ?, ?)"), (conv, seq, to_ms(event.time), event.kind))
        for conv in ("#lobby", "#guests"):
            conn.execute(sql("INSERT INTO conversations (conv, peer_a, peer_b) VALUES (?, ?, NULL)"), (conv, conv))
    finally:
        conn.close()
    return events


@pytest_twisted.ensureDeferred
async def test_version_1_database_is_upgraded_in_place(store_factory):
    make = EventMaker()
    events = write_version_1(store_factory, make)
    store = await store_factory()
    conn, _ = _connect(store_factory)
    try:
        assert conn.execute("SELECT version FROM schema_version").fetchall() == [(LATEST_VERSION,)]
    finally:
        conn.close()
    # the single stored operator of a room was its creator: now its founder; several
    # stored operators stay equals, with no founder (docs/storage.md)
    assert await store.load_rooms() == [
        RoomRecord(name="#lobby", topic="topic of #lobby", modes="nt", operators=("alice",), created=1.0, founder="alice"),
        RoomRecord(name="#shared", topic="topic of #shared", modes="nt", operators=("bob", "carol"), created=1.0),
    ]
    # history written before the upgrade reads as before, in each room
    assert await store.latest("x", "#lobby", None, 10) == events[:3]
    assert await store.latest("x", "#guests", None, 10) == events[3:]
    # and the new parts work on it: a new #guests does not read the old one
    await store.begin_room("#guests")
    new = make.msg("newcomer", "#guests", "hello")
    await store.append(new)
    assert await store.latest("x", "#guests", None, 10) == [new]
    await store.save_room(RoomRecord(name="#new", founder="dave", created=2.0))
    assert (await store.load_rooms())[1] == RoomRecord(name="#new", founder="dave", created=2.0)
