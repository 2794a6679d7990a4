"""The hub's metadata of users and rooms (``chathub.hub.metadata``): its listeners, the
stamps that make two nodes' changes of one room end the same on both, and two hubs whose
backplanes hand each other's messages over (real nodes and IRC clients:
tests/test_cluster_metadata.py)."""
from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chathub.events import Kind
from chathub.hub.metadata import UNSET_KEPT, Metadata, read_room_state, read_user_metadata
from chathub.hub.rooms import Room
from chathub.hub.users import User
from tests.support import Recorder, RecorderWorld
from tests.test_remote_directory import two_nodes


class Heard:
    """A listener: every change told, as (name, key, value, by)."""

    def __init__(self, metadata: Metadata) -> None:
        self.changes: list[tuple] = []
        metadata.when_changed(self)

    def __call__(self, thing, key, value, by) -> None:
        self.changes.append((thing.name if isinstance(thing, Room) else thing.nick, key, value, by))


def node(node_id: str, now: list[float]) -> tuple[Metadata, Room, list[list]]:
    """A node's metadata service (its clock ``now[0]``), its copy of #r, and the ``meta``
    items it tells the other nodes."""
    metadata = Metadata(lambda: now[0], node_id)
    sent: list[list] = []
    metadata.on_room_change = sent.append
    return metadata, Room("#r"), sent


def test_changes_are_told_once_with_their_setter_and_a_change_to_nothing_is_none():
    metadata = Metadata(lambda: 100.0)
    heard = Heard(metadata)
    user = User(Recorder({}))
    user.set_nick("alice")
    assert metadata.set(user, "avatar", "a.png", by="session1")
    assert not metadata.set(user, "avatar", "a.png", by="session1")  # the same value
    assert not metadata.set(user, "color", None)  # not set
    assert metadata.values(user) == {"avatar": "a.png"}
    metadata.set(user, "color", "red")
    assert metadata.clear(user, by="session2") == ["avatar", "color"]
    assert user.metadata is None and metadata.values(user) == {}
    assert heard.changes == [
        ("alice", "avatar", "a.png", "session1"), ("alice", "color", "red", None),
        ("alice", "avatar", None, "session2"), ("alice", "color", None, "session2"),
    ]


def test_several_keys_of_a_user_are_announced_once():
    """A client's keys set before registration (up to 50), or cleared at once: the user's
    presence, which carries every key, went to the other nodes once per key."""
    metadata = Metadata(lambda: 100.0)
    announced: list = []
    metadata.on_user_change = announced.append
    user = User(Recorder({}))
    user.set_nick("alice")
    assert metadata.update(user, [("a", "1"), ("b", "2"), ("c", None)]) == ["a", "b"]
    assert metadata.clear(user) == ["a", "b"]
    assert announced == [user, user] and user.metadata is None


def test_a_rooms_change_goes_to_the_other_nodes_with_its_stamp_and_is_taken_once():
    now = [100.0]
    a, room_a, sent = node("a", now)
    b, room_b, _ = node("b", now)
    heard = Heard(b)
    a.set(room_a, "url", "https://a.example", by="op")
    assert sent == [["meta", "#r", "url", "https://a.example", 100.0, "a"]]
    ((key, value, when, at),) = read_room_state([sent[0][2:]])
    assert b.apply_room(room_b, key, value, (when, at))
    assert not b.apply_room(room_b, key, value, (when, at))  # again: nothing new
    assert room_b.metadata == {"url": "https://a.example"}
    assert heard.changes == [("#r", "url", "https://a.example", None)]


def test_an_unset_key_stays_unset_against_an_older_setting_that_arrives_after_it():
    now = [100.0]
    a, room_a, sent = node("a", now)
    b, room_b, _ = node("b", now)
    a.set(room_a, "url", "old")
    now[0] = 101.0
    a.set(room_a, "url", None)
    for item in reversed(sent):  # the unset first, then the older setting
        b.apply_room(room_b, item[2], item[3], (item[4], item[5]))
    assert room_b.metadata is None and room_a.metadata is None


def test_a_change_made_on_a_node_whose_clock_is_behind_still_wins_over_the_one_it_saw():
    """A node's clock behind another's: its later change, stamped by its own clock, would
    lose to the change it replaced on every other node (and stand on its own)."""
    a, room_a, _ = node("a", [200.0])
    b, room_b, sent_b = node("b", [100.0])
    b.apply_room(room_b, "url", "from a", (200.0, "a"))
    a.apply_room(room_a, "url", "from a", (200.0, "a"))
    b.set(room_b, "url", "from b")  # after it, by b's slow clock
    stamp = (sent_b[0][4], sent_b[0][5])
    assert stamp > (200.0, "a")
    assert a.apply_room(room_a, "url", "from b", stamp) and room_a.metadata == room_b.metadata == {"url": "from b"}


def test_the_stamps_of_unset_keys_are_bounded():
    metadata, room, _ = node("a", [100.0])
    for i in range(UNSET_KEPT * 3):
        metadata.set(room, f"k{i}", "v")
        metadata.set(room, f"k{i}", None)
    metadata.set(room, "kept", "v")
    assert len(room.metadata_stamps) == UNSET_KEPT + 1 and room.metadata == {"kept": "v"}


