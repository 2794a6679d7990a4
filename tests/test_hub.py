"""The hub against its plug point: a recording ``IParticipant`` stands in for a protocol."""
from __future__ import annotations

from zope.interface.verify import verifyObject

import pytest
from twisted.internet.defer import Deferred, succeed
from twisted.python.failure import Failure

from chathub.config import Config
from chathub.events import Event, Kind
from chathub.hub import errors
from chathub.hub.outbox import Outbox
from chathub.hub.users import User
from chathub.interfaces import IParticipant
from tests.support import Recorder, RecorderWorld


def p(user: User) -> Recorder:
    return user.participant


@pytest.fixture
def world() -> RecorderWorld:
    return RecorderWorld()


def test_recorder_provides_the_interface(world):
    verifyObject(IParticipant, p(world.connect("alice")))


# -- fan-out ---------------------------------------------------------------------------


def test_encode_once_per_format_key(world):
    sender = world.connect("sender", format_key="a")
    sender_p = p(sender)
    world.hub.join(sender, "#big")
    members = [world.connect(f"u{i}", format_key="a" if i % 2 else "b") for i in range(100)]
    for user in members:
        world.hub.join(user, "#big")
    for user in members + [sender]:
        p(user).encoded.clear()
        p(user).clear()
    event = world.hub.send(sender, "#big", "hello everyone")
    assert world.encode_calls() == 2
    for user in members:
        assert p(user).events == [event]
    assert sender_p.sent == []  # no echo by default
    # the bytes differ between the two formats, and are identical within one
    assert {bytes(p(u).sent[0]) for u in members} == {b"a:" + event.id.encode(), b"b:" + event.id.encode()}


def test_sender_gets_own_echo_only_when_asked(world):
    echo = world.connect("echo", echo_own=True)
    quiet = world.connect("quiet")
    other = world.connect("other")
    for u in (echo, quiet, other):
        world.hub.join(u, "#r")
    world.clear()
    e1 = world.hub.send(echo, "#r", "one")
    e2 = world.hub.send(quiet, "#r", "two")
    assert p(echo).events == [e1, e2]
    assert p(quiet).events == [e1]
    assert p(other).events == [e1, e2]


def test_private_message_reaches_only_its_target(world):
    alice, bob, carol = world.connect("alice"), world.connect("bob"), world.connect("carol")
    for u in (alice, bob, carol):
        world.hub.join(u, "#r")
    world.clear()
    event = world.hub.send(alice, "BOB", "psst")
    assert event.target == "bob" and event.kind == Kind.MESSAGE
    assert p(bob).events == [event]
    assert p(carol).events == []
    assert p(alice).events == []
    with pytest.raises(errors.NoSuchNick):
        world.hub.send(alice, "nobody", "hello?")
    with pytest.raises(errors.NoText):
        world.hub.send(alice, "bob", "")


def test_action_and_notice_kinds(world):
    alice, bob = world.connect("alice"), world.connect("bob")
    world.hub.join(alice, "#r")
    world.hub.join(bob, "#r")
    p(bob).clear()
    world.hub.send(alice, "#r", "waves", Kind.ACTION)
    world.hub.send(alice, "#r", "fyi", Kind.NOTICE)
    assert [(e.kind, e.text) for e in p(bob).events] == [(Kind.ACTION, "waves"), (Kind.NOTICE, "fyi")]


# -- nicks -----------------------------------------------------------------------------


def test_nick_namespace_is_case_insensitive(world):
    alice = world.connect("Alice")
    for other in ("alice", "ALICE", "aLiCe"):
        with pytest.raises(errors.NickInUse):
            world.connect(other)
    assert world.hub.find_user("ALICE") is alice
    # changing only the case of one's own nick is allowed
    world.hub.change_nick(alice, "ALICE")
    assert alice.nick == "ALICE" and world.hub.find_user("alice") is alice
    bob = world.connect("bob")
    with pytest.raises(errors.NickInUse):
        world.hub.change_nick(bob, "alice")


