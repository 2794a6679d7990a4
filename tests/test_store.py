"""The IStore contract, run against every backend (SQLite file, real PostgreSQL server)."""
from __future__ import annotations

import sqlite3

import pytest
import pytest_twisted
from twisted.internet import defer
from twisted.logger import formatEvent, globalLogPublisher
from zope.interface.verify import verifyObject

from chathub.config.storage import HistoryConfig
from chathub.events import REDACTED, STATUSMSG, Kind, Source
from chathub.records import CHAT_KINDS, Ban, RoomRecord
from chathub.store import (
    Account,
    AccountExists,
    IStore,
    NoSuchAccount,
    StorageError,
    UnknownReference,
)
from tests.store_fixtures import *  # noqa: F401,F403 (fixtures)
from tests.store_fixtures import EventMaker


def texts(events):
    return [e.text for e in events]


def msgid(e):
    return ("msgid", e.id)


def ts(e, shift: float = 0.0):
    return ("timestamp", e.time + shift)


async def append_all(store, events, rooms=()):
    await defer.gatherResults([store.append(e, rooms) for e in events], consumeErrors=True)


def run_beside(store_factory, statement: str) -> None:
    """Run SQL on the store's database through a connection of its own."""
    if store_factory.backend == "sqlite":
        conn = sqlite3.connect(store_factory.sqlite_path, isolation_level=None)
        try:
            conn.execute(statement)
        finally:
            conn.close()
    else:
        import psycopg

        with psycopg.connect(store_factory.dsn, autocommit=True) as conn:
            conn.execute(statement)


@pytest.fixture
def captured_log():
    events = []
    globalLogPublisher.addObserver(events.append)
    yield events
    globalLogPublisher.removeObserver(events.append)


@pytest_twisted.ensureDeferred
async def test_provides_istore(store):
    assert IStore.providedBy(store)
    assert verifyObject(IStore, store)
    assert "password" not in store.description


# -- appending: order, batching, durability -------------------------------------------


@pytest_twisted.ensureDeferred
async def test_appends_commit_in_order_and_in_batches(store):
    """Appends from several reactor turns, some while a commit runs: callbacks fire in
    append order, history has append order, and many events share a commit."""
    from twisted.internet import reactor, task

    make = EventMaker(step=0.001)
    fired = []
    deferreds = []
    appended = []
    for turn in range(6):
        for i in range(40):
            e = make.msg(f"user{i % 3}", "#order", f"t{turn}-{i}")
            appended.append(e)
            d = store.append(e)
            d.addCallback(lambda _, e=e: fired.append(e.id))
            deferreds.append(d)
        await task.deferLater(reactor, 0, lambda: None)  # next turn, a commit may be running
    await defer.gatherResults(deferreds)
    assert fired == [e.id for e in appended]
    history = await store.latest("user0", "#order", None, 1000)
    assert [e.id for e in history] == [e.id for e in appended]
    assert store.writer.items_written == len(appended)
    assert store.writer.commits < len(appended) // 10


@pytest_twisted.ensureDeferred
async def test_a_batch_larger_than_one_statement_and_its_repeat_store_each_event_once(store):
    """One commit of more events than one multi-row statement takes, over several rooms and
    a quit shown in two of them; appending the same events again (a retried batch, another
    node's copy) stores nothing twice."""
    from chathub.store.sql.history import ROWS_PER_STATEMENT

    make = EventMaker(step=0.001)
    events = [make.msg(f"user{i % 7}", f"#big{i % 3}", f"m{i}") for i in range(ROWS_PER_STATEMENT * 2 + 17)]
    quit_ = make.msg("user1", "", kind=Kind.QUIT)
    commits = store.writer.commits
    await defer.gatherResults([store.append(e) for e in events] + [store.append(quit_, ["#big0", "#big2"])])
    assert store.writer.commits == commits + 1
    await defer.gatherResults([store.append(e) for e in events[:50]] + [store.append(quit_, ["#big0", "#big2"])])
    for room in range(3):
        expected = [e.id for e in events if e.target == f"#big{room}"] + ([quit_.id] if room != 1 else [])
        history = await store.latest("user0", f"#big{room}", None, 1000)
        assert [e.id for e in history] == expected


