"""Room lifetimes in the hub (issue 10, items 3 and 16): the bounds on making rooms, who
founds a registered room, which operator grants are written down, and the end of a room.

Over real sockets: tests/test_room_limits.py, tests/test_room_founders_restart.py."""
from __future__ import annotations

import pytest
from twisted.internet.task import Clock

from chathub.config import Config
from chathub.hub import errors
from chathub.hub.service import room_record
from chathub.hub.users import User
from chathub.records import RoomRecord
from tests.support import Recorder, RecorderWorld


def hub(**limits) -> RecorderWorld:
    """A hub with these ``[limits]``, its room-creation rate measured on a ``task.Clock``."""
    return RecorderWorld(Config().with_overrides(limits=limits), clock=Clock())


def test_a_user_that_quit_cannot_join_or_keep_a_room_alive():
    h = hub()
    ghost, watcher = h.connect("ghost"), h.connect("watcher")
    h.hub.quit(ghost, "bye")
    # a request that arrives after the quit (the JSON quit-then-join of issue 10 item 3)
    with pytest.raises(errors.NotLoggedIn):
        h.hub.join(ghost, "#haunted")
    assert h.hub.find_room("#haunted") is None
    never = User(Recorder(h.codec), user="n", host="example.org")  # never took a nick
    with pytest.raises(errors.NotLoggedIn):
        h.hub.join(never, "#haunted")
    h.hub.join(watcher, "#haunted")
    assert list(h.hub.find_room("#haunted").members) == ["watcher"]


def test_guest_rooms_vanish_with_their_last_member():
    h = hub()
    guests = [h.connect(f"g{i}") for i in range(4)]
    for i, guest in enumerate(guests):
        for n in range(5):
            h.hub.join(guest, f"#g{i}-{n}")
        h.hub.join(guest, "#shared")
    assert len(h.hub.rooms) == 21
    assert not any(room.persistent for room in h.hub.rooms.values())
    for guest in guests:
        h.hub.quit(guest)
    assert h.hub.rooms == {}


def test_creation_rate_per_connection_with_a_sliding_minute():
    h = hub(room_creations_per_minute=3)
    fast, other = h.connect("fast"), h.connect("other")
    for n in range(3):
        h.hub.join(fast, f"#r{n}")
        h.clock.advance(10)
    with pytest.raises(errors.RoomCreationThrottled) as refused:
        h.hub.join(fast, "#r3")
    assert refused.value.code == "room_creation_throttled"
    assert refused.value.target == "#r3"
    assert "created 3 in the last minute; try again in 30 s" in refused.value.message
    assert h.hub.find_room("#r3") is None
    # joining rooms that exist is not creating them; another connection has its own count
    h.hub.join(other, "#r0")
    h.hub.join(other, "#mine")
    # the first creation leaves the window after 60 s: one more is allowed, not two
    h.clock.advance(30)
    h.hub.join(fast, "#r3")
    with pytest.raises(errors.RoomCreationThrottled):
        h.hub.join(fast, "#r4")
    # a refused attempt is not counted against the user
    h.clock.advance(10)
    h.hub.join(fast, "#r4")


def test_total_rooms_bounded_and_registered_rooms_count():
    h = hub(max_rooms=3)
    alice, bob = h.connect("alice", account="alice"), h.connect("bob")
    h.hub.join(alice, "#owned")
    h.hub.join(bob, "#b1")
    h.hub.join(bob, "#b2")
    with pytest.raises(errors.RoomLimitReached) as refused:
        h.hub.join(bob, "#b3")
    assert "maximum of 3 rooms" in refused.value.message
    h.hub.join(bob, "#owned")  # existing rooms can still be joined
    h.hub.part(bob, "#b2")  # a guest room vanishes and frees its place
    h.hub.join(bob, "#b3")
    # a registered room keeps its place while empty
    h.hub.part(alice, "#owned")
    h.hub.part(bob, "#owned")
    assert h.hub.find_room("#owned").persistent
    with pytest.raises(errors.RoomLimitReached):
        h.hub.join(alice, "#more")


def test_an_account_founds_at_most_max_owned_rooms():
    h = hub(max_owned_rooms=2)
    alice = h.connect("alice", account="alice")
    for name in ("#a1", "#a2"):
        room = h.hub.join(alice, name)
        assert room.persistent and room.founder == "alice" and room.creator is None
    with pytest.raises(errors.TooManyOwnedRooms) as refused:
        h.hub.join(alice, "#a3")
    assert refused.value.code == "too_many_owned_rooms"
    assert "already owns 2 rooms" in refused.value.message
    assert h.hub.owned_rooms("ALICE") == 2
    # leaving does not give a room up: it stays registered to alice
    h.hub.part(alice, "#a1")
    with pytest.raises(errors.TooManyOwnedRooms):
        h.hub.join(alice, "#a3")
    # other accounts and guests are not held to alice's count
    h.hub.join(h.connect("bob", account="bob"), "#b1")
    h.hub.join(h.connect("guest"), "#g1")


