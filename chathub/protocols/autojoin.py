"""Room requests a cluster node answers once a name is claimed: an account's kept rooms
joined again at login, in order (telnet and chathub.v1; IRC chains its JOIN replies the
same way in ``IrcSession._rejoin``), and the result of a request answered at once."""
from __future__ import annotations

from typing import Any, Callable, Optional

from twisted.internet.defer import Deferred
from twisted.python.failure import Failure

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


def fired(d: Deferred) -> Any:
    """The result of ``d``, which has fired (a lone node answers at once): returned, or
    raised when it is a failure (a hub refusal, answered as a synchronous one is)."""
    results: list[Any] = []
    d.addBoth(results.append)
    result = results[0]
    if isinstance(result, Failure):
        result.raiseException()
    return result