def test_erroneous_nicks_refused(world):
    for bad in ("", "1abc", "-x", "has space", "a" * 31, "#room", "x!y"):
        with pytest.raises(errors.ErroneousNick):
            world.connect(bad)


def test_nick_change_tells_each_neighbour_once(world):
    alice, bob, carol = world.connect("alice"), world.connect("bob"), world.connect("carol")
    for room in ("#one", "#two"):
        world.hub.join(alice, room)
        world.hub.join(bob, room)
    for u in (alice, bob, carol):
        p(u).clear()
    world.hub.change_nick(alice, "alicia")
    assert p(bob).kinds() == [Kind.NICK]
    assert p(bob).events[0].data == {"new": "alicia"}
    assert p(carol).events == []
    assert world.hub.find_user("alice") is None
    assert "alicia" in world.hub.find_room("#one").members
    # the old nick is free again
    world.connect("alice")


def test_registered_account_nick(world):
    class Accounts:
        def is_account(self, name):
            return name.lower() == "owner"

    world.hub.accounts = Accounts()
    with pytest.raises(errors.NickRegistered):
        world.connect("OWNER")
    user = User(Recorder(world.codec), account="owner")
    world.hub.sign_on(user, "Owner")
    assert user.nick == "Owner"


# -- rooms -----------------------------------------------------------------------------


def test_join_part_quit_seen_by_members(world):
    alice, bob = world.connect("alice"), world.connect("bob")
    room = world.hub.join(alice, "#Room")
    assert room.name == "#Room"
    assert world.hub.join(bob, "#ROOM") is room  # room names fold too
    assert world.hub.join(bob, "#room") is None  # already in
    assert p(alice).kinds() == [Kind.JOIN]
    assert p(alice).events[0].source.nick == "bob"
    part = world.hub.part(bob, "#room", "bye")
    assert p(alice).events[-1] == part and part.text == "bye"
    world.hub.join(bob, "#room")
    p(alice).clear()
    quit_event = world.hub.quit(bob, "gone")
    assert p(alice).events == [quit_event]
    assert quit_event.kind == Kind.QUIT and quit_event.text == "gone"
    assert world.hub.quit(bob, "again") is None  # idempotent
    assert world.hub.find_user("bob") is None
    assert bob not in room
    world.hub.part(alice, "#room")
    assert world.hub.find_room("#room") is None  # empty rooms go away


def test_room_errors(world):
    alice = world.connect("alice")
    with pytest.raises(errors.BadRoomName):
        world.hub.join(alice, "#bad room")
    with pytest.raises(errors.BadRoomName):
        world.hub.join(alice, "noprefix")
    with pytest.raises(errors.NoSuchRoom):
        world.hub.part(alice, "#nowhere")
    bob = world.connect("bob")
    world.hub.join(bob, "#elsewhere")
    with pytest.raises(errors.NotOnRoom):
        world.hub.part(alice, "#elsewhere")
    with pytest.raises(errors.NotOnRoom):
        world.hub.set_topic(alice, "#elsewhere", "mine")


def test_too_many_rooms():
    world = RecorderWorld(Config().with_overrides(limits={"max_rooms_per_user": 2}))
    alice = world.connect("alice")
    world.hub.join(alice, "#a")
    world.hub.join(alice, "#b")
    with pytest.raises(errors.TooManyRooms):
        world.hub.join(alice, "#c")


def test_first_joiner_is_operator(world):
    alice, bob = world.connect("alice"), world.connect("bob")
    room = world.hub.join(alice, "#r")
    world.hub.join(bob, "#r")
    assert room.member(alice).is_operator
    assert not room.member(bob).is_operator
    # when everyone leaves the room is gone, and the next first joiner is op again
    world.hub.part(alice, "#r")
    world.hub.part(bob, "#r")
    room = world.hub.join(bob, "#r")
    assert room.member(bob).is_operator


