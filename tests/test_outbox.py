"""``Outbox``: deliveries in hub order after their commits, and a cluster node's holds on one
conversation (``pause``/``resume``) that let the other conversations go on."""
from __future__ import annotations

from twisted.python.failure import Failure

from chathub.hub import errors
from chathub.hub.outbox import Outbox, Receipt
from chathub.store.interfaces import StorageError


def test_deliveries_wait_for_earlier_commits_and_keep_their_order():
    box, out = Outbox(), []
    first = box.hold(lambda: out.append("first"))
    box.publish(lambda: out.append("join"))
    second = box.hold(lambda: out.append("second"))
    assert out == [] and box.pending == 3
    second(None)
    assert out == []  # the first one's commit is not done
    first(None)
    assert out == ["first", "join", "second"] and box.pending == 0
    refused = []
    box.hold(lambda: out.append("never"), refused.append)(Failure(ValueError("disk full")))
    assert out == ["first", "join", "second"] and len(refused) == 1


def test_a_held_conversation_waits_and_the_others_go_on():
    box, out = Outbox(), []
    box.pause("#a")
    a1 = box.hold(lambda: out.append("a1"), key="#a")
    b1 = box.hold(lambda: out.append("b1"), key="#b")
    a2 = box.hold(lambda: out.append("a2"), key="#a")
    b2 = box.hold(lambda: out.append("b2"), key="#b")
    for settle in (a1, b1, a2, b2):
        settle(None)
    assert out == ["b1", "b2"]  # #b passes the held #a; #a keeps its own order
    box.resume("#a")
    assert out == ["b1", "b2", "a1", "a2"] and box.pending == 0


def test_what_belongs_to_no_one_conversation_never_passes_a_held_entry():
    box, out = Outbox(), []
    box.pause("#a")
    box.hold(lambda: out.append("a1"), key="#a")(None)
    box.publish(lambda: out.append("quit"))  # shown in several rooms, #a among them
    box.hold(lambda: out.append("b1"), key="#b")(None)
    assert out == []  # nothing passes the quit, which waits behind #a
    box.resume("#a")
    assert out == ["a1", "quit", "b1"]


def test_nothing_passes_an_entry_still_waiting_for_its_commit():
    box, out = Outbox(), []
    box.pause("#a")
    box.hold(lambda: out.append("a1"), key="#a")(None)
    uncommitted = box.hold(lambda: out.append("b1"), key="#b")
    box.hold(lambda: out.append("c1"), key="#c")(None)
    assert out == []
    uncommitted(None)
    assert out == ["b1", "c1"]
    box.pause("#a")  # held twice: released by the second resume only
    box.resume("#a")
    assert out == ["b1", "c1"]
    box.resume("#a")
    assert out == ["b1", "c1", "a1"]


def test_a_grant_lets_one_held_entry_go_in_its_turn_and_the_release_listener_hears_it():
    box, out, released = Outbox(), [], []
    box.when_released(released.append)
    box.pause("#a")
    box.hold(lambda: out.append("a1"), key="#a")(None)
    a2 = box.hold(lambda: out.append("a2"), key="#a")  # not committed yet
    box.publish(lambda: out.append("reply"))
    assert out == []
    box.grant("#a")  # a1, parked, goes now
    assert out == ["a1"] and released == ["#a"]
    box.grant("#a")  # a2 is not committed: it goes once it is, and the reply after it
    a2(None)
    assert out == ["a1", "a2", "reply"] and released == ["#a", "#a"] and box.pending == 0
    box.hold(lambda: out.append("a3"), key="#a")(None)  # still held: a3 waits for a grant
    assert out == ["a1", "a2", "reply"] and box.pending == 1
    box.resume("#a")
    assert out == ["a1", "a2", "reply", "a3"] and box.pending == 0


def test_a_refused_event_of_a_held_conversation_is_answered_at_once():
    box, out, refused = Outbox(), [], []
    box.pause("#a")
    box.hold(lambda: out.append("a1"), refused.append, key="#a")(Failure(ValueError("disk full")))
    assert out == [] and len(refused) == 1 and box.pending == 0


def test_many_held_entries_are_each_looked_at_once_per_release():
    box, out, looked = Outbox(), [], []
    box.pause("#a")
    for i in range(2000):
        box.hold(lambda i=i: out.append(i), key="#a")(None)
        box.hold(lambda: looked.append(1), key="#b")(None)  # each settle drains
    # the 2000 #a entries sit parked, off the queue, not scanned again by each of the
    # 2000 later drains (which took minutes to go quadratic in a 2-node benchmark)
    assert len(looked) == 2000 and box.pending == 2000
    box.resume("#a")
    assert out == list(range(2000)) and box.pending == 0


def test_a_receipt_tells_a_storage_failure_from_a_refusal_at_the_events_number():
    stored = Receipt()
    assert stored.stored and stored.error is None
    failed = Receipt()
    failed.refuse("#r", Failure(StorageError("disk full")))
    assert (failed.code, failed.error) == ("storage_failed", None)
    assert "could not be stored (disk full)" in failed.describe()
    void = Receipt()  # a cluster found the event void at its number (chathub.hub.admission)
    void.refuse("#r", Failure(errors.InviteOnly("#r")))
    assert not void.stored and void.code == "invite_only" and isinstance(void.error, errors.InviteOnly)
    assert void.describe() == f"#r: {errors.InviteOnly.message}"


