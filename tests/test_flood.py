"""The flood control IRC and chathub.v1 share: penalty clock and the gate in front of a handler."""
from __future__ import annotations

from types import SimpleNamespace

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock

from chathub.config import Config
from chathub.protocols.flood import FloodControl, FloodGate, is_exempt
from chathub.protocols.irc.flood import for_connection


def gate(clock, rate=1.0, burst=2, max_queued=3, exempt=False, hard_limit=None):
    handled, floods = [], []
    control = FloodControl(rate, burst, max_queued, clock.seconds, exempt)
    return FloodGate(control, clock, SimpleNamespace(handle_gated=handled.append, flooded=lambda: floods.append(1)), hard_limit), handled, floods


def test_a_burst_runs_at_once_then_the_rate_applies():
    clock = Clock()
    g, handled, floods = gate(clock)
    for i in range(5):
        g.submit(i)
    assert handled == [0, 1, 2] and g.waiting == 2
    clock.advance(1)
    assert handled == [0, 1, 2, 3]
    clock.advance(1)
    assert handled == [0, 1, 2, 3, 4] and g.waiting == 0 and floods == []


def test_costs_weigh_and_a_handler_may_charge_itself():
    clock = Clock()
    g, handled, _ = gate(clock)
    g.submit("login", cost=3)
    g.submit("next", cost=0)
    assert handled == ["login"]  # 3 units is past the burst of 2: the next one waits
    clock.advance(1)
    assert handled == ["login", "next"]
    g.control.charge(5)  # what IRC's dispatch does for a command's penalty
    g.submit("after", cost=0)
    assert handled == ["login", "next"]


def test_too_many_waiting_is_a_flood_and_stops_the_gate():
    clock = Clock()
    g, handled, floods = gate(clock, burst=1, max_queued=2)
    for i in range(10):
        g.submit(i)
    assert floods == [1] and g.stopped
    clock.advance(100)
    assert handled == [0, 1]  # what was waiting is dropped


def test_pause_until_holds_items_until_the_deferred_fires():
    clock = Clock()
    g, handled, _ = gate(clock, burst=10)
    d = Deferred()
    g.pause_until(d)
    g.submit("a")
    g.submit("b")
    assert handled == []
    d.callback(None)
    assert handled == ["a", "b"]


def test_exempt_connections_never_wait_but_stay_bounded():
    clock = Clock()
    g, handled, floods = gate(clock, burst=1, max_queued=2, exempt=True, hard_limit=5)
    for i in range(50):
        g.submit(i)
    assert handled == list(range(50)) and floods == []
    assert g.limit == 5
    assert FloodControl(1, 1, 2, clock.seconds).max_held(5) == 2


def test_irc_settings_and_exempt_networks():
    irc = Config().with_overrides(irc={"flood_rate": 4.0, "flood_burst": 8, "flood_max_lines": 30}).irc
    control = for_connection(irc, Clock().seconds)
    assert (control.rate, control.burst, control.max_queued, control.exempt) == (4.0, 8, 30, False)
    assert for_connection(irc, Clock().seconds, exempt=True) is for_connection(irc, Clock().seconds, exempt=True)
    assert is_exempt("127.0.0.1", ["127.0.0.0/8"]) and is_exempt("::1", ["::1"])
    assert not is_exempt("192.0.2.1", ["127.0.0.0/8", "bogus"]) and not is_exempt("localhost", ["127.0.0.0/8"])
