"""``Outbox``: deliveries in hub order after their commits, and a cluster node's holds on one
conversation (``pause``/``resume``) that let the other conversations go on."""
from __future__ import annotations

from twisted.python.failure import Failure

from chathub.hub.outbox import Outbox


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
