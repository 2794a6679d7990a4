"""The IRC server's flood settings applied to the shared ``chathub.protocols.flood``.

Lines waiting for the penalty clock are held by the session's ``FloodGate``; past
``irc.flood_max_lines`` held lines the client is dropped with ``ERROR :Excess Flood``.
"""
from __future__ import annotations

from typing import Callable

from chathub.protocols.flood import FloodControl, is_exempt

__all__ = ["FloodControl", "for_connection", "is_exempt"]


def for_connection(irc_config, clock: Callable[[], float], exempt: bool = False) -> FloodControl:
    """A connection's flood control; exempt connections share one stateless instance."""
    exempt = exempt or not irc_config.flood_protection
    if not exempt:
        return _from_config(irc_config, clock, False)
    shared = _EXEMPT.get(id(irc_config))
    if shared is None or shared[0] is not irc_config:
        shared = _EXEMPT[id(irc_config)] = (irc_config, _from_config(irc_config, clock, True))
    return shared[1]


def _from_config(irc_config, clock: Callable[[], float], exempt: bool) -> FloodControl:
    return FloodControl(
        irc_config.flood_rate, irc_config.flood_burst, irc_config.flood_max_lines, clock, exempt
    )


#: id(irc config) -> (that config, the FloodControl every exempt connection shares)
_EXEMPT: dict[int, tuple] = {}