@pytest_twisted.ensureDeferred
async def test_append_with_notify_reports_the_commit_in_order_without_a_deferred(store):
    """The hub's path: ``notify(None)`` once committed, in append order beside Deferred
    appends; nothing is returned."""
    make = EventMaker(step=0.001)
    told: list[str] = []
    events = [make.msg("alice", "#notify", f"n{i}") for i in range(5)]
    done = defer.Deferred()
    for i, e in enumerate(events):
        if i == 2:
            store.append(e).addCallback(lambda _, e=e: told.append(e.id))
            continue
        last = i == len(events) - 1

        def notify(failure, e=e, last=last):
            assert failure is None
            told.append(e.id)
            if last:
                done.callback(None)

        assert store.append(e, notify=notify) is None
    await done
    assert told == [e.id for e in events]
    assert [e.id for e in await store.latest("alice", "#notify", None, 10)] == told


@pytest_twisted.ensureDeferred
async def test_callback_appends_join_the_next_batch_in_order(store):
    make = EventMaker()
    order = []

    def chain(_, n):
        order.append(n)
        if n < 5:
            e = make.msg("alice", "#chain", f"c{n + 1}")
            return store.append(e).addCallback(chain, n + 1)

    first = make.msg("alice", "#chain", "c0")
    await store.append(first).addCallback(chain, 0)
    assert order == [0, 1, 2, 3, 4, 5]
    assert texts(await store.latest("alice", "#chain", None, 10)) == [f"c{i}" for i in range(6)]


@pytest_twisted.ensureDeferred
async def test_events_round_trip_exactly(store):
    make = EventMaker(start=1_700_000_000.123456)
    original = make.msg(
        "Alice",
        "#Round",
        "héllo \u0000 \ud800 wörld",  # a NUL and a lone surrogate must not break storage
        tags={"+draft/reply": "abc", "+typing": "active"},
        data={"changes": [["+o", "bob"]]},
    )
    await store.append(original)
    (back,) = await store.latest("alice", "#round", None, 5)
    assert back == original
    assert back.source == original.source


@pytest_twisted.ensureDeferred
async def test_duplicate_append_is_stored_once(store):
    e = EventMaker().msg("alice", "#dup", "once")
    await defer.gatherResults([store.append(e), store.append(e)])
    await store.append(e)
    assert texts(await store.latest("alice", "#dup", None, 10)) == ["once"]


@pytest_twisted.ensureDeferred
async def test_close_commits_what_is_queued(store_factory):
    store = await store_factory()
    events = EventMaker().chat("alice", "#flush", 50)
    pending = [store.append(e) for e in events]
    await store.close()
    await defer.gatherResults(pending)
    with pytest.raises(StorageError):
        await store.append(EventMaker().msg("alice", "#flush", "late"))
    again = await store_factory()
    assert texts(await again.latest("bob", "#flush", None, 100)) == texts(events)


# -- history queries ----------------------------------------------------------------


@pytest_twisted.async_fixture
async def ten(store):
    """m0..m9 in #chat, one second apart."""
    events = EventMaker().chat("alice", "#chat", 10)
    await append_all(store, events)
    return store, events


@pytest_twisted.ensureDeferred
async def test_latest(ten):
    store, m = ten
    assert texts(await store.latest("bob", "#chat", None, 3)) == ["m7", "m8", "m9"]
    assert texts(await store.latest("bob", "#CHAT", None, 100)) == texts(m)
    assert texts(await store.latest("bob", "#chat", msgid(m[6]), 100)) == ["m7", "m8", "m9"]
    # the limit keeps the newest
    assert texts(await store.latest("bob", "#chat", msgid(m[6]), 2)) == ["m8", "m9"]
    assert texts(await store.latest("bob", "#chat", ts(m[6]), 100)) == ["m7", "m8", "m9"]
    assert await store.latest("bob", "#chat", msgid(m[9]), 10) == []
    assert await store.latest("bob", "#chat", None, 0) == []
    assert await store.latest("bob", "#empty", None, 10) == []