def test_a_committed_group_settled_inside_settling_is_delivered_by_one_drain_at_its_end():
    batches, depth = [], [0]

    class Batching:  # as ``Fanout.batching``: only the outermost block ends a batch
        def __enter__(self):
            depth[0] += 1

        def __exit__(self, *exc):
            depth[0] -= 1
            if not depth[0]:
                batches.append(list(out))

    box, out = Outbox(Batching), []
    settles = [box.hold(lambda i=i: out.append(f"m{i}")) for i in range(3)]
    late = box.hold(lambda: out.append("late"))  # committed by the next group
    with box.settling():
        for settle in settles:
            settle(None)
        box.publish(lambda: out.append("join"))  # published meanwhile: after them
        assert out == []  # nothing is delivered until the group is settled
        with box.settling():  # nested: the outer block delivers
            pass
        assert out == []
    assert out == ["m0", "m1", "m2"]
    assert batches == [["m0", "m1", "m2"]]  # one fan-out batch for the group
    with box.settling():
        late(None)
    assert out == ["m0", "m1", "m2", "late", "join"] and box.pending == 0
    # a failure settled inside it is reported in its turn as well
    failing = box.hold(lambda: out.append("never"), lambda failure: out.append("refused"))
    after = box.hold(lambda: out.append("after"))
    with box.settling():
        failing(Failure(ValueError("disk full")))
        after(None)
        assert out[-1] == "join"
    assert out[-2:] == ["refused", "after"]


def test_what_was_settled_before_an_error_inside_settling_is_still_delivered():
    box, out = Outbox(), []
    first = box.hold(lambda: out.append("first"))
    second = box.hold(lambda: out.append("second"))
    try:
        with box.settling():
            first(None)
            raise RuntimeError("a listener broke")
    except RuntimeError:
        pass
    assert out == ["first"] and box.pending == 1  # and the outbox drains again afterwards
    second(None)
    assert out == ["first", "second"] and box.pending == 0


def test_what_a_delivery_publishes_during_the_group_s_drain_follows_the_group():
    box, out = Outbox(), []

    def first() -> None:
        out.append("m0")
        box.publish(lambda: out.append("reply to m0"))  # a delivery that publishes

    settles = [box.hold(first), box.hold(lambda: out.append("m1"))]
    with box.settling():
        for settle in settles:
            settle(None)
    assert out == ["m0", "m1", "reply to m0"] and box.pending == 0


class _Member:
    """What the outbox reads of a user: the folded names of its rooms."""

    def __init__(self, *rooms: str) -> None:
        self.rooms = dict.fromkeys(rooms)


def test_a_reply_passes_held_rooms_its_user_is_not_in_and_waits_for_the_one_it_is():
    box, out = Outbox(), []
    amy, bob = _Member("#a", "#b"), _Member("#b")
    box.pause("#a")
    box.hold(lambda: out.append("a1"), key="#a")(None)
    box.after(lambda: out.append("to amy"), (amy,))  # owed a1 (a member of #a): parked behind it
    box.after(lambda: out.append("to bob"), (bob,))  # owed nothing held: at once
    box.hold(lambda: out.append("b1"), key="#b")(None)
    box.publish(lambda: out.append("quit"))  # may concern anyone: waits for every held room
    box.hold(lambda: out.append("b2"), key="#b")(None)
    box.after(lambda: out.append("to bob again"), (bob,))  # behind the quit, in the queue
    assert out == ["to bob", "b1"]
    box.resume("#a")
    assert out == ["to bob", "b1", "a1", "to amy", "quit", "b2", "to bob again"] and box.pending == 0


def test_a_reply_parked_behind_a_held_room_goes_once_what_it_is_owed_is_granted():
    box, out = Outbox(), []
    amy, cat = _Member("#a"), _Member("#a", "#c")
    box.pause("#a")
    box.pause("#c")
    box.hold(lambda: out.append("c1"), key="#c")(None)
    box.hold(lambda: out.append("a1"), key="#a")(None)
    box.after(lambda: out.append("to amy"), (amy,))
    box.after(lambda: out.append("to cat"), (cat,))  # owed c1 first: parked behind it in #c
    box.hold(lambda: out.append("a2"), key="#a")(None)
    assert out == [] and box.pending == 5
    box.grant("#a")  # a1 goes; amy's reply was owed only a1: it goes too, a2 waits its grant
    assert out == ["a1", "to amy"]
    box.resume("#c")
    assert out == ["a1", "to amy", "c1", "to cat"]
    box.resume("#a")
    assert out == ["a1", "to amy", "c1", "to cat", "a2"] and box.pending == 0


