"""Read markers: the last-read time of each conversation (IRCv3 ``draft/read-marker``,
chathub.v1 ``markread``).

A marker belongs to the account when the user is logged in (shared by its sessions and
connections), else to the user (a guest's connection). It only ever moves forward. One
owner keeps at most ``[limits] read_markers`` of them; one more forgets the one set longest
ago, so a client naming endless targets cannot grow the table.

They are read from memory. An account's are also written to the store as they move, and
read from it when the account logs in (``load``, before its rooms are joined again): a
marker it set before a restart, or on another node of a cluster, is there at its next
login. A guest's live as long as its connection.
"""
from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Callable, Optional

from twisted.internet import defer
from twisted.logger import Logger

from chathub.names import fold

if TYPE_CHECKING:
    from twisted.internet.interfaces import IReactorTime

    from chathub.hub.users import User
    from chathub.store.interfaces import IStore

#: the longest a request for a marker waits for the login's read of the stored ones (a
#: store that does not answer must not hold the connection's later lines): seconds
LOAD_WAIT = 2.0


def _owner(user: "User") -> str:
    return f"a:{fold(user.account)}" if user.account else f"g:{user.session}"


def _fire(waiter: "defer.Deferred[None]") -> None:
    """Tell ``waiter`` (once: it may have been told already, when it waited too long)."""
    if not waiter.called:
        waiter.callback(None)


class ReadMarkers:
    """Every owner's markers: {owner: {folded target: epoch seconds}}, in setting order."""

    log = Logger()

    def __init__(self, most: int, store: Optional["IStore"] = None, clock: Callable[[], float] = time.time,
                 timer: Optional["IReactorTime"] = None) -> None:
        """``most``: markers one owner keeps (``[limits] read_markers``); ``store``: where
        accounts' markers are kept (None: in memory only); ``timer`` (the reactor) bounds
        how long ``loaded`` waits (``LOAD_WAIT``; without it, until the read ends)."""
        self.most = most
        self.store = store
        self.clock = clock
        self.timer = timer
        self._markers: dict[str, dict[str, float]] = {}
        #: accounts' markers being read from the store: owner -> who waits for them
        self._loading: dict[str, list[defer.Deferred[None]]] = {}
        #: accounts' marker writes not done yet: owner -> how many
        self._writing: dict[str, int] = {}
        #: accounts whose user left while a write of theirs was under way: their markers
        #: go once it is done (unless the account logged in again meanwhile)
        self._leaving: set[str] = set()

    def get(self, user: "User", target: str) -> Optional[float]:
        """``user``'s marker of ``target``, None when unset."""
        markers = self._markers.get(_owner(user))
        return None if markers is None else markers.get(fold(target))

    def move(self, user: "User", target: str, when: float) -> bool:
        """Move ``user``'s marker of ``target`` to ``when``; False when it is there or later."""
        key = fold(target)
        if not self._advance(self._markers.setdefault(_owner(user), {}), key, when):
            return False
        if user.account and self.store is not None:
            # written behind: a failed write is logged and loses the marker only for the
            # next login (this one's memory has it)
            owner = _owner(user)
            self._writing[owner] = self._writing.get(owner, 0) + 1
            saved = self.store.save_read_marker(user.account, key, when, self.clock(), self.most)
            saved.addErrback(self._not_saved, user.account).addBoth(self._written, owner)
        return True

    def learned(self, account: str, target: str, when: float) -> bool:
        """Another node moved ``account``'s marker of ``target`` to ``when`` (and stored
        it): moved here too when this node holds the account's markers (a session of it is
        here) and it is later. True when it moved."""
        owner = f"a:{fold(account)}"
        markers = self._markers.get(owner)
        if markers is None:
            if owner not in self._loading:
                return False
            # a login here is reading them: the store may not have this one yet (the read
            # merges what it finds with what is here, the later of each)
            markers = self._markers[owner] = {}
        return self._advance(markers, fold(target), when)

    def _advance(self, markers: dict[str, float], key: str, when: float) -> bool:
        """Move the marker ``key`` of one owner's ``markers`` forward to ``when``, last in
        order (the most recently set), keeping the ``most`` set last; False when it is
        there or later already."""
        before = markers.get(key)
        if before is not None and before >= when:
            return False
        markers.pop(key, None)
        markers[key] = when
        while len(markers) > self.most:
            del markers[next(iter(markers))]
        return True

    def _not_saved(self, failure: Any, account: str) -> None:
        self.log.error("could not store a read marker of {account}: {why}", account=account,
                       why=failure.getErrorMessage())

    def _written(self, _: object, owner: str) -> None:
        left = self._writing.pop(owner, 1) - 1
        if left:
            self._writing[owner] = left
        elif owner in self._leaving:
            self._leaving.discard(owner)
            self._markers.pop(owner, None)

    def load(self, user: "User") -> "defer.Deferred[None]":
        """Take the markers the store keeps for ``user``'s account into memory (each the
        later of the two); fires when done, never failing (a store that cannot answer is
        logged: the markers in memory stay)."""
        account = user.account
        if not account or self.store is None:
            return defer.succeed(None)
        owner = f"a:{fold(account)}"
        self._leaving.discard(owner)  # back: what memory holds stays
        told: defer.Deferred[None] = defer.Deferred()
        waiting = self._loading.get(owner)
        if waiting is not None:  # a read of them is under way (sign-on, then the rejoins)
            waiting.append(told)
            return told
        self._loading[owner] = [told]

        def taken(stored: dict[str, float]) -> None:
            markers = self._markers.setdefault(owner, {})
            for key, when in stored.items():  # most recently moved last: kept last
                if when > markers.get(key, 0.0):
                    markers.pop(key, None)
                    markers[key] = when
            while len(markers) > self.most:
                del markers[next(iter(markers))]

        def failed(failure: Any) -> None:
            self.log.error("could not read the read markers of {account}: {why}", account=account,
                           why=failure.getErrorMessage())

        def done(_: object) -> None:
            for waiter in self._loading.pop(owner, ()):
                _fire(waiter)

        self.store.read_markers(account).addCallbacks(taken, failed).addBoth(done)
        return told

    def loaded(self, user: "User") -> "defer.Deferred[None]":
        """Fires once no read of ``user``'s account's stored markers is under way (at once,
        nearly always: a read is made at login)."""
        waiting = self._loading.get(_owner(user)) if user.account else None
        if waiting is None:
            return defer.succeed(None)
        told: defer.Deferred[None] = defer.Deferred()
        waiting.append(told)
        if self.timer is not None:
            late = self.timer.callLater(LOAD_WAIT, _fire, told)

            def settled(result: object) -> object:
                if late.active():
                    late.cancel()
                return result

            told.addBoth(settled)
        return told

    def rename(self, user: "User", old_folded: str, new: str) -> None:
        """A room ``user`` is in took the name ``new``: its marker goes with it."""
        markers = self._markers.get(_owner(user))
        when = markers.pop(old_folded, None) if markers else None
        if markers is not None and when is not None:
            key = fold(new)
            markers[key] = max(when, markers.get(key, 0.0))

    def forget(self, user: "User") -> None:
        """``user`` left: a guest's markers go (and those it had as a guest before it logged
        in); an account's go too once stored (its next login reads them), unless a write of
        them is still under way or nothing stores them (then they stay for its next login)."""
        self._markers.pop(f"g:{user.session}", None)
        owner = _owner(user)
        if not user.account or self.store is None:
            return
        if self._writing.get(owner):
            self._leaving.add(owner)  # once stored (a read before that would miss it)
        else:
            self._markers.pop(owner, None)
