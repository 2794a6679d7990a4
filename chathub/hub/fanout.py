"""Fan-out: encode an event once per wire format, send the same bytes to every recipient.

Inside a ``batching()`` block (the outbox releasing a committed group, or a protocol
handling one read), consecutive chat events from one sender to one unchanged set of
recipients are encoded together, and what each member is owed, across senders and rooms,
is held and written with one ``send`` per member at the end of the reactor turn (when
the block ends if the hub has no reactor to wait for, as in unit tests): a burst of N
lines into a room of M members costs M sends, not N x M, and a member of several busy
rooms gets one write per turn. Anything else flushes what is held first, so every
recipient still sees events in hub order.
"""
from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Hashable, Iterable, Optional, Sequence, cast

from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

from chathub.counters import HubCounts, ProtocolCounts
from chathub.events import Event, Kind
from chathub.interfaces import IParticipant

if TYPE_CHECKING:
    from chathub.hub.users import User

#: participant -> [byte count, data, data, ...]: what one member is owed, in hub order
Held = dict[IParticipant, list[Any]]

log = Logger()

#: most events written as one blob: big enough to amortise the per-recipient cost, small
#: enough that one blob never eats a slow reader's whole send queue at once
MAX_BATCH = 32
#: inside a batching block, what one member is owed is written once it reaches this size
MAX_HELD_BYTES = 64 * 1024
#: recipient snapshots whose make-up by protocol is remembered for the delivered counts
COMPOSITIONS = 1024


#: the kinds counted as messages: delivered counts and delivery latency
_TEXT_KINDS = Kind.TEXT_KINDS


def deliver(
    events: Sequence[Event], recipients: Iterable[User], actor: Optional[User] = None,
    counts: Optional[HubCounts] = None, acting: Optional[IParticipant] = None, several: bool = False,
) -> None:
    """Send ``events`` to ``recipients`` (except ``actor``), encoding once per format key;
    ``counts`` is told how many text events each protocol's users were sent, and how long
    after receipt the last of them was written. ``several``: some user has several
    sessions (``[auth] multiclient``): each session gets the events, and of an ``actor``
    with several, each but ``acting`` (the one that acted, when it renders its own)."""
    encoded: dict[Hashable, bytes] = {}
    skipped = False  # the actor was among the recipients
    if several:
        skipped = _to_every_session(events, recipients, actor, acting, encoded, None)
    else:  # the one-session walk, as it was before several sessions existed
        for user in recipients:
            if user is actor:
                skipped = True
                continue
            participant = user.participant
            key = participant.format_key
            try:
                data = encoded[key]
            except KeyError:
                data = encoded[key] = _encode(participant, events)
            if data:
                try:
                    participant.send(data)
                except Exception:
                    log.failure("sending to {nick} failed", nick=user.nick)
    if counts is not None:
        times: list[float] = []
        if _count(counts, events, recipients, actor if skipped else None, times):
            counts.delivery_latency.observe_ages(time.time(), times)


def _count(
    counts: HubCounts, events: Sequence[Event], recipients: Iterable[User], skipped: Optional[User],
    times: list[float],
) -> int:
    """Count what one fan-out of ``events`` wrote: append the text events' receipt times to
    ``times`` (their latency is observed once they are written) and add them to the
    delivered counts of the protocols of ``recipients`` but ``skipped``; return how many.

    Once per batch of events, never per recipient: the recipients' make-up by protocol is
    worked out once per recipient snapshot (a room's ``recipients()`` tuple lives until its
    members change) and remembered for the last ``COMPOSITIONS`` of them. (Plain loops: a
    comprehension costs a call in Python 3.11.)

    Events that reach nobody (a cluster node's copy of a room whose members are all on
    other nodes, a room of the sender alone) count nothing: no delivery, no latency."""
    known = counts.compositions.get(id(recipients))
    if known is None or known[0] is not recipients:
        known = _composition(counts, recipients)
    if known[2] <= (skipped is not None):
        return 0
    texts = 0
    for event in events:
        if event.kind in _TEXT_KINDS:
            texts += 1
            times.append(event.time)
    if not texts:
        return 0
    for protocol, members in known[1]:
        protocol.delivered += texts * members
    if skipped is not None:  # the loop left it out; its protocol is in the make-up
        counts.protocols[skipped.participant.protocol].delivered -= texts
    return texts


