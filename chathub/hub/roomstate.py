"""A starting cluster node's wait for the state of the rooms in use (``ChatHub.join_cluster``).

The node asks every other node; each answers with its copy of the rooms and the facts of their
numbered order (``replica.snapshot``, ``Admission.export``). A node that is starting too
answers with what it has, which may be nothing yet: its answer is taken only when no node that
is not starting gave a good one, once every other node answered or the wait is over. Without
this, a node that started beside another one could take that one's empty answer first and
start without the rooms of the nodes that had them.
"""
from __future__ import annotations

from typing import Any, Callable, Optional

#: what a node adds to its answer while it is starting itself
STARTING = {"starting": True}


class RoomStateWait:
    """Which answer a starting node takes: the first good one of a node that is not starting,
    else (every node answered, or the wait is over) the first good one of a starting node,
    else none."""

    def __init__(self, take: Callable[[Any, str, Any], bool], none: Callable[[str], None]) -> None:
        """``take(rooms, node, facts)`` applies an answer, False (or an exception) when it is
        malformed, having changed nothing; ``none(why)`` starts with no room state."""
        self._take = take
        self._none = none
        self.peers: Optional[set[str]] = None  # the nodes holding a lease, once known
        self.answered: set[str] = set()
        self.fallback: list[tuple[Any, str, Any]] = []  # starting nodes' answers, in order
        self.finished = False

    def answer(self, node: str, rooms: Any, facts: Any, starting: bool) -> None:
        """Node ``node`` answered (``starting``: it is starting itself)."""
        if self.finished:
            return
        self.answered.add(node)
        if starting:
            self.fallback.append((rooms, node, facts))
        elif self._taken(rooms, node, facts):
            return
        self._check()

    def _taken(self, rooms: Any, node: str, facts: Any) -> bool:
        """Take an answer if it is good (then the wait is over)."""
        self.finished = True  # no answer may come in while one is being taken
        try:
            if self._take(rooms, node, facts):
                return True
        except Exception:  # ``take`` logs what it refuses; this is anything else
            pass
        self.finished = False
        return False

    def peers_known(self, peers: list[str]) -> None:
        """The nodes that hold a lease (those that will answer)."""
        self.peers = set(peers)
        self._check()

    def _check(self) -> None:
        if not self.finished and self.peers is not None and self.peers <= self.answered:
            why = "every node answered, none with the rooms in use" if self.peers else "no other node holds a lease"
            self.give_up(why)

    def give_up(self, why: str) -> None:
        """Stop waiting (every node answered, or the wait is over): a starting node's answer,
        if one is good, else none."""
        if self.finished:
            return
        for rooms, node, facts in self.fallback:
            if self._taken(rooms, node, facts):
                return
        self.finished = True
        self._none(why)
