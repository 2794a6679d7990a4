"""The IRC server's flood settings applied to the shared ``chathub.protocols.flood``.

Lines waiting for the penalty clock are held by the session's ``FloodGate`` (the
connection is not read from meanwhile); past ``irc.flood_max_lines`` held lines a client
that is not exempt is dropped with ``ERROR :Excess Flood``.
"""
from __future__ import annotations

from typing import Callable

from chathub.protocols.flood import FloodControl, control_for, is_exempt

__all__ = ["FloodControl", "exempt_host", "for_connection", "is_exempt"]


def for_connection(irc_config, clock: Callable[[], float], exempt: bool = False) -> FloodControl:
    """A connection's flood control; exempt connections share one stateless instance."""
    return control_for(
        irc_config.flood_rate,
        irc_config.flood_burst,
        irc_config.flood_max_lines,
        clock,
        exempt or not irc_config.flood_protection,
    )


def exempt_host(config, host: str) -> bool:
    """Whether an IRC client from ``host`` is exempt: in ``[limits] flood_exempt`` (every
    protocol) or ``[irc] flood_exempt`` (IRC only)."""
    return is_exempt(host, config.limits.flood_exempt, config.irc.flood_exempt)
