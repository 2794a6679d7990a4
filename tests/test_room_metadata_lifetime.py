"""Issue 10, item 6 over real sockets: channel METADATA dies with its channel.

Guests made 3,600 rooms, set METADATA on each and left: the metadata of every vanished
room stayed in memory (+22 MiB). The metadata is now held on the hub's room object, and
goes with it; a registered room, which outlives its members, keeps its own.
"""
from __future__ import annotations

import gc

import pytest_twisted
from twisted.cred.checkers import InMemoryUsernamePasswordDatabaseDontUse

from chathub.hub.rooms import Room
from tests.support import HubServer

ROOMS = 50


def room_entries(irc_server) -> set[str]:
    """The rooms in memory holding metadata (the hub's room objects, live or not: one that
    outlived its room would be found by the garbage collector's census)."""
    gc.collect()
    return {room.name for room in gc.get_objects() if isinstance(room, Room) and room.metadata}


@pytest_twisted.ensureDeferred
async def test_metadata_of_vanished_rooms_is_freed_and_never_inherited():
    server = HubServer(checkers=[InMemoryUsernamePasswordDatabaseDontUse(owner=b"pw-owner")])
    hub = server.hub
    try:
        watchers = await server.bystanders()
        attacker = await server.irc("meta", "draft/metadata-3", "batch")
        rooms = [f"#meta{n}" for n in range(ROOMS)]
        attacker.send(*(f"JOIN {room}" for room in rooms))
        attacker.send(*(f"METADATA {room} SET blob :{'x' * 250}" for room in rooms))
        await attacker.expect(lambda l: l.command == "761" and l.params[1] == rooms[-1])
        owner = await server.irc("owner", "draft/metadata-3", password="pw-owner", rooms=["#kept"])
        owner.send("METADATA #kept SET url :https://example.org")
        await owner.expect("761")
        assert room_entries(server.irc_server) == set(rooms) | {"#kept"}

        # the rooms empty and vanish (parts, then the quit of the last member)
        attacker.send(*(f"PART {room}" for room in rooms[: ROOMS // 2]))
        await attacker.expect(lambda l: l.command == "PART" and l.params[0] == rooms[ROOMS // 2 - 1])
        assert room_entries(server.irc_server) == set(rooms[ROOMS // 2 :]) | {"#kept"}
        watchers.irc.send("MONITOR + meta")
        await watchers.irc.expect("730")
        attacker.send("QUIT :done")
        await watchers.irc.expect("731")
        assert not any(hub.find_room(room) for room in rooms)
        # the registered room stays, with its metadata, while empty
        owner.send("PART #kept")
        await owner.expect("PART")
        assert hub.find_room("#kept") is not None and room_entries(server.irc_server) == {"#kept"}

        # a new room of an old name starts with no metadata
        newcomer = await server.irc("newcomer", "draft/metadata-3", rooms=[rooms[0]])
        lines = await newcomer.roundtrip(f"METADATA {rooms[0]} GET blob")
        assert [(l.command, l.params[1:3]) for l in lines] == [("766", [rooms[0], "blob"])]
        await watchers.still_served()
    finally:
        await server.stop()