def test_topic_permissions(world):
    op, member = world.connect("op"), world.connect("member")
    room = world.hub.join(op, "#r")
    world.hub.join(member, "#r")
    assert "t" in room.modes  # +nt by default
    with pytest.raises(errors.NotRoomOperator):
        world.hub.set_topic(member, "#r", "mine now")
    event = world.hub.set_topic(op, "#r", "official")
    assert room.topic == "official" and room.topic_setter.startswith("op!")
    assert p(member).events[-1] == event
    world.hub.change_room_modes(op, "#r", [("-t", None)])
    world.hub.set_topic(member, "#r", "anyone may")
    assert room.topic == "anyone may"
    long_topic = world.hub.set_topic(op, "#r", "x" * 1000)
    assert len(long_topic.text) == Config().limits.topic_length


def test_kick_permissions(world):
    op, bob, carol = world.connect("op"), world.connect("bob"), world.connect("carol")
    room = world.hub.join(op, "#r")
    world.hub.join(bob, "#r")
    with pytest.raises(errors.NotRoomOperator):
        world.hub.kick(bob, "#r", "op")
    with pytest.raises(errors.UserNotInRoom):
        world.hub.kick(op, "#r", "carol")
    with pytest.raises(errors.NoSuchNick):
        world.hub.kick(op, "#r", "nobody")
    p(bob).clear()
    event = world.hub.kick(op, "#r", "BOB", "behave")
    assert event.kind == Kind.KICK and event.data["nick"] == "bob" and event.text == "behave"
    assert p(bob).events == [event]  # the kicked user sees it
    assert bob not in room and "#r" not in bob.rooms


def test_invite_only(world):
    op, bob, carol = world.connect("op"), world.connect("bob"), world.connect("carol")
    world.hub.join(op, "#r")
    world.hub.join(carol, "#r")
    world.hub.change_room_modes(op, "#r", [("+i", None)])
    with pytest.raises(errors.InviteOnly):
        world.hub.join(bob, "#r")
    with pytest.raises(errors.NotRoomOperator):
        world.hub.invite(carol, "#r", "bob")
    with pytest.raises(errors.NoSuchNick):
        world.hub.invite(op, "#r", "nobody")
    with pytest.raises(errors.AlreadyOnRoom):
        world.hub.invite(op, "#r", "carol")
    p(bob).clear()
    event = world.hub.invite(op, "#r", "bob")
    assert p(bob).events == [event] and event.data == {"nick": "bob"}
    assert world.hub.join(bob, "#r") is not None
    world.hub.part(bob, "#r")
    with pytest.raises(errors.InviteOnly):  # an invite is good for one join
        world.hub.join(bob, "#r")


def test_mode_changes_need_operator(world):
    op, bob = world.connect("op"), world.connect("bob")
    world.hub.join(op, "#r")
    world.hub.join(bob, "#r")
    with pytest.raises(errors.NotRoomOperator):
        world.hub.change_room_modes(bob, "#r", [("+m", None)])
    with pytest.raises(errors.NoSuchRoom):
        world.hub.change_room_modes(op, "#nowhere", [("+m", None)])
    applied, refused = world.hub.change_room_modes(op, "#r", [("+z", None), ("+m", None), ("+m", None)])
    assert applied == [("+m", None)]  # the second +m is a no-op
    assert [e.code for e in refused] == ["unknown_mode"]
    assert p(bob).events[-1].kind == Kind.MODE
    assert p(bob).events[-1].data == {"changes": [("+m", None)]}


def test_no_external_messages(world):
    op, outsider = world.connect("op"), world.connect("outsider")
    world.hub.join(op, "#r")
    with pytest.raises(errors.CannotSend):
        world.hub.send(outsider, "#r", "from outside")
    world.hub.change_room_modes(op, "#r", [("-n", None)])
    p(op).clear()
    event = world.hub.send(outsider, "#r", "from outside")
    assert p(op).events == [event]