@pytest_twisted.ensureDeferred
async def test_before(ten):
    store, m = ten
    assert texts(await store.before("bob", "#chat", msgid(m[5]), 3)) == ["m2", "m3", "m4"]
    assert texts(await store.before("bob", "#chat", ts(m[5]), 3)) == ["m2", "m3", "m4"]
    assert texts(await store.before("bob", "#chat", ts(m[5], 0.5), 3)) == ["m3", "m4", "m5"]
    assert texts(await store.before("bob", "#chat", msgid(m[2]), 10)) == ["m0", "m1"]
    assert await store.before("bob", "#chat", msgid(m[0]), 10) == []


@pytest_twisted.ensureDeferred
async def test_after(ten):
    store, m = ten
    assert texts(await store.after("bob", "#chat", msgid(m[5]), 3)) == ["m6", "m7", "m8"]
    assert texts(await store.after("bob", "#chat", ts(m[5]), 3)) == ["m6", "m7", "m8"]
    assert texts(await store.after("bob", "#chat", ts(m[5], -0.5), 2)) == ["m5", "m6"]
    assert texts(await store.after("bob", "#chat", msgid(m[7]), 10)) == ["m8", "m9"]
    assert await store.after("bob", "#chat", msgid(m[9]), 10) == []


@pytest_twisted.ensureDeferred
async def test_timestamps_compare_at_millisecond_precision(store):
    """A client echoing a message's server-time (milliseconds) excludes that message."""
    from chathub.events import iso_time, parse_iso_time

    make = EventMaker(start=1_700_000_000.1234567, step=0.25)
    m = make.chat("alice", "#ms", 4)
    await append_all(store, m)
    echoed = ("timestamp", parse_iso_time(iso_time(m[1].time)))
    assert texts(await store.after("bob", "#ms", echoed, 10)) == ["m2", "m3"]
    assert texts(await store.before("bob", "#ms", echoed, 10)) == ["m0"]


@pytest_twisted.ensureDeferred
async def test_around(ten):
    store, m = ten
    assert texts(await store.around("bob", "#chat", msgid(m[5]), 1)) == ["m5"]
    assert texts(await store.around("bob", "#chat", msgid(m[5]), 3)) == ["m4", "m5", "m6"]
    assert texts(await store.around("bob", "#chat", msgid(m[5]), 4)) == ["m4", "m5", "m6", "m7"]
    # near an end the window shifts rather than shrinks
    assert texts(await store.around("bob", "#chat", msgid(m[0]), 3)) == ["m0", "m1", "m2"]
    assert texts(await store.around("bob", "#chat", msgid(m[9]), 3)) == ["m7", "m8", "m9"]
    assert texts(await store.around("bob", "#chat", msgid(m[5]), 100)) == texts(m)
    # a time between m5 and m6 is the centre
    assert texts(await store.around("bob", "#chat", ts(m[5], 0.5), 2)) == ["m5", "m6"]
    assert texts(await store.around("bob", "#chat", ts(m[5], 0.5), 4)) == ["m4", "m5", "m6", "m7"]


@pytest_twisted.ensureDeferred
async def test_between(ten):
    store, m = ten
    assert texts(await store.between("bob", "#chat", msgid(m[2]), msgid(m[7]), 10)) == ["m3", "m4", "m5", "m6"]
    # counted from the first reference, forwards or backwards
    assert texts(await store.between("bob", "#chat", msgid(m[2]), msgid(m[7]), 2)) == ["m3", "m4"]
    assert texts(await store.between("bob", "#chat", msgid(m[7]), msgid(m[2]), 2)) == ["m5", "m6"]
    assert texts(await store.between("bob", "#chat", ts(m[2]), ts(m[7]), 10)) == ["m3", "m4", "m5", "m6"]
    assert texts(await store.between("bob", "#chat", msgid(m[2]), ts(m[7]), 10)) == ["m3", "m4", "m5", "m6"]
    assert texts(await store.between("bob", "#chat", ts(m[9], 1), ts(m[0], -1), 3)) == ["m7", "m8", "m9"]
    assert await store.between("bob", "#chat", msgid(m[4]), msgid(m[5]), 10) == []


