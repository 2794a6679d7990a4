"""The flood control every protocol shares: penalty clock and the gate in front of a handler."""
from __future__ import annotations

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock

from chathub.config import Config
from chathub.protocols.flood import EXEMPT, PER_ROUND, FloodControl, FloodGate, control_for, is_exempt
from chathub.protocols.irc.flood import exempt_host, for_connection


class Owner:
    """A gate's owner that records what the gate asks of it."""

    def __init__(self) -> None:
        self.handled: list = []
        self.floods = 0
        self.reading = True
        self.pauses = 0
        self.delivery_waits: list = []  # when_delivered callbacks not yet called

    def handle_gated(self, item) -> None:
        self.handled.append(item)

    def flooded(self) -> None:
        self.floods += 1

    def pause_reading(self) -> None:
        assert self.reading
        self.reading = False
        self.pauses += 1

    def resume_reading(self) -> None:
        assert not self.reading
        self.reading = True

    def when_delivered(self, fn) -> None:
        self.delivery_waits.append(fn)

    def deliver(self) -> None:
        waits, self.delivery_waits = self.delivery_waits, []
        for fn in waits:
            fn()


def gate(clock, rate=1.0, burst=2, max_queued=3, exempt=False):
    owner = Owner()
    control = control_for(rate, burst, max_queued, clock.seconds, exempt)
    return FloodGate(control, clock, owner), owner


def test_a_burst_runs_at_once_then_the_rate_applies_and_reading_waits():
    clock = Clock()
    g, owner = gate(clock)
    for i in range(5):
        g.submit(i)
    assert owner.handled == [0, 1, 2] and g.waiting == 2
    assert not owner.reading  # lines wait: the connection is not read from
    clock.advance(1)
    assert owner.handled == [0, 1, 2, 3] and not owner.reading
    clock.advance(1)
    assert owner.handled == [0, 1, 2, 3, 4] and g.waiting == 0 and owner.floods == 0
    assert owner.reading and owner.pauses == 1


def test_costs_weigh_and_a_handler_may_charge_itself():
    clock = Clock()
    g, owner = gate(clock)
    g.submit("login", cost=3)
    g.submit("next", cost=0)
    assert owner.handled == ["login"]  # 3 units is past the burst of 2: the next one waits
    clock.advance(1)
    assert owner.handled == ["login", "next"]
    g.control.charge(5)  # what IRC's dispatch does for a command's penalty
    g.submit("after", cost=0)
    assert owner.handled == ["login", "next"]


def test_too_many_waiting_is_a_flood_and_stops_the_gate():
    clock = Clock()
    g, owner = gate(clock, burst=1, max_queued=2)
    for i in range(10):
        g.submit(i)
    assert owner.floods == 1 and g.stopped
    clock.advance(100)
    assert owner.handled == [0, 1]  # what was waiting is dropped
    assert not owner.reading  # and the closing connection is not read from again


def held_gate(*items):
    """A gate holding ``items`` until the returned Deferred (a login, say) fires."""
    g, owner = gate(Clock(), burst=10)
    d = Deferred()
    g.pause_until(d)
    for item in items:
        g.submit(item)
    return g, owner, d


def test_pause_until_holds_items_until_the_deferred_fires():
    g, owner, d = held_gate("a", "b")
    assert owner.handled == [] and not owner.reading
    d.callback(None)
    assert owner.handled == ["a", "b"] and owner.reading


def test_a_stopped_gate_runs_nothing_that_waited_for_a_login():
    g, owner, d = held_gate("join after quit")
    g.stop()  # the connection went while the login was checked
    d.callback(None)
    assert owner.handled == []


def test_exempt_connections_never_wait_for_the_clock_nor_flood_but_go_a_round_at_a_time():
    clock = Clock()
    g, owner = gate(clock, burst=1, max_queued=2, exempt=True)
    assert g.control is EXEMPT and g.limit is None
    count = PER_ROUND * 5 + 3
    for i in range(count):  # one read's worth of lines
        g.submit(i)
    assert owner.handled == list(range(PER_ROUND)) and owner.floods == 0
    assert not owner.reading and g.waiting == count - PER_ROUND
    for round_ in range(2, 7):
        clock.advance(0)  # the next reactor turn: wait for the hub to deliver the round
        assert len(owner.handled) == PER_ROUND * (round_ - 1)
        owner.deliver()  # delivered (committed): the next round runs
        assert len(owner.handled) == min(count, PER_ROUND * round_)
    assert owner.handled == list(range(count)) and owner.reading and owner.floods == 0


def test_a_round_ends_even_when_every_item_came_in_its_own_read():
    clock = Clock()
    g, owner = gate(clock, exempt=True)
    for i in range(PER_ROUND):
        g.submit(i)
        assert owner.reading or i == PER_ROUND - 1
    assert len(owner.handled) == PER_ROUND
    g.submit("next")
    assert owner.handled[-1] != "next" and not owner.reading
    clock.advance(0)
    owner.deliver()
    assert owner.handled[-1] == "next" and owner.reading


def test_a_handler_that_releases_a_hold_does_not_nest_a_second_run():
    g, owner, d = held_gate("a", "b")

    def handle(item):
        owner.handled.append(item)
        if item == "a":
            fired = Deferred()
            fired.callback(None)
            g.pause_until(fired)  # an answer already there: held and released at once

    owner.handle_gated = handle
    d.callback(None)
    assert owner.handled == ["a", "b"] and g.waiting == 0 and owner.reading


def test_irc_settings_and_exempt_networks():
    config = Config().with_overrides(
        irc={"flood_rate": 4.0, "flood_burst": 8, "flood_max_lines": 30, "flood_exempt": ["10.0.0.0/8"]},
        limits={"flood_exempt": ["192.0.2.7"]},
    )
    control = for_connection(config.irc, Clock().seconds)
    assert (control.rate, control.burst, control.max_queued, control.exempt) == (4.0, 8, 30, False)
    assert for_connection(config.irc, Clock().seconds, exempt=True) is EXEMPT
    assert exempt_host(config, "10.1.2.3") and exempt_host(config, "192.0.2.7")
    assert not exempt_host(config, "192.0.2.8")
    assert is_exempt("127.0.0.1", ["127.0.0.0/8"]) and is_exempt("::1", ["::1"])
    assert not is_exempt("192.0.2.1", ["127.0.0.0/8", "bogus"]) and not is_exempt("localhost", ["127.0.0.0/8"])
    # a dual-stack listener's IPv4 client, as the connection limits take it (one rule for both)
    assert is_exempt("::ffff:127.0.0.1", ["127.0.0.0/8"]) and not is_exempt("::ffff:192.0.2.1", ["127.0.0.0/8"])
    assert FloodControl(1, 1, 2, Clock().seconds).max_held() == 2 and EXEMPT.max_held() is None
