"""Flood protection: a penalty clock ("fake lag") like ircd's, per connection.

Every command adds its penalty (``1 / flood_rate`` seconds per unit) to a virtual clock
that never runs behind real time. While that clock is at most ``flood_burst`` commands
ahead of now, commands run at once; beyond that, they wait until it is, so a flooding
client is slowed to ``flood_rate`` commands per second. Lines waiting this way are held
by the session; past ``flood_max_lines`` held lines the client is dropped with
``ERROR :Excess Flood``. Exempt connections (loopback test harnesses, trusted bouncers)
are never delayed.
"""
from __future__ import annotations

import ipaddress
from typing import Callable, Iterable


class FloodControl:
    """Penalty accounting for one connection."""

    __slots__ = ("rate", "burst", "max_lines", "exempt", "clock", "lag_until")

    def __init__(self, irc_config, clock: Callable[[], float], exempt: bool = False) -> None:
        self.rate = irc_config.flood_rate
        self.burst = irc_config.flood_burst
        self.max_lines = irc_config.flood_max_lines
        self.exempt = exempt or not irc_config.flood_protection
        self.clock = clock
        self.lag_until = 0.0

    def charge(self, units: float) -> None:
        """Account for one command costing ``units``."""
        if self.exempt:
            return
        now = self.clock()
        self.lag_until = max(self.lag_until, now) + units / self.rate

    def delay(self) -> float:
        """Seconds to wait before the next command may run (0 when it may run now)."""
        if self.exempt:
            return 0.0
        ahead = self.lag_until - self.clock()
        allowed = self.burst / self.rate
        return max(0.0, ahead - allowed)

    def max_held(self, hard_limit: int) -> int:
        """How many lines may wait before the client counts as flooding."""
        return hard_limit if self.exempt else min(self.max_lines, hard_limit)


def is_exempt(host: str, networks: Iterable[str]) -> bool:
    """True when ``host`` (an IP address) lies in one of ``networks`` (CIDR or address)."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    for network in networks:
        try:
            if address in ipaddress.ip_network(network, strict=False):
                return True
        except ValueError:
            continue
    return False