@pytest_twisted.ensureDeferred
async def test_bad_references_fail_the_deferred(ten):
    store, m = ten
    with pytest.raises(UnknownReference):
        await store.before("bob", "#chat", ("msgid", "nosuchid"), 10)
    with pytest.raises(UnknownReference):  # an id from another room is unknown here
        other = EventMaker().msg("alice", "#other", "x")
        await store.append(other)
        await store.after("bob", "#chat", msgid(other), 10)
    with pytest.raises(ValueError):
        await store.before("bob", "#chat", ("uuid", "x"), 10)
    with pytest.raises(ValueError):
        await store.between("bob", "#chat", msgid(m[1]), "timestamp=2020", 10)


@pytest_twisted.ensureDeferred
async def test_kinds_filter_for_clients_without_event_playback(store):
    make = EventMaker()
    alice = make.msg("alice", "#ev", kind=Kind.JOIN)
    hello = make.msg("alice", "#ev", "hello")
    typing = make.msg("alice", "#ev", kind=Kind.TAGMSG, tags={"+typing": "active"})
    topic = make.msg("alice", "#ev", "new topic", kind=Kind.TOPIC)
    action = make.msg("alice", "#ev", "waves", kind=Kind.ACTION)
    part = make.msg("alice", "#ev", "bye", kind=Kind.PART)
    everything = [alice, hello, typing, topic, action, part]
    await append_all(store, everything)
    assert await store.latest("bob", "#ev", None, 10) == everything
    assert await store.latest("bob", "#ev", None, 10, kinds=CHAT_KINDS) == [hello, typing, action]
    assert await store.latest("bob", "#ev", None, 2, kinds=CHAT_KINDS) == [typing, action]
    # a reference to an event the filter hides still places the query
    assert await store.after("bob", "#ev", msgid(alice), 10, kinds=CHAT_KINDS) == [hello, typing, action]
    assert await store.around("bob", "#ev", msgid(topic), 2, kinds=CHAT_KINDS) == [typing, action]


@pytest_twisted.ensureDeferred
async def test_user_wide_events_appear_in_each_room_given(store):
    make = EventMaker()
    in_a = make.msg("alice", "#a", "in a")
    in_b = make.msg("alice", "#b", "in b")
    quit_ = make.msg("alice", "", "gone", kind=Kind.QUIT)
    nick = make.msg("bob", "", kind=Kind.NICK, data={"new": "robert"})
    await append_all(store, [in_a, in_b])
    await store.append(quit_, ["#a", "#B"])
    await store.append(nick, ["#b"])
    assert await store.latest("carol", "#a", None, 10) == [in_a, quit_]
    assert await store.latest("carol", "#b", None, 10) == [in_b, quit_, nick]
    assert await store.latest("carol", "#b", None, 10, kinds=CHAT_KINDS) == [in_b]
    # an event for no conversation at all is accepted and kept nowhere
    await store.append(make.msg("alice", "", "back", kind=Kind.AWAY))


# -- private conversations ----------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_private_conversations_are_seen_only_by_their_two_parties(store):
    make = EventMaker()
    a1 = make.msg("Alice", "bob", "hi bob")
    b1 = make.msg("Bob", "Alice", "hi alice")
    c1 = make.msg("carol", "alice", "psst alice")
    room = make.msg("alice", "#room", "in the room")
    notice = make.msg("Bob", "ALICE", "a notice", kind=Kind.NOTICE)
    await append_all(store, [a1, b1, c1, room, notice])
    assert await store.latest("alice", "Bob", None, 10) == [a1, b1, notice]
    assert await store.latest("BOB", "alice", None, 10) == [a1, b1, notice]
    assert await store.latest("carol", "bob", None, 10) == []
    assert await store.latest("carol", "alice", None, 10) == [c1]
    assert await store.latest("bob", "carol", None, 10) == []
    # carol cannot page alice and bob's conversation by guessing an id
    with pytest.raises(UnknownReference):
        await store.around("carol", "alice", msgid(a1), 10)
    with pytest.raises(UnknownReference):
        await store.around("carol", "bob", msgid(a1), 10)


