"""``ClusterRelay``: a node's events out to the other nodes, theirs in, each conversation in
its committed order, with PostgreSQL (the store) as the truth and the backplane as the
doorbell (Synapse's replication pattern).

Out: after each commit the store tells the relay the group it wrote, each event with its
positions (``((conversation, number), ...)``); the relay PUBLISHes the group as one message.
While the backplane is down nothing is published (nor queued): the rows are committed, and
the other nodes fetch them when they notice the gap.

In: each conversation is delivered in number order. A message's event at the next number is
delivered at once; one at or below what was delivered is a duplicate and dropped; one ahead
of the next waits, and if the gap is still open ``gap_wait`` seconds later the missing
numbers are read from the store (committed rows: a number is committed only after every
smaller one of its conversation). After the backplane reconnects, and every resync
interval (``IBackplane.on_resync``), the relay compares each conversation's head in the database
with what it delivered and fetches what it missed (a silent pub/sub drop, a Redis restart).

The first number a node hears of a conversation is where it starts: it fetches nothing
older (no local user could have been waiting for it); a smaller number that arrives after
it (committed before it, announced later) is delivered late, once. This node's own events are delivered
by the hub when they commit; the relay only counts them, so a fetch never delivers them again.

Every event, this node's and the others', is handed to ``admit`` at its place in the number
order before it is shown: the hub checks it again there (``chathub.hub.admission``), and
another node's event found void is not delivered.

What a node tracks is bounded by what it still needs: every resync tick (``on_resync``
without a reconnect) it compares with the database the heads of the conversations heard of
in the last ``RECENT_TICKS`` ticks (the latest ``SWEEP`` of them) and of the next ``SWEEP``
in turn, and forgets those idle for ``FORGET_TICKS`` ticks with nothing waiting that the hub
no longer wants (``wanted``: a private conversation with no party signed on here, say). One
heard of again starts afresh, as a first-heard one does: nobody here was waiting for what it
missed meanwhile. Without this, every private conversation ever numbered (each guest
connection's make new ones) stayed, and each tick asked the database for all their heads.
A room's order is wanted for as long as its name may be used again; an idle ended room
(``live``) is kept in brief, its delivered number only (``ended``, at most ``max_ended``),
compared with the database at a reconnect and ``SWEEP`` of them in turn each tick, and taken
up from there when it is met again.
"""
from __future__ import annotations

from collections import OrderedDict, deque
from contextlib import nullcontext
from itertools import chain
from typing import Any, Callable, ContextManager, Optional

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

from chathub.counters import LATENCY_BUCKETS, Histogram
from chathub.events import Event, Kind, Source
from chathub.hub.outbox import Outbox
from chathub.hub.roomclaims import ROOM_CLAIM
from chathub.interfaces import IBackplane
from chathub.names import is_room_name
from chathub.store.interfaces import IStore

#: ``((conversation key, number), ...)``: where one committed event sits
Positions = tuple[tuple[str, int], ...]

#: how many event ids of multi-conversation events are remembered to deliver them once
SEEN_EVENTS = 4096
#: most events in one published message: a committed group beyond it goes out in several
PUBLISH_MOST = 1000

#: how many senders' ``Source``s a relay keeps to give the events of the same sender one
#: (cleared when full: a cache of what the groups repeat, not a registry)
SOURCES_KEPT = 4096
#: between a source's fields in a group's items (``GroupForm``): no nick, user name, host,
#: account, protocol or session holds it, and a real name that does travels as a list
SOURCE_SEPARATOR = "\x00"

#: conversations a resync tick compares with the database, and looks at for forgetting
#: (in turn: a node tracking more compares each of them every few ticks; a reconnect, all)
SWEEP = 2000
#: resync ticks (``resync_interval`` each, 5 s by default) a conversation stays idle before
#: it may be forgotten
FORGET_TICKS = 60
#: a conversation an event of which came in the last this many ticks is compared every tick
RECENT_TICKS = 12

#: events held at most while the hub learns the rooms made while this node was cut off
#: (``hold_unknown_rooms``): what comes beyond it is fetched as a gap once the rooms are known
HELD_MOST = 100_000

#: a conversation's "head at the tick before" that makes its next periodic comparison read
#: whatever is missing at once (``start_at``: its state came another way, at a number)
READ_AT_ONCE = 2**63

#: the longest a gap waits for its doorbell message, however late they come (seconds)
MAX_WAIT = 5.0
#: rooms whose events wait at once for the room to be here (``_await_room``): past it, a
#: room first heard of is delivered at once, as before the wait
AWAITED_MOST = 1000
#: how many gap waits (``ClusterRelay.wait``) a room first heard of waits for the room to be
#: here: a RENAME behind a gap of its old name's order is read from the store after one
AWAIT_WAITS = 4
#: the longest a row of this node's own, found in a gap, waits for the store to tell the
#: relay of its commit before it is passed over (seconds; a commit is told of in milliseconds)
UNTOLD_WAIT = 10.0
#: an event older than this when its doorbell rings says nothing of the lag (seconds)
LAG_PLAUSIBLE = 60.0


