"""``RemoteDirectory``: the users of other cluster nodes, from their presence messages; and
the hub's side of them, with two hubs whose backplanes hand each other's messages over."""
from __future__ import annotations

import dataclasses
import time

import pytest
from twisted.internet import task
from twisted.internet.defer import succeed

from chathub.backplane import LocalBackplane
from chathub.events import Event, Kind
from chathub.hub import errors
from chathub.hub.remote import RemoteDirectory, RemoteUser
from chathub.hub.replica import MODE_SESSIONS, VACATE_WAIT
from chathub.hub.rooms import Member, Room
from chathub.hub.roomstate import STARTING
from chathub.hub.users import User
from tests.support import LogCapture, Recorder, RecorderWorld


def entry(nick: str, account=None, session="s1") -> list:
    return [nick, "~" + nick, "h.cloak", account, nick, session]


def test_presence_messages_build_and_update_the_directory():
    here = RemoteDirectory("a")
    assert here.apply({"node": "b", "presence": [["on", entry("Bob")], ["on", entry("carol", account="carol")]]}) is False
    assert here.said("BOB") == RemoteUser("b", "Bob", "~Bob", "h.cloak", None, "Bob", "s1")
    bob = here.get("bob")
    assert (bob.nick, bob.user, bob.host, bob.session, bob.participant.node) == ("Bob", "~Bob", "h.cloak", "s1", "b")
    here.apply({"node": "b", "presence": [["nick", "bob", "Robert"]]})
    assert here.get("bob") is None and here.get("robert").nick == "Robert"
    here.apply({"node": "b", "presence": [["off", "carol"]]})
    assert here.get("carol") is None
    # another node cannot rename or drop b's users
    here.apply({"node": "c", "presence": [["off", "robert"], ["nick", "robert", "x"]]})
    assert here.get("robert").participant.node == "b"
    # own messages are ignored
    here.apply({"node": "a", "presence": [["on", entry("self")]]})
    assert here.get("self") is None


def test_a_roster_replaces_a_node_and_hello_asks_for_rosters():
    here = RemoteDirectory("a")
    here.apply({"node": "b", "presence": [["on", entry("old")], ["on", entry("kept")]]})
    here.apply({"node": "c", "presence": [["on", entry("other")]]})
    assert here.apply({"node": "b", "presence": [["hello"], ["roster", [entry("kept"), entry("new")]]]}) is True
    assert sorted(u.nick for u in here.users.values()) == ["kept", "new", "other"]
    gone = here.drop_node("b")
    assert sorted(u.nick for u in gone) == ["kept", "new"] and list(here.users) == ["other"]


# -- two hubs whose backplanes hand each other's messages over in memory --------------------


class LinkedBackplane(LocalBackplane):
    """A ``LocalBackplane`` whose publishes reach the other nodes' subscribers at once (as
    Redis pub/sub does between live nodes), for the hub's side of presence."""

    def __init__(self, node_id: str) -> None:
        super().__init__(node_id)
        self._peers: list[LinkedBackplane] = []

    def link(self, *others: "LinkedBackplane") -> None:
        self._peers = list(others)

    def publish(self, message: dict) -> None:
        for peer in self._peers:
            peer.receive(message)

    def peers(self):
        return succeed([p.node_id for p in self._peers])


class Positions:
    """Where each conversation stands (``ClusterRelay.position`` and ``start_at``) as a dict."""

    def __init__(self, at=None) -> None:
        self.at = dict(at or {})

    def position(self, conv):
        return self.at.get(conv)

    def start_at(self, conv, seq) -> None:
        self.at[conv] = seq

    def movable(self, conv, seq) -> bool:
        return self.at.get(conv, seq) <= seq

    def began_unseen(self, conv) -> bool:
        return False

    def seen_making(self, conv) -> None:
        """Nothing to clear."""

    def hold_unknown_rooms(self) -> None:
        """Nothing to hold: no relay."""

    def release_unknown_rooms(self) -> None:
        """Nothing was held."""


def two_nodes(b_backplane=None):
    """Hubs a and b linked in memory (b's backplane ``b_backplane`` when given)."""
    a, b = RecorderWorld(), RecorderWorld()
    pa, pb = LinkedBackplane("a"), b_backplane or LinkedBackplane("b")
    pa.link(pb)
    pb.link(pa)
    a.hub.join_cluster(pa)
    b.hub.join_cluster(pb)
    return a, b


def test_users_of_the_other_node_are_found_counted_and_monitored():
    a, b = two_nodes()
    watcher = b.connect("watcher")
    b.hub.monitor(watcher, ["alice"])
    alice = a.connect("alice", host="alice.example")
    a.hub.change_user_modes(alice, [("+i", None)])
    assert [e.data["state"] for e in watcher.participant.events if e.kind == Kind.PRESENCE] == ["online"]
    seen = b.hub.find_user("ALICE")
    assert (seen.nick, seen.host, seen.participant.node) == ("alice", "alice.example", "a")
    assert b.hub.global_user_count() == 2 and len(b.hub.users) == 1
    assert b.hub.users_with_mode("i") == 1  # alice's +i reached b
    assert alice not in b.hub.visible_users(watcher)  # invisible, sharing no room
    assert [u.nick for u in b.hub.visible_users(watcher)] == ["watcher"]
    a.hub.quit(alice, "bye")
    assert b.hub.find_user("alice") is None and b.hub.global_user_count() == 1
    assert [e.data["state"] for e in watcher.participant.events if e.kind == Kind.PRESENCE] == ["online", "offline"]


def test_identity_changes_reach_the_other_nodes_members_and_watchers():
    a, b = two_nodes()
    alice = a.connect("alice")
    bob = b.connect("bob")  # shares a room with alice (as the relay would have applied)
    room = b.hub.join(bob, "#r")
    member = b.hub.replica.user_for(a.hub.ids.make(Kind.JOIN, alice.source, "#r"), "a")
    room.add(Member(member, ""))
    member.add_room(room)
    watcher = b.connect("watcher")  # in no room: hears only as a monitor
    b.hub.monitor(watcher, ["alice"])
    for who in (bob, watcher):
        who.participant.clear()
    a.hub.set_away(alice, "lunch")
    a.hub.set_host(alice, "al", "new.host")
    a.hub.set_realname(alice, "Alice A")
    a.hub.set_account(alice, "alice")
    for who in (bob, watcher):
        assert who.participant.kinds() == [Kind.AWAY, Kind.CHGHOST, Kind.SETNAME, Kind.ACCOUNT]
    away, chghost, setname, account = bob.participant.events
    assert away.text == "lunch" and away.source.nick == "alice"
    assert (chghost.source.host, chghost.data) == ("example.org", {"user": "al", "host": "new.host"})
    assert setname.text == "Alice A" and account.data == {"account": "alice"}
    # both the directory's user and the room's member changed: WHOIS and WHO agree
    assert b.hub.find_user("alice") is member
    assert (member.away, member.host, member.realname, member.account) == ("lunch", "new.host", "Alice A", "alice")
    a.hub.set_away(alice, None)
    assert bob.participant.events[-1].kind == Kind.AWAY and member.away is None


def test_an_identity_change_right_after_a_nick_change_reaches_the_room_copy():
    """Presence comes at once, the NICK in the rooms' order after its commit: an away set
    just after a nick change found no room copy under the new nick and was lost here for
    good (WHOIS showed the old state, the room's members were never told)."""
    a, b = two_nodes()
    alice = a.connect("alice")
    bob = b.connect("bob")
    room = b.hub.join(bob, "#r")
    member = b.hub.replica.user_for(a.hub.ids.make(Kind.JOIN, alice.source, "#r"), "a")
    room.add(Member(member, ""))
    member.add_room(room)
    watcher = b.connect("watcher")
    b.hub.monitor(watcher, ["alicex"])
    nick = a.hub.change_nick(alice, "alicex")  # its presence reaches b at once
    a.hub.set_away(alice, "gone")  # and this, before the NICK is applied to b's rooms
    bob.participant.clear()
    watcher.participant.clear()
    b.hub.replica.apply(nick)  # the NICK, in the room's order
    assert b.hub.find_user("alicex") is member and member.away == "gone"
    assert [e.kind for e in bob.participant.events] == [Kind.NICK, Kind.AWAY]
    assert bob.participant.events[-1].text == "gone"
    assert Kind.AWAY not in watcher.participant.kinds()  # told once, when the away came


def test_an_invite_reaches_the_user_on_its_node_and_lets_it_past_invite_only():
    a, b = two_nodes()
    alice = a.connect("alice")
    room = a.hub.join(alice, "#r")
    a.hub.change_room_modes(alice, "#r", [("+i", None)])
    bob = b.connect("bob")
    b.hub.rooms[room.folded] = copy = Room("#r")  # b's copy of the room, as the relay made it
    copy.modes = set(room.modes)
    event = a.hub.invite(alice, "#r", "BOB")
    assert event.data["nick"] == "bob"
    assert bob.participant.events[-1].kind == Kind.INVITE and bob.participant.events[-1].source.nick == "alice"
    assert "bob" in copy.invited and bob.invited_to == {"#r"}
    assert b.hub.join(bob, "#r") is copy  # the invite lets it in past +i on its own node
    with pytest.raises(errors.NoSuchNick):
        a.hub.invite(alice, "#r", "nobody")


