"""A conversation's stored times never go back, so a time is a place in its numbering.

Schema version 8 dropped the (conv, ms) index: a history query by timestamp finds its
place by a binary search on the (conv, conv_seq) key (``HistoryStore._first_at``), which
is right only because the writer never stores a time before the conversation's latest
(a clock set back, a cluster node whose clock is behind). The time shown with an event,
in its body, is never changed.
"""
from __future__ import annotations

import random

import pytest_twisted
from twisted.internet import defer

from chathub.store.history import centred_window, to_ms
from chathub.store.schema import LATEST_VERSION, POSTGRES, SQLITE
from chathub.store.sql.history import encode_event
from tests.store_fixtures import *  # noqa: F401,F403 (fixtures)
from tests.store_fixtures import EventMaker, texts
from tests.test_store_sequence import _connect, create_schema


def at(t: float) -> tuple[str, float]:
    return ("timestamp", t)


@pytest_twisted.ensureDeferred
async def test_a_clock_set_back_leaves_paging_by_time_whole(store_factory):
    store = await store_factory()
    make = EventMaker(start=1_700_000_100.0)
    first = make.chat("alice", "#clock", 3, "a")  # at 100, 101, 102
    make.now = 1_700_000_050.0  # the clock is set back 52 seconds
    behind = make.chat("bob", "#clock", 2, "b")  # at 50, 51: stored at 102's millisecond
    make.now = 1_700_000_103.0
    later = make.chat("carol", "#clock", 1, "c")
    for event in first + behind + later:
        await store.append(event)
    everything = first + behind + later
    # shown as they were said, with the times they were said at
    assert await store.latest("x", "#clock", None, 10) == everything
    # after 101: nothing said after it in the room's order is left out (the old schema,
    # comparing raw times, skipped b0 and b1 and a reader paging by time lost them)
    assert texts(await store.after("x", "#clock", at(1_700_000_101.0), 10)) == ["a2", "b0", "b1", "c0"]
    assert texts(await store.before("x", "#clock", at(1_700_000_102.0), 10)) == ["a0", "a1"]
    assert texts(await store.before("x", "#clock", at(1_700_000_103.0), 10)) == ["a0", "a1", "a2", "b0", "b1"]
    assert texts(await store.around("x", "#clock", at(1_700_000_102.0), 4)) == ["a0", "a1", "a2", "b0"]
    assert texts(await store.between("x", "#clock", at(1_700_000_101.0), at(1_700_000_103.0), 10)) == [
        "a2", "b0", "b1",
    ]
    # a time before all of them, or after
    assert texts(await store.after("x", "#clock", at(1_700_000_000.0), 2)) == ["a0", "a1"]
    assert await store.after("x", "#clock", at(1_700_000_200.0), 2) == []
    assert texts(await store.before("x", "#clock", at(1_700_000_200.0), 2)) == ["b1", "c0"]
    # the next event from a clock still behind is placed after them all as well
    make.now = 1_700_000_060.0
    await store.append(make.msg("dave", "#clock", "d0"))
    assert texts(await store.after("x", "#clock", at(1_700_000_102.5), 10)) == ["c0", "d0"]


def _expected(rows, query, args, limit):
    """What a history query by time returns from ``rows`` (``[(stored ms, text)]`` in the
    conversation's order), as the store defines it."""
    if query == "after":
        return [t for ms, t in rows if ms > args[0]][:limit]
    if query == "before":
        return [t for ms, t in rows if ms < args[0]][-limit:] if limit else []
    if query == "around":
        earlier = [t for ms, t in rows if ms < args[0]][-limit:] if limit else []
        later = [t for ms, t in rows if ms >= args[0]][:limit]
        return centred_window(earlier + later, len(earlier), limit, pivot_is_item=False)
    low, high = args
    if low <= high:
        return [t for ms, t in rows if low < ms < high][:limit]
    return [t for ms, t in rows if high < ms < low][-limit:]