class _Conversation:
    """Delivery state of one conversation on this node."""

    __slots__ = (
        "delivered", "ahead", "own_ahead", "timer", "fetching", "floor", "below", "holding", "unshown",
        "fetched_to", "releasing", "touched", "unseen", "untold",
    )

    def __init__(self, delivered: int, floor: int, touched: int) -> None:
        self.delivered = delivered  # every number up to this one was delivered (or was ours)
        self.touched = touched  # the relay's resync tick when an event of it last came
        #: the first number this node heard of the conversation, and the smaller ones that
        #: arrived after it (committed before it, announced later): delivered late, once
        self.floor = floor
        self.below: set[int] = set()
        self.holding = False  # the hub's deliveries are paused for this conversation's gap
        self.ahead: dict[int, Event] = {}  # other nodes' events not delivered yet
        #: this node's numbers beyond delivered + 1, each with its event and True when the
        #: hub's outbox holds its delivery under this conversation's key (``Outbox.pause``/``grant``)
        self.own_ahead: dict[int, tuple[bool, Event]] = {}
        #: own numbers counted as delivered whose outbox entry has not run yet: other nodes'
        #: later events wait for them (``shown``)
        self.unshown = 0
        #: every number up to this one that exists was fetched (or delivered): one missing
        #: from ``ahead`` and ``own_ahead`` was pruned by retention, and is passed over
        self.fetched_to = 0
        self.releasing = False
        self.timer: Optional[IDelayedCall] = None  # gap check
        self.fetching = False
        #: a room's order heard of first while the hub held no copy of the room: its making
        #: may have been lost on its way (``begun_unseen``); cleared when its state is taken
        self.unseen = False
        #: (number, since when) of a row of this node's own that a read of a gap found and
        #: the store has not told the relay of (``ClusterRelay._fetch``)
        self.untold: Optional[tuple[int, float]] = None

    def waits(self) -> bool:
        """Whether anything of it is still on its way: events waiting, this node's own not
        shown yet, the hub's deliveries held, a gap check or a fetch under way."""
        return bool(
            self.ahead or self.own_ahead or self.unshown or self.holding or self.fetching or self.releasing
            or self.timer is not None
        )

    def behind(self) -> bool:
        """Whether anything waits for the numbers delivered (``ClusterRelay._release`` has
        work): most conversations, most of the time, have nothing."""
        return bool(
            self.ahead or self.own_ahead or self.holding or self.timer is not None or self.fetched_to > self.delivered
        )


class GroupForm:
    """The relay's message for one committed group, and its reading.

    ``{"node": id, "group": [item, ...]}``, one flat tuple per event: ``((conv, seq), ...),
    id, time, kind, source, target, text, tags, data``. Positional, not the events' dict
    form (``Event.to_dict``): every node reads every event of every other node, and the
    dict form, decoded and built into a ``Source`` from keywords, cost 5.2 us an event
    against 1.7 us for a positional one with the backplane's MessagePack (rooms
    benchmark, 2 nodes: a tenth of a receiving node's samples). ``source`` is the
    sender's seven fields joined by NUL in one string (``account`` empty for none), and
    empty ``tags`` and ``data`` travel as nil: each string and each map MessagePack
    reads is a new object, and seven strings and two maps an event cost 2.5 us to write
    and read against 1.5 (or, where a field holds a NUL or the account is empty, the
    seven as a list). The senders of a busy room repeat, so each side keeps the sources
    it met (``SOURCES_KEPT``): the sender its joined form, the reader the ``Source``,
    shared by that sender's events. Nodes of one cluster run the same version of
    chathub (docs/cluster.md).
    """

    __slots__ = ("_sources", "_joined")

    def __init__(self) -> None:
        self._sources: dict[Any, Source] = {}
        #: id of a ``Source`` -> (it, kept so the id is not reused, its form on the wire)
        self._joined: dict[int, tuple[Source, Any]] = {}

    def _source_form(self, s: Source) -> Any:
        known = self._joined.get(id(s))
        if known is not None and known[0] is s:
            return known[1]
        fields = (s.nick, s.user, s.host, s.account, s.realname, s.protocol, s.session)
        if s.account == "" or any(SOURCE_SEPARATOR in f for f in fields if f):
            form: Any = fields
        else:
            form = SOURCE_SEPARATOR.join([f or "" for f in fields])
        if len(self._joined) >= SOURCES_KEPT:
            self._joined.clear()
        self._joined[id(s)] = (s, form)
        return form

    def message(self, node_id: str, group: list[tuple[Event, Positions]]) -> dict[str, Any]:
        """The backplane message of ``group`` (each event with its positions) from ``node_id``."""
        items = []
        source_form = self._source_form
        for event, positions in group:
            tags, data = event.tags, event.data
            items.append((
                positions, event.id, event.time, event.kind, source_form(event.source), event.target, event.text,
                (tags if type(tags) is dict else dict(tags)) if tags else None,
                (data if type(data) is dict else dict(data)) if data else None,
            ))
        return {"node": node_id, "group": items}

    def decode(self, items: list[Any]) -> list[tuple[Positions, Event]]:
        """The events of a message's ``group`` with their positions; ValueError (or
        TypeError) when it is not one."""
        sources = self._sources
        decoded = []
        for where, eid, t, kind, form, target, text, tags, data in items:
            if len(where) == 1:  # a chat message: numbered in its one conversation
                ((conv, seq),) = where
                if type(conv) is not str or type(seq) is not int:
                    raise ValueError("not a position")
                positions: Positions = ((conv, seq),)
            else:
                positions = tuple([(conv, seq) for conv, seq in where])
                for conv, seq in positions:
                    if type(conv) is not str or type(seq) is not int:
                        raise ValueError("not a position")
            if (tags is not None and type(tags) is not dict) or (data is not None and type(data) is not dict):
                raise ValueError("not a group item")
            source = sources.get(form) if type(form) is str else None
            if source is None:
                source = self._source(form)
            decoded.append((positions, Event(eid, t if type(t) is float else float(t), kind, source, target, text,
                                             tags, data)))
        return decoded

    def _source(self, form: Any) -> Source:
        """The ``Source`` of a source's form on the wire (``_source_form``), kept when joined."""
        if type(form) is str:
            fields: list[Any] = form.split(SOURCE_SEPARATOR)
            if len(fields) != 7:
                raise ValueError("not a source")
            fields[3] = fields[3] or None
        else:
            fields = list(form)
            if len(fields) != 7 or not all(type(f) is str for i, f in enumerate(fields) if i != 3) or (
                fields[3] is not None and type(fields[3]) is not str
            ):
                raise ValueError("not a source")
            return Source(*fields)
        source = Source(*fields)
        if len(self._sources) >= SOURCES_KEPT:
            self._sources.clear()
        self._sources[form] = source
        return source