@pytest_twisted.ensureDeferred
async def test_server_notices_to_a_nick_are_not_history(store):
    make = EventMaker()
    await store.append(make.ids.make(Kind.NOTICE, Source(nick="", protocol="server"), "alice", "*** hi"))
    assert await store.targets("alice", 0, 2e9, 10) == []


@pytest_twisted.ensureDeferred
async def test_targets_within_one_millisecond_are_in_the_order_they_were_sent(store):
    """Messages a moment apart share a millisecond: the later id is the later one, whatever
    the names (a second connection's conversation list put bob, written to first, after
    carol, who wrote since, in one run of the suite)."""
    make = EventMaker(start=1000.0, step=0.0)  # every event at the same instant
    to_zed = make.msg("alice", "zed", "first")
    from_amy = make.msg("amy", "alice", "second")
    to_bob = make.msg("alice", "bob", "third")
    await append_all(store, [to_zed, from_amy, to_bob])
    assert to_zed.id < from_amy.id < to_bob.id
    assert await store.targets("alice", 0, 5000, 10) == [("zed", 1000.0), ("amy", 1000.0), ("bob", 1000.0)]
    assert await store.targets("alice", 5000, 0, 10) == [("zed", 1000.0), ("amy", 1000.0), ("bob", 1000.0)]


@pytest_twisted.ensureDeferred
async def test_targets(store):
    make = EventMaker(start=1000.0)
    b = make.msg("Bob", "alice", "from bob")  # t=1000
    room = make.msg("alice", "#Room", "room msg")  # 1001
    c = make.msg("alice", "Carol", "to carol")  # 1002
    secret = make.msg("dave", "#secret", "x")  # 1003
    b2 = make.msg("alice", "bob", "to bob")  # 1004
    other = make.msg("dave", "erin", "not alice's")  # 1005
    await append_all(store, [b, room, c, secret, b2, other])
    everything = await store.targets("alice", 0, 5000, 10, rooms=["#Room"])
    assert everything == [("#Room", 1001.0), ("Carol", 1002.0), ("bob", 1004.0)]
    # rooms are listed only when the caller says the viewer may see them
    assert await store.targets("alice", 0, 5000, 10) == [("Carol", 1002.0), ("bob", 1004.0)]
    # the latest event inside the (exclusive) window counts
    assert await store.targets("alice", 1000, 1004, 10, rooms=["#room"]) == [("#room", 1001.0), ("Carol", 1002.0)]
    # a conversation whose latest event is after the window is not listed, though bob's
    # message at 1000 is inside it (irctest testChathistoryTargetsExcludesUpdatedTargets)
    assert await store.targets("alice", 999, 1004, 10) == [("Carol", 1002.0)]
    assert await store.targets("alice", 1004, 999, 10) == [("Carol", 1002.0)]
    # counted from the first bound: forwards keeps the oldest, backwards the newest
    assert await store.targets("alice", 0, 5000, 1, rooms=["#Room"]) == [("#Room", 1001.0)]
    assert await store.targets("alice", 5000, 0, 2, rooms=["#Room"]) == [("Carol", 1002.0), ("bob", 1004.0)]
    assert await store.targets("erin", 0, 5000, 10) == [("dave", 1005.0)]
    assert await store.targets("nobody", 0, 5000, 10) == []


# -- history settings -----------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_history_disabled_or_private_off(store_factory):
    make = EventMaker()
    off = await store_factory(HistoryConfig(enabled=False))
    await off.append(make.msg("alice", "#x", "not kept"))
    assert await off.latest("alice", "#x", None, 10) == []
    await off.close()
    rooms_only = await store_factory(HistoryConfig(private=False))
    kept = make.msg("alice", "#x", "kept")
    await append_all(rooms_only, [make.msg("alice", "bob", "private"), kept])
    assert await rooms_only.latest("alice", "bob", None, 10) == []
    assert await rooms_only.latest("alice", "#x", None, 10) == [kept]


