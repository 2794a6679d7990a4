"""``Admission``: a room event checked again at its number (cluster mode): what the
numbered order established before it decides, never a node's copy of the room."""
from __future__ import annotations

import pytest

from chathub.events import Kind
from chathub.hub import errors
from chathub.hub.admission import (
    EXTERNAL,
    GONE_LIMIT,
    JOIN_COUNT,
    JOIN_EXEMPT,
    JOIN_INVITED,
    JOIN_SEEN,
    ROOM_ENDS,
    Admission,
    key_digest,
)
from chathub.events import Event
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


def _mode(make, *changes):
    return make.msg("alice", "#r", "", Kind.MODE, data={"changes": [list(c) for c in changes]})


def _said(make, nick, seen, **spoke):
    return make.msg(nick, "#r", "hello", data={JOIN_SEEN: seen, **spoke})


def test_a_message_checked_before_a_concurrent_ban_or_mute_is_void_unless_excepted_or_voiced():
    make = EventMaker()
    events = [
        _mode(make, ("+b", "bob!*@*")),  # 1
        _said(make, "bob", 0),  # its node had not applied the ban: void
        _said(make, "bob", 1),  # its node had (and let it through: its call): stands
        _said(make, "carol", 0),  # the ban is not carol's
        _said(make, "bob", 0, excepted="b"),  # an exception matched bob where it was checked
        _said(make, "bob", 0, privileges="v"),  # voiced members speak through bans
        _mode(make, ("+b", "m:dave!*@*")),  # 7: a mute
        _said(make, "dave", 6),
        _said(make, "dave", 6, excepted="m"),  # an m: exception lifts a mute
        _mode(make, ("+b", "erin!*@*"), ("-b", "erin!*@*")),  # 10: set and lifted before it
        _said(make, "erin", 9),
        _mode(make, ("+b", "frank!*@*")),  # 12
        _mode(make, ("+e", "frank!*@*")),  # 13: an exception since
        _said(make, "frank", 11),
        _mode(make, ("+b", "a:gina")),  # 15: an account ban; the message's sender is a guest
        _said(make, "gina", 14),
    ]
    assert _run(Admission(), events) == [
        None, "cannot_send", None, None, None, None, None, "cannot_send", None, None, None, None, None, None,
        None, None,
    ]


def test_a_message_checked_before_a_concurrent_plus_m_or_devoice_is_void():
    make = EventMaker()
    events = [
        _mode(make, ("+m", None)),  # 1
        _said(make, "bob", 0),  # checked before +m, no voice: void
        _said(make, "carol", 0, privileges="v"),  # voiced: stands
        _mode(make, ("-v", "carol")),  # 4
        _said(make, "carol", 3, privileges="v", moderated=True),  # lost its voice first: void
        _said(make, "dave", 3, privileges="ov", moderated=True),  # still an operator: stands
        _mode(make, ("+v", "bob")),  # 7
        _said(make, "bob", 6, moderated=True),  # voiced at its number: stands
        _mode(make, ("-m", None)),  # 9
        _said(make, "erin", 8, moderated=True),  # +m lifted before it: stands
    ]
    result = _run(Admission(), events)
    assert result == [None, "cannot_send", None, None, "cannot_send", None, None, None, None, None]


def test_the_refusals_say_why_and_a_message_without_a_position_is_not_checked():
    make = EventMaker()
    admission = Admission()
    admission.check("#r", 1, _mode(make, ("+b", "bob!*@*"), ("+b", "m:carol!*@*")))
    banned = admission.check("#r", 2, _said(make, "bob", 0))
    muted = admission.check("#r", 3, _said(make, "carol", 0))
    assert banned is not None and "banned" in banned.message
    assert muted is not None and "muted" in muted.message
    # a lone node's messages carry no position; nor does a TAGMSG count
    assert admission.check("#r", 4, make.msg("bob", "#r", "lone")) is None
    tag = make.msg("bob", "#r", "", Kind.TAGMSG, data={JOIN_SEEN: 0})
    assert admission.check("#r", 5, tag) is None