def _composition(
    counts: HubCounts, recipients: Iterable[User]
) -> tuple[object, tuple[tuple[ProtocolCounts, int], ...], int]:
    """Work out (and remember) how many of ``recipients`` each protocol has, and in all."""
    members: dict[str, int] = {}
    total = 0
    for user in recipients:
        protocol = user.participant.protocol
        members[protocol] = members.get(protocol, 0) + 1
        total += 1
    if len(counts.compositions) >= COMPOSITIONS:
        counts.compositions.clear()  # snapshots of rooms whose members changed since
    # the snapshot is kept with its make-up, so its id is not reused meanwhile
    known = (recipients, tuple((counts.protocols[name], n) for name, n in members.items()), total)
    counts.compositions[id(recipients)] = known
    return known


def _collect(
    events: Sequence[Event], recipients: Iterable[User], actor: Optional[User], held: Held,
    acting: Optional[IParticipant] = None, several: bool = False,
) -> bool:
    """Like ``deliver``, but append each member's bytes to ``held[participant]``; True if
    ``actor`` was among the recipients (and so left out).

    The loop repeats ``deliver``'s on purpose: this is the hottest loop of the server (once
    per recipient per message), and sharing it through a generator or a callback would add
    a call per recipient. While some user has several sessions (rare) ``_to_every_session``
    walks the recipients instead, so the loop costs one-session users nothing for them.
    """
    encoded: dict[Hashable, bytes] = {}
    if several:
        return _to_every_session(events, recipients, actor, acting, encoded, held)
    skipped = False
    for user in recipients:
        if user is actor:
            skipped = True
            continue
        participant = user.participant
        key = participant.format_key
        try:
            data = encoded[key]
        except KeyError:
            data = encoded[key] = _encode(participant, events)
        if data:
            parts = held.get(participant)
            if parts is None:
                held[participant] = [len(data), data]
            else:
                parts.append(data)
                parts[0] += len(data)
                if parts[0] >= MAX_HELD_BYTES:
                    del held[participant]
                    _send(participant, parts)
    return skipped


def _to_every_session(
    events: Sequence[Event], recipients: Iterable[User], actor: Optional[User], acting: Optional[IParticipant],
    encoded: dict[Hashable, bytes], held: Optional[Held],
) -> bool:
    """``deliver``'s and ``_collect``'s walk while some user has several sessions: every
    session of every recipient; of ``actor``, those but ``acting``, rendered as its own.
    True if ``actor`` was among the recipients."""
    skipped = False
    for user in recipients:
        if user is actor:
            skipped = True
            if user.others:
                _to_sessions(user.sessions, acting, events, encoded, held, True)
            continue
        _to_sessions(user.sessions, None, events, encoded, held)
    return skipped


def _to_sessions(
    sessions: Sequence[IParticipant], skip: Optional[IParticipant], events: Sequence[Event],
    encoded: dict[Hashable, bytes], held: Optional[Held], own: bool = False,
) -> None:
    """The sessions of one user with several (``[auth] multiclient``), except ``skip``:
    each gets the bytes of its format, encoded once for all recipients like everyone's;
    sent now, or added to ``held`` inside a batching block. ``own``: the user caused the
    events, and a participant with an ``encode_own`` (a format whose private messages do
    not name their target) renders them as its own, once per format too."""
    for participant in sessions:
        if participant is skip:
            continue
        key = participant.format_key
        encode_own = getattr(participant, "encode_own", None) if own else None
        if encode_own is not None:
            key = (key, "own")
        try:
            data = encoded[key]
        except KeyError:
            data = encoded[key] = _encode(participant, events, encode_own is not None)
        if not data:
            continue
        if held is None:
            _send(participant, [len(data), data])
            continue
        parts = held.get(participant)
        if parts is None:
            held[participant] = [len(data), data]
        else:
            parts.append(data)
            parts[0] += len(data)
            if parts[0] >= MAX_HELD_BYTES:
                del held[participant]
                _send(participant, parts)


def _send(participant: IParticipant, parts: list[Any]) -> None:
    # parts: [byte count, data, data, ...]
    try:
        participant.send(parts[1] if len(parts) == 2 else b"".join(parts[1:]))
    except Exception:
        log.failure("sending to {participant} failed", participant=participant)


