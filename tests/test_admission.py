"""``Admission``: a room event checked again at its number (cluster mode): what the
numbered order established before it decides, never a node's copy of the room."""
from __future__ import annotations

from chathub.events import Kind
from chathub.hub import errors
from chathub.hub.admission import EXTERNAL, GONE_LIMIT, JOIN_EXEMPT, JOIN_SEEN, Admission
from tests.store_fixtures import EventMaker


def _run(admission: Admission, events) -> list:
    """Check ``events`` numbered 1, 2, 3, ... in #r: the error code of each, or None."""
    return [
        None if (error := admission.check("#r", seq, event)) is None else error.code
        for seq, event in enumerate(events, 1)
    ]


def test_a_message_numbered_after_its_senders_kick_is_void_until_it_joins_again():
    make = EventMaker()
    events = [
        make.msg("bob", "#r", "before"),
        make.msg("alice", "#r", "", Kind.KICK, data={"nick": "Bob"}),
        make.msg("bob", "#r", "after"),
        make.msg("bob", "#r", "outside", data={EXTERNAL: True}),  # sent as a non-member: stands
        make.msg("carol", "#r", "others talk on"),
        make.msg("bob", "#r", "", Kind.JOIN, data={JOIN_SEEN: 4}),
        make.msg("bob", "#r", "back"),
    ]
    assert _run(Admission(), events) == [None, None, "cannot_send", None, None, None, None]


def test_a_part_or_a_quit_ends_the_senders_membership_and_a_new_nick_starts_one():
    make = EventMaker()
    events = [
        make.msg("bob", "#r", "", Kind.PART),
        make.msg("bob", "#r", "late"),
        make.msg("carol", "#r", "", Kind.QUIT),
        make.msg("carol", "#r", "late too"),
        make.msg("dave", "#r", "", Kind.NICK, data={"new": "bob"}),  # dave is bob now, a member
        make.msg("bob", "#r", "dave speaking"),
    ]
    assert _run(Admission(), events) == [None, "cannot_send", None, "cannot_send", None, None]


def test_a_join_checked_before_a_concurrent_plus_i_is_void_unless_invited():
    make = EventMaker()
    plus_i = make.msg("alice", "#r", "", Kind.MODE, data={"changes": [["+i", None]]})
    events = [
        make.msg("alice", "#r", "", Kind.JOIN, data={JOIN_SEEN: 0}),
        plus_i,  # 2
        make.msg("bob", "#r", "", Kind.JOIN, data={JOIN_SEEN: 1}),  # checked before +i: void
        make.msg("bob", "#r", "said after joining"),  # void too: bob never got in
        make.msg("carol", "#r", "", Kind.JOIN, data={JOIN_SEEN: 1, JOIN_EXEMPT: True}),  # invited
        make.msg("dave", "#r", "", Kind.JOIN, data={JOIN_SEEN: 2}),  # its node had seen +i: its call
        make.msg("alice", "#r", "", Kind.MODE, data={"changes": [["-i", None]]}),
        make.msg("erin", "#r", "", Kind.JOIN, data={JOIN_SEEN: 1}),  # -i: nothing to refuse
    ]
    assert _run(Admission(), events) == [None, None, "invite_only", "cannot_send", None, None, None, None]


def test_the_verdict_is_the_same_on_every_node_and_rooms_are_apart():
    make = EventMaker()
    events = [
        make.msg("alice", "#r", "", Kind.KICK, data={"nick": "bob"}),
        make.msg("bob", "#r", "after"),
    ]
    assert _run(Admission(), events) == _run(Admission(), events) == [None, "cannot_send"]
    other = Admission()
    other.check("#r", 1, events[0])
    assert other.check("#s", 1, make.msg("bob", "#s", "elsewhere")) is None
    refusal = other.check("#r", 2, events[1])
    assert isinstance(refusal, errors.CannotSend) and refusal.target == "#r"


def test_removed_members_are_remembered_within_a_bound():
    make = EventMaker()
    admission = Admission()
    for i in range(GONE_LIMIT + 1):
        admission.check("#r", i + 1, make.msg(f"u{i}", "#r", "", Kind.PART))
    seq = GONE_LIMIT + 2
    assert admission.check("#r", seq, make.msg("u0", "#r", "oldest forgotten")) is None
    assert admission.check("#r", seq + 1, make.msg("u1", "#r", "kept")) is not None
