"""Events are plain data with server-assigned, unique, time-ordered ids."""
from __future__ import annotations

import dataclasses
import json

import pytest_twisted
from hypothesis import given, settings
from hypothesis import strategies as st

from chathub.events import SERVER, Event, EventIds, Kind, Source, iso_time, parse_iso_time


class FakeClock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_ids_sort_in_creation_order_within_and_across_milliseconds():
    clock = FakeClock(1_800_000_000.0)
    ids = EventIds(node=b"\x00\x00\x00\x01", clock=clock)
    made = []
    for step in range(50):
        for _ in range(20):  # many events in one millisecond
            made.append(ids.next()[0])
        clock.now += 0.001 * (step % 3 + 1)
    assert len(set(made)) == len(made)
    assert made == sorted(made)


def test_ids_from_different_nodes_differ_at_the_same_instant():
    clock = FakeClock(1_800_000_000.0)
    a = EventIds(node=b"aaaa", clock=clock)
    b = EventIds(node=b"bbbb", clock=clock)
    a_ids = {a.next()[0] for _ in range(100)}
    b_ids = {b.next()[0] for _ in range(100)}
    assert not a_ids & b_ids


def test_event_carries_id_and_utc_time():
    clock = FakeClock(1_796_000_000.25)
    event = EventIds(clock=clock).make(Kind.MESSAGE, Source(nick="alice"), "#room", "hi")
    assert event.time == 1_796_000_000.25
    assert event.iso_time == "2026-11-30T00:53:20.250Z"
    assert parse_iso_time(event.iso_time) == event.time
    assert parse_iso_time("2026-11-30T01:53:20.250+01:00") == event.time
    assert event.id and event.id.isalnum()


def test_to_dict_from_dict_round_trip_through_json():
    source = Source(nick="alice", user="al", host="example.org", account="alice", realname="Alice A.", protocol="irc")
    event = EventIds().make(
        Kind.MODE, source, "#room", "", tags={"+typing": "active"}, data={"changes": [["+o", "bob"]]}
    )
    as_json = json.dumps(event.to_dict())
    back = Event.from_dict(json.loads(as_json))
    assert back == event
    assert back.source.mask == "alice!al@example.org"


def test_from_dict_fills_defaults():
    event = Event.from_dict({"id": "x1", "time": 5, "kind": Kind.QUIT, "source": {"nick": "bob"}})
    assert event.time == 5.0 and event.target == "" and event.text == "" and dict(event.tags) == {}
    assert event.source == Source(nick="bob")
    assert Source(nick="bob").mask == "bob!bob@localhost"
    assert SERVER.protocol == "server"


def test_iso_time_is_utc_with_milliseconds():
    assert iso_time(0) == "1970-01-01T00:00:00.000Z"
    assert iso_time(1.9999) == "1970-01-01T00:00:01.999Z"


def test_ids_are_the_base32hex_of_millisecond_node_and_sequence():
    import base64
    import itertools
    import random

    rng = random.Random(7)
    clock = FakeClock(1_800_000_000.0)
    ids = EventIds(node=b"\x12\x34\x56\x78", clock=clock)
    for _ in range(2000):
        clock.now += rng.choice((0.0, 0.0004, 0.001, 3.7))
        seq = rng.getrandbits(rng.choice((8, 32, 40)))
        ids._seq = itertools.count(seq)
        eid, now = ids.next()
        raw = int(now * 1000).to_bytes(6, "big") + b"\x12\x34\x56\x78" + (seq & 0xFFFFFFFF).to_bytes(4, "big")
        assert eid == base64.b32hexencode(raw).decode("ascii").rstrip("=").lower()