def test_a_join_checked_before_a_concurrent_ban_is_void_unless_invited_or_excepted():
    make = EventMaker()
    join = lambda nick, seen, **data: make.msg(nick, "#r", "", Kind.JOIN, data={JOIN_SEEN: seen, **data})  # noqa: E731
    events = [
        _mode(make, ("+b", "bob!*@*"), ("+b", "m:carol!*@*")),  # 1
        join("bob", 0),  # its node had not applied the ban: void
        _said(make, "bob", 1),  # and what it says next is void too (it never got in)
        join("bob", 1),  # its node had (and let it in: its call): stands
        join("carol", 0),  # a mute does not bar joining
        join("dave", 0),  # not dave's ban
        _mode(make, ("+b", "erin!*@*")),  # 7
        join("erin", 6, invited=True),  # an invitation passes a ban
        _mode(make, ("+b", "frank!*@*")),  # 9
        join("frank", 8, excepted="b"),  # an exception matched where it was checked
        _mode(make, ("+b", "gina!*@*"), ("+e", "gina!*@*")),  # 11: and one added since
        join("gina", 10),
    ]
    assert _run(Admission(), events) == [
        None, "banned", "cannot_send", None, None, None, None, None, None, None, None, None,
    ]


def test_a_join_checked_before_a_concurrent_key_is_void_unless_it_gave_that_key():
    make = EventMaker()
    join = lambda nick, seen, **data: make.msg(nick, "#r", "", Kind.JOIN, data={JOIN_SEEN: seen, **data})  # noqa: E731
    secret, other = key_digest("#r", "secret"), key_digest("#r", "other")
    events = [
        _mode(make, ("+k", "secret")),  # 1
        join("bob", 0),  # its node had not applied the key: void
        _said(make, "bob", 1),  # and what it says next is void too (it never got in)
        join("carol", 0, key=secret),  # its node knew the key (its own +k, not numbered yet) and carol gave it
        join("dave", 1),  # its node had applied the key (and let dave in: its call): stands
        join("erin", 0, invited=True),  # an invitation does not pass a key (as on every node)
        _mode(make, ("+k", "other")),  # 7: the key changed
        join("frank", 6, key=secret),  # passed with the old key, numbered after the new: void
        join("gina", 6, key=other),  # gave the new one: stands
        _mode(make, ("-k", "*")),  # 10
        join("hank", 6),  # no key at its number: stands
    ]
    assert _run(Admission(), events) == [
        None, "bad_key", "cannot_send", None, None, "bad_key", None, "bad_key", None, None, None,
    ]
    # the digest says nothing of the key, and differs from room to room
    assert "secret" not in secret and key_digest("#s", "secret") != secret


def test_a_room_that_ends_starts_afresh_when_made_again():
    """The last member's PART (or QUIT) that ends the room says so, with the room's position
    on its node; what the room's order established goes with it, so a JOIN that makes it
    again from a node that never heard of the old room (position 0) is not taken for one
    racing the old room's +i, key or ban."""
    make = EventMaker()
    events = [
        make.msg("alice", "#r", "", Kind.JOIN, data={JOIN_SEEN: 0}),
        make.msg("alice", "#r", "", Kind.MODE, data={"changes": [["+i", None], ["+k", "sesame"], ["+b", "*!*@*"]]}),
        make.msg("alice", "#r", "", Kind.PART, data={ROOM_ENDS: [["#r", 2]]}),
        make.msg("carl", "#r", "", Kind.JOIN, data={JOIN_SEEN: 0}),  # made again, elsewhere
        make.msg("carl", "#r", "here"),
    ]
    admission = Admission()
    assert _run(admission, events) == [None, None, None, None, None]
    assert "#r" not in admission.rooms  # nothing remembered of the old room
    # a QUIT ending several rooms ends each; without the flag the facts stay
    quit_events = [
        make.msg("alice", "#r", "", Kind.MODE, data={"changes": [["+i", None]]}),
        make.msg("alice", "", "", Kind.QUIT, data={ROOM_ENDS: [["#q", 7], ["#r", 1]]}),
        make.msg("dan", "#r", "", Kind.JOIN, data={JOIN_SEEN: 0}),
    ]
    assert _run(Admission(), quit_events) == [None, None, None]
    kept = [quit_events[0], make.msg("alice", "", "", Kind.QUIT), quit_events[2]]
    assert _run(Admission(), kept) == [None, None, "invite_only"]