def _encode(participant: IParticipant, events: Sequence[Event], own: bool = False) -> bytes:
    # encode_own: an optional method of a participant (see _to_sessions)
    encode = cast(Any, participant).encode_own if own else participant.encode
    parts = []
    for event in events:
        try:
            data = encode(event)
        except Exception:
            log.failure("encoding {kind} {id} failed", kind=event.kind, id=event.id)
            continue
        if data:
            parts.append(data)
    return b"".join(parts)


class Fanout:
    """Delivers events, coalescing batchable ones within a ``batching()`` block.

    Consecutive batchable events from one sender to one recipient snapshot are encoded
    together (up to ``MAX_BATCH``); what each member is owed is then held, across
    senders and rooms, and written with one ``send`` per member at the end of the reactor
    turn, or as soon as anything else must go out first (``flush``), so every member
    still sees events in hub order.
    """

    __slots__ = (
        "_depth", "_events", "_recipients", "_actor", "_acting", "_held", "_clock", "_turn_flush", "_counts",
        "_written", "several",
    )

    def __init__(self, clock: Optional[IReactorTime] = None, counts: Optional[HubCounts] = None) -> None:
        """With ``clock`` (the reactor), what the outermost block leaves held is written at
        the end of the reactor turn (``callLater(0)``), so one member gets one write for
        everything owed from all the reads of that turn; without it, when the block ends."""
        self._clock = clock
        self._turn_flush: Optional[IDelayedCall] = None  # the pending end-of-turn flush
        self._depth = 0
        self._events: list[Event] = []
        self._recipients: Optional[Iterable[User]] = None
        self._actor: Optional[User] = None
        self._acting: Optional[IParticipant] = None  # the actor's acting session, if it has others
        self._held: Held = {}  # participant -> [byte count, data, ...], in hub order
        self._counts = counts
        #: the receipt times of the text events held: their delivery latency is measured
        #: when they are written
        self._written: list[float] = []
        #: users with several sessions now (``[auth] multiclient``; the hub counts them):
        #: while there are none, the walk over recipients is the one-session one
        self.several = 0

    def publish(
        self, event: Event, recipients: Iterable[User], actor: Optional[User] = None, batchable: bool = False,
        acting: Optional[IParticipant] = None,
    ) -> None:
        """Deliver ``event``; hold it for a joint write when batching allows. An ``actor``
        with several sessions gets it on each but ``acting`` (see ``deliver``)."""
        if batchable and self._depth:
            if (
                self._events
                and recipients is self._recipients
                and actor is self._actor
                and acting is self._acting
                and len(self._events) < MAX_BATCH
            ):
                self._events.append(event)
                return
            self._hold()
            self._events = [event]
            self._recipients = recipients
            self._actor = actor
            self._acting = acting
            return
        self.flush()
        deliver((event,), recipients, actor, self._counts, acting, self.several > 0)

    def _hold(self) -> None:
        """Encode the current run of events into what each member is owed."""
        if self._events:
            events, actor, acting = self._events, self._actor, self._acting
            recipients = cast("Iterable[User]", self._recipients)  # a run of events always has them
            self._events, self._recipients, self._actor, self._acting = [], None, None, None
            skipped = _collect(events, recipients, actor, self._held, acting, self.several > 0)
            if self._counts is not None:
                _count(self._counts, events, recipients, actor if skipped else None, self._written)

    def flush(self) -> None:
        """Write out everything held, one ``send`` per member."""
        self._hold()
        if self._held:
            held, self._held = self._held, {}
            for participant, parts in held.items():
                _send(participant, parts)
        if self._written:
            written, self._written = self._written, []
            assert self._counts is not None  # only filled with counts
            # one read of the clock for everything written now
            self._counts.delivery_latency.observe_ages(time.time(), written)

    def batching(self) -> "Fanout":
        """Context manager: hold batchable events while inside it; what the outermost
        block leaves held goes out at the end of the reactor turn (see ``__init__``).

        (The Fanout is its own context manager: entered for every read and every
        released event, a generator-based one cost more than the block's bookkeeping.)"""
        return self

    def __enter__(self) -> None:
        self._depth += 1

    def __exit__(self, *exc_info: object) -> None:
        self._depth -= 1
        if not self._depth:
            if self._clock is None:
                self.flush()
            elif self._turn_flush is None and (self._held or self._events):
                # reads later in this turn add to what is held; anything that must go out
                # before them (a reply, a non-chat event) calls flush() itself
                self._turn_flush = self._clock.callLater(0, self._end_of_turn)

    def _end_of_turn(self) -> None:
        self._turn_flush = None
        if not self._depth:
            self.flush()