def test_iso_time_matches_datetime_formatting_with_truncated_milliseconds():
    import random
    from datetime import datetime, timezone

    rng = random.Random(3)
    for _ in range(5000):
        t = round(rng.uniform(0, 4_000_000_000), rng.choice((0, 3, 6)))
        dt = datetime.fromtimestamp(round(t * 1_000_000) / 1_000_000, tz=timezone.utc)
        expected = dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{round(t * 1_000_000) % 1_000_000 // 1000:03d}Z"
        assert iso_time(t) == expected
    assert iso_time(1_796_000_000.9995) == "2026-11-30T00:53:20.999Z"
    assert iso_time(1_796_000_000.9999996) == "2026-11-30T00:53:21.000Z"


def any_events(whole_bits: int = 0):
    """A Hypothesis strategy of events of every kind, with any text, tags and data (whole
    numbers in data of at most ``whole_bits`` bits, signed, when given)."""
    from hypothesis import strategies as st

    limit = 2 ** (whole_bits - 1) if whole_bits else None
    wholes = st.integers(min_value=-limit, max_value=limit - 1) if limit else st.integers()

    text = st.text(max_size=20)
    sources = st.builds(
        Source, nick=text, user=text, host=text, account=st.none() | text, realname=text, protocol=text, session=text
    )
    return st.builds(
        Event,
        id=text,
        time=st.floats(min_value=0, max_value=4e9) | st.integers(min_value=0, max_value=2**40),
        kind=st.sampled_from(sorted(v for k, v in vars(Kind).items() if k.isupper() and isinstance(v, str))),
        source=sources,
        target=text,
        text=text,
        tags=st.dictionaries(text, text, max_size=3),
        # the values a cluster's room messages carry (whole numbers, booleans, strings) take
        # the direct path; anything else (a list) the generic encoder
        data=st.dictionaries(
            text, st.none() | st.booleans() | wholes | text | st.lists(text, max_size=2), max_size=3
        ),
    )


def test_stored_form_is_the_json_of_to_dict():
    from hypothesis import given, settings

    from chathub.store.sql.history import _EVENT_JSON, decode_event, encode_event

    events = any_events()

    @settings(max_examples=300, deadline=None)
    @given(events)
    def check(event):
        body = encode_event(event)
        assert body == _EVENT_JSON.encode(event.to_dict())
        assert decode_event(body) == Event.from_dict(json.loads(body))

    check()


def test_a_source_makes_its_mask_once_and_it_follows_a_replace_but_not_equality():
    source = Source("ann", "~a", "host.example")
    assert source.mask == "ann!~a@host.example"
    assert Source("bob").mask == "bob!bob@localhost"  # no user or host: IRC's stand-ins
    moved = dataclasses.replace(source, nick="anna", host="other.example")
    assert moved.mask == "anna!~a@other.example"
    # a field made from the others: never compared, hashed or shown on its own
    assert source == Source("ann", "~a", "host.example") and hash(source) == hash(Source("ann", "~a", "host.example"))
    assert "mask" not in repr(source)


@settings(max_examples=300)
@given(
    nick=st.one_of(st.none(), st.text(alphabet="ab_[", min_size=1, max_size=6)),
    user=st.text(alphabet="~ux", max_size=4),
    host=st.text(alphabet="h.:0", max_size=6),
)
def test_a_users_mask_is_the_same_with_or_without_its_kept_snapshot(nick, user, host):
    # an idle user keeps no snapshot (its mask is made when asked); one that causes an
    # event keeps one: both must read the same
    from types import SimpleNamespace

    from chathub.hub.users import User

    someone = User(SimpleNamespace(protocol="irc"), user=user, host=host)
    someone.set_nick(nick)
    unkept = someone.mask
    assert someone._source is None  # asking for the mask kept nothing
    assert someone.source.mask == unkept == someone.mask


@pytest_twisted.ensureDeferred
async def test_a_registered_idle_user_keeps_no_snapshot_until_it_causes_an_event(irc_hub):
    idle = await irc_hub.irc("idler")
    lines = await idle.roundtrip("WHOIS idler")
    user = irc_hub.hub.find_user("idler")
    assert user._source is None  # the welcome and WHOIS showed its mask without keeping one
    assert [l.params[2:4] for l in lines if l.command == "311"] == [[user.user, user.host]]
    await idle.roundtrip("JOIN #r")
    assert user._source is not None and user._source.mask == user.mask