def test_a_room_whose_leaver_had_not_seen_a_join_does_not_end():
    """The leaver's node took it for the last member, but a JOIN made on another node, which
    it had not applied, stood before its PART: the room goes on, and so do its facts (its +i
    still voids a join that raced it)."""
    here, there = EventMaker(node=b"here"), EventMaker(node=b"away")
    events = [
        here.msg("alice", "#r", "", Kind.JOIN, data={JOIN_SEEN: 0}),
        here.msg("alice", "#r", "", Kind.MODE, data={"changes": [["+i", None]]}),
        there.msg("bob", "#r", "", Kind.JOIN, data={JOIN_SEEN: 2, JOIN_EXEMPT: True}),  # invited
        here.msg("alice", "#r", "", Kind.PART, data={ROOM_ENDS: [["#r", 2]]}),  # alice saw up to 2
        there.msg("carl", "#r", "", Kind.JOIN, data={JOIN_SEEN: 1}),  # raced the +i
    ]
    assert _run(Admission(), events) == [None, None, None, None, "invite_only"]
    # bob's join numbered before anything of the room the leaver's node had applied
    late = [
        there.msg("bob", "#r", "", Kind.JOIN, data={JOIN_SEEN: 0}),  # 1
        here.msg("alice", "#r", "", Kind.JOIN, data={JOIN_SEEN: 0}),  # 2: made the room there
        here.msg("alice", "#r", "", Kind.MODE, data={"changes": [["+i", None]]}),
        here.msg("alice", "#r", "", Kind.PART, data={ROOM_ENDS: [["#r", 0]]}),  # had seen neither join
        there.msg("carl", "#r", "", Kind.JOIN, data={JOIN_SEEN: 1}),
    ]
    assert _run(Admission(), late) == [None, None, None, None, "invite_only"]


def test_a_leavers_own_nodes_joins_after_its_position_do_not_keep_the_room():
    """What one client sends at once (JOIN, MODE +i, PART, or a KICK of itself as the last
    member): its node had numbered none of it when it checked the PART, so the PART's
    position is before the JOIN; the JOIN was made on the leaver's node, whose copy of the
    room held it, so the room ends and nothing of it is kept (they were kept for good: a
    client could fill every node's memory with rooms made and left)."""
    here, there = EventMaker(node=b"here"), EventMaker(node=b"away")
    for leave in (
        lambda: here.msg("mallory", "#r", "", Kind.PART, data={ROOM_ENDS: [["#r", 0]]}),
        lambda: here.msg("mallory", "#r", "", Kind.KICK, data={"nick": "mallory", ROOM_ENDS: [["#r", 0]]}),
    ):
        admission = Admission()
        events = [
            here.msg("mallory", "#r", "", Kind.JOIN, data={JOIN_SEEN: 0}),
            here.msg("mallory", "#r", "", Kind.MODE, data={"changes": [["+i", None], ["+b", "*!*@*"]]}),
            leave(),
            there.msg("carl", "#r", "", Kind.JOIN, data={JOIN_SEEN: 0}),  # makes it again
        ]
        assert _run(admission, events) == [None, None, None, None]
        assert "#r" not in admission.rooms
    # another node's join that stood before the leaver's own, both after its position
    events = [
        there.msg("bob", "#r", "", Kind.JOIN, data={JOIN_SEEN: 0}),
        here.msg("mallory", "#r", "", Kind.JOIN, data={JOIN_SEEN: 0}),
        here.msg("mallory", "#r", "", Kind.MODE, data={"changes": [["+i", None]]}),
        here.msg("mallory", "#r", "", Kind.PART, data={ROOM_ENDS: [["#r", 0]]}),
    ]
    admission = Admission()
    assert _run(admission, events) == [None, None, None, None]
    assert admission.rooms["#r"].invite_only_since == 3 and admission.joins["#r"][0] == 2


def carried(admission: Admission, position: int) -> Admission:
    """What a node that starts takes of ``admission``'s facts (all standing at
    ``position``), through the backplane's encoding."""
    from chathub.cluster.redis import decode_message, encode_message

    facts = [[*fact, position] for fact in admission.export()]
    parsed = Admission.parse(decode_message(encode_message({"facts": facts}))["facts"])
    assert {conv: seq for conv, (_, _, seq) in parsed.items()} == {fact[0]: position for fact in facts}
    taken = Admission()
    taken.adopt(parsed)
    return taken


def verdicts(admission: Admission, events, first: int) -> list:
    return [None if (e := admission.check("#r", seq, event)) is None else e.code
            for seq, event in enumerate(events, first)]