def test_a_copy_made_anew_drops_what_was_set_before_the_new_room_and_keeps_what_came_after():
    metadata, room, sent = node("a", [100.0])
    heard = Heard(metadata)
    metadata.set(room, "old", "x")
    metadata.apply_room(room, "new", "y", (105.0, "b"))  # set on the new room, early
    metadata.reset(room, 104.0)
    assert room.metadata == {"new": "y"} and heard.changes[-1] == ("#r", "old", None, None)
    assert len(sent) == 1  # the reset is this copy's own: not told to the other nodes


@pytest.mark.parametrize("bad", [
    [["k", "v", "late", "a"]], [[1, "v", 1.0, "a"]], [["k", 2, 1.0, "a"]], [["k", "v", 1.0]], "nonsense",
])
def test_malformed_room_metadata_is_refused(bad):
    with pytest.raises((ValueError, TypeError)):
        read_room_state(bad)


def test_malformed_user_metadata_is_refused():
    assert read_user_metadata(None) is None and read_user_metadata({}) is None
    assert read_user_metadata({"b": "2", "a": "1"}) == (("a", "1"), ("b", "2"))
    for bad in ([["a", "1"]], {"a": 1}, {1: "a"}, "a"):
        with pytest.raises(ValueError):
            read_user_metadata(bad)


changes = st.lists(
    st.tuples(st.sampled_from("ab"), st.sampled_from(["k1", "k2"]), st.sampled_from([None, "x", "y"]),
              st.floats(min_value=0, max_value=5)),
    max_size=12,
)


@settings(max_examples=200, deadline=None)
@given(changes, st.randoms(use_true_random=False))
def test_two_nodes_end_with_the_same_metadata_whatever_reaches_them_when(made, rnd):
    """Each node makes its changes (at its clock's times) and receives the other's at any
    moment after they were made: both end with the same values, those of each key's
    latest stamp."""
    clocks = {"a": [0.0], "b": [0.0]}
    nodes = {n: node(n, clocks[n]) for n in "ab"}
    inbox: dict[str, list] = {"a": [], "b": []}
    steps = []  # a make, or the delivery of one message waiting for a node
    for who, key, value, when in made:
        steps.append(("make", who, key, value, when))
        steps.append(("deliver",))
    rnd.shuffle(steps)
    steps.sort(key=lambda s: s[0] == "deliver" and rnd.random() < 0.5)  # some deliveries wait to the end
    for step in steps + [("flush",)]:
        if step[0] == "make":
            _, who, key, value, when = step
            metadata, room, sent = nodes[who]
            clocks[who][0] = max(clocks[who][0], when)
            before = len(sent)
            metadata.set(room, key, value)
            inbox["b" if who == "a" else "a"].extend(sent[before:])
        else:
            for target in "ab":
                pending = inbox[target]
                take = pending if step[0] == "flush" else pending[: 1 if rnd.random() < 0.5 else 0]
                for item in list(take):
                    pending.remove(item)
                    metadata, room, _ = nodes[target]
                    metadata.apply_room(room, item[2], item[3], (item[4], item[5]))
    assert nodes["a"][1].metadata == nodes["b"][1].metadata


def test_a_users_metadata_reaches_the_other_node_with_its_presence_and_its_roster():
    a, b = two_nodes()
    heard = Heard(b.hub.metadata)
    alice = a.connect("alice")
    a.hub.metadata.set(alice, "avatar", "a.png", by="her session")
    seen = b.hub.find_user("alice")
    assert seen.metadata == {"avatar": "a.png"} and heard.changes == [("alice", "avatar", "a.png", None)]
    a.hub.metadata.set(alice, "avatar", None)
    assert seen.metadata is None and heard.changes[-1] == ("alice", "avatar", None, None)
    a.hub.metadata.set(alice, "pronouns", "she/her")
    # a node that starts learns it from the roster the others answer its hello with
    c = RecorderWorld()
    from tests.test_remote_directory import LinkedBackplane

    pc = LinkedBackplane("c")
    pa, pb = a.hub.cluster, b.hub.cluster
    pa.link(pb, pc)
    pc.link(pa)
    c.hub.join_cluster(pc)
    assert c.hub.find_user("alice").metadata == {"pronouns": "she/her"}


def test_a_rooms_metadata_set_before_the_room_reached_a_node_is_taken_when_it_does():
    """The ``meta`` item goes out at once, the room's making JOIN once committed: the node
    that has no copy yet keeps it, and its copy takes it when the JOIN makes it."""
    a, b = two_nodes()
    alice = a.connect("alice")
    room = a.hub.join(alice, "#r")
    a.hub.metadata.set(room, "url", "https://example.org")
    assert "#r" not in b.hub.rooms
    join = a.hub.ids.make(Kind.JOIN, alice.source, "#r")  # alice's, as the relay hands it over
    b.hub.deliver_remote(join, "#r")  # once committed
    assert b.hub.rooms["#r"].metadata == {"url": "https://example.org"}
    a.hub.metadata.set(room, "url", "https://example.org/2")  # and later changes, at once
    assert b.hub.rooms["#r"].metadata == {"url": "https://example.org/2"}