@pytest_twisted.ensureDeferred
async def test_queries_by_time_match_a_model_across_clock_jumps_and_gaps(store_factory):
    """Seeded random histories: times that mostly go forward, several events a
    millisecond, jumps back; events written in groups of several; some voided (numbers
    without a row). Every query by time answers what the stored (never decreasing) times
    say, whichever backend and write path (PostgreSQL's one-statement groups included)."""
    store = await store_factory()
    rng = random.Random(8)
    make = EventMaker(start=1_700_000_000.0, step=0.0)
    rows: list[tuple[int, str]] = []  # stored ms, text: the model
    ids: dict[str, str] = {}
    latest = 0
    n = 0
    while n < 400:
        group = []
        for _ in range(rng.choice([1, 1, 2, 5, 17])):
            jump = rng.random()
            if jump < 0.08:
                make.now -= rng.uniform(0.001, 30.0)  # the clock set back
            elif jump < 0.3:
                pass  # the same millisecond
            else:
                make.now += rng.choice([0.0004, 0.001, 0.0137, 1.0, 60.0])
            event = make.msg("alice", "#model", f"m{n}")
            n += 1
            latest = max(latest, to_ms(event.time))
            rows.append((latest, event.text))
            ids[event.text] = event.id
            group.append(event)
        await defer.gatherResults([store.append(e) for e in group])
    # numbers without a row: void events (a cluster's) in the middle and at the ends
    gone = {"m0", "m1", "m399"} | {f"m{i}" for i in rng.sample(range(2, 399), 60)}
    await store.void_events("#model", [ids[t] for t in sorted(gone)])
    rows = [(ms, t) for ms, t in rows if t not in gone]
    stored = sorted({ms for ms, _ in rows})
    # times at, between, before and after the stored ones
    points = rng.sample(stored, 25) + [ms + 1 for ms in rng.sample(stored, 10)]
    points += [ms - 1 for ms in rng.sample(stored, 10)] + [stored[0] - 5000, stored[-1] + 5000]
    for ms in points:
        t = ms / 1000.0
        for limit in (1, 4, 25):
            for query in ("after", "before", "around"):
                got = await getattr(store, query)("x", "#model", at(t), limit)
                assert texts(got) == _expected(rows, query, (ms,), limit), (query, ms, limit)
        other = rng.choice(points)
        got = await store.between("x", "#model", at(t), at(other / 1000.0), 7)
        assert texts(got) == _expected(rows, "between", (ms, other), 7), ("between", ms, other)
    # a message reference next to a time reference
    ref = rows[len(rows) // 2]
    got = await store.between("x", "#model", ("msgid", ids[ref[1]]), at(stored[-1] / 1000.0), 500)
    index = rows.index(ref)
    assert texts(got) == [t for ms, t in rows[index + 1 :] if ms < stored[-1]]


def write_version_7(store_factory) -> list[tuple[str, int, int]]:
    """A database as chathub with schema version 7 wrote it, times not always increasing
    within a conversation (a clock set back): ``[(conv, conv_seq, ms)]`` written."""
    dialect = SQLITE if store_factory.backend == "sqlite" else POSTGRES
    conn, p = _connect(store_factory)
    sql = lambda q: q.replace("?", p)  # noqa: E731
    make = EventMaker(start=1_700_000_000.0)
    rows = []
    times = {"#old": [5, 7, 3, 9, 9, 2, 10], "#calm": [1, 2, 3]}
    try:
        create_schema(conn, dialect, 7)
        for conv, seconds in times.items():
            conn.execute(
                sql("INSERT INTO conversations (conv, peer_a, peer_b, last_seq) VALUES (?, ?, NULL, ?)"),
                (conv, conv, len(seconds)),
            )
            for seq, second in enumerate(seconds, start=1):
                make.now = 1_700_000_000.0 + second
                event = make.msg("alice", conv, f"{conv}{seq}")
                conn.execute(
                    sql(
                        "INSERT INTO conversation_events (conv, conv_seq, msgid, ms, kind, body) "
                        "VALUES (?, ?, ?, ?, ?, ?)"
                    ),
                    (conv, seq, event.id, to_ms(event.time), event.kind, encode_event(event)),
                )
                rows.append((conv, seq, to_ms(event.time)))
    finally:
        conn.close()
    return rows


@pytest_twisted.ensureDeferred
async def test_version_7_database_is_upgraded_in_place(store_factory):
    written = write_version_7(store_factory)
    store = await store_factory()
    conn, _ = _connect(store_factory)
    try:
        assert conn.execute("SELECT version FROM schema_version").fetchall() == [(LATEST_VERSION,)]
        indexes = {
            row[0]
            for row in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'index'"
                if store_factory.backend == "sqlite"
                else "SELECT indexname FROM pg_indexes WHERE schemaname = current_schema()"
            ).fetchall()
        }
        stored = conn.execute("SELECT conv, conv_seq, ms FROM conversation_events ORDER BY conv, conv_seq").fetchall()
        heads = dict(conn.execute("SELECT conv, last_ms FROM conversations").fetchall())
    finally:
        conn.close()
    assert "conversation_events_conv_ms" not in indexes
    assert "conversation_events_ms" in indexes  # retention's, kept
    base = 1_700_000_000_000
    # each row now holds the latest time at or before it in its conversation
    assert [(c, s, m - base) for c, s, m in stored] == [
        ("#calm", 1, 1000), ("#calm", 2, 2000), ("#calm", 3, 3000),
        ("#old", 1, 5000), ("#old", 2, 7000), ("#old", 3, 7000), ("#old", 4, 9000),
        ("#old", 5, 9000), ("#old", 6, 9000), ("#old", 7, 10000),
    ]
    assert len(stored) == len(written)
    assert {c: m - base for c, m in heads.items()} == {"#old": 10000, "#calm": 3000}
    # shown with the times they were written with
    shown = await store.latest("x", "#old", None, 10)
    assert [round(e.time * 1000) - base for e in shown] == [5000, 7000, 3000, 9000, 9000, 2000, 10000]
    after_six = await store.after("x", "#old", at(1_700_000_006.0), 10)
    assert texts(after_six) == ["#old2", "#old3", "#old4", "#old5", "#old6", "#old7"]
    assert texts(await store.before("x", "#old", at(1_700_000_009.0), 10)) == ["#old1", "#old2", "#old3"]
    # writing goes on from the conversation's latest time
    make = EventMaker(start=1_700_000_004.0)
    await store.append(make.msg("bob", "#old", "late clock"))
    assert texts(await store.after("x", "#old", at(1_700_000_009.5), 10)) == ["#old7", "late clock"]


