"""Delivery in hub order, after each durable event is committed.

A chat message is delivered only once the store has committed it, so anything a user
saw survives a crash. Events that need no commit (a join, an away change) still wait
behind earlier ones, so every recipient sees events in the order the hub accepted them.
A reply to one user (``Outbox.after``) waits only for what concerns that user: its own
events, its rooms' events, what else is shown to it; what is owed to others only (another
room's messages, others' private messages) it goes ahead of (``Outbox._concerned``).
"""
from __future__ import annotations

from collections import deque
from contextlib import contextmanager, nullcontext
from typing import TYPE_CHECKING, Callable, ContextManager, Iterator, Optional, Sequence

from twisted.logger import Logger
from twisted.python.failure import Failure

from chathub.hub.errors import HubError

if TYPE_CHECKING:
    from chathub.hub.users import User


class Receipt:
    """What a request's durable events came to, for the protocol that answers it (in a
    cluster, its room changes too: a join may be found void at its number).

    A protocol passes one to ``ChatHub.send`` when it answers the request itself (a JSON
    ``ok``, an IRC echo or labeled response, a telnet confirmation): the hub then does
    not tell the sender about a message it could not store; it records the refusal here,
    and the protocol's answer (queued with ``after_delivery``, so it runs once every
    event of the request was delivered or refused) gives either the confirmation or the
    error, never both.
    """

    __slots__ = ("failure", "refused", "shown")

    def __init__(self) -> None:
        self.failure: Optional[Failure] = None  # the first refusal
        self.refused: list[str] = []  # targets of the events that were not stored
        #: an event of the request was shown (a cluster's JOIN: at its number); what its
        #: room shows from then on is numbered after it
        self.shown = False

    @property
    def stored(self) -> bool:
        """True when every event of the request was committed."""
        return self.failure is None

    def refuse(self, target: str, failure: Failure) -> None:
        """An event of the request (to ``target``) could not be stored."""
        if self.failure is None:
            self.failure = failure
        self.refused.append(target)

    @property
    def error(self) -> Optional[HubError]:
        """The hub's refusal, when the event was stored and then found void at its place
        in a cluster's numbered order (``chathub.hub.admission``); None otherwise."""
        value = self.failure.value if self.failure is not None else None
        return value if isinstance(value, HubError) else None

    @property
    def code(self) -> str:
        """The refusal's stable code: the hub error's, or ``storage_failed``."""
        error = self.error
        return error.code if error is not None else "storage_failed"

    def describe(self) -> str:
        """The refusal in words, for the sender."""
        error = self.error
        if error is not None:
            return f"{error.target}: {error.message}" if error.target else error.message
        failure = self.failure
        target = self.refused[0] if self.refused else "?"
        return not_stored_text(target, failure.getErrorMessage() if failure is not None else "")


def not_stored_text(target: str, why: str) -> str:
    """What a sender is told about a message to ``target`` that was not stored."""
    return f"Your message to {target} was not delivered: it could not be stored ({why})"


#: what an entry that may concern anyone keeps later replies behind (``_Entry.concerns``)
ANYONE = "\0anyone"
_ANYONE = (ANYONE,)


class _Entry:
    __slots__ = ("outbox", "deliver", "on_failure", "ready", "failure", "key", "shown_to", "outsiders", "passed",
                 "concerns")

    def __init__(
        self,
        outbox: "Outbox",
        deliver: Callable[[], object],
        on_failure: Optional[Callable[[Failure], object]],
        ready: bool,
        key: Optional[str] = None,
        shown_to: Optional[Sequence["User"]] = None,
        leaver: Optional["User"] = None,
        by: Optional["User"] = None,
    ) -> None:
        self.outbox = outbox
        self.deliver = deliver
        self.on_failure = on_failure
        self.ready = ready
        self.failure: Optional[Failure] = None
        self.key = key  # the conversation (a folded room name) a cluster node may hold
        #: of an entry of no one conversation, every user it is shown to, when they are
        #: few and known (a reply, a private message); None: it may concern anyone
        self.shown_to = shown_to
        if by is not None and key is not None and key in by.rooms:
            by = None  # a member: counted under its conversation
        #: of an entry of a conversation, the users owed it who are not its members: a
        #: departure's leaver (a PART, a KICK: out of the room, still owed it before any
        #: later reply), the user whose event it is when not a member (an operator's mode
        #: change, a message from outside a room without +n: ``Outbox._owed``)
        self.outsiders: tuple["User", ...] = () if key is None or (leaver is None and by is None) else tuple(
            [u for u in (leaver, by) if u is not None])
        #: of a parked entry of no conversation, the held conversations it waited in and was
        #: let out of: what they park from then on comes after it (``Outbox._pass_on``)
        self.passed: tuple[str, ...] = ()
        #: whose later replies must not go ahead of it (``Outbox.after``) besides its
        #: conversation's members (``key``, counted apart: a room message makes no tuple):
        #: its outsiders; of an entry of no conversation, its users if named (a private
        #: message's parties), else anyone (``ANYONE``)
        self.concerns: tuple[object, ...]
        if key is not None:
            self.concerns = self.outsiders
        elif shown_to is not None:
            self.concerns = tuple(shown_to) if by is None or by in shown_to else (*shown_to, by)
        else:
            self.concerns = _ANYONE

    def settle(self, failure: Optional[Failure] = None) -> None:
        """The commit this delivery waited for is done (``failure`` None) or failed."""
        self.ready = True
        self.failure = failure
        self.outbox._drain()