def test_a_starting_node_takes_the_rooms_state_from_the_first_answer():
    clock = task.Clock()
    a, b = RecorderWorld(), RecorderWorld()
    pa, pb = LinkedBackplane("a"), LinkedBackplane("b")
    at_a = Positions()
    started = a.hub.join_cluster(pa, at_a, clock)
    assert started.called  # nobody else: nothing to wait for
    alice, carol = a.connect("alice"), a.connect("carol")
    a.hub.join(alice, "#r")
    a.hub.join(carol, "#r")
    a.hub.set_topic(alice, "#r", "the topic")
    a.hub.change_room_modes(alice, "#r", [("+v", "carol"), ("+k", "sesame"), ("+b", "*!*@bad.example")])
    at_a.at["#r"] = 7  # A applied #r's events up to 7
    pa.link(pb)
    pb.link(pa)
    at_b = Positions()
    joined = b.hub.join_cluster(pb, at_b, clock, wait=5.0)
    assert joined.called and at_b.at == {"#r": 7}  # the relay starts after 7
    room = b.hub.rooms["#r"]
    assert {n: m.privileges for n, m in room.members.items()} == {"alice": "o", "carol": "v"}
    assert (room.topic, room.key, [x.mask for x in room.bans]) == ("the topic", "sesame", ["*!*@bad.example"])
    assert b.hub.find_user("carol").rooms == {"#r": room}
    bob = b.connect("bob")
    assert b.hub.join(bob, "#r", "sesame") is room and not room.members["bob"].is_operator  # not a new room


def test_a_registered_room_taken_from_another_nodes_answer_counts_as_its_founders():
    """[limits] max_owned_rooms holds on a node that learned an account's registered room
    from another node's copy (a start-up snapshot, or rooms made while it was cut off),
    not only on the node that registered it."""
    from chathub.config import Config

    clock = task.Clock()
    limits = Config().with_overrides(limits={"max_owned_rooms": 1})
    a, b = RecorderWorld(limits), RecorderWorld(limits)
    pa, pb = LinkedBackplane("a"), LinkedBackplane("b")
    a.hub.join_cluster(pa, Positions(), clock)
    dave = a.connect("dave", account="dave")
    assert a.hub.join(dave, "#daves").founder == "dave"
    pa.link(pb)
    pb.link(pa)
    assert b.hub.join_cluster(pb, Positions(), clock).called
    assert b.hub.rooms["#daves"].persistent and b.hub.owned_rooms("dave") == 1
    a.hub.quit(dave, "bye")
    again = b.connect("dave", account="dave")
    with pytest.raises(errors.TooManyOwnedRooms):
        b.hub.join(again, "#another")
    # taken again (a later answer): counted once, not twice
    b.hub.replica.install("a", a.hub.replica.snapshot("a", lambda conv: None))
    assert b.hub.owned_rooms("dave") == 1


def test_requests_for_the_rooms_are_answered_once_a_second_and_a_learning_nodes_answer_says_so():
    """Every node answered every request for the rooms in use with its whole state: after a
    Redis restart every node asks at once, and N nodes sent it N x (N - 1) times. The
    answer goes to every node, so one a second serves every request made before it. A
    node that is learning the rooms itself says so in its answer (taken only when no other
    node answers)."""
    clock = task.Clock()
    a = RecorderWorld()
    pa, pb = LinkedBackplane("a"), LinkedBackplane("b")
    pa.link(pb)
    pb.link(pa)
    heard: list = []
    pb.subscribe(heard.append)
    started = a.hub.join_cluster(pa, Positions({"#r": 3}), clock, wait=5.0)
    clock.advance(5.0)  # b (a backplane without a hub) never answers a's own start
    assert started.called
    a.hub.join(a.connect("alice"), "#r")

    def answers() -> list:
        return [item for m in heard for item in m.get("presence", ()) if item[0] == "rooms"]

    ask = {"node": "b", "presence": [["rooms?"]]}
    pa.receive(ask)
    assert len(answers()) == 1 and len(answers()[0]) == 3  # at once, not flagged
    pa.receive(ask)
    pa.receive(ask)
    assert len(answers()) == 1  # the next one waits for the second to end, and serves both
    clock.advance(1.0)
    assert len(answers()) == 2
    clock.advance(5.0)
    assert len(answers()) == 2  # nothing more was asked
    a.hub.learn_rooms()  # a asks too (b, a linked backplane, answers nothing)
    pa.receive(ask)
    assert len(answers()) == 3 and answers()[-1][3] == STARTING
    clock.advance(5.0)  # a's own wait ends
    pa.receive(ask)
    clock.advance(1.0)
    assert len(answers()) == 4 and len(answers()[-1]) == 3


def test_a_malformed_answer_is_passed_over_for_the_next_one():
    """A starting node takes the first *good* answer: one whose room facts (or rooms) are
    not such data is logged and passed over, and nothing of it is taken."""
    clock = task.Clock()
    lone = LinkedBackplane("b")
    lone.link(LinkedBackplane("a"), LinkedBackplane("c"))  # they hold leases; the test answers for them
    at_b = Positions()
    world = RecorderWorld()
    joined = world.hub.join_cluster(lone, at_b, clock, wait=5.0)
    good = ["#x", [["bob", 3]], 2, 0, None, [[2, "+b", "*!*@bad"]], [1, "abcdef", 0], 4]
    lone.receive({"node": "a", "presence": [["rooms", [], [good, ["#y", "not a list", 0, 0, None, [], None, 5]]]]})
    assert not joined.called and world.hub.admission.rooms == {} and at_b.at == {}
    lone.receive({"node": "c", "presence": [["rooms", [], [good]]]})
    assert joined.called and at_b.at == {"#x": 4}
    order = world.hub.admission.rooms["#x"]
    assert (dict(order.gone), order.invite_only_since, list(order.changes)) == ({"bob": 3}, 2, [(2, "+b", "*!*@bad")])


def test_a_starting_node_waits_a_bounded_time_for_an_answer():
    clock = task.Clock()
    lone, silent = LinkedBackplane("b"), LinkedBackplane("a")  # a holds a lease, answers nothing
    lone.link(silent)
    joined = RecorderWorld().hub.join_cluster(lone, Positions(), clock, wait=5.0)
    assert not joined.called
    clock.advance(5.0)
    assert joined.called


def test_a_starting_nodes_answer_is_taken_only_when_no_node_knows_better():
    """A node starting beside another one: that one's answer (which may be empty) is kept
    back while a node that is not starting may still answer, taken once every node has
    answered without a better one, and never when a better one came."""
    good = ["#x", [], 2, 0, None, [], [1, "abcdef", 0], 4]
    for order, expected in ((["starting a", "established c"], {"#x": 9}), (["starting a", "starting c"], {"#x": 4})):
        clock = task.Clock()
        lone = LinkedBackplane("b")
        lone.link(LinkedBackplane("a"), LinkedBackplane("c"))
        at_b = Positions()
        joined = RecorderWorld().hub.join_cluster(lone, at_b, clock, wait=5.0)
        for answer in order:
            kind, node = answer.split()
            facts = [good] if node == "a" else [[*good[:7], 9 if kind == "established" else 4]]
            item = ["rooms", [], facts] + ([{"starting": True}] if kind == "starting" else [])
            lone.receive({"node": node, "presence": [item]})
        assert joined.called and at_b.at == expected
    # only starting nodes, and one of them silent: the wait ends with the answer there is
    clock = task.Clock()
    lone = LinkedBackplane("b")
    lone.link(LinkedBackplane("a"), LinkedBackplane("c"))
    at_b = Positions()
    joined = RecorderWorld().hub.join_cluster(lone, at_b, clock, wait=5.0)
    lone.receive({"node": "a", "presence": [["rooms", [], [good], {"starting": True}]]})
    assert not joined.called
    clock.advance(5.0)
    assert joined.called and at_b.at == {"#x": 4}


class Unanswering(LinkedBackplane):
    """A backplane whose list of the nodes holding a lease never comes (Redis stalled)."""

    def peers(self):
        from twisted.internet.defer import Deferred

        return Deferred()


def test_the_wait_is_bounded_even_when_the_list_of_nodes_never_comes():
    clock = task.Clock()
    lone = Unanswering("b")
    at_b = Positions()
    joined = RecorderWorld().hub.join_cluster(lone, at_b, clock, wait=5.0)
    lone.receive({"node": "a", "presence": [["rooms", [], [["#x", [], 0, 0, None, [], None, 4]], {"starting": True}]]})
    assert not joined.called
    clock.advance(5.0)
    assert joined.called and at_b.at == {"#x": 4}  # the answer there was


def test_an_answer_with_one_bad_room_changes_nothing():
    """The whole answer is read before any of it is taken: a bad room in it leaves no
    room, no user and no position behind."""
    clock = task.Clock()
    lone = LinkedBackplane("b")
    lone.link(LinkedBackplane("a"), LinkedBackplane("c"))
    at_b = Positions()
    world = RecorderWorld()
    joined = world.hub.join_cluster(lone, at_b, clock, wait=5.0)
    good = {"name": "#ghost", "seq": 3, "created": 1.0, "topic": ["", "", 0.0], "modes": "nt", "key": None,
            "limit": None, "lists": [[], [], []], "persistent": False, "founder": None, "operators": [],
            "members": [["a", ["gus", "gus", "host", None, "Gus", "s1"], ""]]}
    bad = dict(good, name="#bad", lists=[[], []])
    lone.receive({"node": "a", "presence": [["rooms", [good, bad], []]]})
    assert not joined.called and world.hub.rooms == {} and at_b.at == {}
    assert world.hub.find_user("gus") is None
    lone.receive({"node": "c", "presence": [["rooms", [good], []]]})
    assert joined.called and list(world.hub.rooms) == ["#ghost"] and at_b.at == {"#ghost": 3}
    assert "gus" in world.hub.rooms["#ghost"].members


