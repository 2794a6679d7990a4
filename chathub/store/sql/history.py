"""``HistoryStore``: the history domain of ``SqlStore``: appending events (group-committed),
room incarnations (``begin_room``), and the ``draft/chathistory`` queries.

An event is stored once (``events``: its JSON body) and listed in each conversation it
belongs to (``timeline``: conversation, seq, time in ms, kind); ``conversations`` names the
parties of private ones, ``room_epochs`` where each room's current incarnation starts.
"""
from __future__ import annotations

import json
from typing import Any, Callable, Collection, Iterable, NamedTuple, Optional, Sequence, cast

from twisted.internet import defer
from twisted.python.failure import Failure

from chathub.config.storage import HistoryConfig
from chathub.events import Event
from chathub.names import fold
from chathub.records import Ref
from chathub.store.history import (
    Conversation,
    centred_window,
    check_ref,
    conversation_for,
    conversations_of,
    peer_name,
    room_conversation,
    to_ms,
)
from chathub.store.interfaces import Notify, StorageError, UnknownReference
from chathub.store.sql.database import Cursor, SqlDatabase, deferred, placeholders

#: which kinds of event a query returns (None: all of them)
Kinds = Optional[Collection[str]]

#: a conversation's history starts after its room's latest incarnation began (``begin_room``);
#: uncorrelated, so the database computes it once and seeks the (conv, seq) index past it
IN_INCARNATION = "t.seq > COALESCE((SELECT r.after_seq FROM room_epochs r WHERE r.conv = ?), 0)"

#: rows per multi-row INSERT: 4 columns x 200 stays far below SQLite's 32,766 parameters
ROWS_PER_STATEMENT = 200


class _Bound(NamedTuple):
    """A resolved history reference: a message (``seq`` set) or a point in time."""

    ms: int
    seq: Optional[int]

    def after(self) -> tuple[str, int]:
        return ("t.seq > ?", self.seq) if self.seq is not None else ("t.ms > ?", self.ms)

    def before(self) -> tuple[str, int]:
        return ("t.seq < ?", self.seq) if self.seq is not None else ("t.ms < ?", self.ms)

    def precedes(self, other: "_Bound") -> bool:
        if self.ms != other.ms or self.seq is None or other.seq is None:
            return self.ms <= other.ms
        return self.seq < other.seq


#: one encoder for every event (json.dumps with options builds a new one per call)
_EVENT_JSON = json.JSONEncoder(separators=(",", ":"), ensure_ascii=True)


_quote = json.encoder.encode_basestring_ascii


def encode_event(event: Event) -> str:
    """The stored form of an event: its dict as ASCII JSON (safe for any database).

    The same text as ``_EVENT_JSON.encode(event.to_dict())``, assembled directly: every
    stored message passes here, and the generic encoder spent most of its time walking
    the nested dicts rather than quoting the strings.
    """
    s = event.source
    t = event.time
    return (
        f'{{"id":{_quote(event.id)},"time":{float.__repr__(t) if type(t) is float else _EVENT_JSON.encode(t)},'
        f'"kind":{_quote(event.kind)},"source":{{"nick":{_quote(s.nick)},"user":{_quote(s.user)},'
        f'"host":{_quote(s.host)},"account":{"null" if s.account is None else _quote(s.account)},'
        f'"realname":{_quote(s.realname)},"protocol":{_quote(s.protocol)},"session":{_quote(s.session)}}},'
        f'"target":{_quote(event.target)},"text":{_quote(event.text)},'
        f'"tags":{_EVENT_JSON.encode(dict(event.tags)) if event.tags else "{}"},'
        f'"data":{_EVENT_JSON.encode(dict(event.data)) if event.data else "{}"}}}'
    )


def decode_event(body: str) -> Event:
    """Inverse of ``encode_event``."""
    return Event.from_dict(json.loads(body))


def _fire(_: object, waiter: defer.Deferred[None]) -> None:
    waiter.callback(None)


