"""Read markers: the last-read time of each conversation (IRCv3 ``draft/read-marker``,
chathub.v1 ``markread``), kept in memory.

A marker belongs to the account when the user is logged in (shared by its sessions and
connections), else to the user (a guest's connection). It only ever moves forward. One
owner keeps at most ``[limits] read_markers`` of them; one more forgets the one set longest
ago, so a client naming endless targets cannot grow the table.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Optional

from chathub.names import fold

if TYPE_CHECKING:
    from chathub.hub.users import User


def _owner(user: "User") -> str:
    return f"a:{fold(user.account)}" if user.account else f"g:{user.session}"


class ReadMarkers:
    """Every owner's markers: {owner: {folded target: epoch seconds}}, in setting order."""

    def __init__(self, most: int) -> None:
        """``most``: markers one owner keeps (``[limits] read_markers``)."""
        self.most = most
        self._markers: dict[str, dict[str, float]] = {}

    def get(self, user: "User", target: str) -> Optional[float]:
        """``user``'s marker of ``target``, None when unset."""
        markers = self._markers.get(_owner(user))
        return None if markers is None else markers.get(fold(target))

    def move(self, user: "User", target: str, when: float) -> bool:
        """Move ``user``'s marker of ``target`` to ``when``; False when it is there or later."""
        markers = self._markers.setdefault(_owner(user), {})
        key = fold(target)
        before = markers.pop(key, None)
        if before is not None and before >= when:
            markers[key] = before
            return False
        markers[key] = when  # last in order: the most recently set
        while len(markers) > self.most:
            del markers[next(iter(markers))]
        return True

    def rename(self, user: "User", old_folded: str, new: str) -> None:
        """A room ``user`` is in took the name ``new``: its marker goes with it."""
        markers = self._markers.get(_owner(user))
        when = markers.pop(old_folded, None) if markers else None
        if markers is not None and when is not None:
            key = fold(new)
            markers[key] = max(when, markers.get(key, 0.0))

    def forget(self, user: "User") -> None:
        """A guest left: its markers go (an account's stay for its next login)."""
        if user.account is None:
            self._markers.pop(_owner(user), None)