def test_the_facts_a_starting_node_takes_give_the_same_verdicts():
    """``export`` on one node, through the backplane's encoding, ``parse`` and ``adopt`` on
    another: the events that follow get the same verdicts on both (every fact counts: the
    departures, +i, the key, the bans, the last JOIN that stood)."""
    make = EventMaker()
    before = [
        make.msg("alice", "#r", "", Kind.JOIN, data={JOIN_SEEN: 0}),
        make.msg("alice", "#r", "", Kind.MODE, data={"changes": [["+i", None], ["+k", "sesame"]]}),
        make.msg("alice", "#r", "", Kind.MODE, data={"changes": [["+b", "*!*@example.test"]]}),
        make.msg("alice", "#r", "", Kind.KICK, data={"nick": "bob"}),
        EventMaker(node=b"away").msg("zoe", "#r", "", Kind.JOIN,
                                     data={JOIN_SEEN: 4, JOIN_EXEMPT: True, JOIN_INVITED: True}),  # 5, elsewhere
    ]
    after = [
        make.msg("bob", "#r", "racing its kick"),  # the departures
        make.msg("carol", "#r", "", Kind.JOIN, data={JOIN_SEEN: 1}),  # +i
        make.msg("dave", "#r", "", Kind.JOIN, data={JOIN_SEEN: 1, JOIN_EXEMPT: True, "key": "wrong"}),  # the key
        make.msg("erin", "#r", "", Kind.JOIN, data={JOIN_SEEN: 2, JOIN_EXEMPT: True,
                                                    "key": key_digest("#r", "sesame")}),  # the ban
        make.msg("alice", "#r", "", Kind.PART, data={ROOM_ENDS: [["#r", 4]]}),  # zoe joined at 5
    ]
    old = Admission()
    _run(old, before)
    new = carried(old, len(before))
    assert verdicts(new, after, 6) == verdicts(old, after, 6) == [
        "cannot_send", "invite_only", "bad_key", "banned", None]
    assert "#r" in new.rooms and "#r" in old.rooms  # zoe's join kept the room going
    ending = [
        make.msg("zoe", "#r", "", Kind.PART, data={ROOM_ENDS: [["#r", 5]]}),  # zoe had seen it all
        make.msg("fred", "#r", "", Kind.JOIN, data={JOIN_SEEN: 0}),  # makes it again
    ]
    old = Admission()
    _run(old, before)
    new = carried(old, len(before))
    assert verdicts(new, ending, 6) == verdicts(old, ending, 6) == [None, None]


def _join(maker: EventMaker, nick: str, seen: int, count: int, **data) -> Event:
    """A JOIN its node checked at position ``seen``, counting ``count`` members then."""
    return maker.msg(nick, "#r", "", Kind.JOIN, data={JOIN_SEEN: seen, JOIN_COUNT: count, **data})


def _limit_race():
    """alice (on this node) sets +l 3 while bob's node, which had not applied it, lets
    carol, dave, fay (invited) and then erin in; gus joins once his node had the limit."""
    here, there = EventMaker(node=b"here"), EventMaker(node=b"there")
    return [
        _join(here, "alice", 0, 0),
        _join(there, "bob", 1, 1),
        here.msg("alice", "#r", "", Kind.MODE, data={"changes": [["+l", "3"]]}),  # 3
        _join(there, "carol", 2, 2),  # bob's node counted alice and bob: with carol, three
        _join(there, "dave", 2, 3),  # its count holds carol (its own, not numbered when it checked)
        _join(there, "fay", 2, 4, **{JOIN_INVITED: True}),  # an invitation passes the limit
        here.msg("alice", "#r", "", Kind.PART),  # 7: a place frees up, on the other node
        # its node counted alice, bob, carol, dave (void since) and fay: at its number bob,
        # carol and fay are in
        _join(there, "erin", 2, 5),
        _join(there, "gus", 8, 2),  # after erin's refusal reached its node: room for one
    ]


def test_a_join_checked_before_a_concurrent_plus_l_is_void_when_the_room_is_full_at_its_number():
    """The member count at a join's number: what its node counted (its own changes in it)
    plus the other nodes' joins and leaves numbered in between, and where its own node's
    copy differed from the numbered order (a join of its own found void)."""
    admission = Admission()
    assert _run(admission, _limit_race()) == [None, None, None, None, "room_full", None, None, "room_full", None]
    # -l: no limit, nothing counted
    minus_l = EventMaker(node=b"here").msg("alice", "#r", "", Kind.MODE, data={"changes": [["-l", None]]})
    late = _join(EventMaker(node=b"there"), "hal", 2, 9)
    assert [admission.check("#r", 10, minus_l), admission.check("#r", 11, late)] == [None, None]
    assert not admission.rooms["#r"].moves


