"""A registered room's stored record (``chathub.store.sql.rooms``, ``RoomLifetimes``):
changes replace it only while it is that room (``update_room``: in a cluster, a node that
saves its copy after another node renamed the room must not bring the old name back, nor
overwrite a newer room of the name), and a lone node stores the room whole when a change
finds no record (its first save failed)."""
from __future__ import annotations

import pytest_twisted

from chathub.records import RoomRecord
from tests.store_fixtures import *  # noqa: F401,F403 (fixtures)
from tests.support import HubServer, irc_user
from tests.test_read_markers import CAPS


@pytest_twisted.ensureDeferred
async def test_a_stored_room_is_updated_only_while_it_is_that_room(store_factory):
    """A change of a registered room replaces its record only if that room is stored: a
    node of a cluster that saves its copy after another renamed the room does not bring
    the old name back, nor overwrite a newer room of the name (made later)."""
    store = await store_factory()
    record = RoomRecord(name="#Reg", topic="first", created=1000.0, founder="fay")
    assert not await store.update_room(record)  # not stored: nothing written
    assert await store.load_rooms() == []
    await store.save_room(record)
    assert await store.update_room(RoomRecord(name="#reg", topic="second", created=1000.0, founder="fay"))
    (stored,) = await store.load_rooms()
    assert (stored.name, stored.topic) == ("#Reg", "second")  # the case a rename set stays
    await store.delete_room("#reg")
    await store.save_room(RoomRecord(name="#reg", topic="newer room", created=2000.0, founder="gus"))
    assert not await store.update_room(RoomRecord(name="#reg", topic="stale", created=1000.0, founder="fay"))
    (stored,) = await store.load_rooms()
    assert (stored.topic, stored.founder) == ("newer room", "gus")
    await store.close()


@pytest_twisted.ensureDeferred
async def test_a_lone_node_stores_a_registered_room_whose_record_is_missing_at_its_next_change(tmp_path):
    """On a lone node a change that finds no record (its first save failed) stores the
    room whole, as every save did before saves became updates (review finding)."""
    server = await HubServer.stored(tmp_path)
    await server.accounts.create_account("alice", "correct-horse")
    try:
        alice = await irc_user(server, "alice", CAPS, password="correct-horse", rooms=["#reg"])
        assert server.hub.rooms["#reg"].persistent
        for _ in range(100):  # its first save lands, then the test takes it away
            if [r.name for r in await server.store.load_rooms()] == ["#reg"]:
                break
            await alice.roundtrip()
        assert await server.store.delete_room("#reg")
        alice.send("TOPIC #reg :kept anyway")
        await alice.expect_re(r" TOPIC #reg :kept anyway$")
        for _ in range(100):
            if [r.topic for r in await server.store.load_rooms()] == ["kept anyway"]:
                break
            await alice.roundtrip()
        assert [r.topic for r in await server.store.load_rooms()] == ["kept anyway"]
    finally:
        await server.stop()