class HistoryStore(SqlDatabase):
    """Events and the conversations they belong to."""

    def __init__(self, history: Optional[HistoryConfig] = None, reactor: Any = None) -> None:
        super().__init__(history, reactor)
        #: room conversation -> fires once its latest ``begin_room`` is committed: a query
        #: for the room waits for it, or it could read the old room's history meanwhile
        self._beginning: dict[str, defer.Deferred[None]] = {}

    # -- writing ----------------------------------------------------------------------

    def append(
        self, event: Event, rooms: Sequence[str] = (), notify: Optional[Notify] = None
    ) -> Optional[defer.Deferred[None]]:
        """Queue ``event``; fires (or calls ``notify``) once it is committed (group commit)."""
        if self._writer is None:
            failure = Failure(StorageError("storage is not open"))
            if notify is None:
                return defer.fail(failure)
            notify(failure)
            return None
        if self.history.enabled:
            conversations = conversations_of(event, rooms, private=self.history.private)
        else:
            conversations = []
        return self._writer.append((event, conversations), bool(conversations), notify)

    def begin_room(self, name: str) -> defer.Deferred[None]:
        """Start a new incarnation of room ``name``: its history queries see only what is
        appended from now on."""
        if self._writer is None:
            return defer.fail(StorageError("storage is not open"))
        conv = room_conversation(name)
        # queued among the appends (event None), so it falls exactly between the events
        # the hub stored before the room was made and those after
        d = self._writer.append((None, [conv]))
        assert d is not None  # no notify: a Deferred
        begun = self._beginning[conv.key] = defer.Deferred()

        def committed(result: object) -> object:
            # writes commit in order: the latest begin of a room settles every earlier one
            if self._beginning.get(conv.key) is begun:
                del self._beginning[conv.key]
            begun.callback(None)
            return result

        return d.addBoth(committed)

    def _once_begun(self, convs: Iterable[str]) -> Optional[defer.Deferred[list[None]]]:
        """A Deferred that fires once no room among ``convs`` has a ``begin_room`` still
        being committed, or None when none has."""
        pending = [self._beginning[c] for c in convs if c in self._beginning]
        if not pending:
            return None
        waiters = []
        for begun in pending:
            waiter: defer.Deferred[None] = defer.Deferred()
            begun.addCallback(_fire, waiter)
            waiters.append(waiter)
        return defer.gatherResults(waiters)

    def _write_events(self, txn: Cursor, items: list[tuple[Optional[Event], list[Conversation]]]) -> None:
        start = 0
        for i, (event, convs) in enumerate(items):
            if event is None:  # a room begins (begin_room): after what came before it
                if i > start:
                    self._write_rows(txn, cast("list[tuple[Event, list[Conversation]]]", items[start:i]))
                self._begin_incarnation(txn, convs[0].key)
                start = i + 1
        if start < len(items):
            self._write_rows(txn, cast("list[tuple[Event, list[Conversation]]]", items[start:] if start else items))

    def _begin_incarnation(self, txn: Cursor, conv: str) -> None:
        txn.execute("SELECT COALESCE(MAX(seq), 0) FROM events")
        (after_seq,) = txn.fetchone() or (0,)
        txn.execute(
            self._q(
                "INSERT INTO room_epochs (conv, after_seq) VALUES (?, ?) "
                "ON CONFLICT (conv) DO UPDATE SET after_seq = excluded.after_seq"
            ),
            (conv, int(after_seq)),
        )

    def _write_rows(self, txn: Cursor, items: list[tuple[Event, list[Conversation]]]) -> None:
        # A few multi-row statements for the whole batch, not one per event: on SQLite each
        # statement step hands the GIL to the reactor thread and back, and on PostgreSQL it
        # is a round trip. The timeline finds each event's seq by its msgid inside the
        # database; an event stored already (a retried batch, another node's copy) is
        # skipped by every statement, its timeline rows being there.
        rows: list[tuple[Any, ...]] = []
        timeline: list[tuple[Any, ...]] = []
        conversations: dict[str, Conversation] = {}
        for event, convs in items:
            if not convs:
                continue
            eid, at, kind = event.id, event.time, event.kind
            rows.append((eid, at, kind, encode_event(event)))
            ms = to_ms(at)
            for conv in convs:
                timeline.append((conv.key, ms, kind, eid))
                conversations[conv.key] = conv
        if not rows:
            return
        self._insert_rows(
            txn, "INSERT INTO events (msgid, at, kind, body) VALUES {rows} ON CONFLICT (msgid) DO NOTHING", rows
        )
        self._insert_rows(
            txn,
            "INSERT INTO timeline (conv, seq, ms, kind) "
            "SELECT v.column1, e.seq, v.column2, v.column3 FROM (VALUES {rows}) AS v "
            "JOIN events e ON e.msgid = v.column4 WHERE true ON CONFLICT DO NOTHING",
            timeline,
        )
        self._insert_rows(
            txn,
            "INSERT INTO conversations (conv, peer_a, peer_b) VALUES {rows} ON CONFLICT (conv) DO NOTHING",
            [(c.key, c.peer_a, c.peer_b) for c in conversations.values()],
        )

    def _insert_rows(self, txn: Cursor, template: str, rows: list[tuple[Any, ...]]) -> None:
        """Run ``template`` with ``{rows}`` as a VALUES list, ``ROWS_PER_STATEMENT`` rows at a time."""
        width = len(rows[0])
        row = "(" + placeholders(width) + ")"
        for start in range(0, len(rows), ROWS_PER_STATEMENT):
            chunk = rows[start : start + ROWS_PER_STATEMENT]
            # a full chunk always has the same text, so the driver's statement cache keeps it
            txn.execute(
                self._q(template.format(rows=", ".join([row] * len(chunk)))),
                [value for r in chunk for value in r],
            )

    # -- queries ---------------------------------------------------------------------

    def _select(
        self,
        txn: Cursor,
        conv: str,
        conds: Iterable[tuple[str, Any]],
        kinds: Optional[Collection[str]],
        descending: bool,
        limit: int,
    ) -> list[Event]:
        where = ["t.conv = ?", IN_INCARNATION]
        params: list[Any] = [conv, conv]
        for cond, value in conds:
            where.append(cond)
            params.append(value)
        if kinds is not None:
            listed = sorted(kinds)
            where.append(f"t.kind IN ({placeholders(len(listed))})")
            params.extend(listed)
        params.append(limit)
        txn.execute(
            self._q(
                "SELECT e.body FROM timeline t JOIN events e ON e.seq = t.seq "
                f"WHERE {' AND '.join(where)} ORDER BY t.seq {'DESC' if descending else 'ASC'} LIMIT ?"
            ),
            params,
        )
        events = [decode_event(row[0]) for row in txn.fetchall()]
        if descending:
            events.reverse()
        return events

    def _bound(self, txn: Cursor, conv: str, ref: Ref) -> _Bound:
        kind, value = check_ref(ref)
        if kind == "timestamp":
            return _Bound(to_ms(float(value)), None)
        txn.execute(
            self._q(
                "SELECT t.seq, t.ms FROM events e JOIN timeline t ON t.seq = e.seq "
                f"WHERE e.msgid = ? AND t.conv = ? AND {IN_INCARNATION}"
            ),
            (value, conv, conv),
        )
        row = txn.fetchone()
        if row is None:
            raise UnknownReference(str(value))
        return _Bound(int(row[1]), int(row[0]))

    def _history(self, fn: Callable[..., Any], viewer: str, target: str, limit: int, *args: Any) -> defer.Deferred[Any]:
        if limit <= 0:
            return defer.succeed([])
        conv = conversation_for(fold(viewer), target).key
        begun = self._once_begun((conv,))
        if begun is not None:
            return begun.addCallback(lambda _: self._read(fn, conv, limit, *args))
        return self._read(fn, conv, limit, *args)

    @deferred
    def latest(
        self, viewer: str, target: str, after_ref: Optional[Ref] = None, limit: int = 50, kinds: Kinds = None
    ) -> defer.Deferred[list[Event]]:
        """The newest ``limit`` events, after ``after_ref`` (exclusive) when given."""
        if after_ref is not None:
            check_ref(after_ref)
        return self._history(self._latest, viewer, target, limit, after_ref, kinds)

    def _latest(self, txn: Cursor, conv: str, limit: int, after_ref: Optional[Ref], kinds: Kinds) -> list[Event]:
        conds = [] if after_ref is None else [self._bound(txn, conv, after_ref).after()]
        return self._select(txn, conv, conds, kinds, True, limit)

    @deferred
    def before(
        self, viewer: str, target: str, ref: Ref, limit: int = 50, kinds: Kinds = None
    ) -> defer.Deferred[list[Event]]:
        """The ``limit`` events just before ``ref`` (exclusive), oldest first."""
        check_ref(ref)
        return self._history(self._before, viewer, target, limit, ref, kinds)

    def _before(self, txn: Cursor, conv: str, limit: int, ref: Ref, kinds: Kinds) -> list[Event]:
        return self._select(txn, conv, [self._bound(txn, conv, ref).before()], kinds, True, limit)

    @deferred
    def after(
        self, viewer: str, target: str, ref: Ref, limit: int = 50, kinds: Kinds = None
    ) -> defer.Deferred[list[Event]]:
        """The ``limit`` events just after ``ref`` (exclusive)."""
        check_ref(ref)
        return self._history(self._after, viewer, target, limit, ref, kinds)

    def _after(self, txn: Cursor, conv: str, limit: int, ref: Ref, kinds: Kinds) -> list[Event]:
        return self._select(txn, conv, [self._bound(txn, conv, ref).after()], kinds, False, limit)

    @deferred
    def around(
        self, viewer: str, target: str, ref: Ref, limit: int = 50, kinds: Kinds = None
    ) -> defer.Deferred[list[Event]]:
        """Up to ``limit`` events centred on ``ref``; a msgid reference includes its message."""
        check_ref(ref)
        return self._history(self._around, viewer, target, limit, ref, kinds)

    def _around(self, txn: Cursor, conv: str, limit: int, ref: Ref, kinds: Kinds) -> list[Event]:
        bound = self._bound(txn, conv, ref)
        earlier = self._select(txn, conv, [bound.before()], kinds, True, limit)
        if bound.seq is not None:
            itself = self._select(txn, conv, [("t.seq = ?", bound.seq)], kinds, False, 1)
            later = self._select(txn, conv, [bound.after()], kinds, False, limit)
            items = earlier + itself + later
            return centred_window(items, len(earlier), limit, pivot_is_item=bool(itself))
        later = self._select(txn, conv, [("t.ms >= ?", bound.ms)], kinds, False, limit)
        return centred_window(earlier + later, len(earlier), limit, pivot_is_item=False)

    @deferred
    def between(
        self, viewer: str, target: str, ref1: Ref, ref2: Ref, limit: int = 50, kinds: Kinds = None
    ) -> defer.Deferred[list[Event]]:
        """Up to ``limit`` events strictly between two references, counted from ``ref1``."""
        check_ref(ref1)
        check_ref(ref2)
        return self._history(self._between, viewer, target, limit, ref1, ref2, kinds)

    def _between(self, txn: Cursor, conv: str, limit: int, ref1: Ref, ref2: Ref, kinds: Kinds) -> list[Event]:
        first, second = self._bound(txn, conv, ref1), self._bound(txn, conv, ref2)
        if first.precedes(second):
            return self._select(txn, conv, [first.after(), second.before()], kinds, False, limit)
        return self._select(txn, conv, [first.before(), second.after()], kinds, True, limit)

    @deferred
    def targets(
        self,
        viewer: str,
        start_time: float,
        end_time: float,
        limit: int = 50,
        rooms: Sequence[str] = (),
        kinds: Kinds = None,
    ) -> defer.Deferred[list[tuple[str, float]]]:
        """Conversations with events strictly between two times: ``[(name, latest_time)]``.

        Counted from ``start_time`` (which may be the later bound), returned oldest first.
        """
        if limit <= 0:
            return defer.succeed([])
        room_names = {fold(r): r for r in rooms}
        args = (fold(viewer), to_ms(start_time), to_ms(end_time), limit, room_names, kinds)
        begun = self._once_begun(room_names)
        if begun is not None:
            return begun.addCallback(lambda _: self._read(self._targets, *args))
        return self._read(self._targets, *args)

    def _targets(
        self, txn: Cursor, viewer: str, start_ms: int, end_ms: int, limit: int, room_names: dict[str, str], kinds: Kinds
    ) -> list[tuple[str, float]]:
        low, high = sorted((start_ms, end_ms))
        where = ["t.ms > ?", "t.ms < ?"]
        params: list[Any] = [low, high]
        who = "(c.peer_b IS NOT NULL AND (c.peer_a = ? OR c.peer_b = ?))"
        params += [viewer, viewer]
        if room_names:
            who = f"({who} OR t.conv IN ({placeholders(len(room_names))}))"
            params += sorted(room_names)
        where.append(who)
        if kinds is not None:
            listed = sorted(kinds)
            where.append(f"t.kind IN ({placeholders(len(listed))})")
            params += listed
        order = "ASC" if start_ms <= end_ms else "DESC"
        params.append(limit)
        txn.execute(
            self._q(
                "SELECT t.conv, c.peer_b, MAX(t.ms) AS latest, MAX(t.seq) AS last_seq "
                "FROM timeline t JOIN conversations c ON c.conv = t.conv "
                "LEFT JOIN room_epochs r ON r.conv = t.conv "
                f"WHERE {' AND '.join(where)} AND t.seq > COALESCE(r.after_seq, 0) "
                "GROUP BY t.conv, c.peer_b "
                f"ORDER BY latest {order}, t.conv {order} LIMIT ?"
            ),
            params,
        )
        rows = txn.fetchall()
        private_seqs = [row[3] for row in rows if row[1] is not None]
        last_events: dict[int, Event] = {}
        if private_seqs:
            txn.execute(
                self._q(f"SELECT seq, body FROM events WHERE seq IN ({placeholders(len(private_seqs))})"),
                private_seqs,
            )
            last_events = {seq: decode_event(body) for seq, body in txn.fetchall()}
        found: list[tuple[str, float]] = []
        for conv, peer_b, latest, last_seq in rows:
            if peer_b is None:
                name = room_names.get(conv, conv)
            else:
                name = peer_name(last_events[last_seq], viewer)
            found.append((name, int(latest) / 1000.0))
        found.sort(key=lambda pair: (pair[1], fold(pair[0])))
        return found