def by_conversation(items: list[tuple[Positions, Event]]) -> list[tuple[Positions, Event]]:
    """A received group's items with the chat messages of each conversation brought
    together: in each run of chat messages numbered in one conversation each, those of a
    conversation follow its first, in their order; every other item (a JOIN, a QUIT, a
    mode: anything that may change who a message reaches) stays where it is, and nothing
    passes it. Only each conversation's own order is promised (its gaps delay it alone),
    and it is kept.

    A node's committed group holds its rooms' messages in the order they came, each room's
    scattered among the others'; delivered so, each message was a fan-out of its own. Brought
    together, a room's messages reach its members here as one run of the hub's fan-out
    (``Fanout.publish``: one walk over the members a run, not one a message): groups of 500
    over 100 rooms of 5 members here cost 4.68 us an event received, 3.22 after, against 2.65
    delivered directly (``bench/receive.py``). Where this node's own users talk in the same
    rooms, its own messages come between the other's and the runs stay short."""
    text_kinds = Kind.TEXT_KINDS
    ordered: list[tuple[Positions, Event]] = []
    runs: dict[str, list[tuple[Positions, Event]]] = {}
    for item in items:
        positions, event = item
        if len(positions) == 1 and event.kind in text_kinds:
            conv = positions[0][0]
            run = runs.get(conv)
            if run is None:
                runs[conv] = [item]
            else:
                run.append(item)
            continue
        for run in runs.values():
            ordered += run
        runs.clear()
        ordered.append(item)
    for run in runs.values():
        ordered += run
    return ordered