class Reconnecting(LinkedBackplane):
    """A ``LinkedBackplane`` that can say it reconnected (``on_resync(True)``), as Redis's
    does after an outage."""

    def __init__(self, node_id: str) -> None:
        super().__init__(node_id)
        self.resyncs: list = []

    def on_resync(self, callback) -> None:
        self.resyncs.append(callback)

    def reconnected(self) -> None:
        for callback in self.resyncs:
            callback(True)


class Names:
    """An account directory that counts how often it was read again."""

    def __init__(self) -> None:
        self.names: set[str] = set()
        self.loads = 0

    def is_account(self, name: str) -> bool:
        return name.lower() in self.names

    def learned(self, name: str) -> None:
        self.names.add(name.lower())

    def load(self):
        self.loads += 1
        return succeed(len(self.names))


def test_account_names_are_read_again_after_a_reconnect():
    """A registration on another node is announced; one made while this node was cut off
    from Redis is not heard, so the names are read again from the store once reconnected
    (else a guest here could take that account's nick)."""
    pb = Reconnecting("b")
    a, b = two_nodes(pb)
    names = b.hub.accounts = Names()
    pb.reconnected()
    assert names.loads == 1
    pb.receive({"node": "a", "presence": [["account", "Alice"]]})
    assert b.hub.accounts.is_account("alice")


def test_a_user_of_the_other_node_not_in_the_room_is_not_in_it_rather_than_unknown():
    """KICK and MODE +o of a user of another node who is not in the room said there was no
    such nick (IRC 401); it is ``user_not_in_room`` (441), as for a user of this node."""
    a, b = two_nodes()
    alice = a.connect("alice")
    a.hub.join(alice, "#r")
    b.connect("bob")  # signed on at b, in no room
    with pytest.raises(errors.UserNotInRoom):
        a.hub.kick(alice, "#r", "bob")
    _, refused = a.hub.change_room_modes(alice, "#r", [("+o", "bob")])
    assert [type(e) for e in refused] == [errors.UserNotInRoom]
    with pytest.raises(errors.NoSuchNick):
        a.hub.kick(alice, "#r", "nobody")


def test_a_room_registered_while_cut_off_is_registered_from_the_store_at_reconnect():
    """A guest's room registered at its login on another node is announced once; a node
    cut off from Redis then missed it, and its copy stayed a plain room (ending with its
    last member there). At reconnect it reads the registered rooms from the store."""
    from chathub.records import RoomRecord

    class Records:
        """A store that holds registered rooms only (all this path reads)."""

        def __init__(self, records) -> None:
            self.records = records

        def load_rooms(self):
            return succeed(self.records)

    pb = Reconnecting("b")
    a, b = two_nodes(pb)
    b.hub.rooms["#g"] = plain = Room("#g")  # b's copy, made by the guest's JOIN
    b.hub.rooms["#h"] = other = Room("#h")
    b.hub.store = Records([RoomRecord(name="#G", founder="Carol")])
    pb.reconnected()
    assert (plain.persistent, plain.founder) == (True, "carol")
    assert not other.persistent


def test_a_marker_from_another_node_is_taken_only_when_it_is_a_time():
    """A ``marker`` item was read with ``float()``: a peer's ``inf`` stuck for good (and
    made the marker's time unprintable), a string of digits passed as one."""
    a, b = two_nodes()
    ann = a.connect("ann")
    a.hub.set_account(ann, "ann")
    a.hub.mark_read(ann, "#x", 1.0)
    for bad in (float("inf"), float("nan"), "5", None, True):
        a.hub.cluster.receive({"node": "b", "presence": [["marker", "ann", "#x", bad]]})
    assert a.hub.read_markers.get(ann, "#x") == 1.0
    a.hub.cluster.receive({"node": "b", "presence": [["marker", "ann", "#x", 2.0]]})
    assert a.hub.read_markers.get(ann, "#x") == 2.0


def test_a_mode_change_whose_setter_this_copy_does_not_list_is_applied_all_the_same():
    """Another node gave a nick anew to a user who changed a room's modes at once, while this
    node's copy of the room still listed the nick's earlier holder, whose quit was on its
    way: the change was dropped here (no member to stand for the setter), and the copies
    kept different limits and bans for good (a random two-node driver). It was checked where
    it was asked; every node applies it."""
    a, b = two_nodes()
    b.hub.rooms["#r"] = copy = Room("#r")  # b's copy, as the relay made it: no t7 in it
    t7 = a.connect("t7")
    mode = a.hub.ids.make(Kind.MODE, t7.source, "#r", data={"changes": [["+l", "8"], ["+b", "t3*!*@*"]]})
    b.hub.deliver_remote(mode, "#r")
    assert copy.limit == 8 and [(e.mask, e.setter.split("!")[0]) for e in copy.bans] == [("t3*!*@*", "t7")]


def test_a_nodes_own_mode_change_reaches_the_room_that_replaced_its_copy_at_its_number():
    """alice's +l was applied to this node's copy when asked; before its number the copy's
    room ended (at an earlier number) and another node's JOIN made it anew here, a new room
    object: every other node applies the +l at its number to that new room, this node kept
    it only on the old copy (a random two-node driver: +l on one node only). It is applied
    again at its number when the copy it was made on is not the room any more."""
    a, b = two_nodes()
    a.hub._positions = Positions()
    alice = a.connect("alice")
    old = a.hub.join(alice, "#r")
    applied, _ = a.hub.change_room_modes(alice, "#r", [("+l", "4")])
    (event_id,) = a.hub._own_changes  # the change, on its way to its number
    mode = Event(event_id, time.time(), Kind.MODE, alice.source, "#r", "", None, {"changes": applied})
    a.hub.rooms["#r"] = anew = Room("#r")  # ended there, and made again by another node's JOIN
    anew.add(Member(alice, "o"))
    a.hub._own_change_at_its_number("#r", mode)
    assert anew.limit == 4 and old.limit == 4


def test_a_new_holder_of_a_nick_is_not_the_member_its_earlier_holder_was():
    """A node gives a nick anew (its earlier holder, on another node, quit) while its copy
    of a room still lists that holder, whose quit is on its way: the new user's commands were
    checked against that membership, and a user who had just signed on set +l in a room it
    was not in, as the old holder was its operator (a random two-node driver, outsider seed
    142). It is not on the room until it joins."""
    a, b = two_nodes()
    b.hub.rooms["#r"] = copy = Room("#r")
    earlier = RemoteUser("a", "t7", "~t7", "h.cloak", None, "t7", "s1").make_user()
    copy.add(Member(earlier, "o"))  # the earlier holder, an operator there
    t7 = b.connect("t7")
    with pytest.raises(errors.NotRoomOperator):
        b.hub.change_room_modes(t7, "#r", [("+l", "8")])
    with pytest.raises(errors.NotOnRoom):
        b.hub.set_topic(t7, "#r", "not mine")
    assert copy.limit is None and copy.topic == ""


def a_quit_on_its_way(clock=None):
    """Node a's alice in node b's copy of #r beside b's bob, and alice quitting on a: her
    nick is free (b's claim of it is granted) while her QUIT is still on its way to b
    (committed and published after the nick's release). Returns a, b, bob and the QUIT."""
    a = RecorderWorld()
    b = RecorderWorld()
    pa, pb = LinkedBackplane("a"), LinkedBackplane("b")
    pa.link(pb)
    pb.link(pa)
    a.hub.join_cluster(pa)
    b.hub.join_cluster(pb, clock=clock)
    alice = a.connect("alice")
    b.hub.deliver_remote(a.hub.ids.make(Kind.JOIN, alice.source, "#r", data={"privileges": "o"}), "#r")
    bob = b.connect("bob")
    b.hub.join(bob, "#r")
    quit_event = a.hub.quit(alice, "bye")
    assert b.hub.rooms["#r"].members["alice"].user.participant.node == "a"  # still listed on b
    bob.participant.clear()
    return a, b, bob, quit_event


def test_a_nick_given_anew_is_signed_on_once_its_earlier_holders_quit_reached_this_nodes_rooms():
    """A node whose claim of a nick is granted while its rooms still list the nick's earlier
    holder, of another node, whose QUIT is on its way (the nick is freed at the quit, the
    QUIT shown after its commit): the new user's JOIN of such a room did nothing (taken for
    the earlier holder's membership), and the QUIT, once it came, took the new user's entry
    out of the room. The new user is signed on once the QUIT is here, then joins as anyone."""
    a, b, bob, quit_event = a_quit_on_its_way(task.Clock())
    newcomer = User(Recorder(b.codec), user="alice", host="example.org")
    signed_on: list = []
    b.hub.claim_and_sign_on(newcomer, "alice").addCallback(signed_on.append)
    assert not signed_on  # the earlier holder is still in #r here
    b.hub.deliver_remote(quit_event, "#r")
    assert signed_on == [newcomer] and b.hub.users["alice"] is newcomer
    assert b.hub.join(newcomer, "#r") is not None
    assert b.hub.rooms["#r"].members["alice"].user is newcomer
    assert [(e.kind, e.source.nick) for e in bob.participant.events] == [(Kind.QUIT, "alice"), (Kind.JOIN, "alice")]


def test_a_nick_regained_by_a_rename_stays_in_the_room_when_the_earlier_holders_quit_comes():
    """The commonest way to meet it: a client waiting for its nick (MONITOR tells it the
    holder went offline at once: presence comes before the QUIT's commit) renames to it
    at once. The rename took over the earlier holder's entry in the room, and the QUIT, when
    it came, took the renamed user out of the room here (every other node kept it). The
    rename waits for the QUIT; each is shown in its order."""
    a, b, bob, quit_event = a_quit_on_its_way(task.Clock())
    waiting = b.connect("alice_")
    b.hub.join(waiting, "#r")
    bob.participant.clear()
    renamed: list = []
    b.hub.claim_and_change_nick(waiting, "alice").addCallback(renamed.append)
    assert not renamed and waiting.nick == "alice_"
    b.hub.deliver_remote(quit_event, "#r")
    assert [e.kind for e in renamed] == [Kind.NICK] and waiting.nick == "alice"
    room = b.hub.rooms["#r"]
    assert sorted(room.members) == ["alice", "bob"] and room.members["alice"].user is waiting
    assert waiting.rooms == {"#r": room}
    assert [(e.kind, e.source.nick) for e in bob.participant.events] == [(Kind.QUIT, "alice"), (Kind.NICK, "alice_")]


