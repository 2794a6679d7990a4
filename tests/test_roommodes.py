"""Taking back mode changes (``chathub.hub.roommodes.take_back_room_modes``): what a
cluster node applied of its own MODE ahead of its number, found void there."""
from __future__ import annotations

from types import SimpleNamespace

from hypothesis import given, settings
from hypothesis import strategies as st

from chathub.config import Config
from chathub.hub.roommodes import apply_room_modes, mode_state, take_back_room_modes
from chathub.hub.rooms import BanEntry, Member, Room
from chathub.hub.users import User

CONFIG = Config()


def person(nick: str) -> User:
    user = User(SimpleNamespace(protocol="irc"), account=nick, user=nick, host="example.org")
    user.nick = user.folded = nick
    return user


def room_with(*nicks: str) -> tuple[Room, dict[str, User]]:
    room = Room("#r")
    room.persistent, room.founder = True, "op"  # op's grants of operator status are written down
    users = {nick: person(nick) for nick in nicks}
    for nick, user in users.items():
        room.members[nick] = Member(user, "o" if nick == "op" else "")
    return room, users


def everything(room: Room) -> tuple:
    return (sorted(room.modes), room.key, room.limit,
            [(e.mask, e.setter, e.time) for e in room.bans], [e.mask for e in room.excepts],
            [e.mask for e in room.invex], {nick: m.privileges for nick, m in room.members.items()},
            sorted(room.operators))


CHANGES = st.lists(st.one_of(
    st.tuples(st.sampled_from(["+m", "-m", "+i", "-i", "-n", "+s"]), st.none()),
    st.tuples(st.sampled_from(["+k", "-k"]), st.sampled_from(["k1", "k2", "*"])),
    st.tuples(st.just("+l"), st.sampled_from(["3", "9"])),
    st.tuples(st.just("-l"), st.none()),
    st.tuples(st.sampled_from(["+b", "-b", "+e", "-I", "+I"]), st.sampled_from(["a!*@*", "b!*@*", "c!*@*"])),
    st.tuples(st.sampled_from(["+o", "-o", "+v", "-v"]), st.sampled_from(["op", "ann", "bo"])),
), max_size=8)


@settings(max_examples=300, deadline=None)
@given(first=CHANGES, change=CHANGES)
def test_a_change_taken_back_at_once_leaves_the_room_as_it_was(first, change):
    room, users = room_with("op", "ann", "bo")
    apply_room_modes(users["op"], room, first, users, CONFIG, at=1.0)
    was = everything(room)
    before = mode_state(room)
    applied, _ = apply_room_modes(users["op"], room, change, users, CONFIG, at=2.0)
    taken = take_back_room_modes(room, applied, before)
    assert everything(room) == was
    assert all(change in applied for change in taken)


def test_what_was_changed_again_since_stays():
    room, users = room_with("op", "ann")
    op = users["op"]
    apply_room_modes(op, room, [("+k", "old"), ("+l", "3"), ("+b", "a!*@*")], users, CONFIG, at=1.0)
    before = mode_state(room)
    applied, _ = apply_room_modes(op, room, [("+k", "mine"), ("+l", "5"), ("+m", None), ("+v", "ann")],
                                  users, CONFIG, at=2.0)
    # another node's changes, numbered before this one, applied over it since
    apply_room_modes(op, room, [("+k", "theirs"), ("-l", None), ("-m", None)], users, CONFIG, at=3.0)
    taken = take_back_room_modes(room, applied, before)
    assert taken == [("+v", "ann")]
    assert (room.key, room.limit, "m" in room.modes, room.members["ann"].privileges) == ("theirs", None, False, "")


def test_an_entry_removed_comes_back_where_it_stood():
    room, users = room_with("op")
    op = users["op"]
    apply_room_modes(op, room, [("+b", m) for m in ("a!*@*", "b!*@*", "c!*@*")], users, CONFIG, at=1.0)
    before = mode_state(room)
    applied, _ = apply_room_modes(op, room, [("-b", "b!*@*"), ("-b", "a!*@*")], users, CONFIG, at=2.0)
    apply_room_modes(op, room, [("-b", "c!*@*"), ("+b", "d!*@*")], users, CONFIG, at=3.0)  # since, elsewhere
    take_back_room_modes(room, applied, before)
    assert room.bans == [BanEntry("a!*@*", op.mask, 1.0), BanEntry("b!*@*", op.mask, 1.0),
                         BanEntry("d!*@*", op.mask, 3.0)]