def test_two_joins_racing_under_a_limit_both_nodes_knew_leave_the_second_void():
    a, b = EventMaker(node=b"a"), EventMaker(node=b"b")
    events = [
        _join(a, "alice", 0, 0),
        _join(b, "bob", 1, 1),
        a.msg("alice", "#r", "", Kind.MODE, data={"changes": [["+l", "3"]]}),  # 3
        _join(a, "carol", 3, 2),  # both nodes saw the +l and counted two
        _join(b, "dave", 3, 2),  # the room holds three at its number
    ]
    assert _run(Admission(), events) == [None, None, None, None, "room_full"]


def test_another_nodes_leave_numbered_before_a_join_frees_a_place_for_it():
    a, b = EventMaker(node=b"a"), EventMaker(node=b"b")
    events = [
        _join(a, "alice", 0, 0), _join(b, "bob", 1, 1), _join(a, "carol", 2, 2),
        a.msg("alice", "#r", "", Kind.MODE, data={"changes": [["+l", "3"]]}),  # 4
        a.msg("carol", "#r", "", Kind.PART),  # 5
        _join(b, "dave", 4, 3),  # its node still counted carol
    ]
    assert _run(Admission(), events) == [None] * 6


def test_a_leave_of_a_user_already_gone_frees_no_place():
    """x (on b) parts while alice (on a) kicks x: one place, not two."""
    a, b, c = EventMaker(node=b"a"), EventMaker(node=b"b"), EventMaker(node=b"c")
    events = [
        _join(a, "alice", 0, 0), _join(b, "x", 1, 1), _join(c, "cy", 2, 2),
        a.msg("alice", "#r", "", Kind.MODE, data={"changes": [["+l", "3"]]}),  # 4
        b.msg("x", "#r", "", Kind.PART),  # 5
        a.msg("alice", "#r", "", Kind.KICK, data={"nick": "x"}),  # 6: x is gone already
        _join(c, "d1", 4, 3),  # c counted alice, x and cy: two at its number
        _join(c, "d2", 4, 4),  # and d1: three at its number
    ]
    assert _run(Admission(), events) == [None] * 7 + ["room_full"]


def test_a_join_of_its_own_node_found_void_takes_no_place():
    """a sets +b u1 and +l 3; b lets u1, u2 and u3 in before it has either: u1 is void, so
    u3 has its place (b counted u1)."""
    a, b = EventMaker(node=b"a"), EventMaker(node=b"b")
    events = [
        _join(a, "alice", 0, 0),
        a.msg("alice", "#r", "", Kind.MODE, data={"changes": [["+b", "u1!*@*"], ["+l", "3"]]}),  # 2
        _join(b, "u1", 1, 1), _join(b, "u2", 1, 2), _join(b, "u3", 1, 3),
    ]
    assert _run(Admission(), events) == [None, None, "banned", None, None]


def test_a_leave_of_a_user_gone_already_counts_as_its_node_counted_it():
    """A node's own leave of a user another node removed first frees no place at the
    number; whether the node's count still held the user depends on whether it had applied
    that removal when it checked the join (a wrong 471 otherwise, to a join racing nothing)."""
    a, b = EventMaker(node=b"a"), EventMaker(node=b"b")
    kick_then_part = [
        _join(a, "alice", 0, 0), _join(b, "x", 1, 1),
        a.msg("alice", "#r", "", Kind.MODE, data={"changes": [["+l", "3"]]}),  # 3
        _join(a, "cy", 3, 2),  # 4: alice, x, cy
        a.msg("alice", "#r", "", Kind.KICK, data={"nick": "x"}),  # 5: alice, cy
        b.msg("x", "#r", "", Kind.PART),  # 6: made on b before it had the kick
    ]
    # b checked d after applying the kick, or before it (its copy without x either way: x's
    # part, its own, was made before d's join): the kick is counted once
    assert _run(Admission(), [*kick_then_part, _join(b, "d", 5, 2)]) == [None] * 7
    assert _run(Admission(), [*kick_then_part, _join(b, "d", 4, 2)]) == [None] * 7
    assert _run(Admission(), [*kick_then_part, _join(b, "d", 4, 2), _join(b, "e", 4, 3)]) == [None] * 7 + [
        "room_full"]
    # its own kick of a user whose part (another node's) was numbered first
    own_kick = [
        _join(a, "alice", 0, 0), _join(b, "bob", 1, 1), _join(a, "y", 2, 2),
        b.msg("bob", "#r", "", Kind.MODE, data={"changes": [["+l", "3"]]}),  # 4
        a.msg("y", "#r", "", Kind.PART),  # 5
        b.msg("bob", "#r", "", Kind.KICK, data={"nick": "y"}),  # 6: made on b before it had 5
        _join(b, "d", 5, 2),  # b's copy: alice and bob
    ]
    assert _run(Admission(), own_kick) == [None] * 7
    # a join of its own found void, then that user's part, then a join checked after both
    own_void = [
        _join(a, "alice", 0, 0), _join(a, "cy", 1, 1),
        a.msg("alice", "#r", "", Kind.MODE, data={"changes": [["+b", "u1!*@*"], ["+l", "3"]]}),  # 3
        _join(b, "u1", 2, 2),  # 4: banned
        b.msg("u1", "#r", "", Kind.PART),  # 5: before the verdict reached b
        _join(b, "d", 4, 2),  # b's copy: alice and cy
    ]
    assert _run(Admission(), own_void) == [None, None, None, "banned", None, None]