class Outbox:
    """An ordered queue of deliveries, each released when its commit (if any) is done."""

    log = Logger()

    def __init__(self, batching: Optional[Callable[[], ContextManager[object]]] = None) -> None:
        self._queue: deque[_Entry] = deque()
        self._held: dict[str, int] = {}  # conversation -> ``pause`` calls not yet resumed
        self._draining = False  # a drain is under way (deliveries may publish and settle)
        self._again = False
        #: held conversation -> entries let through (``grant``); only counts above zero
        self._granted: dict[str, int] = {}
        #: held conversation -> its ready entries taken off the queue, in order: a drain
        #: looks at each entry once, however long a conversation stays held
        self._parked: dict[str, deque[_Entry]] = {}
        self._parked_count = 0
        #: user -> {held conversation: how many of its entries not delivered yet the user
        #: is owed though not a member: its departure, its own (``_Entry.outsiders``); an
        #: entry of no conversation parked behind it and shown to the user}
        self._owed: dict["User", dict[str, int]] = {}
        #: what the entries not delivered yet concern (a user, a conversation, ``ANYONE``:
        #: ``_Entry.concerns``) -> how many of them: what a reply may not go ahead of
        self._concerned: dict[object, int] = {}
        #: told the conversation of each keyed entry delivered (``when_released``)
        self._on_release: Optional[Callable[[str], None]] = None
        #: context manager wrapped around each drain, so a committed group is delivered
        #: with one write per recipient (``Fanout.batching``)
        self._batching = batching or nullcontext

    @property
    def pending(self) -> int:
        """How many deliveries wait for an earlier commit."""
        return len(self._queue) + self._parked_count

    def publish(self, deliver: Callable[[], object], shown_to: Optional[Sequence["User"]] = None) -> None:
        """Run ``deliver`` (which needs no commit) after everything published before it:
        now, unless an earlier delivery still waits for its commit. ``shown_to``: the users
        it is for, when they are known (``_release_around_held``)."""
        self._add(deliver, shown_to, False)

    def _add(self, deliver: Callable[[], object], shown_to: Optional[Sequence["User"]], reply: bool) -> None:
        if not self._draining:
            if shown_to is not None and (not self._queue or reply and not self._concerns(shown_to)):
                # nothing queued that these users must be shown first: only held rooms'
                # parked entries may be owed to them
                if not self._parked_count:
                    deliver()
                    return
                entry = _Entry(self, deliver, None, True, None, shown_to)
                owed = self._owed_by(entry)
                if owed is None:
                    deliver()
                else:
                    self._count(entry)
                    self._park(owed, entry)
                return
            if not self._queue and not self._parked_count:
                deliver()
                return
        entry = _Entry(self, deliver, None, True, None, shown_to)
        self._count(entry)
        self._queue.append(entry)
        if self._draining:
            self._again = True  # delivered by the drain under way, in its turn

    def _concerns(self, users: Sequence["User"]) -> bool:
        """Whether an entry not delivered yet concerns one of ``users``: theirs, one of
        their rooms', one else shown to them, or one that may concern anyone."""
        concerned = self._concerned
        if not concerned:
            return False
        if ANYONE in concerned:
            return True
        for user in users:
            if user in concerned:
                return True
            for key in user.rooms:
                if key in concerned:
                    return True
        return False

    def _count(self, entry: _Entry) -> None:
        """``entry`` waits: count what it concerns (until ``_run``: ``_uncount``)."""
        concerned = self._concerned
        key = entry.key
        if key is not None:
            concerned[key] = concerned.get(key, 0) + 1
        if entry.concerns:  # (none but its room: a member's room message)
            for c in entry.concerns:
                concerned[c] = concerned.get(c, 0) + 1

    def _uncount(self, concern: object) -> None:
        concerned = self._concerned
        left = concerned[concern] - 1
        if left:
            concerned[concern] = left
        else:
            del concerned[concern]

    def pause(self, key: str) -> None:
        """Hold the deliveries of conversation ``key`` (and what else its parked entries
        must come before: ``_release_around_held``) until ``resume(key)``: a cluster node
        waits so while another node's earlier event of that conversation is on its way.
        Other conversations go on."""
        self._held[key] = self._held.get(key, 0) + 1

    def resume(self, key: str) -> None:
        """Undo one ``pause(key)``; deliver what became ready meanwhile."""
        left = self._held.get(key, 0) - 1
        if left > 0:
            self._held[key] = left
            return
        self._held.pop(key, None)
        self._granted.pop(key, None)
        parked = self._parked.pop(key, None)
        if parked:
            # they came before everything still queued: they go first, in their order
            self._parked_count -= len(parked)
            for entry in parked:
                if entry.key is None:
                    self._unpark(key, entry)
            self._queue.extendleft(reversed(parked))
        self._drain()

    def grant(self, key: str, drain: bool = True) -> None:
        """Let the next entry of held conversation ``key`` go, alone and in its turn (now if
        it is ready, else once its commit is done): a cluster node shows its own events of
        a conversation one by one between other nodes' events numbered around them.
        ``drain=False`` when that entry's commit is about to settle it (which drains): the
        store tells the relay of a committed group before it settles its entries."""
        if key in self._held:
            self._granted[key] = self._granted.get(key, 0) + 1
            if drain:
                self._drain()

    def when_released(self, callback: Callable[[str], None]) -> None:
        """Call ``callback(key)`` after each delivered entry that names conversation ``key``
        (the cluster relay counts a node's own events shown)."""
        self._on_release = callback

    def hold(
        self,
        deliver: Callable[[], object],
        on_failure: Optional[Callable[[Failure], object]] = None,
        key: Optional[str] = None,
        shown_to: Optional[Sequence["User"]] = None,
        leaver: Optional["User"] = None,
        by: Optional["User"] = None,
    ) -> Callable[[Optional[Failure]], None]:
        """Queue ``deliver`` until the returned callable is called: with None once its
        commit is done, or with the ``Failure`` that stops it (``on_failure`` gets that).
        ``key`` names the one conversation it belongs to, if it has one (``pause``);
        without one, ``shown_to`` the users it is for, when known (a private message);
        with one, ``leaver`` the user a departure took out of that room. ``by``: the user
        whose event it is: its later replies follow it (``after``; a member of the
        conversation is counted under it)."""
        entry = _Entry(self, deliver, on_failure, False, key, shown_to, leaver, by)
        self._count(entry)
        if entry.outsiders:
            assert key is not None
            for user in entry.outsiders:
                self._owe(user, key)
        self._queue.append(entry)
        return entry.settle

    def after(self, fn: Callable[[], object], shown_to: Optional[Sequence["User"]] = None) -> None:
        """Run ``fn`` once everything published so far has been delivered; ``shown_to``:
        the users what it writes is for (a reply's), when known: then only what concerns
        them comes first (their own events, their rooms', what else is shown to them:
        ``_Entry.concerns``; what they are not shown cannot be told from what came later),
        and on a cluster node only what is held for them (``_release_around_held``)."""
        self._add(fn, shown_to, True)

    @contextmanager
    def settling(self) -> Iterator[None]:
        """Context manager around the settling of one committed group (the store's
        ``wrap_releases``): what is settled or published inside waits, and one drain
        delivers it all, in order, as one fan-out batch when the block ends (instead of a
        drain, a fan-out block and a walk of the queue for every message of the group)."""
        with self._batching():
            if self._draining:  # inside a drain already: that drain delivers it
                yield
                return
            self._draining = True
            try:
                yield
            finally:
                self._draining = False
                self._drain()

    def _drain(self) -> None:
        if self._draining:  # a delivery (or a release listener) asked again: loop once more
            self._again = True
            return
        self._draining = True
        try:
            with self._batching():
                self._again = True
                while self._again:
                    self._again = False
                    self._release()
        finally:
            self._draining = False

    def _release(self) -> None:
        queue = self._queue
        if self._held:
            self._release_around_held()
            return
        while queue and queue[0].ready:
            self._run(queue.popleft())

    def _release_around_held(self) -> None:
        """Deliver the ready entries in order, passing the held conversations' ones: an
        entry of another conversation goes on; one of a held conversation is parked
        (unless granted through: ``grant``) until ``resume``; one with no conversation
        whose users are known (``shown_to``: a reply, a private message, a quit) goes on
        unless one of them is owed a parked entry (a member of its room, its leaver, its
        sender from outside, a party of a private message parked there), and
        is parked behind that entry otherwise; one that may concern anyone (users not
        named) waits while anything is parked, and so does everything after it; nothing
        passes an entry still waiting for its commit. A refused event goes at once: it
        shows nothing to anyone, and only its sender is told."""
        queue = self._queue
        held = self._held
        granted = self._granted
        parked = self._parked
        # (a copy of the keys, not a comprehension: that is one call more per drain, and
        # the granted count may drop to nothing, and out of ``granted``, meanwhile)
        for granted_key in list(granted) if granted and parked else ():
            waiting = parked.get(granted_key)
            while waiting and granted.get(granted_key):
                self._use_grant(granted_key)
                self._parked_count -= 1
                self._run(waiting.popleft())
                if waiting and waiting[0].key is None:
                    self._pass_on(granted_key, waiting)
        while queue:
            entry = queue[0]
            if not entry.ready:
                break
            key = entry.key
            if entry.failure is None:
                if key is None:
                    if self._parked_count:
                        if entry.shown_to is None:
                            break  # may concern a held room's member: it and all after it wait
                        owed = self._owed_by(entry)
                        if owed is not None:
                            self._park(owed, queue.popleft())
                            continue
                elif key in held:
                    if key in granted and not parked.get(key):
                        self._use_grant(key)
                    else:
                        self._park(key, queue.popleft())
                        continue
            queue.popleft()
            self._run(entry)

    def _owed_by(self, entry: _Entry) -> Optional[str]:
        """A held conversation with a parked entry one of the users of ``entry`` (of no
        conversation) is owed: its room's, or one owed though not a member (``_owed``: its
        departure, its own from outside, an entry of no conversation parked there and shown
        to it); not one it was let out of already (``passed``). None when there is none."""
        parked = self._parked
        owed = self._owed
        passed = entry.passed
        for user in entry.shown_to or ():
            for key in user.rooms:
                if parked.get(key) and key not in passed:
                    return key
            for key in owed.get(user, ()) if owed else ():
                if parked.get(key) and key not in passed:
                    return key
        return None

    def _pass_on(self, key: str, waiting: deque[_Entry]) -> None:
        """The entries of no conversation at the front of ``key``'s parked ones (parked
        behind what was just granted) wait for ``key`` no more: each goes now, or parks
        behind another held conversation it is owed."""
        parked = self._parked
        while parked.get(key) is waiting and waiting and waiting[0].key is None:
            entry = waiting.popleft()
            self._parked_count -= 1
            self._unpark(key, entry)
            entry.passed += (key,)
            owed = self._owed_by(entry)
            if owed is None:
                self._run(entry)
            else:
                self._park(owed, entry)

    def _park(self, key: str, entry: _Entry) -> None:
        """Set ``entry`` aside behind held conversation ``key``'s parked entries, off the
        queue: its own (in order), or one of no conversation owed one of them (whose users
        are then owed ``key`` too: a later reply of one of them waits behind it)."""
        self._parked.setdefault(key, deque()).append(entry)
        self._parked_count += 1
        if entry.key is None:
            for user in entry.shown_to or ():
                self._owe(user, key)

    def _unpark(self, key: str, entry: _Entry) -> None:
        """``entry``, of no conversation, waits behind ``key`` no more."""
        for user in entry.shown_to or ():
            self._paid(user, key)

    def _use_grant(self, key: str) -> None:
        # only counts above zero are kept: a release walks the granted conversations, and
        # a busy node holds and grants rooms by the hundred
        left = self._granted[key] - 1
        if left:
            self._granted[key] = left
        else:
            del self._granted[key]

    def _run(self, entry: _Entry) -> None:
        key = entry.key
        if key is not None:
            self._uncount(key)
        if entry.concerns:
            for c in entry.concerns:
                self._uncount(c)
        if entry.outsiders:
            assert key is not None
            for user in entry.outsiders:
                self._paid(user, key)
        try:
            if entry.failure is None:
                entry.deliver()
            elif entry.on_failure is not None:
                entry.on_failure(entry.failure)  # it reports (the store logged the fault)
            else:
                self.log.failure("event not stored, so not delivered", entry.failure)
        except Exception:
            self.log.failure("delivery failed")
        if self._on_release is not None and key is not None and entry.failure is None:
            try:
                self._on_release(key)
            except Exception:
                self.log.failure("a release listener failed")

    def _owe(self, user: "User", key: str) -> None:
        owed = self._owed.setdefault(user, {})
        owed[key] = owed.get(key, 0) + 1

    def _paid(self, user: "User", key: str) -> None:
        owed = self._owed.get(user)
        if owed is None or key not in owed:
            return
        left = owed[key] - 1
        if left:
            owed[key] = left
        else:
            del owed[key]
            if not owed:
                del self._owed[user]