def test_a_nick_whose_earlier_holders_quit_never_comes_is_given_after_a_bounded_wait():
    """The earlier holder's QUIT lost for good (it is fetched as a gap within seconds, so
    this is a fault): the new user waits ``VACATE_WAIT`` at most, and the earlier holder is
    then taken out of this node's rooms, shown leaving."""
    clock = task.Clock()
    a, b, bob, quit_event = a_quit_on_its_way(clock)
    newcomer = User(Recorder(b.codec), user="alice", host="example.org")
    signed_on: list = []
    b.hub.claim_and_sign_on(newcomer, "alice").addCallback(signed_on.append)
    clock.advance(VACATE_WAIT - 0.1)
    assert not signed_on
    clock.advance(0.1)
    assert signed_on == [newcomer] and b.hub.users["alice"] is newcomer and "alice" not in b.hub.rooms["#r"].members
    assert [e.kind for e in bob.participant.events] == [Kind.QUIT]
    b.hub.deliver_remote(quit_event, "#r")  # late: nothing more
    assert [e.kind for e in bob.participant.events] == [Kind.QUIT]
    assert b.hub.join(newcomer, "#r") is not None


def test_asking_again_for_a_room_held_in_part_stops_with_the_hub():
    """A room still held in part after an answer is asked for again a second later; the
    timer of that ask was kept nowhere, so a hub stopped meanwhile left it running into
    whatever came next (another test's server found it set at its own stop)."""
    clock = task.Clock()
    a, b = two_nodes()
    b.hub._cluster_clock = clock
    b.hub._positions = Positions()
    b.hub.rooms["#r"] = Room("#r")
    b.hub.rooms["#r"].partial = True
    b.hub._learn_partial_again()
    b.hub._learn_rooms_soon(0)  # sooner: the one ask, now
    assert [call.getTime() for call in clock.getDelayedCalls()] == [0]
    b.hub.stopService()
    assert clock.getDelayedCalls() == []
    b.hub._learn_partial_again()
    assert clock.getDelayedCalls() == []


def test_a_privilege_given_to_a_nick_renamed_meanwhile_reaches_the_renamed_user():
    """An operator on A gives +o to i1x while i1x, a user of B, renames to i1: the NICK is
    numbered first, so B, applying the MODE at its number, found no i1x and skipped it,
    while A had applied it ahead to the member it still listed as i1x, renamed at the NICK's
    number: i1 an operator on A only (a random two-node driver, persist seed 475). The MODE
    names the target's connection, as a KICK does: B gives it to the user renamed since."""
    a, b = two_nodes()
    b.hub._positions = Positions()
    target = b.connect("i1x")
    b.hub.join(target, "#r0")
    op = RemoteUser("a", "obsa", "~obsa", "h.cloak", None, "obsa", "s9").make_user()
    b.hub.rooms["#r0"].add(Member(op, "o"))
    watcher = b.connect("w")
    b.hub.join(watcher, "#r0")
    b.hub.change_nick(target, "i1")  # on B at once; numbered before the MODE
    watcher.participant.clear()
    mode = a.hub.ids.make(Kind.MODE, op.source, "#r0", data={
        "changes": [["+o", "i1x"]], MODE_SESSIONS: {"i1x": target.session}})
    b.hub.deliver_remote(mode, "#r0")
    assert b.hub.rooms["#r0"].members["i1"].is_operator
    (shown,) = watcher.participant.events
    assert shown.data["changes"] == [["+o", "i1"]]  # named as the room knows it now


def test_a_node_names_the_connection_of_each_member_whose_privilege_its_mode_changes():
    """In a cluster, a MODE that changes members' privileges names each one's connection
    (``MODE_SESSIONS``); a lone node's does not."""
    for clustered in (True, False):
        world = two_nodes()[0] if clustered else RecorderWorld()
        if clustered:
            world.hub._positions = Positions()
        alice, bob = world.connect("alice"), world.connect("bob")
        world.hub.join(alice, "#r")
        world.hub.join(bob, "#r")
        bob.participant.clear()
        world.hub.change_room_modes(alice, "#r", [("+v", "bob"), ("+m", None)])
        (mode,) = [e for e in bob.participant.events if e.kind == Kind.MODE]
        assert mode.data.get(MODE_SESSIONS) == ({"bob": bob.session} if clustered else None)


def test_an_invite_reaches_the_invited_user_renamed_meanwhile():
    """alice (on A) invites bob while bob, on B, renames to robert and A has not heard of it:
    B found nobody called bob and dropped the invite (alice was told it went out; robert
    could not pass +i). The invite names bob's connection, and B finds robert by it."""
    a, b = two_nodes()
    pa, pb = a.hub.cluster, b.hub.cluster
    alice = a.connect("alice")
    room = a.hub.join(alice, "#r")
    a.hub.change_room_modes(alice, "#r", [("+i", None)])
    bob = b.connect("bob")
    b.hub.rooms[room.folded] = copy = Room("#r")
    copy.modes = set(room.modes)
    pb.link()  # B's presence does not reach A for a moment
    b.hub.change_nick(bob, "robert")
    pb.link(pa)
    a.hub.invite(alice, "#r", "bob")
    invite = bob.participant.events[-1]
    assert invite.kind == Kind.INVITE and invite.data["nick"] == "robert"  # named as it is now
    assert "robert" in copy.invited and bob.invited_to == {"#r"}
    assert b.hub.join(bob, "#r") is copy


@pytest.mark.parametrize("account", [None, "bob"])
def test_a_private_message_reaches_its_recipient_renamed_meanwhile(account):
    """alice (on A) writes to bob while bob, on B, renames to robert and A has not heard of
    it: the message was stored and acknowledged, and B, finding nobody called bob, dropped
    it. It names bob's connection, and B delivers it to robert."""
    a, b = two_nodes()
    pa, pb = a.hub.cluster, b.hub.cluster
    alice = a.connect("alice")
    bob = b.connect("bob", account=account)
    pb.link()  # B's presence does not reach A for a moment
    b.hub.change_nick(bob, "robert")
    pb.link(pa)
    event = a.hub.send(alice, "bob", "are you there?")
    b.hub.deliver_remote(event, "conv")
    assert [(e.target, e.text) for e in bob.participant.events if e.kind == Kind.MESSAGE] == [
        ("robert", "are you there?")]  # addressed to it as it is called now
    # and a guest's message never reaches another connection that holds the nick now
    if account is None:
        carol = b.connect("bob")
        carol.participant.clear()
        b.hub.deliver_remote(a.hub.ids.make(Kind.MESSAGE, alice.source, "bob", "for the first", data={
            "to_session": "c0ffee"}), "conv")
        assert carol.participant.events == []


def test_a_redaction_of_a_private_message_reaches_its_account_holder_renamed_meanwhile():
    """The REDACT of alice's message to bob (an account holder on B, renamed to robert before
    A heard of it) names bob's connection as the message does, so B takes it back from
    robert's view too (it was dropped there: robert kept the text)."""
    a, b = two_nodes()
    pa, pb = a.hub.cluster, b.hub.cluster
    alice = a.connect("alice")
    bob = b.connect("bob", account="bob")
    message = a.hub.send(alice, "bob", "oops")
    pb.link()
    b.hub.change_nick(bob, "robert")
    pb.link(pa)
    redaction = a.hub._redact_found([message], alice, "bob", None, message.id, "typo", None)
    b.hub.deliver_remote(redaction, "conv")
    assert [(e.kind, e.target) for e in bob.participant.events if e.kind == Kind.REDACT] == [(Kind.REDACT, "robert")]


class LosingBackplane(LinkedBackplane):
    """A ``LinkedBackplane`` that can declare another node dead, as Redis's leases do."""

    def __init__(self, node_id: str) -> None:
        super().__init__(node_id)
        self.lost_callbacks: list = []

    def on_node_lost(self, callback) -> None:
        self.lost_callbacks.append(callback)

    def lose(self, node: str) -> None:
        for callback in self.lost_callbacks:
            callback(node)


def test_a_join_of_a_lost_nodes_user_heard_after_the_loss_leaves_no_member_behind():
    """Node a's alice joins #r; a commits the JOIN and dies before publishing it. Node b
    declares a lost (its users leave every room b lists them in: not #r) and then reads the
    JOIN from the store, as a gap. Applied as any JOIN, it put alice in b's copy of #r for
    good: a member of a dead node that no QUIT would ever take out (NAMES listed it, and its
    nick, freed by the reap, stayed in the room)."""
    a, b = two_nodes(LosingBackplane("b"))
    alice = a.connect("alice")
    bob = b.connect("bob")
    b.hub.join(bob, "#r")
    join = a.hub.ids.make(Kind.JOIN, alice.source, "#r")
    b.hub.cluster.lose("a")
    bob.participant.clear()
    b.hub.deliver_remote(join, "#r")
    assert sorted(b.hub.rooms["#r"].members) == ["bob"] and "alice" not in b.hub.users
    assert bob.participant.events == []
    # the nick given anew, on a live node: its holder joins as anyone
    c = b.connect("alice")
    assert b.hub.join(c, "#r") is not None and sorted(b.hub.rooms["#r"].members) == ["alice", "bob"]