class ClusterRelay:
    """Publishes this node's committed groups and delivers other nodes' in order."""

    log = Logger()

    def __init__(
        self,
        store: IStore,
        backplane: IBackplane,
        deliver: Callable[[Event, str], object],
        clock: IReactorTime,
        gap_wait: float = 0.05,
        outbox: Optional[Outbox] = None,
        made_here: Callable[[str], bool] = lambda event_id: False,
        held_alone: Callable[[Event], bool] = lambda event: False,
        admit: Callable[[str, int, Event, bool], bool] = lambda conv, seq, event, own: True,
        wanted: Callable[[str], bool] = lambda conv: True,
        batching: Optional[Callable[[], ContextManager[object]]] = None,
        max_ahead: int = 10_000,
        fetch_limit: int = 1000,
        live: Callable[[str], bool] = lambda conv: True,
        max_ended: int = 100_000,
        deliver_again: Callable[[Event, str], object] = lambda event, conv: None,
        no_audience: Optional[Callable[[str], bool]] = None,
    ) -> None:
        """``deliver(event, conv)`` hands another node's event to the local hub, once, in
        order, with the conversation whose order reached it (of an event numbered in several
        rooms, the first); ``deliver_again(event, conv)`` such an event at its number in
        each of its other conversations, when that one's order reaches it (a JOIN numbered
        before it there may have come after the first).

        ``outbox`` is the local hub's: this node's own event waits there while another
        node's smaller number of its conversation is on its way, and another node's event
        waits here until the own events numbered before it were shown, so every node shows
        a conversation in its committed order. ``held_alone(event)`` says whether the hub
        put this node's ``event`` in the outbox under its conversation's key (a room's chat
        message: the ones the outbox can hold and tells the relay of); ``made_here(id)``
        whether an event id was made by this process (a fetch can read an own event
        committed a moment before the store told the relay).

        ``admit(conv, seq, event, own)`` is called for every event of each conversation, this
        node's (``own``) and the others', at its place in the number order, before the
        event is shown: False voids it (docs/cluster.md, "Checked at its number"); another
        node's voided event is not delivered, and the hub voids its own itself. It does not
        raise (a check that fails admits: ``ChatHub.admit``).

        ``wanted(conv)`` says whether this node still needs ``conv``'s order (for the
        forgetting of idle conversations; by default it keeps them all); ``live(conv)``
        whether a wanted one is not an ended room (every node holds a copy of every live
        room): an idle ended one is kept in brief (``ended``, at most ``max_ended``) instead
        of tracked.

        ``no_audience(conv)`` says whether another node's chat message of room ``conv``,
        next in its order, needs nothing of this node (``ChatHub.no_audience``): such a
        message's number is counted as delivered and its event is neither built nor handed
        over (``_pass_unheard``)."""
        self.store = store
        self.backplane = backplane
        self._outbox = outbox
        if outbox is not None:
            outbox.when_released(self.shown)
        self._made_here = made_here
        self._held_alone = held_alone
        self._admit = admit
        self._no_audience = no_audience
        self._wanted = wanted
        self._live = live
        #: idle ended rooms, oldest first: the number delivered up to, all a node needs to
        #: take up the room's order again where it left it (``_revive``; nothing idle waits,
        #: and after ``FORGET_TICKS`` nothing below it is still on its way). A room's order is
        #: kept for as long as its name may be used again; tracked in full, each such name
        #: cost about 600 bytes on every node, for ever. They are compared with the database
        #: at a reconnect and ``SWEEP`` of them in turn each tick, as tracked ones are
        self.ended: dict[str, int] = {}
        self.max_ended = max_ended
        self._ended_sweep: list[str] = []
        self._ended_swept = 0
        #: wrapped around the delivery of each received group (the hub's fan-out batching:
        #: a group reaches each member as one write, as a local committed group does)
        self._batching = batching or nullcontext
        self.deliver = deliver
        self.deliver_again = deliver_again
        self.clock = clock
        self.gap_wait = gap_wait
        #: how late other nodes' events arrive (receipt time minus the event's own time, a
        #: moving average): a node so busy that the doorbell's messages wait in its socket
        #: must not take every late one for a lost one and read it from the database too
        self.recent_lag = 0.0
        self.max_ahead = max_ahead  # buffered events per conversation before a fetch is forced
        self.fetch_limit = fetch_limit
        self.node_id: str = backplane.node_id
        self.conversations: dict[str, _Conversation] = {}
        #: resync ticks so far (each ``on_resync`` without a reconnect), for idleness
        self.tick = 0
        self._stopped = False  # ``stop``: nothing more is delivered, fetched or timed
        #: the conversations a tick looks at in turn, and how far the turn has come
        self._sweep: list[str] = []
        self._swept = 0
        #: the conversations heard of during this tick, and during each of the last ticks
        self._recent: list[str] = []
        self._recent_ticks: deque[list[str]] = deque(maxlen=RECENT_TICKS)
        #: conversation -> its head in the database at the last tick that compared it, where
        #: that head was past what this node had delivered (``resync``): read at its next
        #: comparison if still not delivered by then
        self._behind_at_tick: dict[str, int] = {}
        self._form = GroupForm()
        self._seen: OrderedDict[str, None] = OrderedDict()  # delivered multi-conversation events
        #: while the hub learns the rooms made while this node was cut off (``hold_unknown_rooms``):
        #: the events of each room this node has not heard of, by number, until it knows
        #: where that room's state stands; None otherwise
        self._unknown: Optional[dict[str, dict[int, Event]]] = None
        self._unknown_count = 0
        #: the rooms whose state the hub took meanwhile (``start_at``): what was held of
        #: them at or below that number is in it
        self._started: set[str] = set()
        #: room -> (its events by number, the timer of the wait's end): rooms first heard
        #: of while the hub holds no copy, by an event that does not make them (a rename's
        #: new name whose RENAME is behind a gap of the old name's order here), until the
        #: room is here or ``AWAIT_WAITS`` gap waits passed (``_await_room``)
        self._awaited: dict[str, tuple[dict[int, Event], IDelayedCall]] = {}
        #: counters, for tests and metrics
        self.published = 0
        self.received = 0
        self.duplicates = 0
        self.fetched = 0
        self.passed = 0  # chat messages of rooms with no audience here: counted, not read
        self.holds = 0
        self.forgotten = 0
        self.evicted = 0  # ended rooms forgotten past ``max_ended``
        #: seconds from an event's receipt on its node to its arrival here (read by /metrics)
        self.lag = Histogram(LATENCY_BUCKETS)

    # -- life cycle --------------------------------------------------------------------

    def start(self) -> None:
        """Listen to the store's commits and the backplane, whose ``on_resync`` (after a
        reconnect, and every resync interval) makes the relay compare heads."""
        self.store.when_committed(self._committed)
        self.backplane.subscribe(self._received)
        self.backplane.on_resync(self._resync)

    def stop(self) -> None:
        """Stop the gap timers, and take nothing more in: a commit told of after this, or a
        fetch answered after it, sets no timer that would outlive the node (the store and the
        backplane are stopped by their owners). Once: a second call does nothing."""
        if self._stopped:
            return
        self._stopped = True
        for _, timer in self._awaited.values():
            if timer.active():
                timer.cancel()
        self._awaited.clear()
        self.log.info(
            "cluster relay: published {published} groups, received {received}, dropped {duplicates} "
            "duplicates, fetched {fetched} missed events, passed {passed} with no audience here, "
            "held rooms {holds} times, lag {lag:.3f} s, "
            "tracking {tracking} conversations and {ended} ended rooms in brief ({forgotten} forgotten, "
            "{evicted} ended rooms past max_ended_rooms)",
            published=self.published, received=self.received, duplicates=self.duplicates,
            fetched=self.fetched, passed=self.passed, holds=self.holds, lag=self.recent_lag,
            tracking=len(self.conversations), ended=len(self.ended), forgotten=self.forgotten,
            evicted=self.evicted,
        )
        self.backplane.unsubscribe(self._received)
        for state in self.conversations.values():
            if state.timer is not None and state.timer.active():
                state.timer.cancel()
            state.timer = None

    # -- where a conversation stands -------------------------------------------------------

    def position(self, conv: str) -> Optional[int]:
        """The number up to which ``conv`` was delivered here (every smaller one too), or
        None when this node has heard of no event of it."""
        state = self.conversations.get(conv)
        if state is None:
            return self.ended.get(conv)
        return state.delivered

    def hold_unknown_rooms(self) -> None:
        """Hold the events of rooms this node has neither heard of nor holds (until
        ``release_unknown_rooms``): cut off from the doorbell, this node may have missed a
        room's making, and the hub asks the other nodes for the rooms in use. Without the
        hold such a room would start at the first number heard after the cut, and this
        node's copy would lack everything before it (its users could not see the room, and
        a JOIN here made it a second time)."""
        if self._unknown is None:
            self._unknown = {}
            self._unknown_count = 0

    def release_unknown_rooms(self) -> None:
        """Deliver what ``hold_unknown_rooms`` held, each room from where its state now
        stands (``start_at``: what is at or below it is in that state already), or from the
        first number held when none came."""
        held, self._unknown = self._unknown, None
        started, self._started = self._started, set()
        if not held:
            return
        with self._batching():
            for conv, events in held.items():
                for seq in sorted(events):
                    state = self.conversations.get(conv)
                    if conv in started and state is not None and seq <= state.delivered:
                        self.duplicates += 1  # in the state taken from the other node
                        continue
                    self._arrived(conv, seq, events[seq])

    def _hold_unknown(self, conv: str, seq: int, event: Event) -> bool:
        """Hold ``event`` of ``conv``, a room not heard of and not held here, while the hub
        learns the rooms (True); False when nothing is held (not a room, one the hub holds,
        or past the bound: what is not held comes again, or is fetched as a gap, once the
        room's order starts)."""
        unknown = self._unknown
        if unknown is None or not is_room_name(conv) or self._live(conv):
            return False
        events = unknown.get(conv)
        if events is None:
            if self._unknown_count >= HELD_MOST:
                return False  # a room first heard past the bound starts here, as before the hold
            events = unknown[conv] = {}
        if seq not in events and self._unknown_count < HELD_MOST:
            events[seq] = event
            self._unknown_count += 1
        # (past the bound, a held room keeps what it holds: the numbers above it come as a
        # gap, read from the store once the room starts)
        return True

    def _await_room(self, conv: str, seq: int, event: Event) -> bool:
        """Hold ``event`` of ``conv``, a room first heard of here, while the hub holds no copy
        of it (True; a JOIN that makes it is handed over at once, after what was held).
        Such a room is mostly a rename's new name, whose RENAME waits here behind a gap of
        the old name's order: delivered at once, its messages found no room and were shown
        to none of this node's members, and a NICK or QUIT numbered in it missed the
        members the late rename brought (a member left listed on one node only). Its
        events go on once another node's JOIN or RENAME made the room here
        (``_hand_over``), this node numbered one of its own, or ``AWAIT_WAITS`` gap waits
        passed (a room whose making was lost: as before the wait, that much later); False
        when nothing is held."""
        held = self._awaited.get(conv)
        if held is None:
            if not is_room_name(conv) or self._live(conv) or len(self._awaited) >= AWAITED_MOST:
                return False
            wait = min(MAX_WAIT, AWAIT_WAITS * self.wait)
            held = self._awaited[conv] = ({}, self.clock.callLater(wait, self._room_here, conv))
        events = held[0]
        events.setdefault(seq, event)
        if (event.kind == Kind.JOIN and event.data and ROOM_CLAIM in event.data) or len(events) >= self.max_ahead:
            self._room_here(conv)  # its making (with what came before it), or held to the bound
        return True

    def _room_here(self, conv: str) -> None:
        """Deliver what ``_await_room`` held of ``conv``, in number order, from its first."""
        held = self._awaited.pop(conv, None)
        if held is None or self._stopped:
            return
        events, timer = held
        if timer.active():
            timer.cancel()
        if conv not in self.conversations and self._revive(conv) is None:
            self._heard_first(conv, min(events))
        with self._batching():
            for seq in sorted(events):
                self._arrived(conv, seq, events[seq])

    def _heard_first(self, conv: str, seq: int) -> _Conversation:
        """Start tracking ``conv`` at ``seq``, the first number heard of it (or heard of
        again once it was forgotten)."""
        self.conversations[conv] = state = _Conversation(seq - 1, seq, self.tick)
        self._recent.append(conv)
        if is_room_name(conv) and not self._live(conv):
            state.unseen = True  # no copy here: its making may be what was lost
        return state

    def movable(self, conv: str, seq: int) -> bool:
        """Whether ``conv`` may start at ``seq`` (``start_at``): not delivered past it, and
        none of this node's own events of it on their way (their outbox entries wait for
        their numbers)."""
        state = self.conversations.get(conv)
        if state is None:
            at = self.ended.get(conv)
            return at is None or at <= seq
        return state.delivered <= seq and not (state.own_ahead or state.unshown or state.holding)

    def began_unseen(self, conv: str) -> bool:
        """Whether this node's order of room ``conv`` began at an event heard while the hub
        held no copy of the room (not at its making, nor taken from another node's state),
        and no making of it came since: its making may have been lost on its way."""
        state = self.conversations.get(conv)
        return state is not None and state.unseen

    def seen_making(self, conv: str) -> None:
        """A making of room ``conv`` reached this node: its copy is whole from there."""
        state = self.conversations.get(conv)
        if state is not None:
            state.unseen = False

    def start_at(self, conv: str, seq: int) -> None:
        """Deliver ``conv`` from ``seq + 1`` on: the state up to ``seq`` came another way (a
        room's state from another node, at start-up or after a cut); a number at or below
        it that comes later is a duplicate, and a gap above it is fetched as any gap is.
        A conversation tracked already moves there in place (a fetch under way, or events
        waiting above ``seq``, go on)."""
        state = self.conversations.get(conv)
        if state is None:
            state = self._revive(conv)
        if self._unknown is not None:
            self._started.add(conv)
        # what was committed after ``seq`` before this node listened is no message on its
        # way: the next tick reads it at once (``resync``)
        self._behind_at_tick[conv] = READ_AT_ONCE
        if state is None:
            self.conversations[conv] = _Conversation(seq, 0, self.tick)
            self._recent.append(conv)
            return
        state.unseen = False
        if state.delivered < seq:
            state.delivered = seq
            state.floor = 0  # a late number below it is in the state taken: a duplicate
            state.below.clear()
            for number in [n for n in state.ahead if n <= seq]:
                del state.ahead[number]
                self.duplicates += 1
            if state.behind():
                self._release(conv, state)  # what waited above it

    # -- out -----------------------------------------------------------------------------

    def _committed(self, group: list[tuple[Event, Positions]]) -> None:
        if self._stopped:
            return
        for event, positions in group:
            held = self._held_alone(event)
            for conv, seq in positions:
                self._own(conv, seq, held, event)
        if not self.backplane.connected:
            return  # committed: the others fetch it when they see the gap
        # one message per group, or per ``PUBLISH_MOST`` of a big one (a commit holds up to
        # 5,000 events: one message of megabytes would press on Redis's pub/sub buffers)
        for start in range(0, len(group), PUBLISH_MOST):
            self.backplane.publish(self._form.message(self.node_id, group[start : start + PUBLISH_MOST]))
            self.published += 1

    def _own(self, conv: str, seq: int, held: bool, event: Event) -> None:
        """This node committed number ``seq`` of ``conv`` (told before the outbox delivers
        it); ``held``: the outbox holds its delivery under ``conv`` and says when it ran."""
        if self._awaited and conv in self._awaited:
            self._room_here(conv)  # the room is here: this node numbered an event of it
        state = self.conversations.get(conv) or self._revive(conv)
        if state is None:
            if self._unknown is not None and conv in self._unknown:
                # this node made the room (again): what was held of an older one of the
                # name goes (its end stood at its number elsewhere, or the name was free)
                self._unknown_count -= len(self._unknown.pop(conv))
            self.conversations[conv] = state = _Conversation(seq, seq, self.tick)
            self._recent.append(conv)
            self._admit(conv, seq, event, True)
            state.unshown += held
            return
        if state.touched != self.tick:
            state.touched = self.tick
            self._recent.append(conv)
        if seq == state.delivered + 1:
            state.delivered = seq
            self._admit(conv, seq, event, True)
            if held:
                state.unshown += 1  # other nodes' next numbers wait until it is shown
                if state.holding and self._outbox is not None:
                    # its turn came: the pause is for later numbers. Its entry is settled
                    # (and the outbox drained) once the store has told this listener
                    self._outbox.grant(conv, drain=False)
            else:
                self._release(conv, state)
        elif seq > state.delivered:
            state.own_ahead[seq] = (held, event)
            if not state.holding and self._outbox is not None:
                state.holding = True
                self.holds += 1
                self._outbox.pause(conv)  # until the smaller numbers arrive (``_release``)
                # this node's events counted as delivered but not shown yet are not held by
                # the pause: parked behind it, they would wait for the numbers after them,
                # which wait for them to be shown (the rooms benchmark: a node stalled for
                # good, all its clients waiting for their own messages)
                for _ in range(state.unshown):
                    self._outbox.grant(conv)
            if state.timer is None:
                state.timer = self.clock.callLater(self.wait, self._gap_check, conv)

    def shown(self, conv: str) -> None:
        """The outbox delivered one of this node's events of ``conv`` (in number order)."""
        state = self.conversations.get(conv)
        if state is None or not state.unshown:
            return
        state.unshown -= 1
        if not state.unshown and not state.releasing and state.behind():
            # else nothing waits for it (a node's own message in a quiet room: most of them)
            self._release(conv, state)

    @property
    def wait(self) -> float:
        """How long a gap stays open before it is read from the store: ``gap_wait``, or
        twice the current lag when events come later than that (at most ``MAX_WAIT``)."""
        return min(max(self.gap_wait, 2 * self.recent_lag), MAX_WAIT)

    # -- in ------------------------------------------------------------------------------

    def _received(self, message: dict[str, Any]) -> None:
        if message.get("node") == self.node_id or "group" not in message or self._stopped:
            return  # our own echo, or not events (presence, for the hub)
        passed: dict[str, int] = {}
        newest = 0.0
        try:
            group = message["group"]
            if self._no_audience is not None:
                passed, group, newest = self._pass_unheard(group)
            items = self._form.decode(group)
        except Exception:
            self.log.failure("a malformed cluster message was dropped (its events are fetched from the store)")
            return
        self.received += 1
        if passed:
            self._passed(passed)
        if items or passed:
            # the newest event's age: how far this node's view trails the node that sent
            # it. Clocks of other machines may differ a little, which the floor (gap_wait)
            # and the ceiling (MAX_WAIT) of ``wait`` absorb; an age far past the ceiling is
            # a clock gone wrong (or a replay), not lag
            if items:
                newest = max(newest, max([event.time for _, event in items]))
            age = self.clock.seconds() - newest
            self.lag.observe(max(0.0, age))
            if 0.0 <= age <= LAG_PLAUSIBLE:
                self.recent_lag += (age - self.recent_lag) * 0.1
        if len(items) > 2:
            items = by_conversation(items)
        with self._batching():
            for positions, event in items:
                for conv, seq in positions:
                    self._arrived(conv, seq, event)

    def _pass_unheard(self, group: list[Any]) -> tuple[dict[str, int], list[Any], float]:
        """Split a received group's items: the chat messages of rooms that need nothing of
        this node (``no_audience``), each next in its room's order (after the ones passed
        before it in the group), with nothing of the room waiting here; and the rest, to
        decode and deliver as usual. Returns the last number passed in each room, the rest,
        and the newest time passed. Changes nothing (a malformed message is dropped whole);
        an item of a room before which another of the room stays in the rest is not passed,
        so what is passed never goes ahead of anything of its room."""
        conversations = self.conversations
        no_audience = self._no_audience
        assert no_audience is not None
        text_kinds = Kind.TEXT_KINDS
        passed: dict[str, int] = {}
        rest: list[Any] = []
        newest = 0.0
        for item in group:
            where = item[0]
            if item[3] in text_kinds and len(where) == 1:
                conv, seq = where[0]
                state = conversations.get(conv) if type(conv) is str else None
                if state is not None and type(seq) is int:
                    last = passed.get(conv)
                    if last is None and not state.unshown and not state.behind() and no_audience(conv):
                        last = state.delivered  # the room's first item of the group: next in order?
                    if last is not None and seq == last + 1:
                        passed[conv] = seq
                        newest = max(newest, float(item[2]))
                        continue
            rest.append(item)
        return passed, rest, newest

    def _passed(self, passed: dict[str, int]) -> None:
        """Count the numbers ``_pass_unheard`` passed as delivered."""
        conversations = self.conversations
        for conv, seq in passed.items():
            state = conversations[conv]
            self.passed += seq - state.delivered
            state.delivered = seq
            if state.touched != self.tick:
                state.touched = self.tick
                self._recent.append(conv)

    def _arrived(self, conv: str, seq: int, event: Event) -> None:
        state = self.conversations.get(conv) or self._revive(conv)
        if state is None:  # first heard of (or heard of again once forgotten): it starts here
            if self._unknown is not None and self._hold_unknown(conv, seq, event):
                return
            if self._await_room(conv, seq, event):
                return
            state = self._heard_first(conv, seq)
        elif state.touched != self.tick:
            state.touched = self.tick
            self._recent.append(conv)
        if seq < state.floor:
            # committed before the first number heard here, announced after it (another
            # node's join racing this node's first event in the room): late, but not lost
            if seq not in state.below and len(state.below) < self.max_ahead:
                state.below.add(seq)
                self._hand_over(event, conv)
            else:
                self.duplicates += 1
            return
        if seq <= state.delivered or seq in state.ahead or seq in state.own_ahead:
            self.duplicates += 1
            return
        if seq == state.delivered + 1 and not state.unshown:
            state.delivered = seq
            if self._admit(conv, seq, event, False):
                self._hand_over(event, conv)
            if state.behind():
                self._release(conv, state)  # what waited for it
            return
        state.ahead[seq] = event
        if seq == state.delivered + 1:
            return  # next, once this node's own events before it are shown (``shown``)
        if len(state.ahead) >= self.max_ahead:
            self._fetch(conv, state)
        elif state.timer is None:
            state.timer = self.clock.callLater(self.wait, self._gap_check, conv)

    def _release(self, conv: str, state: _Conversation) -> None:
        """Deliver what waited for the numbers now delivered, in number order: another
        node's event at once; one of this node's, by letting the outbox show it, and
        nothing after it before it was shown."""
        state.releasing = True
        try:
            while True:
                following = state.delivered + 1
                if following in state.own_ahead:
                    held, own = state.own_ahead.pop(following)
                    state.delivered = following
                    self._admit(conv, following, own, True)
                    if held and self._outbox is not None:
                        state.unshown += 1
                        self._outbox.grant(conv)  # shows it now, or once its commit is done
                elif following in state.ahead:
                    if state.unshown:
                        break  # after this node's own events before it are shown
                    event = state.ahead.pop(following)
                    state.delivered = following
                    if self._admit(conv, following, event, False):
                        self._hand_over(event, conv)
                elif following <= state.fetched_to:  # pruned
                    state.delivered = following
                else:
                    break
        finally:
            state.releasing = False
        if not state.ahead and not state.own_ahead and state.timer is not None:
            if state.timer.active():
                state.timer.cancel()
            state.timer = None
        if state.holding and not state.own_ahead:
            state.holding = False
            if self._outbox is not None:
                self._outbox.resume(conv)

    def _hand_over(self, event: Event, conv: str) -> None:
        """Deliver ``event`` to the hub once, even when it sits in several conversations."""
        if event.kind not in Kind.REDACTABLE_KINDS:
            # a chat message is numbered in its one conversation only (a room, a private
            # pair, a room's STATUSMSG audience), whose order delivers it once; a quit or a
            # nick change is numbered in each room it is shown in
            if event.id in self._seen:
                try:
                    self.deliver_again(event, conv)
                except Exception:
                    self.log.failure("applying another node's event in another of its rooms failed")
                return
            self._seen[event.id] = None
            if len(self._seen) > SEEN_EVENTS:
                self._seen.popitem(last=False)
        try:
            self.deliver(event, conv)
        except Exception:
            self.log.failure("delivering another node's event failed")
        if self._awaited and (event.kind == Kind.RENAME or event.kind == Kind.JOIN):
            for awaited in [c for c in self._awaited if self._live(c)]:
                self._room_here(awaited)  # renamed to that name (or made) by this event

    # -- gaps ---------------------------------------------------------------------------

    def _gap_check(self, conv: str) -> None:
        state = self.conversations.get(conv)
        if state is None or self._stopped:
            return
        state.timer = None
        if self._gap(state):
            self._fetch(conv, state)

    @staticmethod
    def _gap(state: _Conversation) -> bool:
        """Whether a number is missing below the highest one waiting (in ``ahead`` or
        ``own_ahead``). Events waiting in an unbroken run after ``delivered`` are no gap:
        they wait for this node's own earlier events to be shown (``unshown``), which the
        outbox reports. Taking them for a gap read every one of them from the store again,
        every ``wait`` while they waited (a node of the rooms benchmark whose own event
        stayed parked read 111,568 events it already held in one 25 s run)."""
        low = max(state.delivered, state.fetched_to)  # up to here, nothing is missing
        high = max(max(state.ahead, default=low), max(state.own_ahead, default=low))
        if high <= low:
            return False
        waiting = sum(1 for seq in state.ahead if seq > low) + sum(1 for seq in state.own_ahead if seq > low)
        return waiting < high - low

    def _never_told(self, conv: str, state: _Conversation, seq: int) -> bool:
        """Whether this node's own row ``seq`` of ``conv``, which a read of a gap found, has
        waited for the store to tell the relay of it longer than any commit takes
        (``UNTOLD_WAIT``): the store tells of a commit a moment after it, and a row it never
        tells of held the conversation, and the node's outbox with it, for good (a stall seen
        in a random two-node driver and in the rooms benchmark, its cause not found: the row
        is passed over, as a number pruned, and logged)."""
        now = self.clock.seconds()
        untold = state.untold
        if untold is None or untold[0] != seq:
            state.untold = (seq, now)
            return False
        if now - untold[1] < UNTOLD_WAIT:
            return False
        state.untold = None
        self.log.warn("number {seq} of {conv}, this node's own, was never told of by the store in {wait:g} s: "
                      "passed over", seq=seq, conv=conv, wait=UNTOLD_WAIT)
        return True

    def _fetch(self, conv: str, state: _Conversation, up_to: Optional[int] = None) -> Optional[Deferred]:
        """Read the numbers missing after ``delivered`` (up to the highest waiting one, or
        ``up_to``) from the store, and deliver them with what waited."""
        if state.fetching:
            return None
        high = up_to if up_to is not None else max(max(state.ahead, default=state.delivered),
                                                    max(state.own_ahead, default=state.delivered))
        if high <= state.delivered:
            return None
        state.fetching = True
        d = self.store.conversation_range(conv, state.delivered, high, self.fetch_limit)

        def fetched(rows: list[tuple[int, Event]]) -> None:
            with self._batching():
                deliver(rows)

        def deliver(rows: list[tuple[int, Event]]) -> None:
            state.fetching = False
            if self._stopped:
                return
            self.fetched += len(rows)
            # the rows are every committed number after ``delivered`` up to ``complete``:
            # ``high``, or the last row when the limit cut the answer short
            complete = high if len(rows) < self.fetch_limit else rows[-1][0]
            for seq, event in rows:
                if seq <= state.delivered or seq in state.own_ahead or seq in state.ahead:
                    continue
                if self._made_here(event.id):
                    if self._never_told(conv, state, seq):
                        continue  # passed over, as a pruned number
                    # this node's, committed a moment ago, and the store has not told the
                    # relay yet (``_own`` will): nothing after it is known complete
                    complete = seq - 1
                    break
                state.ahead[seq] = event
            state.fetched_to = max(state.fetched_to, complete)
            self._release(conv, state)
            if state.timer is None and self._gap(state):
                state.timer = self.clock.callLater(self.wait, self._gap_check, conv)

        def failed(failure: Any) -> None:
            state.fetching = False
            if self._stopped:
                return
            self.log.warn("fetching {conv}'s missed events failed ({error}); trying again", conv=conv,
                          error=failure.getErrorMessage())
            if state.timer is None:
                state.timer = self.clock.callLater(self.gap_wait * 10, self._gap_check, conv)

        d.addCallbacks(fetched, failed)
        return d

    def _resync(self, reconnected: bool) -> None:
        if reconnected:
            self.resync()  # anything may have been missed meanwhile: every conversation, at once
            return
        self.tick += 1
        self._recent_ticks.append(self._recent)
        self._recent = []
        due = self.sweep()
        # and the conversations heard of lately, the latest first, at most SWEEP of them
        heard: dict[str, None] = {}
        for conv in chain.from_iterable(reversed(convs) for convs in reversed(self._recent_ticks)):
            if len(heard) >= SWEEP:
                break
            if conv in self.conversations:
                heard[conv] = None
        # cut off from the doorbell, no message is on its way: what is missing is read at once
        self.resync(list(heard.keys() | set(due) | set(self._ended_share())), at_once=not self.backplane.connected)

    def sweep(self) -> list[str]:
        """The next ``SWEEP`` conversations in turn, to compare with the database; those of
        them idle for ``FORGET_TICKS`` ticks, with nothing waiting, that the hub no longer
        wants are forgotten instead."""
        if self._swept >= len(self._sweep):
            self._sweep, self._swept = list(self.conversations), 0  # a new turn
        turn = self._sweep[self._swept : self._swept + SWEEP]
        self._swept += len(turn)
        conversations, idle_since = self.conversations, self.tick - FORGET_TICKS
        due = []
        for conv in turn:
            state = conversations.get(conv)
            if state is None:
                continue  # forgotten (or started afresh) since the turn began
            if state.touched <= idle_since and not state.waits():
                if not self._wanted(conv):
                    del conversations[conv]
                    self._behind_at_tick.pop(conv, None)
                    self.forgotten += 1
                    continue
                if not self._live(conv):
                    del conversations[conv]
                    self._behind_at_tick.pop(conv, None)
                    self._keep_ended(conv, state)
                    continue
            due.append(conv)
        return due

    def _keep_ended(self, conv: str, state: _Conversation) -> None:
        """Keep idle ``conv``'s place in brief; past ``max_ended``, forget the oldest (one
        of those made again starts where this node first hears of it: docs/cluster.md)."""
        ended = self.ended
        while ended and len(ended) >= self.max_ended:
            del ended[next(iter(ended))]
            self.evicted += 1
        if self.max_ended > 0:
            ended[conv] = state.delivered
        else:
            self.evicted += 1

    def _revive(self, conv: str) -> Optional[_Conversation]:
        """Track ``conv`` again from where ``_keep_ended`` left it (None: not kept). Its
        floor is 0: a number at or below ``delivered`` that comes again is a duplicate."""
        delivered = self.ended.pop(conv, None)
        if delivered is None:
            return None
        state = self.conversations[conv] = _Conversation(delivered, 0, self.tick)
        self._recent.append(conv)
        return state

    def _ended_share(self) -> list[str]:
        """The next ``SWEEP`` ended rooms in turn, to compare with the database."""
        if self._ended_swept >= len(self._ended_sweep):
            self._ended_sweep, self._ended_swept = list(self.ended), 0
        turn = self._ended_sweep[self._ended_swept : self._ended_swept + SWEEP]
        self._ended_swept += len(turn)
        return [conv for conv in turn if conv in self.ended]

    def resync(self, conversations: Optional[list[str]] = None, at_once: bool = True) -> Optional[Deferred]:
        """Compare each conversation's head in the database (of ``conversations``; by
        default every one tracked) with what was delivered, and fetch what is missing (after
        a reconnect, and every ``resync_interval`` for the ``sweep``'s share).

        Not ``at_once`` (the periodic comparison), only what was already committed at the
        conversation's last comparison is read: the numbers up to the head seen then that
        are still not delivered, at least one interval after their commit, when their
        messages were lost (or stuck). In a busy cluster every room has numbers committed
        whose messages are on their way at any moment; reading up to the current head read
        each of them from the database a moment before its message came and was dropped
        as a duplicate (a node of two in the rooms benchmark, rooms apart: 42,420 events in
        25 s). What is read is an interval old: its messages, had they been coming, came
        long before (an earlier try, which read the numbers up to the current head a gap's
        ``wait`` later, could read rows a rename had moved meanwhile and pass over numbers
        whose messages were still to come: bench/README.md, seventeenth session). A lost
        message is read one or two intervals after its commit, not within one, unless a
        later one of its conversation shows the gap first (``gap_wait``)."""
        convs = [*self.conversations, *self.ended] if conversations is None else conversations
        if not convs:
            return None
        d = self.store.conversation_heads(convs)
        behind_at_tick = self._behind_at_tick

        def compare(heads: dict[str, int]) -> None:
            for conv, head in heads.items():
                state = self.conversations.get(conv)
                if state is None and head > self.ended.get(conv, head):
                    state = self._revive(conv)  # an ended room spoke again: take it up
                if state is None or head <= state.delivered:
                    behind_at_tick.pop(conv, None)
                    continue
                if at_once:
                    behind_at_tick.pop(conv, None)
                    self._fetch(conv, state, up_to=head)
                    continue
                earlier = behind_at_tick.get(conv)
                behind_at_tick[conv] = head
                if earlier is not None and min(earlier, head) > state.delivered:
                    self._fetch(conv, state, up_to=min(earlier, head))

        d.addCallbacks(compare, lambda f: self.log.warn("resync failed: {error}", error=f.getErrorMessage()))
        return d