def test_moderated_and_voice(world):
    op, bob = world.connect("op"), world.connect("bob")
    room = world.hub.join(op, "#r")
    world.hub.join(bob, "#r")
    world.hub.change_room_modes(op, "#r", [("+m", None)])
    with pytest.raises(errors.CannotSend) as e:
        world.hub.send(bob, "#r", "hello")
    assert e.value.code == "cannot_send"
    world.hub.send(op, "#r", "ops may talk")
    applied, _ = world.hub.change_room_modes(op, "#r", [("+v", "BOB")])
    assert applied == [("+v", "bob")]
    assert room.member(bob).is_voiced and room.member(bob).prefixes() == "+"
    world.hub.send(bob, "#r", "now I may")
    world.hub.change_room_modes(op, "#r", [("-v", "bob")])
    with pytest.raises(errors.CannotSend):
        world.hub.send(bob, "#r", "silenced again")


def test_operator_grant_and_revoke(world):
    op, bob, carol = world.connect("op"), world.connect("bob"), world.connect("carol")
    room = world.hub.join(op, "#r")
    world.hub.join(bob, "#r")
    applied, refused = world.hub.change_room_modes(op, "#r", [("+o", "bob"), ("+o", "carol"), ("+o", "ghost")])
    assert applied == [("+o", "bob")]
    assert [e.code for e in refused] == ["user_not_in_room", "no_such_nick"]
    assert room.member(bob).is_operator and room.member(bob).prefixes() == "@"
    world.hub.kick(bob, "#r", "op")  # bob is an operator now
    world.hub.join(carol, "#r")
    world.hub.change_room_modes(bob, "#r", [("-o", "bob")])
    with pytest.raises(errors.NotRoomOperator):
        world.hub.kick(bob, "#r", "carol")


def test_key_and_limit(world):
    op, bob, carol = world.connect("op"), world.connect("bob"), world.connect("carol")
    room = world.hub.join(op, "#r")
    applied, _ = world.hub.change_room_modes(op, "#r", [("+k", "sesame"), ("+l", "2")])
    assert applied == [("+k", "sesame"), ("+l", "2")]
    assert room.mode_string() == ("+nt" + "kl", ["sesame", "2"])
    assert room.mode_string(with_params=False)[1] == ["*", "2"]
    with pytest.raises(errors.BadKey):
        world.hub.join(bob, "#r")
    with pytest.raises(errors.BadKey):
        world.hub.join(bob, "#r", "wrong")
    world.hub.join(bob, "#r", "sesame")
    with pytest.raises(errors.RoomFull):
        world.hub.join(carol, "#r", "sesame")
    applied, _ = world.hub.change_room_modes(op, "#r", [("-k", None), ("-l", None), ("+l", "zero")])
    assert applied == [("-k", "*"), ("-l", None)]
    world.hub.join(carol, "#r")


def test_bans_with_masks(world):
    op = world.connect("op")
    bob = world.connect("bob", host="dial.example.net")
    carol = world.connect("carol", host="good.example.org")
    dave = world.connect("dave", host="dial.example.net")
    room = world.hub.join(op, "#r")
    world.hub.join(dave, "#r")
    applied, _ = world.hub.change_room_modes(op, "#r", [("+b", "BOB")])
    assert applied == [("+b", "BOB!*@*")]  # completed to a full mask
    with pytest.raises(errors.Banned):
        world.hub.join(bob, "#r")
    world.hub.join(carol, "#r")
    # a host glob bans everyone from that host, and silences a member already inside
    world.hub.change_room_modes(op, "#r", [("+b", "*!*@*.EXAMPLE.net")])
    assert [b.mask for b in room.bans] == ["BOB!*@*", "*!*@*.EXAMPLE.net"]
    assert room.bans[0].setter.startswith("op!")
    with pytest.raises(errors.CannotSend):
        world.hub.send(dave, "#r", "am I banned?")
    world.hub.send(carol, "#r", "not me")
    # an invite gets past a ban; removing the ban (any case) lets people in
    world.hub.invite(op, "#r", "bob")
    world.hub.join(bob, "#r")
    world.hub.part(bob, "#r")
    applied, _ = world.hub.change_room_modes(op, "#r", [("-b", "bob!*@*"), ("-b", "*!*@*.example.net")])
    assert applied == [("-b", "BOB!*@*"), ("-b", "*!*@*.EXAMPLE.net")]
    world.hub.join(bob, "#r")