def test_a_guest_who_logs_in_founds_the_rooms_it_made_and_still_operates():
    h = hub(max_owned_rooms=2)
    alice, bob = h.connect("alice"), h.connect("bob", account="bob")
    lobby = h.hub.join(alice, "#lobby")
    h.hub.set_topic(alice, "#lobby", "welcome")
    other = h.hub.join(bob, "#bobs")  # bob's own: registered to bob
    h.hub.join(alice, "#bobs")
    deopped = h.hub.join(alice, "#deopped")
    h.hub.join(bob, "#deopped")
    h.hub.change_room_modes(alice, "#deopped", [("+o", "bob")])
    h.hub.change_room_modes(bob, "#deopped", [("-o", "alice")])
    third = h.hub.join(alice, "#third")
    fourth = h.hub.join(alice, "#fourth")
    assert lobby.creator == alice.session and not lobby.persistent
    h.hub.set_account(alice, "alice")
    assert lobby.persistent and lobby.founder == "alice" and lobby.topic == "welcome"
    assert room_record(lobby).founder == "alice"
    assert other.founder == "bob"  # a room alice only joined stays bob's
    assert not deopped.persistent  # no longer its operator: nobody's
    # the limit holds for rooms claimed too: #lobby and #third fit, #fourth stays a guest room
    assert third.persistent and h.hub.owned_rooms("alice") == 2
    assert not fourth.persistent and fourth.creator == alice.session


def test_only_the_creators_own_connection_claims_a_guest_room():
    h = hub()
    alice, mallory = h.connect("alice"), h.connect("mallory")
    room = h.hub.join(alice, "#lobby")
    h.hub.join(mallory, "#lobby")
    h.hub.change_room_modes(alice, "#lobby", [("+o", "mallory")])
    h.hub.set_account(mallory, "mallory")  # an operator, but not the one who made it
    assert not room.persistent and room.founder is None
    h.hub.part(alice, "#lobby")
    h.hub.set_account(mallory, None)
    h.hub.set_account(mallory, "mallory")  # alone in it now: still not hers
    assert not room.persistent
    h.hub.part(mallory, "#lobby")
    assert h.hub.find_room("#lobby") is None


def test_only_the_founders_grants_are_written_down():
    h = hub()
    alice = h.connect("alice", account="alice")
    bob, carol = h.connect("bob", account="bob"), h.connect("carol", account="carol")
    guest = h.connect("guest")
    room = h.hub.join(alice, "#club")
    for user in (bob, carol, guest):
        h.hub.join(user, "#club")
    h.hub.change_room_modes(alice, "#club", [("+o", "bob"), ("+o", "guest")])
    assert room.operators == {"bob"}  # a guest has no account to remember
    h.hub.change_room_modes(bob, "#club", [("+o", "carol")])  # an operator, not the founder
    assert room.member(carol).is_operator and room.operators == {"bob"}
    h.hub.change_room_modes(bob, "#club", [("-o", "alice")])
    assert room.founder == "alice"  # the founder stays founder
    h.hub.part(alice, "#club")
    alice = h.connect("alice2", account="alice")
    h.hub.join(alice, "#club")
    assert room.member(alice).is_operator
    h.hub.change_room_modes(alice, "#club", [("-o", "bob")])
    assert room.operators == set()
    assert room_record(room) == RoomRecord(
        name="#club", modes="nt", created=room.created, founder="alice", operators=()
    )


def test_first_into_an_empty_registered_room_gets_nothing():
    h = hub()
    h.hub.restore_rooms([RoomRecord(name="#lobby", topic="kept", modes="nt", founder="alice", operators=("bob",))])
    first = h.connect("first", account="first")
    room = h.hub.join(first, "#lobby")
    assert not room.member(first).is_operator and room.topic == "kept"
    h.hub.join(h.connect("bob", account="bob"), "#lobby")
    h.hub.join(h.connect("alice", account="alice"), "#lobby")
    assert [m.user.nick for m in room.members.values() if m.is_operator] == ["bob", "alice"]
    h.hub.part(first, "#lobby")
    assert room_record(room).operators == ("bob",) and room_record(room).founder == "alice"


def test_restored_rooms_count_toward_their_founders_limit():
    h = hub(max_owned_rooms=2, max_rooms=4)
    h.hub.restore_rooms(
        [
            RoomRecord(name="#a1", founder="alice"),
            RoomRecord(name="#a2", founder="alice"),
            RoomRecord(name="#old", operators=("x", "y")),  # stored before founders were kept
        ]
    )
    assert h.hub.owned_rooms("alice") == 2
    with pytest.raises(errors.TooManyOwnedRooms):
        h.hub.join(h.connect("alice", account="alice"), "#a3")
    bob = h.connect("bob")
    h.hub.join(bob, "#new")
    with pytest.raises(errors.RoomLimitReached):
        h.hub.join(bob, "#newer")
    # a room without a founder: each stored operator acts as one (what version 1 meant)
    x, z = h.connect("x", account="x"), h.connect("z", account="z")
    room = h.hub.join(x, "#old")
    h.hub.join(z, "#old")
    h.hub.change_room_modes(x, "#old", [("+o", "z")])
    assert room.operators == {"x", "y", "z"}


def test_the_end_of_a_room_is_told_once_and_registered_rooms_never_end():
    h = hub()
    ended: list[str] = []
    h.hub.when_room_ends(lambda room: ended.append(room.name))
    alice, owner = h.connect("alice"), h.connect("owner", account="owner")
    h.hub.join(alice, "#brief")
    h.hub.join(owner, "#kept")
    h.hub.join(alice, "#kept")
    h.hub.kick(owner, "#kept", "alice")
    h.hub.part(owner, "#kept")
    h.hub.quit(alice)
    assert ended == ["#brief"]
    assert h.hub.find_room("#kept") is not None