def test_a_node_declared_dead_that_speaks_again_was_only_cut_off_and_its_joins_count():
    """A node whose lease ran out while it was cut off is declared dead (its users leave the
    rooms here) but lives: it fences itself and quits its users with events of its own, so
    what it says from then on, a JOIN of a user signed on anew, is applied as any."""
    a, b = two_nodes(LosingBackplane("b"))
    a.connect("alice")
    bob = b.connect("bob")
    b.hub.join(bob, "#r")
    b.hub.cluster.lose("a")
    carol = a.connect("carol")  # its presence reaches b
    b.hub.deliver_remote(a.hub.ids.make(Kind.JOIN, carol.source, "#r"), "#r")
    assert sorted(b.hub.rooms["#r"].members) == ["bob", "carol"]


def alice_beside_bob(a, b, rooms):
    """Node a's alice in the first of ``rooms`` on node b, beside b's bob, who is in each."""
    alice = a.connect("alice")
    bob = b.connect("bob")
    for room in rooms:
        b.hub.join(bob, room)
    b.hub.deliver_remote(a.hub.ids.make(Kind.JOIN, alice.source, rooms[0]), rooms[0])
    return alice, bob


def a_late_join(kind: str):
    """Node a's alice in #r1 on b, her JOIN of #r2 and then her QUIT (or NICK to alicia),
    numbered in #r1 and #r2; b's order of #r1 reaches the QUIT or NICK before #r2's reaches
    the JOIN numbered before it there (#r2 waited for a gap). Returns b, bob (in both rooms
    on b), carol (in #r2 only) and the QUIT or NICK, delivered at #r1 and at #r2."""
    a, b = two_nodes()
    alice, bob = alice_beside_bob(a, b, ("#r1", "#r2"))
    carol = b.connect("carol")
    b.hub.join(carol, "#r2")
    join = a.hub.ids.make(Kind.JOIN, alice.source, "#r2")
    if kind == Kind.QUIT:
        event = a.hub.ids.make(Kind.QUIT, alice.source, "", "bye")
    else:
        event = a.hub.ids.make(Kind.NICK, alice.source, "", data={"new": "alicia"})
    b.hub.deliver_remote(event, "#r1")  # the first of its rooms' orders to reach it
    b.hub.deliver_remote(join, "#r2")  # #r2's gap filled: the JOIN numbered before it there
    b.clear()
    b.hub.deliver_again(event, "#r2")
    return b, bob, carol, event


def test_a_quit_applied_before_a_join_numbered_before_it_in_another_room_takes_the_user_out_there_too():
    """A QUIT numbered in two rooms is applied once, at the first room's number to reach
    this node; a JOIN of the quitter numbered before it in the other room, reaching this
    node after, put the quitter back there for good, on this node only (a random three-node
    driver, seed 5). At the QUIT's number in that room the quitter leaves it."""
    b, bob, carol, event = a_late_join(Kind.QUIT)
    assert sorted(b.hub.rooms["#r2"].members) == ["bob", "carol"] and "alice" not in b.hub.replica.users
    assert [e.kind for e in carol.participant.events] == [Kind.QUIT]


def test_a_nick_change_applied_before_a_join_numbered_before_it_in_another_room_renames_the_user_there_too():
    """The same with a NICK: the JOIN under the old nick put a second member for the user in
    the other room, under a nick it no longer held. At the NICK's number there, the member
    is the renamed user, as in its other room."""
    b, bob, carol, event = a_late_join(Kind.NICK)
    r1, r2 = b.hub.rooms["#r1"], b.hub.rooms["#r2"]
    assert sorted(r2.members) == ["alicia", "bob", "carol"]
    assert r2.members["alicia"].user is r1.members["alicia"].user and "alice" not in b.hub.replica.users
    assert [e.kind for e in carol.participant.events] == [Kind.NICK]


def test_a_lost_nodes_user_whose_quit_never_came_leaves_the_rooms_though_its_presence_had_gone():
    """A node says a user left (presence goes out at once) and dies before its QUIT is
    committed: the directory no longer lists the user when the node is declared dead, and
    only the users it lists left the rooms, so this one stayed in them for good (a random
    three-node driver killing a node: NAMES on one survivor listed it)."""
    a, b = two_nodes(LosingBackplane("b"))
    alice = a.connect("alice")
    bob = b.connect("bob")
    b.hub.join(bob, "#r")
    b.hub.deliver_remote(a.hub.ids.make(Kind.JOIN, alice.source, "#r"), "#r")
    b.hub.remote.apply({"node": "a", "presence": [["off", "alice"]]})
    assert "alice" in b.hub.rooms["#r"].members
    bob.participant.clear()
    b.hub.cluster.lose("a")
    assert sorted(b.hub.rooms["#r"].members) == ["bob"] and "alice" not in b.hub.replica.users
    assert [(e.kind, e.source.nick) for e in bob.participant.events] == [(Kind.QUIT, "alice")]


def three_nodes():
    """Hubs a, b and c, each backplane linked to the other two in memory."""
    worlds = [RecorderWorld() for _ in range(3)]
    planes = [LinkedBackplane(n) for n in "abc"]
    for i, plane in enumerate(planes):
        plane.link(*[other for j, other in enumerate(planes) if j != i])
    for world, plane in zip(worlds, planes, strict=True):
        world.hub.join_cluster(plane)
    return worlds


@pytest.mark.parametrize("change", [Kind.QUIT, Kind.NICK])
def test_a_new_holder_of_a_nick_on_a_third_node_is_not_the_earlier_holder_whose_leaving_comes_late(change):
    """Node a's alice quits (or renames): her nick is free at once and node c gives it to a
    new user, who joins #s; on node b, a third node, that JOIN comes before a's QUIT or NICK
    (behind a gap of #r there). b took the new holder for the earlier one, whose stand-in
    was still listed, and the QUIT, when it came, took the new holder out of #s on b only
    (a NICK renamed it there). The earlier holder is set aside for its QUIT or NICK."""
    a, b, c = three_nodes()
    alice, bob = alice_beside_bob(a, b, ("#r", "#s"))
    leaving = a.hub.quit(alice, "bye") if change == Kind.QUIT else a.hub.change_nick(alice, "alicia")
    newcomer = c.connect("alice")
    b.hub.deliver_remote(c.hub.ids.make(Kind.JOIN, newcomer.source, "#s"), "#s")
    b.hub.deliver_remote(leaving, "#r")
    r, s = b.hub.rooms["#r"], b.hub.rooms["#s"]
    assert sorted(s.members) == ["alice", "bob"] and s.members["alice"].user.participant.node == "c"
    if change == Kind.QUIT:
        assert sorted(r.members) == ["bob"]
    else:
        assert sorted(r.members) == ["alicia", "bob"] and r.members["alicia"].user.participant.node == "a"
    # and the new holder joins the room the earlier one left
    b.hub.deliver_remote(c.hub.ids.make(Kind.JOIN, newcomer.source, "#r"), "#r")
    assert r.members["alice"].user is s.members["alice"].user


def test_a_quit_applied_again_in_another_room_leaves_the_nicks_new_holder_of_another_node_there():
    """A QUIT applied again at its number in another of its rooms takes out the member under
    the quitter's nick there (a late JOIN of the quitter's); not when that member is the
    nick's new holder, of another node, whose JOIN came first."""
    a, b, c = three_nodes()
    alice, bob = alice_beside_bob(a, b, ("#r1", "#r2"))
    quit_event = a.hub.quit(alice, "bye")
    b.hub.deliver_remote(quit_event, "#r1")
    newcomer = c.connect("alice")
    b.hub.deliver_remote(c.hub.ids.make(Kind.JOIN, newcomer.source, "#r2"), "#r2")
    b.hub.deliver_again(quit_event, "#r2")
    assert sorted(b.hub.rooms["#r2"].members) == ["alice", "bob"]


def a_late_join_of_the_earlier_holder(part: bool, account=None):
    """Node a's alice (in #r1 on b, beside b's bob) joins #r2 (and, with ``part``, leaves
    it) and quits; node c gives her nick to a new connection, which joins #r3. On node b
    the QUIT comes first, at its number in #r1; then the newcomer's JOIN; then #r2's gap
    fills: alice's JOIN (and PART) of #r2, numbered before her QUIT, and (without
    ``part``) the QUIT at its number there; with ``account``, both log in to it. Returns b
    and the newcomer's QUIT."""
    a, b, c = three_nodes()
    alice = a.connect("alice", account=account)
    bob = b.connect("bob")
    for room in ("#r1", "#r2", "#r3"):
        b.hub.join(bob, room)
    b.hub.deliver_remote(a.hub.ids.make(Kind.JOIN, alice.source, "#r1"), "#r1")
    late = [a.hub.ids.make(Kind.JOIN, alice.source, "#r2")]
    if part:
        late.append(a.hub.ids.make(Kind.PART, alice.source, "#r2"))
    quit_event = a.hub.quit(alice, "bye")
    b.hub.deliver_remote(quit_event, "#r1")
    newcomer = c.connect("alice", account=account)
    b.hub.deliver_remote(c.hub.ids.make(Kind.JOIN, newcomer.source, "#r3"), "#r3")
    for event in late:
        b.hub.deliver_remote(event, "#r2")
    if not part:
        b.hub.deliver_again(quit_event, "#r2")
    return b, c.hub.quit(newcomer, "bye")