@pytest_twisted.ensureDeferred
async def test_a_renamed_room_keeps_its_latest_time_and_its_new_incarnation_pages_by_time(store_factory):
    """A rename moves a room's rows after the new name's earlier (unread) ones; its latest
    time goes with them, so a message said afterwards by a clock that is behind is still
    found after them by time, and the new name's old rows are never read."""
    store = await store_factory()
    make = EventMaker(start=1_700_000_000.0)
    await store.append(make.msg("carol", "#new", "long ago"))  # an earlier room called #new
    await store.begin_room("#new")  # ... which ended: the next #new starts after it
    make.now = 1_700_000_100.0
    for event in make.chat("alice", "#old", 3, "o"):  # at 100, 101, 102
        await store.append(event)
    await store.rename_room("#old", "#new")
    make.now = 1_700_000_090.0  # behind the moved rows
    for event in make.chat("bob", "#new", 3, "b"):  # at 90, 91, 92: stored at 102
        await store.append(event)
    everything = ["o0", "o1", "o2", "b0", "b1", "b2"]
    assert texts(await store.latest("x", "#new", None, 10)) == everything
    assert texts(await store.before("x", "#new", at(1_700_000_101.5), 10)) == ["o0", "o1"]
    assert texts(await store.after("x", "#new", at(1_700_000_101.0), 10)) == everything[2:]
    assert texts(await store.after("x", "#new", at(1_699_999_000.0), 1)) == ["o0"]  # not "long ago"
    assert texts(await store.latest("x", "#new", at(1_700_000_101.5), 10)) == everything[2:]
    # stored at o2's millisecond, the room's latest then: a time reference of it excludes them
    assert await store.latest("x", "#new", at(1_700_000_102.0), 10) == []