@pytest_twisted.ensureDeferred
async def test_retention_by_count_per_conversation(store_factory):
    store = await store_factory(HistoryConfig(max_per_target=3))
    make = EventMaker()
    a = make.chat("alice", "#a", 5, "a")
    b = make.chat("alice", "#b", 2, "b")
    quit_ = make.msg("alice", "", "bye", kind=Kind.QUIT)
    await append_all(store, a + b)
    await store.append(quit_, ["#a", "#b"])
    removed = await store.prune(make.now)
    # #a keeps a3, a4, quit; #b keeps b0, b1, quit: a0..a2 are gone
    assert removed == 3
    assert texts(await store.latest("x", "#a", None, 10)) == ["a3", "a4", "bye"]
    assert texts(await store.latest("x", "#b", None, 10)) == ["b0", "b1", "bye"]
    assert await store.prune(make.now) == 0


@pytest_twisted.ensureDeferred
async def test_retention_by_age(store_factory):
    store = await store_factory(HistoryConfig(max_age_days=1))
    make = EventMaker(start=1_700_000_000.0, step=3600.0)  # one an hour
    events = make.chat("alice", "#old", 30) + [make.msg("alice", "bob", "private old")]
    await append_all(store, events)
    now = make.now  # 31 hours after the first
    removed = await store.prune(now)
    kept = await store.latest("x", "#old", None, 100)
    assert all(e.time >= now - 86400 for e in kept)
    assert len(kept) == 23
    assert removed == 30 + 1 - 23 - 1
    assert texts(await store.latest("alice", "bob", None, 10)) == ["private old"]
    assert await store.targets("alice", 0, 2e9, 10) == [("bob", events[-1].time)]


# -- accounts --------------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_accounts(store):
    created = await store.create_account("Alice", "$argon2id$fake1", email="a@example.test", created=100.0)
    assert created == Account("Alice", "$argon2id$fake1", 100.0, None, "a@example.test")
    with pytest.raises(AccountExists) as e:
        await store.create_account("ALICE", "$argon2id$other")
    assert "ALICE" in str(e.value)
    assert await store.get_account("alice") == created
    assert await store.get_account("nobody") is None
    await store.set_password_hash("aLiCe", "$argon2id$fake2")
    assert await store.touch_account("alice", 200.0) is True
    assert await store.touch_account("nobody", 200.0) is False
    account = await store.get_account("ALICE")
    assert (account.name, account.password_hash, account.last_seen) == ("Alice", "$argon2id$fake2", 200.0)
    with pytest.raises(NoSuchAccount):
        await store.set_password_hash("nobody", "x")
    await store.create_account("Bob[away]", "h")
    assert await store.account_names() == {"alice", "bob[away]"}
    assert await store.delete_account("BOB[AWAY]") is True
    assert await store.delete_account("bob[away]") is False
    assert await store.account_names() == {"alice"}


# -- rooms ----------------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_rooms_round_trip_and_survive_a_restart(store_factory):
    store = await store_factory()
    chat = RoomRecord(
        name="#Chat",
        topic="Welcome, see https://example.test",
        topic_setter="alice!alice@host",
        topic_time=1_700_000_000.5,
        modes="tn",
        key="sekrit",
        limit=25,
        bans=[("*!*@spam.example", "alice", 1.5), Ban("troll!*@*", "bob", 2.5)],
        operators=["alice", "bob"],
        created=1_600_000_000.25,
    )
    quiet = RoomRecord(name="#quiet", created=5.0)
    await store.save_room(chat)
    await store.save_room(quiet)
    assert await store.load_rooms() == [chat, quiet]
    changed = RoomRecord(name="#chat", topic="new", modes="ntm", bans=[("x!*@*", "carol", 3.0)], operators=["carol"], created=chat.created)
    await store.save_room(changed)
    assert await store.load_rooms() == [changed, quiet]
    assert await store.delete_room("#QUIET") is True
    assert await store.delete_room("#quiet") is False
    await store.close()
    again = await store_factory()
    assert await again.load_rooms() == [changed]