def test_a_removed_user_that_took_a_new_nick_is_still_out():
    """x, kicked on a, renames to y on b before b had the kick, then parts: one place, not
    two (and what y says is void, as x's would be)."""
    a, b, c = EventMaker(node=b"a"), EventMaker(node=b"b"), EventMaker(node=b"c")
    events = [
        _join(a, "alice", 0, 0), _join(b, "x", 1, 1), _join(c, "cy", 2, 2),
        a.msg("alice", "#r", "", Kind.MODE, data={"changes": [["+l", "3"]]}),  # 4
        a.msg("alice", "#r", "", Kind.KICK, data={"nick": "x"}),  # 5
        b.msg("x", "#r", "", Kind.NICK, data={"new": "y"}),  # 6
        b.msg("y", "#r", "still here?"),  # 7
        b.msg("y", "#r", "", Kind.PART),  # 8
        _join(c, "d1", 4, 3),  # c counted alice, x and cy: two at its number
        _join(c, "d2", 4, 4),  # and d1: three
    ]
    assert _run(Admission(), events) == [None] * 6 + ["cannot_send", None, None, "room_full"]


def test_a_limit_that_is_no_number_is_passed_over_and_the_rest_of_the_change_kept():
    a = EventMaker(node=b"a")
    admission = Admission()
    change = a.msg("alice", "#r", "", Kind.MODE, data={"changes": [["+l", "\u00b2"], ["+i", None]]})
    assert admission.check("#r", 1, change) is None
    assert admission.rooms["#r"].limit is None and admission.rooms["#r"].invite_only_since == 1


def test_a_starting_node_takes_the_limit_and_the_moves_and_comes_to_the_same_verdicts():
    a, b = EventMaker(node=b"a"), EventMaker(node=b"b")
    before = [
        _join(a, "alice", 0, 0), _join(b, "bob", 1, 1), _join(a, "carol", 2, 2),
        a.msg("alice", "#r", "", Kind.MODE, data={"changes": [["+l", "3"]]}),  # 4
        a.msg("carol", "#r", "", Kind.PART),  # 5: a move only the carried facts know of
    ]
    after = [_join(b, "dave", 4, 3), _join(b, "erin", 4, 4)]
    old = Admission()
    _run(old, before)
    new = carried(old, len(before))
    assert verdicts(new, after, 6) == verdicts(old, after, 6) == [None, "room_full"]


