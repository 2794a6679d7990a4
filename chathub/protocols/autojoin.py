"""Joining an account's kept rooms again at login, in order (telnet and chathub.v1; IRC
chains its JOIN replies the same way in ``IrcSession._rejoin``)."""
from __future__ import annotations

from typing import Callable, Optional

from twisted.internet.defer import Deferred

#: a kept room: its name, and the key it was joined with (None: none)
KeptRoom = tuple[str, Optional[str]]


def join_in_turn(
    rooms: list[KeptRoom], join: Callable[[str, Optional[str]], Optional[Deferred]], gone: Callable[[], bool]
) -> None:
    """``join(name, key)`` each of ``rooms`` in order. A join that answers later (a room
    new to a cluster node waits for its name's claim) returns a Deferred, and the next
    rooms wait for it; ``gone()`` (the connection closed, the user left) stops the rest."""

    def rest(_: object = None, start: int = 0) -> None:
        for i in range(start, len(rooms)):
            if gone():
                return
            name, key = rooms[i]
            later = join(name, key)
            if later is not None:
                later.addBoth(rest, i + 1)
                return

    rest()