def test_list_rooms_hides_secret_ones(world):
    alice, bob = world.connect("alice"), world.connect("bob")
    world.hub.join(alice, "#open")
    world.hub.join(alice, "#hidden")
    world.hub.change_room_modes(alice, "#hidden", [("+s", None)])
    assert sorted(r.name for r in world.hub.list_rooms(alice)) == ["#hidden", "#open"]
    assert [r.name for r in world.hub.list_rooms(bob)] == ["#open"]


def test_away_reaches_neighbours(world):
    alice, bob, carol = world.connect("alice"), world.connect("bob"), world.connect("carol")
    world.hub.join(alice, "#r")
    world.hub.join(bob, "#r")
    p(bob).clear()
    event = world.hub.set_away(alice, "lunch")
    assert alice.away == "lunch" and p(bob).events == [event] and event.text == "lunch"
    assert p(carol).events == []
    world.hub.set_away(alice, None)
    assert alice.away is None and p(bob).events[-1].text == ""


def test_presence_for_watchers(world):
    watcher = world.connect("watcher")
    world.hub.monitor(watcher, ["Friend"])
    friend = world.connect("friend")
    world.hub.quit(friend, "bye")
    states = [(e.kind, e.data["state"]) for e in p(watcher).events]
    assert states == [(Kind.PRESENCE, "online"), (Kind.PRESENCE, "offline")]


# -- event ids ---------------------------------------------------------------------------


def test_event_ids_unique_and_time_ordered(world):
    alice, bob = world.connect("alice"), world.connect("bob")
    world.hub.join(alice, "#r")
    world.hub.join(bob, "#r")
    events = [world.hub.send(alice, "#r", f"m{i}") for i in range(2000)]
    ids = [e.id for e in events]
    assert len(set(ids)) == len(ids)
    assert ids == sorted(ids)
    times = [e.time for e in events]
    assert times == sorted(times)
    assert all(isinstance(e.time, float) for e in events)


# -- delivery order and storage ---------------------------------------------------------


class PendingStore:
    """A store whose commits the test completes by hand."""

    def __init__(self) -> None:
        self.pending: list[tuple[Event, Deferred]] = []

    def wrap_releases(self, around):
        """The test releases each commit by hand, one at a time: nothing to wrap."""

    def begin_room(self, name):
        return succeed(None)

    def append(self, event, rooms, notify=None):
        d = Deferred()
        self.pending.append((event, d))
        if notify is None:
            return d
        d.addCallbacks(lambda _: notify(None), notify)  # the IStore contract for ``notify``
        return None


def test_outbox_holds_later_deliveries_behind_a_pending_commit():
    outbox = Outbox()
    delivered: list[str] = []
    first = outbox.hold(lambda: delivered.append("a"))
    outbox.publish(lambda: delivered.append("b"))
    second = outbox.hold(lambda: delivered.append("c"))
    outbox.publish(lambda: delivered.append("d"))
    assert delivered == [] and outbox.pending == 4
    second(None)  # committed out of order: still waits for the first
    assert delivered == []
    first(None)
    assert delivered == ["a", "b", "c", "d"] and outbox.pending == 0
    outbox.publish(lambda: delivered.append("e"))
    assert delivered[-1] == "e"


def test_outbox_failed_commit_is_not_delivered():
    outbox = Outbox()
    delivered: list[str] = []
    failures: list = []
    settle = outbox.hold(lambda: delivered.append("lost"), failures.append)
    outbox.publish(lambda: delivered.append("after"))
    settle(Failure(RuntimeError("disk full")))
    assert delivered == ["after"]
    assert len(failures) == 1 and failures[0].check(RuntimeError)


