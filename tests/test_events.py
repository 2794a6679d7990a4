"""Events are plain data with server-assigned, unique, time-ordered ids."""
from __future__ import annotations

import json

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