# -- failures during operation -----------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_failed_write_errbacks_and_is_logged(store_factory, captured_log):
    store = await store_factory()
    make = EventMaker()
    await store.append(make.msg("alice", "#fail", "before"))
    run_beside(store_factory, "DROP TABLE conversation_events")
    batch = [store.append(make.msg("alice", "#fail", f"lost{i}")) for i in range(3)]
    results = await defer.DeferredList(batch, consumeErrors=True)
    for ok, failure in results:
        assert not ok
        assert failure.check(StorageError)
        assert "could not be written" in failure.getErrorMessage()
    # logged once for the run of failures, not once per refused write
    failures = [e for e in captured_log if e.get("log_failure") is not None and "could not write" in formatEvent(e)]
    assert len(failures) == 1
    assert store.description in formatEvent(failures[0])
    # reads fail the same clear way
    with pytest.raises(StorageError):
        await store.latest("alice", "#fail", None, 10)
    # other writes still work, and that ends the episode with a count
    await store.create_account("alice", "h")
    (recovered,) = [e for e in captured_log if "writes succeed again" in (e.get("log_format") or "")]
    assert recovered["count"] == 3 and store.description in formatEvent(recovered)


@pytest_twisted.ensureDeferred
async def test_a_redact_takes_the_text_out_of_its_message_in_its_conversation_only(store):
    make = EventMaker()
    secret = make.msg("alice", "#red", "the secret", tags={"+draft/reply": "x"})
    kept = make.msg("bob", "#red", "kept too")
    await append_all(store, [secret, kept])
    # a REDACT of another conversation naming this id takes nothing from this one
    astray = make.msg("carol", "#other", "", kind=Kind.REDACT, data={"msgid": secret.id, "sender": "alice"})
    await store.append(astray)
    assert texts(await store.latest("bob", "#red", None, 10)) == ["the secret", "kept too"]
    redact = make.msg("carol", "#red", "spam", kind=Kind.REDACT, data={"msgid": secret.id, "sender": "alice"})
    await store.append(redact)
    events = await store.latest("bob", "#red", None, 10)
    assert [e.id for e in events] == [secret.id, kept.id, redact.id]
    gone = events[0]
    assert (gone.kind, gone.text, dict(gone.tags), gone.source) == (Kind.MESSAGE, "", {}, secret.source)
    assert gone.data[REDACTED] == {"id": redact.id, "time": redact.time, "by": "carol", "reason": "spam"}
    assert events[1] == kept and events[2] == redact
    # the relay's reads (another node catching up) get the redacted form too
    rows = await store.conversation_range("#red", 0, 10)
    assert [event.text for _, event in rows] == ["", "kept too", "spam"]


@pytest_twisted.ensureDeferred
async def test_a_redact_in_the_same_commit_as_its_message_still_takes_the_text_out(store):
    make = EventMaker()
    said = make.msg("alice", "bob", "private and soon gone")
    redact = make.msg("alice", "bob", "", kind=Kind.REDACT, data={"msgid": said.id, "sender": "alice"})
    await defer.gatherResults([store.append(said), store.append(redact)])  # one group
    events = await store.latest("bob", "alice", None, 10)
    assert [(e.kind, e.text) for e in events] == [(Kind.MESSAGE, ""), (Kind.REDACT, "")]


@pytest_twisted.ensureDeferred
async def test_a_statusmsg_is_kept_apart_from_its_rooms_history(store):
    make = EventMaker()
    public = make.msg("alice", "#st", "for all")
    ops_only = make.msg("alice", "#st", "for operators", data={STATUSMSG: "@"})
    await append_all(store, [public, ops_only])
    assert texts(await store.latest("bob", "#st", None, 10)) == ["for all"]
    assert await store.targets("bob", 0.0, 2e9, 10, rooms=["#st"]) == [("#st", public.time)]
    heads = await store.conversation_heads(["#st", "@#st"])
    assert heads == {"#st": 1, "@#st": 1}  # stored, in a conversation of its own
    assert store.stats().rooms_with_history == 1  # python -m chathub.admin stats: one room