def test_hub_delivers_chat_only_after_commit_and_in_order():
    store = PendingStore()
    world = RecorderWorld(store=store)
    alice, bob = world.connect("alice"), world.connect("bob")
    world.hub.join(alice, "#r")
    world.hub.join(bob, "#r")
    for _, d in store.pending:  # joins are stored for playback, without waiting
        d.callback(None)
    store.pending.clear()
    p(bob).clear()
    message = world.hub.send(alice, "#r", "durable")
    away = world.hub.set_away(alice, "brb")  # needs no commit, but comes after
    assert p(bob).events == []
    (stored, d), = store.pending
    assert stored == message
    d.callback(None)
    assert p(bob).events == [message, away]


def test_hub_failed_commit_notifies_sender_and_delivers_nothing():
    store = PendingStore()
    world = RecorderWorld(store=store)
    alice, bob = world.connect("alice"), world.connect("bob")
    world.hub.join(alice, "#r")
    world.hub.join(bob, "#r")
    for _, d in store.pending:
        d.callback(None)
    store.pending.clear()
    p(alice).clear()
    p(bob).clear()
    message = world.hub.send(alice, "#r", "will be lost")
    store.pending[0][1].errback(RuntimeError("database is locked"))
    assert p(bob).events == []
    (notice,) = p(alice).events
    assert notice.kind == Kind.NOTICE and notice.data["error"] == "storage_failed"
    assert notice.data["refers_to"] == message.id
    assert "database is locked" in notice.text
    # the hub goes on: the next message is delivered once stored
    later = world.hub.send(alice, "#r", "next")
    store.pending[-1][1].callback(None)
    assert p(bob).events == [later]


def test_a_failing_participant_does_not_stop_fanout(world):
    alice, bob, carol = world.connect("alice", format_key="x"), world.connect("bob", format_key="y"), world.connect("carol", format_key="z")
    for u in (alice, bob, carol):
        world.hub.join(u, "#r")
    world.clear()

    def broken(data):
        raise RuntimeError("transport gone")

    p(bob).send = broken
    event = world.hub.send(alice, "#r", "still delivered")
    assert p(carol).events == [event]


def test_user_mode_counts_follow_modes_nicks_and_quits():
    """LUSERS reads these counts instead of walking every user at every welcome."""
    world = RecorderWorld()
    hub = world.hub
    amy, bob = world.connect("amy"), world.connect("bob")
    counts = lambda: (hub.users_with_mode("i"), hub.users_with_mode("o"))  # noqa: E731
    assert counts() == (0, 0)
    hub.change_user_modes(amy, [("+i", None), ("+i", None)])  # the repeat changes nothing
    hub.change_user_modes(bob, [("+i", None)])
    hub.make_operator(bob, ["kill"])
    assert counts() == (2, 1)
    hub.change_nick(bob, "robert")
    assert counts() == (2, 1)
    hub.change_user_modes(bob, [("-o", None), ("-i", None)])
    assert counts() == (1, 0)
    hub.make_operator(bob, ["kill"])
    hub.quit(bob, "bye")
    hub.quit(bob, "again")  # idempotent
    assert counts() == (1, 0)
    carl = User(Recorder(world.codec, "a", False), user="carl", host="example.org")
    hub.change_user_modes(carl, [("+i", None)])  # not registered yet: counted once it is
    assert counts() == (1, 0)
    hub.sign_on(carl, "carl")
    assert counts() == (2, 0)
    assert counts() == (
        sum("i" in u.modes for u in hub.users.values()),
        sum("o" in u.modes for u in hub.users.values()),
    )


def test_a_started_hub_sets_the_collectors_thresholds():
    import gc

    from chathub.hub.service import GC_THRESHOLDS, ChatHub

    before = gc.get_threshold()
    gc.set_threshold(700, 10, 10)  # Python's default
    try:
        hub = ChatHub()
        hub.startService()
        assert gc.get_threshold() == GC_THRESHOLDS
        assert gc.get_freeze_count() > 0  # start-up's objects are out of the full passes
        hub.stopService()
    finally:
        gc.set_threshold(*before)