@pytest.mark.parametrize("account", [None, "alice"])
@pytest.mark.parametrize("part", [False, True])
def test_a_late_join_of_a_nicks_earlier_holder_leaves_its_new_holder_listed(part, account):
    """The earlier holder's JOIN, late on this node, found the nick's new holder (of a third
    node) listed under it and took that one for an earlier holder: set it aside for a QUIT
    that had come already, and made a stand-in for the late joiner. The new holder stayed in
    its rooms here when its own QUIT came (its nick no longer listed it): a member no other
    node listed (a random three-node driver's fourth case: a second holder of a nick kept in
    a room of one node only). The directory says who holds the nick now: the late joiner is
    the one set aside, and its PART, or its QUIT at its number in that room, takes it out."""
    b, newcomers_quit = a_late_join_of_the_earlier_holder(part, account)
    r2, r3 = b.hub.rooms["#r2"], b.hub.rooms["#r3"]
    assert sorted(r2.members) == ["bob"] and sorted(r3.members) == ["alice", "bob"]
    assert b.hub.replica.users["alice"] is r3.members["alice"].user
    b.hub.deliver_remote(newcomers_quit, "#r3")
    assert sorted(r3.members) == ["bob"]
    assert "alice" not in b.hub.replica.users and not b.hub.replica._earlier


def test_a_nick_taken_by_a_rename_on_a_third_node_before_the_earlier_holders_quit_arrives():
    """The same with the new holder renaming to the nick: its NICK, applied before the
    earlier holder's QUIT reached this node, took the nick's place here and left the
    earlier holder in its rooms, where no QUIT found it any more (a random three-node
    driver, outsider seed 224: a user listed in one node's copy of a room only)."""
    a, b, c = three_nodes()
    alice, bob = alice_beside_bob(a, b, ("#r", "#s"))
    carol = c.connect("carol")
    b.hub.deliver_remote(c.hub.ids.make(Kind.JOIN, carol.source, "#s"), "#s")
    quit_event = a.hub.quit(alice, "bye")
    b.hub.deliver_remote(c.hub.change_nick(carol, "alice"), "#s")
    b.hub.deliver_remote(quit_event, "#r")
    assert sorted(b.hub.rooms["#r"].members) == ["bob"]
    assert sorted(b.hub.rooms["#s"].members) == ["alice", "bob"]
    assert b.hub.rooms["#s"].members["alice"].user.participant.node == "c"


def test_a_guests_nick_given_anew_on_the_same_node_is_not_its_earlier_holder_whose_quit_comes_late():
    """Node a's guest alice quits and a new guest on a takes the nick and joins #s; on node
    b that JOIN came before the QUIT (behind a gap of #r there): the new guest took the
    earlier one's stand-in (its identity and metadata, a random three-node driver, persist
    seed 69), and the QUIT then took it out of #s. A guest's events name its connection."""
    a, b = two_nodes()
    alice, bob = alice_beside_bob(a, b, ("#r", "#s"))
    quit_event = a.hub.quit(alice, "bye")
    newcomer = a.connect("alice", host="elsewhere.example")
    b.hub.deliver_remote(a.hub.ids.make(Kind.JOIN, newcomer.source, "#s"), "#s")
    b.hub.deliver_remote(quit_event, "#r")
    assert sorted(b.hub.rooms["#r"].members) == ["bob"]
    member = b.hub.rooms["#s"].members["alice"].user
    assert member.session == newcomer.session


def test_an_earlier_holders_quit_that_comes_after_the_new_holders_takes_it_out_of_its_rooms():
    """Node a's guest alice quits and a new guest on a takes the nick, joins #s and quits
    too; node b reads alice's QUIT late (behind a gap of #r) and applies the newcomer's JOIN
    and QUIT first. The earlier holder's QUIT then found nobody under the nick and left her
    in #r on b for good (a random three-node driver, seed 6787: a member of a renamed room
    on two nodes of three). It takes out the earlier holder set aside for it now."""
    a, b = two_nodes()
    alice, bob = alice_beside_bob(a, b, ("#r", "#s"))
    quit_event = a.hub.quit(alice, "bye")
    newcomer = a.connect("alice", host="elsewhere.example")
    b.hub.deliver_remote(a.hub.ids.make(Kind.JOIN, newcomer.source, "#s"), "#s")
    assert b.hub.rooms["#s"].members["alice"].user.session == newcomer.session
    b.hub.deliver_remote(a.hub.ids.make(Kind.QUIT, newcomer.source, "", "bye too"), "#s")
    b.hub.deliver_remote(quit_event, "#r")
    assert sorted(b.hub.rooms["#r"].members) == sorted(b.hub.rooms["#s"].members) == ["bob"]


def renamed_there_and_back(b_rooms=("#r1", "#r2")):
    """Node a's alice in #r1 and #r2 on b; she renames to alicia and back to alice, each NICK
    numbered in both rooms. b's order of #r1 reaches both NICKs before #r2's reaches either
    (#r2 waited for a gap), so each is applied first at #r1 and again at #r2, in turn."""
    a, b = two_nodes()
    alice, bob = alice_beside_bob(a, b, b_rooms)
    for room in b_rooms[1:]:
        b.hub.deliver_remote(a.hub.ids.make(Kind.JOIN, alice.source, room), room)
    carol = b.connect("carol")
    b.hub.join(carol, "#r2")
    carol.participant.clear()
    there = a.hub.change_nick(alice, "alicia")
    back = a.hub.change_nick(alice, "alice")
    b.hub.deliver_remote(there, "#r1")
    b.hub.deliver_remote(back, "#r1")
    b.hub.deliver_again(there, "#r2")
    b.hub.deliver_again(back, "#r2")
    return a, b, alice, carol


def test_a_nick_change_applied_again_after_a_later_one_leaves_the_user_as_the_later_one_left_it():
    """A NICK applied first at one room's number renames the user in every room; applied
    again at its number in another room it is for a member a late JOIN put there under the
    old nick, not for the user it renamed. When the user had renamed back meanwhile (its
    second NICK applied first at the same room), the first NICK's turn in the other room
    found the user under the old nick, renamed it there again, and left it listed under
    both nicks: its next NICK, from that old nick, failed on the room that no longer listed
    it (a random three-node driver, outsider seed 1103: KeyError in ``rekey``, the rename
    half applied on one node, and a nick granted there never given, its earlier holder
    listed under a nick it no longer had)."""
    a, b, alice, carol = renamed_there_and_back()
    r1, r2 = b.hub.rooms["#r1"], b.hub.rooms["#r2"]
    assert sorted(r1.members) == ["alice", "bob"] and sorted(r2.members) == ["alice", "bob", "carol"]
    # shown once each, in #r2 too (applied again there, each rename was shown again)
    assert [(e.kind, e.data["new"]) for e in carol.participant.events] == [(Kind.NICK, "alicia"), (Kind.NICK, "alice")]
    user = r1.members["alice"].user
    assert r2.members["alice"].user is user and user.nick == "alice"
    assert list(b.hub.replica.users) == ["alice"]
    onwards = a.hub.change_nick(alice, "al3")
    b.hub.deliver_remote(onwards, "#r1")
    b.hub.deliver_again(onwards, "#r2")
    assert sorted(r1.members) == ["al3", "bob"] and sorted(r2.members) == ["al3", "bob", "carol"]
    assert user.nick == "al3"
    assert list(b.hub.replica.users) == ["al3"]


def test_a_late_joins_member_renamed_at_its_number_is_listed_under_its_new_nick_only():
    """A NICK applied again in a room where a late JOIN had put the user back under the old
    nick, the renamed user gone from this node meanwhile (its QUIT applied first too): the
    member takes the new nick, and stays listed under the old one as well, in no room once
    its QUIT's turn came there. A user signing on here under that nick then waited for a
    quit that had come already."""
    clock = task.Clock()
    a, b = two_nodes()
    b.hub._cluster_clock = clock
    alice, bob = alice_beside_bob(a, b, ("#r1", "#r2"))
    join = a.hub.ids.make(Kind.JOIN, alice.source, "#r2")
    nick = a.hub.change_nick(alice, "alicia")
    quit_event = a.hub.quit(alice, "bye")
    b.hub.deliver_remote(nick, "#r1")
    b.hub.deliver_remote(quit_event, "#r1")
    b.hub.deliver_remote(join, "#r2")  # #r2's gap filled: the JOIN numbered before both there
    b.hub.deliver_again(nick, "#r2")
    assert sorted(b.hub.rooms["#r2"].members) == ["alicia", "bob"] and list(b.hub.replica.users) == ["alicia"]
    b.hub.deliver_again(quit_event, "#r2")
    assert sorted(b.hub.rooms["#r2"].members) == ["bob"] and not b.hub.replica.users
    newcomer = User(Recorder(b.codec), user="alice", host="example.org")
    signed_on: list = []
    b.hub.claim_and_sign_on(newcomer, "alice").addCallback(signed_on.append)
    assert signed_on == [newcomer]


def test_the_wait_for_a_nicks_earlier_holder_ends_within_its_bound_however_it_is_listed():
    """``VACATE_WAIT`` bounds the wait for an earlier holder's QUIT or NICK. Giving up took
    the holder out under the nick it has, and let the waiter go only once nothing was listed
    under the nick waited for: a holder listed under a nick it no longer had (the stale entry
    of the test above) held the sign-on for good."""
    clock = task.Clock()
    a, b = two_nodes()
    b.hub._cluster_clock = clock
    alice, bob = alice_beside_bob(a, b, ("#r",))
    stale = b.hub.replica.users["alice"]
    stale.set_nick("alicia")  # renamed, and still listed under the old nick
    newcomer = User(Recorder(b.codec), user="alice", host="example.org")
    signed_on: list = []
    b.hub.claim_and_sign_on(newcomer, "alice").addCallback(signed_on.append)
    assert not signed_on
    clock.advance(VACATE_WAIT)
    assert signed_on == [newcomer] and b.hub.users["alice"] is newcomer
    assert "alice" not in b.hub.replica.users and sorted(b.hub.rooms["#r"].members) == ["bob"]


