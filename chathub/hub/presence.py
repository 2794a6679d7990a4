"""Presence (IRCv3 MONITOR): who watches which nick, and telling the watchers.

A user watches nicks, held or not; when a watched nick comes online or goes offline, or
its holder's identity changes (away, host, real name, account), each watcher is told
after everything the hub accepted before it has been delivered, so it never learns of a
change before the events that led to it.
"""
from __future__ import annotations

from functools import partial
from typing import Callable, Iterable, Mapping, Optional

from chathub.events import Event, EventIds, Kind
from chathub.hub.users import User
from chathub.names import fold


class Presence:
    """The watcher index (folded nick -> users monitoring it) and the presence events."""

    __slots__ = ("watchers", "_after_delivery")

    def __init__(self, after_delivery: Callable[[Callable[[], object], User], None]) -> None:
        """``after_delivery`` (``ChatHub.after_delivery``) runs a watcher's delivery in hub
        order (for that watcher: a cluster node's held room holds it only if the watcher is
        owed one of its events)."""
        #: folded nick -> the users monitoring it; a nick nobody watches has no entry
        self.watchers: dict[str, set[User]] = {}
        self._after_delivery = after_delivery

    def watch(
        self, user: User, nicks: Iterable[str], users: Mapping[str, User]
    ) -> list[tuple[str, Optional[User]]]:
        """Make ``user`` watch ``nicks``; return each with its holder in ``users`` (or None)."""
        out = []
        for nick in nicks:
            folded = fold(nick)
            user.monitoring.add(folded)
            self.watchers.setdefault(folded, set()).add(user)
            out.append((nick, users.get(folded)))
        return out

    def unwatch(self, user: User, nicks: Optional[Iterable[str]] = None) -> None:
        """Stop ``user`` watching ``nicks``, or every nick it watches."""
        folded_nicks = list(user.monitoring) if nicks is None else [fold(n) for n in nicks]
        for folded in folded_nicks:
            user.monitoring.discard(folded)
            watching = self.watchers.get(folded)
            if watching is not None:
                watching.discard(user)
                if not watching:
                    del self.watchers[folded]

    def announce(self, user: User, state: str, ids: EventIds) -> None:
        """Tell those watching ``user``'s nick that it is now ``state`` ("online", "offline"),
        with an event stamped by ``ids`` (the hub's)."""
        if not self.watchers.get(user.folded or ""):  # most nicks nobody watches: make no event
            return
        event = ids.make(Kind.PRESENCE, user.source, user.nick or "", data={"state": state})
        self.tell_watchers(user, event)

    def tell_watchers(self, user: User, event: Event, told: Iterable[User] = ()) -> None:
        """Deliver ``event`` about ``user`` to those watching its nick, except ``user``
        itself and those already ``told`` (its neighbours got it through fan-out)."""
        watching = self.watchers.get(user.folded or "")
        if not watching:
            return
        skip = set(map(id, told))
        skip.add(id(user))
        after_delivery = self._after_delivery
        for watcher in list(watching):
            if id(watcher) not in skip:
                after_delivery(partial(_deliver, watcher, event), watcher)


def _deliver(user: User, event: Event) -> None:
    for session in user.sessions:
        session.deliver(event)