def test_a_reply_moves_from_one_held_room_to_the_next_it_is_owed():
    box, out = Outbox(), []
    cat = _Member("#a", "#c")
    box.pause("#a")
    box.pause("#c")
    box.hold(lambda: out.append("a1"), key="#a")(None)
    box.after(lambda: out.append("to cat"), (cat,))  # parked behind a1
    box.hold(lambda: out.append("c1"), key="#c")(None)  # after the reply in hub order
    box.hold(lambda: out.append("a2"), key="#a")(None)  # after it too
    box.grant("#a")
    # a1 shown; c1 is parked in a room cat is in, and nothing tells this box which of the
    # two came first: the reply waits for it too, and not for a2, parked after it
    assert out == ["a1"]
    box.resume("#c")
    assert out == ["a1", "c1", "to cat"] and box.pending == 1
    box.resume("#a")
    assert out == ["a1", "c1", "to cat", "a2"] and box.pending == 0


def test_a_departure_is_owed_to_its_leaver_after_it_left_the_room():
    box, out = Outbox(), []
    kim = _Member()  # the hub took kim out of #a when the kick was accepted
    box.pause("#a")
    box.hold(lambda: out.append("kick kim"), key="#a", leaver=kim)(None)
    box.after(lambda: out.append("to kim"), (kim,))
    assert out == []  # not a member any more, still owed the kick
    box.resume("#a")
    assert out == ["kick kim", "to kim"]
    box.pause("#a")
    box.hold(lambda: out.append("a2"), key="#a")(None)
    box.after(lambda: out.append("to kim again"), (kim,))  # the kick was shown: owed nothing
    assert out == ["kick kim", "to kim", "to kim again"]


def test_a_private_message_held_for_its_commit_is_held_for_its_parties_only():
    box, out = Outbox(), []
    amy, bob = _Member("#a"), _Member()
    box.pause("#a")
    box.hold(lambda: out.append("a1"), key="#a")(None)
    to_bob = box.hold(lambda: out.append("bob to bob"), shown_to=(bob, bob))
    to_amy = box.hold(lambda: out.append("bob to amy"), shown_to=(bob, amy))
    box.hold(lambda: out.append("b1"), key="#b")(None)
    assert out == []  # nothing passes an entry waiting for its commit
    to_bob(None)
    to_amy(None)
    assert out == ["bob to bob", "b1"]
    box.resume("#a")
    assert out == ["bob to bob", "b1", "a1", "bob to amy"]


def test_a_reply_goes_ahead_of_what_only_others_are_shown():
    """A reply (``after``) waits for what its user is shown (a message of one of its rooms,
    a private message to it) and for its user's own events, not for another room's
    message waiting for its commit: its user cannot tell that one from a later one."""
    box, out = Outbox(), []
    amy, bob, cat = _Member("#a"), _Member("#a"), _Member("#c")
    said = box.hold(lambda: out.append("bob in #a"), key="#a", by=bob)
    to_cat = box.hold(lambda: out.append("bob to cat"), shown_to=(bob, cat), by=bob)
    box.after(lambda: out.append("to cat"), (cat,))  # waits for the private message to it
    box.after(lambda: out.append("to amy"), (amy,))  # waits for her room's message
    box.after(lambda: out.append("to dan"), (_Member("#d"),))  # neither is for dan: at once
    box.after(lambda: out.append("to anyone"))  # users not named: after everything
    assert out == ["to dan"] and box.pending == 5
    to_cat(None)
    assert out == ["to dan"]  # in hub order behind the room's message
    said(None)
    assert out == ["to dan", "bob in #a", "bob to cat", "to cat", "to amy", "to anyone"] and box.pending == 0


def test_a_reply_waits_for_its_user_s_own_events_and_its_rooms_changes():
    """Its own message to a room it is not in, a change of one of its rooms, its own
    earlier reply, an entry that may concern anyone: each keeps a later reply behind it;
    a reply that waits, waits in hub order (events themselves never go ahead)."""
    box, out = Outbox(), []
    amy, cat, dan = _Member("#a"), _Member("#c"), _Member()
    outside = box.hold(lambda: out.append("dan in #a"), key="#a", by=dan)  # not a member
    box.publish(lambda: out.append("join #a"), (amy, _Member("#a")))  # shown to amy
    topic = box.hold(lambda: out.append("topic #c"), key="#c")  # of cat's room
    box.after(lambda: out.append("to dan"), (dan,))
    box.after(lambda: out.append("to cat"), (cat,))
    box.after(lambda: out.append("to eve"), (_Member("#e"),))
    assert out == ["to eve"]
    outside(None)
    assert out == ["to eve", "dan in #a", "join #a"]  # to dan waits behind the topic, in hub order
    box.after(lambda: out.append("to dan again"), (dan,))  # behind its waiting reply
    box.publish(lambda: out.append("quit"))
    box.after(lambda: out.append("to eve, behind the quit"), (_Member("#e"),))
    topic(None)
    assert out[3:] == ["topic #c", "to dan", "to cat", "to dan again", "quit", "to eve, behind the quit"]
    assert box.pending == 0
    box.after(lambda: out.append("to dan at once"), (dan,))
    assert out[-1] == "to dan at once"