def test_a_nick_change_is_applied_whole_where_a_room_no_longer_lists_the_user_under_its_old_nick():
    """Another node's NICK renamed the user in each room it was listed in here by moving
    the room's entry under the old nick, and raised where a room listed the user otherwise
    (the state the NICK applied again above left behind): the rest of the rename, and its
    showing to the rooms' members, never happened on this node."""
    a, b = two_nodes()
    alice, bob = alice_beside_bob(a, b, ("#r1", "#r2"))
    b.hub.deliver_remote(a.hub.ids.make(Kind.JOIN, alice.source, "#r2"), "#r2")
    r1, r2 = b.hub.rooms["#r1"], b.hub.rooms["#r2"]
    r2.rekey("alice", "alicia")  # listed there under another nick
    bob.participant.clear()
    b.hub.deliver_remote(a.hub.change_nick(alice, "al3"), "#r1")
    assert sorted(r1.members) == ["al3", "bob"] and r1.members["al3"].user.nick == "al3"
    assert [e.kind for e in bob.participant.events] == [Kind.NICK]


def test_a_join_under_a_nick_that_comes_before_the_nick_change_to_it_is_one_user_with_the_renamed():
    """Node a's alice renames to al2 in #r1 and then joins #r2 as al2; b's order of #r2
    reaches that JOIN before #r1's reaches the NICK: b listed al2 in #r2 as a user of its
    own, and the NICK then made alice al2 too, two users for one. A later NICK of al2 renamed
    one of them, and the other stayed listed in #r2 under the old nick on b only (a random
    three-node driver, outsider seed 1109: a member on one node of three). At the NICK the
    two are one user."""
    a, b = two_nodes()
    alice, bob = alice_beside_bob(a, b, ("#r1", "#r2"))
    nick = a.hub.change_nick(alice, "al2")
    join = a.hub.ids.make(Kind.JOIN, alice.source, "#r2")
    b.hub.deliver_remote(join, "#r2")
    b.hub.deliver_remote(nick, "#r1")
    r1, r2 = b.hub.rooms["#r1"], b.hub.rooms["#r2"]
    assert r1.members["al2"].user is r2.members["al2"].user is b.hub.replica.users["al2"]
    onwards = a.hub.change_nick(alice, "al3")
    b.hub.deliver_remote(onwards, "#r1")
    assert sorted(r1.members) == sorted(r2.members) == ["al3", "bob"]


def test_joins_of_a_user_whose_nick_another_node_gave_again_meanwhile_leave_with_its_quit():
    """Node a's alice joins #r1 and #r2 and quits; node c gives the nick to a new connection,
    whose presence reaches b before a's JOINs do. b made alice's member as c's user (the
    directory's node for the nick), so her second JOIN took her for someone else and made a
    second user, and her QUIT found neither: b listed both for good, the other nodes none (a
    random three-node driver, seed 1223). Each is now of the node that made its event."""
    a, b = two_nodes()
    bob = b.connect("bob")
    for room in ("#r1", "#r2"):
        b.hub.join(bob, room)
    alice = a.connect("alice")
    joins = [a.hub.ids.make(Kind.JOIN, alice.source, room, data={"away": "lunch"}) for room in ("#r1", "#r2")]
    quit_event = a.hub.quit(alice, "bye")
    b.hub.remote.apply({"node": "c", "presence": [["on", entry("alice", session="s-c")]]})
    assert b.hub.remote.said("alice").node == "c"
    for join in joins:
        b.hub.deliver_remote(join, join.target)
    r1, r2 = b.hub.rooms["#r1"], b.hub.rooms["#r2"]
    assert r1.members["alice"].user is r2.members["alice"].user
    assert r1.members["alice"].user.participant.node == "a"
    assert r1.members["alice"].user.away == "lunch"  # hers, not the new holder's presence
    b.hub.deliver_remote(quit_event, "#r1")
    b.hub.deliver_again(quit_event, "#r2")
    assert sorted(r1.members) == ["bob"] and sorted(r2.members) == ["bob"]
    assert "alice" not in b.hub.replica.users



def test_a_quit_of_a_nicks_earlier_holder_marks_its_own_rooms_left_ahead():
    """Node a's alice is in #r1 and #r2 here; the nick was given anew on another node, whose
    alice joined #r3 here first (a's alice set aside for her QUIT). The QUIT, at its number
    in #r1, takes a's alice out of #r2 here too, ahead of its number there: #r2's copy, left
    empty by bob after that, is kept for a JOIN numbered before the QUIT there. The rooms so
    marked were the nick's new holder's (#r3), found by nick alone, and #r2's copy was not
    kept (a fresh one made on this node only, as in ``test_room_claims``)."""
    a, b = two_nodes()
    bob = b.connect("bob")
    for room in ("#r1", "#r2"):
        b.hub.join(bob, room)
    alice = a.connect("alice")
    for room in ("#r1", "#r2"):
        b.hub.deliver_remote(a.hub.ids.make(Kind.JOIN, alice.source, room), room)
    newcomer = dataclasses.replace(alice.source, session="s-c")
    b.hub.deliver_remote(a.hub.ids.make(Kind.JOIN, newcomer, "#r3"), "#r3")
    assert b.hub.rooms["#r3"].members["alice"].user is not b.hub.rooms["#r2"].members["alice"].user
    quit_event = a.hub.quit(alice, "bye")
    b.hub.deliver_remote(quit_event, "#r1")
    assert sorted(b.hub.rooms["#r2"].members) == ["bob"] and "alice" in b.hub.rooms["#r3"].members
    b.hub.part(bob, "#r2")
    assert b.hub.revived("#r2") is not None


def renamed_to_a_nick_given_anew(away: str = ""):
    """Node a's t3x, in node b's copy of #r beside b's bob, renames to t3 and quits (or,
    with ``away``, renames to that); b, whose rooms still list t3x (neither event has
    reached them), gives t3 to a new user of its own. Returns b, bob, that new t3, and a's
    NICK and its QUIT (or second NICK)."""
    a, b = two_nodes()
    t3x = a.connect("t3x")
    b.hub.deliver_remote(a.hub.ids.make(Kind.JOIN, t3x.source, "#r"), "#r")
    bob = b.connect("bob")
    b.hub.join(bob, "#r")
    nick_event = a.hub.change_nick(t3x, "t3")
    leaving = a.hub.change_nick(t3x, away) if away else a.hub.quit(t3x, "later")
    return b, bob, b.connect("t3"), nick_event, leaving


def new_holder_joined(b, t3, nick_event, nick_first: bool):
    """Node b's new t3 joins #r and a's NICK to t3 reaches b, in either order (as set up by
    ``renamed_to_a_nick_given_anew``); returns b's #r."""
    if nick_first:
        b.hub.deliver_remote(nick_event, "#r")
        b.hub.join(t3, "#r")
    else:
        b.hub.join(t3, "#r")
        b.hub.deliver_remote(nick_event, "#r")
    return b.hub.rooms["#r"]


def test_a_nick_change_to_a_nick_this_node_gave_anew_leaves_the_new_holders_membership_alone():
    """Node a's t3x renames to t3 and quits; node b, whose rooms still list t3x (neither
    event has reached them), gives t3 to a new user of its own, who joins #r. The NICK then
    came and renamed t3x's entry of #r over the new user's, and the QUIT took that entry
    out: #r ended on b with the new user still in it by its own count, and that user's QUIT
    failed on the ended room (a KeyError: its QUIT never went out, so the other nodes kept
    it in #r for good; a random three-node driver, outsider seed 1413, 2 runs of 7)."""
    b, bob, t3, nick_event, quit_event = renamed_to_a_nick_given_anew()
    b.hub.join(t3, "#r")
    room = b.hub.rooms["#r"]
    b.hub.deliver_remote(nick_event, "#r")
    assert room.members["t3"].user is t3 and "t3x" not in room.members
    b.hub.deliver_remote(quit_event, "#r")
    assert b.hub.rooms["#r"] is room and sorted(room.members) == ["bob", "t3"]
    assert room.members["t3"].user is t3 and t3.rooms == {"#r": room}
    # the earlier t3's QUIT is not shown to the new t3, whose client would read it as its own
    assert Kind.QUIT not in t3.participant.kinds() and Kind.QUIT in bob.participant.kinds()
    bob.participant.clear()
    b.hub.quit(t3, "bye")
    assert [(e.kind, e.source.nick) for e in bob.participant.events] == [(Kind.QUIT, "t3")]
    assert sorted(room.members) == ["bob"] and "t3" not in b.hub.users


def test_a_quit_from_a_room_copy_this_node_no_longer_holds_still_goes_out():
    """A user whose rooms name a copy of a room that the node no longer holds under its
    name (copies that came apart, as above): its QUIT raised a KeyError there, half done, so
    it was never stored nor sent and its nick stayed held. The QUIT now goes out whole, and
    the room the node does hold under the name is left as it is."""
    a, b = two_nodes()
    carol = b.connect("carol")
    bob = b.connect("bob")
    b.hub.join(carol, "#r")
    b.hub.join(carol, "#s")
    b.hub.join(bob, "#s")
    stale = b.hub.rooms["#r"]
    b.hub.rooms["#r"] = held = Room("#r")
    held.add(Member(b.connect("dan"), ""))
    bob.participant.clear()
    with LogCapture() as log:
        b.hub.quit(carol, "bye")
    assert not log.failures and log.matching("not the room of that name here")
    assert [(e.kind, e.source.nick) for e in bob.participant.events] == [(Kind.QUIT, "carol")]
    assert "carol" not in b.hub.users and b.hub.rooms["#r"] is held and "dan" in held.members
    assert not stale.members and sorted(b.hub.rooms["#s"].members) == ["bob"]