@pytest.mark.parametrize("fact", [
    ["#r", [], 0, 0, None, [], None, [3], 3],  # a limit that is none
    ["#r", [], 0, 0, None, [], None, [0, 2, []], 3],
    ["#r", [], 0, 0, None, [], None, [3, 2, [[4, "n", 2, 1, 0]]], 3],  # a move that is none
    ["#r", [], 0, 0, None, [], None, [3, 2, [[4, "n", True, 1, 0]]], 3],
    ["#r", [], 0, 0, None, [], None, [3, 2, [[4, "n", 1.0, 1, 0]]], 3],
    ["#r", [], 0, 0, None, [], None, [3, 2, [[4, "n", 1, -1, 0]]], 3],
    ["#r", [], 0, 0, None, [], None, [3, 2, [[4, "n", 0, -1, -2]]], 3],
    ["#r", [], 0, 0, None, [], None, [3, 2, [[4, "n", 1, 1]]], 3],
    ["#r", [], 0, 0, None, [], None, -1],  # a position below 0
    ["#r", [], 0, 0, None, [], None, "3"],
    ["alice bob", [], 0, 0, None, [], None, 3],  # not a room
    ["#r", [], 0, 0, None, [[2, "+", "x"]], None, 3],  # a change that is none
    ["#r", [], 0, 0, None, [[2, "+q", "x"]], None, 3],
    ["#r", [["bob"]], 0, 0, None, [], None, 3],
    ["#r", [], 0, 0, 7, [], None, 3],
    ["#r", [], 0, 0, None, [], None],  # no position
    ["#r", [], 0, 0, None, [], "0", 3],  # joins that are none
    ["#r", [], 0, 0, None, [], [4, 5, 0], 3],
    ["#r", [], 0, 0, None, [], [4, "x", -1], 3],
])
def test_facts_that_are_not_such_data_are_refused(fact):
    with pytest.raises(ValueError):
        Admission.parse([fact])
    good = ["#r", [], 0, 0, None, [], [4, "abcdef", 2], 3]
    assert Admission.parse([good])["#r"][1:] == ((4, "abcdef", 2), 3)
    # an answer from a node of the version before: its last JOIN that stood, from no node
    # known, so a leaver's position below it does not end the room
    older = Admission()
    older.adopt(Admission.parse([["#r", [], 0, 0, None, [], 4, 3]]))
    assert older.joins["#r"] == (4, "", 4)


def test_a_part_ending_a_room_that_had_nothing_remembered_leaves_no_entry():
    make = EventMaker()
    events = [
        make.msg("alice", "#r", "", Kind.JOIN, data={JOIN_SEEN: 0}),
        make.msg("alice", "#r", "bye"),
        make.msg("alice", "#r", "", Kind.PART, data={ROOM_ENDS: [["#r", 1]]}),  # had not seen "bye"
    ]
    admission = Admission()
    assert _run(admission, events) == [None, None, None] and admission.rooms == {} == admission.joins


def test_what_comes_under_a_name_after_its_rename_is_void_until_a_room_of_it_is_made():
    """A message, a JOIN, a TOPIC or a MODE numbered under a room's old name after its
    RENAME was sent to (or made by) a copy that had not applied it: void. A change of case keeps the name (it voided the
    room's every message), and a rename back to a name renamed away gives it back."""
    from chathub.hub.roomclaims import ROOM_CLAIM

    make = EventMaker()
    admission = Admission()

    def check(conv, event, seq=[0]):
        seq[0] += 1
        error = admission.check(conv, seq[0], event)
        return None if error is None else error.code

    assert check("#r", make.msg("alice", "#r", "", Kind.RENAME, data={"new": "#R"})) is None  # case only
    assert check("#r", make.msg("bob", "#r", "still the room")) is None
    assert check("#r", make.msg("bob", "#r", "a topic", Kind.TOPIC)) is None
    assert check("#r", make.msg("alice", "#r", "", Kind.RENAME, data={"new": "#s"})) is None
    assert check("#r", make.msg("bob", "#r", "to the old name")) == "cannot_send"
    assert check("#r", make.msg("bob", "#r", "", Kind.JOIN, data={JOIN_SEEN: 1})) == "no_such_room"
    assert check("#r", make.msg("bob", "#r", "late topic", Kind.TOPIC)) == "no_such_room"
    assert check("#r", make.msg("bob", "#r", "", Kind.MODE, data={"changes": [["+l", "5"]]})) == "no_such_room"
    assert check("#s", make.msg("bob", "#s", "to the new one")) is None
    assert check("#s", make.msg("alice", "#s", "", Kind.RENAME, data={"new": "#r"})) is None  # back
    assert check("#r", make.msg("bob", "#r", "the room again")) is None
    assert check("#s", make.msg("bob", "#s", "now the old name")) == "cannot_send"
    assert check("#s", make.msg("eve", "#s", "", Kind.JOIN, data={ROOM_CLAIM: "t"})) is None  # made again
    assert check("#s", make.msg("eve", "#s", "a new #s")) is None
    assert check("#s", make.msg("eve", "#s", "", Kind.MODE, data={"changes": [["+m", None]]})) is None
