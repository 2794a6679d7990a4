"""A room's rename in the store (IRCv3 draft/channel-rename), on SQLite and PostgreSQL: the
current incarnation of the old name's history becomes the new name's, numbered after what
the new name held, whose earlier rooms stay unread; the old name starts empty; the accounts
remembered in the room follow it; all of it ordered among the appends."""
from __future__ import annotations

import pytest_twisted
from twisted.internet import defer

from chathub.events import Kind
from tests.store_fixtures import *  # noqa: F401,F403 (fixtures)
from tests.store_fixtures import EventMaker, append_all, texts


@pytest_twisted.ensureDeferred
async def test_history_moves_to_the_new_name_and_no_earlier_room_of_it_shows(store_factory):
    store = await store_factory()
    make = EventMaker()
    # an earlier room called #new, gone since: its talk must stay unread after the rename
    await store.begin_room("#new")
    gone = make.chat("eve", "#new", 2, "gone")
    await append_all(store, gone)
    # #old: an earlier incarnation, then the current one
    before = make.chat("alice", "#old", 2, "earlier")
    await append_all(store, before)
    await store.begin_room("#old")
    current = make.chat("alice", "#old", 3, "current")
    # appended, then renamed, in one reactor turn: the rename falls after them
    appends = [store.append(e) for e in current]
    renamed = store.rename_room("#old", "#New")
    await defer.gatherResults([*appends, renamed])
    after = make.chat("bob", "#new", 2, "after")
    await append_all(store, after)

    assert texts(await store.latest("bob", "#new", None, 50)) == texts(current + after)
    assert texts(await store.latest("bob", "#old", None, 50)) == []
    # a msgid of the moved history is a message of the new name, numbered after its past
    assert texts(await store.after("bob", "#new", ("msgid", current[0].id), 2)) == ["current1", "current2"]
    heads = await store.conversation_heads(["#new", "#old"])
    assert heads["#new"] == len(gone) + len(current) + len(after)
    assert heads["#old"] == len(before) + len(current)  # numbers are never given twice
    listed = await store.targets("bob", 0, make.now, 10, rooms=["#new", "#old"])
    assert listed == [("#new", after[-1].time)]
    # a room made again under the old name starts empty, and it all outlives a restart
    await store.begin_room("#old")
    again = await store_factory()
    assert texts(await again.latest("x", "#new", None, 50)) == texts(current + after)
    assert texts(await again.latest("x", "#old", None, 50)) == []


@pytest_twisted.ensureDeferred
async def test_an_event_shown_in_both_rooms_moves_once(store_factory):
    """A quit shown in #a and in an earlier #b has a row in each: the rename of #a to #b
    keeps the moved one (the other was unread)."""
    store = await store_factory()
    make = EventMaker()
    await store.begin_room("#b")
    quit_ = make.msg("carol", "", "bye", kind=Kind.QUIT)
    await store.append(quit_, ["#a", "#b"])
    await store.rename_room("#a", "#b")
    assert [e.id for e in await store.latest("x", "#b", None, 10)] == [quit_.id]


@pytest_twisted.ensureDeferred
async def test_accounts_in_the_room_follow_it(store_factory):
    store = await store_factory()
    await store.add_account_room("alice", "#Old", 1.0, 10)
    await store.add_account_room("alice", "#new", 2.0, 10)  # stale: gives way
    await store.add_account_room("bob", "#old", 3.0, 10, key="s3cret")  # a +k room keeps its key
    await store.add_account_room("bob", "#other", 4.0, 10)
    await store.rename_room("#old", "#New")
    assert await store.account_rooms("alice") == [("#New", None)]  # (room, key)
    assert await store.account_rooms("bob") == [("#New", "s3cret"), ("#other", None)]
    # a change of case only renames the entries
    await store.rename_room("#new", "#NEW")
    assert await store.account_rooms("bob") == [("#NEW", "s3cret"), ("#other", None)]


@pytest_twisted.ensureDeferred
async def test_the_rename_stays_at_its_number_in_the_old_conversation(store_factory):
    """The RENAME, stored under the old name just before the history moves, stays there at
    its number (a copy of it ends the moved history of the new name), and so does what was
    numbered under the old name after it: a cluster node reading the old conversation's
    numbers from the store (a gap) finds the RENAME where it was numbered. Moved with the
    rest, it was a gap read as nothing: that node passed over it and never renamed its copy
    of the room. The numbers the history moved to are no gap's: a node that had numbered an
    earlier room of the new name read them as new events, and stalled on its own among them."""
    store = await store_factory()
    make = EventMaker()
    before = make.chat("alice", "#old", 2, "before")
    rename = make.msg("alice", "#old", "moving", kind=Kind.RENAME, data={"new": "#New"})
    late = make.msg("bob", "#old", "numbered after the rename")  # sent to a copy not renamed yet
    appends = [store.append(e) for e in [*before, rename]]
    renamed = store.rename_room("#old", "#New")
    await defer.gatherResults([*appends, renamed])
    await store.append(late)
    old = await store.conversation_range("#old", 0, 10)
    assert [(seq, e.id) for seq, e in old] == [(3, rename.id), (4, late.id)]
    # the new name's history holds the moved rows and the RENAME's copy, numbered 1..3; a
    # cluster node reading those numbers (a gap) passes over them: another room's history,
    # which no node announced under this name (``moved_history``)
    assert [e.id for e in await store.latest("bob", "#new", None, 50, None)] == [*(e.id for e in before), rename.id]
    assert (await store.conversation_heads(["#new"]))["#new"] == 3
    assert await store.conversation_range("#new", 0, 10) == []
    after = make.msg("bob", "#new", "after the move")
    await store.append(after)
    assert [(seq, e.id) for seq, e in await store.conversation_range("#new", 0, 10)] == [(4, after.id)]
    # the old name's next room shows none of it
    await store.begin_room("#old")
    assert texts(await store.latest("bob", "#old", None, 50)) == []