@pytest.mark.parametrize("nick_first", [False, True])
def test_a_starting_node_takes_no_earlier_holder_listed_aside_for_a_nicks_new_holder(nick_first):
    """A node starting while another lists a nick's earlier holder aside in a room, beside
    the new holder (``Room.displace``), took both from that node's state as one user of the
    nick, whichever came first: when that was the earlier holder (the NICK applied before
    the new holder's JOIN), the new holder was a member of no node of its own there, and
    the earlier holder's QUIT, once there, left the room without it on the starting node
    only. The state names members listed under their nicks only: the earlier holder's
    leaving, still to come, finds nobody of it there, as on a node where the new holder's
    JOIN came first."""
    b, bob, t3, nick_event, quit_event = renamed_to_a_nick_given_anew()
    assert len(new_holder_joined(b, t3, nick_event, nick_first).members) == 3  # and the earlier t3, aside
    at_b = Positions({"#r": 4})
    rooms = b.hub.replica.snapshot("b", at_b.position)
    c = RecorderWorld()
    c.hub.join_cluster(LinkedBackplane("c"))
    c.hub.replica.install("c", rooms)
    room = c.hub.rooms["#r"]
    assert sorted(room.members) == ["bob", "t3"]
    assert room.members["t3"].user.participant.node == "b"
    c.hub.deliver_remote(quit_event, "#r")  # of a's t3, the earlier holder: not listed here
    assert sorted(room.members) == ["bob", "t3"] and room.members["t3"].user.participant.node == "b"


def test_a_join_under_a_nick_another_nodes_earlier_holder_was_renamed_to_here_joins():
    """As above, with the NICK applied before the new user's JOIN: the room listed the
    earlier holder under the nick, so the JOIN answered "already in" and did nothing; the
    earlier holder's QUIT then left the new user out of a room it had asked to join. The
    new holder joins, and the earlier one, whose leaving follows, is no longer listed."""
    b, bob, t3, nick_event, quit_event = renamed_to_a_nick_given_anew()
    b.hub.deliver_remote(nick_event, "#r")
    bob.participant.clear()
    room = b.hub.join(t3, "#r")
    assert room is b.hub.rooms["#r"] and room.members["t3"].user is t3
    assert [(e.kind, e.source.nick) for e in bob.participant.events] == [(Kind.JOIN, "t3")]
    b.hub.deliver_remote(quit_event, "#r")
    assert sorted(room.members) == ["bob", "t3"] and room.members["t3"].user is t3 and t3.rooms == {"#r": room}


def test_a_nick_change_to_the_nick_of_a_lost_nodes_user_not_dropped_here_yet_takes_its_place():
    """Node c dies; node a, which found it lost first, frees its nicks, and a's user renames
    to one of them while node b still lists c's user under it (b drops c's users once it
    finds c lost too). The renamed user takes the place: only one of this node's own users
    listed under the nick keeps it (above), and c's user, dropped next, leaves nothing
    behind (three-node driver killing a node, persist seed 788: the renamed user was taken
    out of the room on b, and listed on a)."""
    a, b = two_nodes()
    i9x = a.connect("i9x")
    b.hub.deliver_remote(a.hub.ids.make(Kind.JOIN, i9x.source, "#r"), "#r")
    room = b.hub.rooms["#r"]
    lost = RemoteUser("c", "i9y", "~i9y", "h.cloak", None, "i9y", "s9").make_user()
    room.add(Member(lost, ""))
    lost.add_room(room)
    b.hub.deliver_remote(a.hub.change_nick(i9x, "i9y"), "#r")
    renamed = room.members["i9y"].user
    assert renamed is not lost and renamed.participant.node == "a" and sorted(room.members) == ["i9y"]
    assert renamed.rooms == {"#r": room}


@pytest.mark.parametrize("nick_first", [False, True])
def test_an_earlier_holder_that_renames_away_stays_a_member_beside_the_nicks_new_holder(nick_first):
    """Node a's t3x renames to t3 and then to t3y, still in #r; node b gives t3 to a new
    user who joins #r, either before or after a's first NICK reaches it. At the numbers
    between, both users named t3 are members, and after the second NICK both are, as on
    node a: the earlier holder is listed aside meanwhile, not dropped (it was taken out
    of the room on b only) nor renamed over the new holder (which lost its entry)."""
    b, bob, t3, first, second = renamed_to_a_nick_given_anew(away="t3y")
    room = new_holder_joined(b, t3, first, nick_first)
    assert room.members["t3"].user is t3 and len(room.members) == 3
    assert sorted(u.nick for u in room.users()) == ["bob", "t3", "t3"]
    # NAMES, WHO and the web client's list name each nick once: the holder here
    assert [m.user for m in b.hub.visible_members(bob, room) if m.user.nick == "t3"] == [t3]
    b.hub.deliver_remote(second, "#r")
    assert sorted(room.members) == ["bob", "t3", "t3y"] and room.members["t3"].user is t3
    assert room.members["t3y"].user.participant.node == "a"
    # neither NICK is shown to the new t3, whose client would read them as about itself
    assert [e for e in t3.participant.events if e.kind == Kind.NICK] == []
    assert [(e.source.nick, e.data["new"]) for e in bob.participant.events if e.kind == Kind.NICK] == [
        ("t3x", "t3"), ("t3", "t3y")]
    b.hub.quit(t3, "bye")  # its own entry, not the earlier holder's
    assert sorted(room.members) == ["bob", "t3y"]


def test_a_part_of_the_earlier_holder_listed_aside_leaves_the_nicks_new_holder_in_the_room():
    """As above, with the earlier holder parting under the nick instead: the PART named t3,
    and the room's t3 here was the new holder, who was taken out of the room in its place."""
    b, bob, t3, nick_event, _ = renamed_to_a_nick_given_anew()
    b.hub.join(t3, "#r")
    b.hub.deliver_remote(nick_event, "#r")
    earlier = next(m.user for m in b.hub.rooms["#r"].members.values() if m.user.nick == "t3" and m.user is not t3)
    b.hub.deliver_remote(b.hub.ids.make(Kind.PART, earlier.source, "#r"), "#r")
    room = b.hub.rooms["#r"]
    assert sorted(room.members) == ["bob", "t3"] and room.members["t3"].user is t3 and t3.rooms == {"#r": room}
    assert not earlier.rooms
    # not shown to the new t3: its client would take itself out of #r
    assert Kind.PART not in t3.participant.kinds() and Kind.PART in bob.participant.kinds()


def test_a_kick_of_the_earlier_holder_listed_aside_leaves_the_nicks_new_holder_in_the_room():
    """As above, with the earlier holder kicked (by its session, as every KICK names the
    kicked): the KICK named t3, and the new holder was taken out in its place."""
    from chathub.hub.replica import TARGET_SESSION

    b, bob, t3, nick_event, _ = renamed_to_a_nick_given_anew()
    b.hub.join(t3, "#r")
    b.hub.deliver_remote(nick_event, "#r")
    room = b.hub.rooms["#r"]
    earlier = next(m.user for m in room.members.values() if m.user.nick == "t3" and m.user is not t3)
    kick = Event.from_dict({**b.hub.ids.make(Kind.KICK, earlier.source, "#r").to_dict(),
                            "data": {"nick": "t3", TARGET_SESSION: earlier.session}})
    b.hub.deliver_remote(kick, "#r")
    assert sorted(room.members) == ["bob", "t3"] and room.members["t3"].user is t3 and t3.rooms == {"#r": room}
    assert not earlier.rooms
    assert Kind.KICK not in t3.participant.kinds() and Kind.KICK in bob.participant.kinds()


def test_a_part_and_join_numbered_before_a_nick_applied_ahead_leave_the_user_listed_once():
    """Node a's i8, in #r and #s, parts and joins #r again and then renames to i8x. Node b
    applies the NICK at #s's number first (in every room), then the PART, the JOIN and the
    NICK again at #r's: the PART named i8, listed as i8x by then, and missed it; the JOIN
    made a second user of it, and the NICK, applied again, left that one as i8 beside i8x
    for good (three-node driver, outsider seed 2131, 2 of 12 runs)."""
    a, b = two_nodes()
    i8 = a.connect("i8")
    for name in ("#r", "#s"):
        b.hub.deliver_remote(a.hub.ids.make(Kind.JOIN, i8.source, name), name)
    part = a.hub.ids.make(Kind.PART, i8.source, "#r")
    join = a.hub.ids.make(Kind.JOIN, i8.source, "#r")
    nick = a.hub.ids.make(Kind.NICK, i8.source, data={"new": "i8x"})
    b.hub.deliver_remote(nick, "#s")
    b.hub.deliver_remote(part, "#r")
    b.hub.deliver_remote(join, "#r")
    b.hub.deliver_again(nick, "#r")
    r, s = b.hub.rooms["#r"], b.hub.rooms["#s"]
    assert list(r.members) == ["i8x"] and list(s.members) == ["i8x"]
    assert r.members["i8x"].user is s.members["i8x"].user


def test_a_refused_join_under_a_nick_listed_for_its_earlier_holder_changes_nothing():
    """The earlier holder is moved aside only when the new holder joins: a JOIN refused
    (a key it does not give) leaves it listed under the nick."""
    b, bob, t3, nick_event, _ = renamed_to_a_nick_given_anew()
    b.hub.deliver_remote(nick_event, "#r")
    room = b.hub.rooms["#r"]
    room.key = "secret"
    earlier = room.members["t3"].user
    with pytest.raises(errors.BadKey):
        b.hub.join(t3, "#r")
    assert room.members["t3"].user is earlier and sorted(room.members) == ["bob", "t3"] and not t3.rooms
