"""``HistoryStore``: the history domain of ``SqlStore``: appending events (group-committed),
room incarnations (``begin_room``), and the ``draft/chathistory`` queries.

An event has one row in each conversation it belongs to (``conversation_events``: the
conversation, its number there, msgid, time in ms, kind and JSON body): a room message is
one row. ``conversations`` names the parties of private conversations and holds each
conversation's last number (``last_seq``), taken under its row lock in the writer's
transaction, so numbers are committed in order whichever node writes them;
``room_incarnations`` says where each room's current incarnation starts.
"""
from __future__ import annotations

import json
from typing import Any, Callable, Collection, Iterable, Mapping, Optional, Sequence

from twisted.internet import defer
from twisted.python.failure import Failure

from chathub.config.storage import HistoryConfig
from chathub.events import REDACTED, Event, Kind, redacted
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
#: uncorrelated, so the database computes it once and seeks the (conv, conv_seq) key past it
IN_INCARNATION = (
    "t.conv_seq > COALESCE((SELECT r.after_conv_seq FROM room_incarnations r WHERE r.conv = ?), 0)"
)

#: rows per multi-row statement: 6 columns x 200 stays far below SQLite's 32,766 parameters
ROWS_PER_STATEMENT = 200

#: where a committed event sits: ``((conversation key, number there), ...)``
Positions = tuple[tuple[str, int], ...]


#: conversations remembered as having a committed head row (``HistoryStore._known_conversations``);
#: past this many, the others' groups are written statement by statement, as before
MAX_KNOWN_CONVERSATIONS = 100_000

#: a group of events in one PostgreSQL statement (``HistoryStore._write_at_once``). Parameters:
#: the group's conversation keys (sorted: the locking order), then one array entry per row
#: (an event in one of its conversations), in the group's order: conversation, the event's
#: index in the group, msgid, ms, kind, body. ``locked`` takes the head rows' locks in key
#: order and reads their latest ``last_seq`` and ``last_ms`` (READ COMMITTED gives the
#: version committed by the writer it waited for); ``fresh`` leaves out events stored
#: already (a retried group whose commit landed); each row is numbered after its head in
#: the group's order and stored with the latest time so far (never before its head's:
#: ``_write_rows``), the heads move by the rows they got, and the rows are inserted.
#: Answers (index, conversation, number) per row inserted.
WRITE_AT_ONCE = """
WITH locked AS MATERIALIZED (
    SELECT conv, last_seq, last_ms FROM conversations WHERE conv = ANY(%b::text[]) ORDER BY conv FOR UPDATE
), fresh AS MATERIALIZED (
    SELECT v.* FROM unnest(%b::text[], %b::int[], %b::text[], %b::bigint[], %b::text[], %b::text[])
        WITH ORDINALITY AS v(conv, item, msgid, ms, kind, body, ord)
    WHERE NOT EXISTS (SELECT 1 FROM conversation_events e WHERE e.msgid = v.msgid)
), numbered AS MATERIALIZED (
    SELECT f.conv, f.item, f.msgid, f.kind, f.body, f.ord,
           l.last_seq + row_number() OVER (PARTITION BY f.conv ORDER BY f.ord) AS seq,
           GREATEST(l.last_ms, max(f.ms) OVER (PARTITION BY f.conv ORDER BY f.ord)) AS ms
    FROM fresh f JOIN locked l ON l.conv = f.conv
), heads AS (
    UPDATE conversations c SET last_seq = n.top, last_ms = n.top_ms
    FROM (SELECT conv, max(seq) AS top, max(ms) AS top_ms FROM numbered GROUP BY conv) n
    WHERE c.conv = n.conv
), rows AS (
    INSERT INTO conversation_events (conv, conv_seq, msgid, ms, kind, body)
    SELECT conv, seq, msgid, ms, kind, body FROM numbered
)
SELECT item, conv, seq FROM numbered ORDER BY ord
"""


class _Bound:
    """A resolved history reference: a message (``seq``, its number in the conversation)
    or a point in time (``ms``). A conversation's stored times never decrease with its
    numbers (``_write_rows``), so a time is a place in the numbering, found when a query
    needs it (``find``: a binary search, ``HistoryStore._first_at``), and every query
    reads the (conv, conv_seq) key."""

    __slots__ = ("ms", "seq", "_find", "_found")

    def __init__(self, ms: int, seq: Optional[int], find: Optional[Callable[[int], int]] = None) -> None:
        self.ms = ms
        self.seq = seq
        self._find = find
        self._found: dict[int, int] = {}

    def _first(self, ms: int) -> int:
        """The first number stored at millisecond ``ms`` or later."""
        found = self._found.get(ms)
        if found is None:
            assert self._find is not None  # a time reference
            found = self._found[ms] = self._find(ms)
        return found

    def after(self) -> tuple[str, int]:
        return ("t.conv_seq > ?", self.seq) if self.seq is not None else ("t.conv_seq >= ?", self._first(self.ms + 1))

    def before(self) -> tuple[str, int]:
        return ("t.conv_seq < ?", self.seq) if self.seq is not None else ("t.conv_seq < ?", self._first(self.ms))

    def from_time(self) -> tuple[str, int]:
        """What is at this point in time or later (a time reference of ``around``)."""
        return ("t.conv_seq >= ?", self._first(self.ms))

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
        f'"data":{_encode_data(event.data) if event.data else "{}"}}}'
    )


def _encode_data(data: Mapping[str, Any]) -> str:
    """``_EVENT_JSON.encode(dict(data))``, assembled directly when every value is a string,
    a whole number, a boolean or None: in a cluster every room message carries such a dict
    (``chathub.hub.admission``: its node's position, what let its sender speak)."""
    parts = []
    for key, value in data.items():
        kind = type(value)
        if type(key) is not str:
            return _EVENT_JSON.encode(dict(data))
        if kind is int:
            parts.append(f"{_quote(key)}:{int.__repr__(value)}")
        elif kind is str:
            parts.append(f"{_quote(key)}:{_quote(value)}")
        elif value is True or value is False or value is None:
            parts.append(f"{_quote(key)}:{'true' if value is True else 'false' if value is False else 'null'}")
        else:
            return _EVENT_JSON.encode(dict(data))
    return "{" + ",".join(parts) + "}"


def decode_event(body: str) -> Event:
    """Inverse of ``encode_event``."""
    return Event.from_dict(json.loads(body))


def _fire(_: object, waiter: defer.Deferred[None]) -> None:
    waiter.callback(None)


class HistoryStore(SqlDatabase):
    """Events and the conversations they belong to."""

    def __init__(self, history: Optional[HistoryConfig] = None, reactor: Any = None) -> None:
        super().__init__(history, reactor)
        #: room conversation -> fires once its latest ``begin_room`` or ``void_events`` is
        #: committed: a query for the room waits for it, or it could read the old room's
        #: history (or a void event) meanwhile
        self._rewriting: dict[str, defer.Deferred[None]] = {}
        #: told each committed group of events (``when_committed``)
        self._group_listeners: list[Callable[[list[tuple[Event, Positions]]], object]] = []
        #: conversations whose head row is committed (rows of ``conversations`` are never
        #: deleted): a group of only these is written by one statement (``_write_at_once``)
        self._known_conversations: set[str] = set()

    def when_committed(self, listener: Callable[[list[tuple[Event, Positions]]], object]) -> None:
        """Call ``listener(group)`` after each commit of appended events, in commit order:
        ``group`` lists each event written by that transaction with its ``Positions``
        (what a cluster node publishes, one message per group). Events stored already
        (a retry of a commit that landed, its answer lost) are listed with the numbers
        they were stored at (``_stored_positions``)."""
        self._group_listeners.append(listener)

    def _committed_batch(self, items: list[Any], result: Any) -> None:
        if self.array_parameters and len(self._known_conversations) < MAX_KNOWN_CONVERSATIONS:
            self._known_conversations.update(conv.key for _event, convs in items for conv in convs)
        if not self._group_listeners or not result:
            return
        # ``_write_events`` answers one entry per item
        group = [(item[0], positions) for item, positions in zip(items, result, strict=True) if positions]
        if group:
            for listener in self._group_listeners:
                listener(group)

    @deferred
    def conversation_heads(self, convs: Sequence[str]) -> defer.Deferred[dict[str, int]]:
        """``{conversation key: last committed number}`` for those of ``convs`` that have
        one (a node compares them with what it delivered, to find what it missed)."""
        keys = sorted(set(convs))
        return self._read(self._heads, keys)

    def _heads(self, txn: Cursor, keys: list[str]) -> dict[str, int]:
        return {conv: head[0] for conv, head in self._read_heads(txn, keys).items()}

    @deferred
    def conversation_range(
        self, conv: str, after_seq: int, up_to: int, limit: int = 1000
    ) -> defer.Deferred[list[tuple[int, Event]]]:
        """Events of conversation ``conv`` numbered after ``after_seq`` up to ``up_to``
        (inclusive), oldest first, at most ``limit``: ``[(number, event)]``. Numbers
        missing from it were pruned by retention, hold another room's history that a rename
        moved there, or never held an event."""
        return self._read(self._range, conv, int(after_seq), int(up_to), int(limit))

    def _range(self, txn: Cursor, conv: str, after_seq: int, up_to: int, limit: int) -> list[tuple[int, Event]]:
        # not the numbers a rename moved another room's history to (``moved_history``): a
        # node that had numbered an earlier room of the name read them as this room's new
        # events, showed them again, and took one of its own among them (a quit, numbered
        # in each room) for one the store had not told it of yet: it waited for that for
        # good, and its outbox with it (every reply of the node stopped)
        txn.execute(
            self._q(
                "SELECT e.conv_seq, e.body FROM conversation_events e WHERE e.conv = ? AND e.conv_seq > ? "
                "AND e.conv_seq <= ? AND NOT EXISTS (SELECT 1 FROM moved_history m WHERE m.conv = e.conv "
                "AND e.conv_seq BETWEEN m.first_seq AND m.last_seq) ORDER BY e.conv_seq LIMIT ?"
            ),
            (conv, after_seq, up_to, limit),
        )
        return [(int(seq), decode_event(body)) for seq, body in txn.fetchall()]

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
        return self._queue_room_change([conv])

    def _rename_history(self, old: str, new: str) -> defer.Deferred[None]:
        """Move the current incarnation of room ``old``'s history to room ``new`` (a
        rename: IRCv3 draft/channel-rename), after everything appended so far: numbered
        after what ``new`` held, whose earlier incarnations stay unread."""
        if self._writer is None:
            return defer.fail(StorageError("storage is not open"))
        convs = [room_conversation(old), room_conversation(new)]
        if convs[0].key == convs[1].key:
            return defer.succeed(None)  # a change of case: the same conversation
        return self._queue_room_change(convs)

    def _queue_room_change(self, convs: list[Conversation]) -> defer.Deferred[None]:
        """Queue a room's new incarnation (one conversation) or its rename (the old and the
        new one) among the appends; queries for those rooms wait until it is committed."""
        assert self._writer is not None
        d = self._writer.append((None, convs))
        assert d is not None  # no notify: a Deferred
        for conv in convs:
            d = self._rewrites(conv.key, d)
        return d

    def void_events(self, conv: str, ids: Sequence[str]) -> defer.Deferred[None]:
        """Delete ``ids`` from conversation ``conv`` (found void at their number in a
        cluster), after the writes queued before; queries of ``conv`` wait for it."""
        if self._writer is None:
            return defer.fail(StorageError("storage is not open"))
        return self._rewrites(conv, self._writer.call(self._delete_events, conv, list(ids)))

    def _delete_events(self, txn: Cursor, conv: str, ids: list[str]) -> None:
        txn.execute(
            self._q(f"DELETE FROM conversation_events WHERE conv = ? AND msgid IN ({placeholders(len(ids))})"),
            [conv, *ids],
        )

    def _rewrites(self, conv: str, d: defer.Deferred[Any]) -> defer.Deferred[Any]:
        """Make queries of ``conv`` wait for the write ``d`` (``_once_rewritten``)."""
        done = self._rewriting[conv] = defer.Deferred()

        def committed(result: object) -> object:
            # writes commit in order: the latest rewrite of a conversation settles every earlier one
            if self._rewriting.get(conv) is done:
                del self._rewriting[conv]
            done.callback(None)
            return result

        return d.addBoth(committed)

    def _once_rewritten(self, convs: Iterable[str]) -> Optional[defer.Deferred[list[None]]]:
        """A Deferred that fires once no room among ``convs`` has a ``begin_room`` or a
        ``void_events`` still being committed, or None when none has."""
        pending = [self._rewriting[c] for c in convs if c in self._rewriting]
        if not pending:
            return None
        waiters = []
        for begun in pending:
            waiter: defer.Deferred[None] = defer.Deferred()
            begun.addCallback(_fire, waiter)
            waiters.append(waiter)
        return defer.gatherResults(waiters)

    def _write_events(self, txn: Cursor, items: list[tuple[Optional[Event], list[Conversation]]]) -> list[Any]:
        """Write one group; returns what each committed event's listeners are told: its
        ``Positions`` (of an event stored already, those it was stored at), or None (an
        incarnation)."""
        if self.array_parameters and self._at_once(items):
            return self._stored_positions(txn, items, self._write_at_once(txn, items))
        results: list[Any] = [None] * len(items)
        # every conversation the group numbers, locked at once in key order: locking them
        # per run of events (a room's begin between two runs) let two nodes' writers each
        # hold what the other waited for (PostgreSQL found the deadlock in the benchmark)
        touched: dict[str, Conversation] = {}
        for _event, convs in items:
            for conv in convs:
                touched[conv.key] = conv
        self._lock_conversations(txn, touched)
        start = 0
        for i, (event, convs) in enumerate(items):
            if event is None:  # a room begins (begin_room) or is renamed: after what came before it
                if i > start:
                    self._write_rows(txn, items, start, i, results)
                if len(convs) == 2:
                    self._move_incarnation(txn, convs[0], convs[1])
                else:
                    self._begin_incarnation(txn, convs[0])
                start = i + 1
        if start < len(items):
            self._write_rows(txn, items, start, len(items), results)
        return self._stored_positions(txn, items, results)

    def _stored_positions(self, txn: Cursor, items: list[Any], results: list[Any]) -> list[Any]:
        """``results`` with the positions of the group's events that were stored already, read
        back. Such an event is one whose first commit landed while its answer was lost (a
        PostgreSQL connection dropped at COMMIT: the writer tries the group again, and every
        other node fetches it as a gap). That first commit told nobody: a cluster node's relay
        then never heard of its own number, and held the room, and the node's outbox with
        it, until it passed over the number (``ClusterRelay._never_told``). (A second
        reaper's QUIT of the same id, stored by another node, is told here as that node's
        store told it there.)"""
        missing = {items[i][0].id: i for i, result in enumerate(results)
                   if result is None and items[i][0] is not None and items[i][1]}
        if not missing:
            return results
        found: dict[int, dict[str, int]] = {}
        ids = list(missing)
        for start in range(0, len(ids), ROWS_PER_STATEMENT):
            chunk = ids[start : start + ROWS_PER_STATEMENT]
            where_ids = f"msgid IN ({placeholders(len(chunk))})"
            txn.execute(self._q(f"SELECT msgid, conv, conv_seq FROM conversation_events WHERE {where_ids}"), chunk)
            for msgid, conv, seq in txn.fetchall():
                found.setdefault(missing[msgid], {})[conv] = int(seq)
        for i, where in found.items():
            # in the event's own order of its conversations, those it is stored in
            results[i] = tuple((conv.key, where[conv.key]) for conv in items[i][1] if conv.key in where) or None
        return results

    def _at_once(self, items: list[tuple[Optional[Event], list[Conversation]]]) -> bool:
        """Whether ``_write_at_once`` can write this group: events only (no room begins or
        renames, no REDACT, which rewrite other rows), each in conversations whose head
        rows are committed."""
        known = self._known_conversations
        for event, convs in items:
            if event is None or event.kind == Kind.REDACT:
                return False
            for conv in convs:
                if conv.key not in known:
                    return False
        return True

    def _write_at_once(self, txn: Cursor, items: list[tuple[Optional[Event], list[Conversation]]]) -> list[Any]:
        """PostgreSQL: the group in one statement (``WRITE_AT_ONCE``) that locks its
        conversations' head rows in key order, leaves out events stored already, numbers
        the rest after each head, moves the heads and inserts the rows. Statement by
        statement (lock, check, number, insert: four round trips from the writer thread,
        each waiting for the GIL of a busy reactor) a node held its rooms' locks that
        long, and the other node's writer waited for them (the rooms benchmark with 2
        nodes: their core idle a third of the time). Now the locks are held from this
        statement to COMMIT. Answers what ``_write_events`` does."""
        results: list[Any] = [None] * len(items)
        convs_col: list[str] = []
        index_col: list[int] = []
        ids: list[str] = []
        ms_col: list[int] = []
        kinds: list[str] = []
        bodies: list[str] = []
        for i, (event, convs) in enumerate(items):
            if not convs:
                continue
            assert event is not None  # ``_at_once``
            eid, kind, ms, body = event.id, event.kind, to_ms(event.time), encode_event(event)
            for conv in convs:
                convs_col.append(conv.key)
                index_col.append(i)
                ids.append(eid)
                ms_col.append(ms)
                kinds.append(kind)
                bodies.append(body)
        if not convs_col:
            return results
        keys = sorted(set(convs_col))
        txn.execute(WRITE_AT_ONCE, (keys, convs_col, index_col, ids, ms_col, kinds, bodies))
        positions: dict[int, list[tuple[str, int]]] = {}
        for i, conv, seq in txn.fetchall():
            positions.setdefault(int(i), []).append((conv, int(seq)))
        for i, where in positions.items():
            results[i] = tuple(where)
        return results

    def _begin_incarnation(self, txn: Cursor, conv: Conversation) -> None:
        # its head row exists and is locked (``_lock_conversations``)
        txn.execute(
            self._q(
                "INSERT INTO room_incarnations (conv, after_conv_seq) "
                "SELECT conv, last_seq FROM conversations WHERE conv = ? "
                "ON CONFLICT (conv) DO UPDATE SET after_conv_seq = excluded.after_conv_seq"
            ),
            (conv.key,),
        )

    def _move_incarnation(self, txn: Cursor, old: Conversation, new: Conversation) -> None:
        """A room renamed: the rows of ``old``'s current incarnation before its RENAME become
        ``new``'s, numbered after ``new``'s last number, then a copy of the RENAME, and
        ``new``'s incarnation starts before them (what an earlier room of the new name said
        stays unread); ``old`` keeps its last number (never given twice) and its next room
        starts after it. The RENAME itself, and whatever another node numbered after it
        under the old name (sent to a copy that had not applied it, and found void there),
        stay in ``old`` at their numbers: a cluster node that reads the old conversation's
        numbers from the store (a gap) finds the RENAME where it was numbered, and applies
        it (moved, it was a gap read as nothing, and that node never renamed its copy).
        Both head rows exist and are locked (``_lock_conversations``)."""
        q = self._q

        def one(query: str, key: str) -> int:
            txn.execute(q(query), (key,))
            row = txn.fetchone()
            return int(row[0]) if row is not None else 0

        old_last = one("SELECT last_seq FROM conversations WHERE conv = ?", old.key)
        start = one("SELECT after_conv_seq FROM room_incarnations WHERE conv = ?", old.key)
        new_last = one("SELECT last_seq FROM conversations WHERE conv = ?", new.key)
        rename = self._the_rename(txn, old, new, start)
        end = rename[0] if rename is not None else old_last + 1  # rows before it move
        # an event shown in both rooms (a quit) has a row in an earlier incarnation of the new
        # name: unread there, and in the way of the moved row (msgid, conv is unique)
        txn.execute(
            q("DELETE FROM conversation_events WHERE conv = ? AND msgid IN "
              "(SELECT msgid FROM conversation_events WHERE conv = ? AND conv_seq > ? AND conv_seq <= ?)"),
            (new.key, old.key, start, end),
        )
        txn.execute(
            q("UPDATE conversation_events SET conv = ?, conv_seq = conv_seq - ? + ? "
              "WHERE conv = ? AND conv_seq > ? AND conv_seq < ?"),
            (new.key, start, new_last, old.key, start, end),
        )
        moved_last = new_last + end - 1 - start
        if rename is not None:
            moved_last += 1  # with the RENAME's copy
        if moved_last > new_last:
            txn.execute(
                q("INSERT INTO moved_history (conv, first_seq, last_seq) VALUES (?, ?, ?) "
                  "ON CONFLICT (conv, first_seq) DO UPDATE SET last_seq = excluded.last_seq"),
                (new.key, new_last + 1, moved_last),
            )
        if rename is not None:
            seq, msgid, ms, kind, body = rename
            txn.execute(
                q("INSERT INTO conversation_events (conv, conv_seq, msgid, ms, kind, body) VALUES (?, ?, ?, ?, ?, ?)"),
                (new.key, moved_last, msgid, ms, kind, body),
            )
        # the moved rows' times never go back, nor do those written after them (``_first_at``);
        # the larger of the two heads' latest times (the new name's may be that of an earlier,
        # unread room: a later time than needed, which only holds the next rows' times up)
        txn.execute(
            q(
                "UPDATE conversations SET last_seq = ?, last_ms = "
                "(SELECT MAX(h.last_ms) FROM conversations h WHERE h.conv IN (?, ?)) WHERE conv = ?"
            ),
            (moved_last, old.key, new.key, new.key),
        )
        upsert = q(
            "INSERT INTO room_incarnations (conv, after_conv_seq) VALUES (?, ?) "
            "ON CONFLICT (conv) DO UPDATE SET after_conv_seq = excluded.after_conv_seq"
        )
        txn.execute(upsert, (new.key, new_last))
        txn.execute(upsert, (old.key, old_last))

    def _the_rename(
        self, txn: Cursor, old: Conversation, new: Conversation, start: int
    ) -> Optional[tuple[int, Any, Any, Any, Any]]:
        """The row (number, msgid, ms, kind, body) of the RENAME of ``old``'s current
        incarnation (after ``start``) to ``new``, stored just before its history moves; None
        when there is none (a rename stored by an earlier version, with its history)."""
        txn.execute(
            self._q("SELECT conv_seq, msgid, ms, kind, body FROM conversation_events "
                    "WHERE conv = ? AND conv_seq > ? AND kind = ? ORDER BY conv_seq DESC"),
            (old.key, start, Kind.RENAME),
        )
        for row in txn.fetchall():
            if fold(str(decode_event(row[4]).data.get("new", ""))) == new.peer_a:
                return (int(row[0]), row[1], row[2], row[3], row[4])
        return None

    def _write_rows(self, txn: Cursor, items: list[Any], start: int, stop: int, results: list[Any]) -> None:
        # A few multi-row statements for the whole group, not one per event: on SQLite each
        # statement step hands the GIL to the reactor thread and back, and on PostgreSQL it
        # is a round trip.
        fresh = [i for i in range(start, stop) if items[i][1]]
        if not fresh:
            return
        stored = self._stored_ids(txn, [items[i][0].id for i in fresh])
        if stored:  # a retried group whose commit did land, a second reaper's quit
            fresh = [i for i in fresh if items[i][0].id not in stored]
        keys = {conv.key for i in fresh for conv in items[i][1]}
        if not keys:
            return
        heads = self._read_heads(txn, sorted(keys))
        rows: list[tuple[Any, ...]] = []
        for i in fresh:
            event, convs = items[i]
            eid, kind = event.id, event.kind
            ms = to_ms(event.time)
            body = encode_event(event)
            positions = []
            for conv in convs:
                head = heads[conv.key]
                seq = head[0] = head[0] + 1
                # never before the conversation's latest stored time (a clock set back,
                # another node's clock behind): a time stays a place in the numbering
                if ms > head[1]:
                    head[1] = ms
                rows.append((conv.key, seq, eid, head[1], kind, body))
                positions.append((conv.key, seq))
            results[i] = tuple(positions)
        self._move_heads(txn, heads)
        if self.array_parameters:
            # one statement of constant text, whatever the group's size: the driver parses
            # it once and the server runs it prepared (a VALUES list of the group's length
            # was parsed anew by psycopg for every group: a fifth of a busy node's time).
            # Arrays go in binary (%b): psycopg quotes a text array with a regex per element
            txn.execute(
                "INSERT INTO conversation_events (conv, conv_seq, msgid, ms, kind, body) "
                "SELECT * FROM unnest(%b::text[], %b::bigint[], %b::text[], %b::bigint[], %b::text[], %b::text[])",
                [list(column) for column in zip(*rows, strict=True)],
            )
        else:
            self._insert_rows(
                txn, "INSERT INTO conversation_events (conv, conv_seq, msgid, ms, kind, body) VALUES {rows}", rows
            )
        for i in fresh:
            event, convs = items[i]
            if event.kind == Kind.REDACT:
                self._redact(txn, event, convs)

    def _redact(self, txn: Cursor, redaction: Event, convs: list[Conversation]) -> None:
        """Take the text out of the message ``redaction`` names, in the conversation the
        REDACT belongs to (never another's), in the transaction that stores the REDACT: once
        anyone is shown the redaction, no history read returns the text."""
        msgid = str(redaction.data.get("msgid", ""))
        for conv in convs:
            txn.execute(
                self._q("SELECT conv_seq, body FROM conversation_events WHERE conv = ? AND msgid = ?"),
                (conv.key, msgid),
            )
            for seq, body in txn.fetchall():
                event = decode_event(body)
                if event.kind not in Kind.REDACTABLE_KINDS or REDACTED in event.data:
                    continue
                txn.execute(
                    self._q("UPDATE conversation_events SET body = ? WHERE conv = ? AND conv_seq = ?"),
                    (encode_event(redacted(event, redaction)), conv.key, seq),
                )

    def _stored_ids(self, txn: Cursor, ids: list[str]) -> set[str]:
        """Which of ``ids`` are stored already."""
        found: set[str] = set()
        if self.array_parameters:
            txn.execute("SELECT msgid FROM conversation_events WHERE msgid = ANY(%b)", (ids,))
            found.update(row[0] for row in txn.fetchall())
            return found
        for start in range(0, len(ids), ROWS_PER_STATEMENT):
            chunk = ids[start : start + ROWS_PER_STATEMENT]
            txn.execute(
                self._q(f"SELECT msgid FROM conversation_events WHERE msgid IN ({placeholders(len(chunk))})"), chunk
            )
            found.update(row[0] for row in txn.fetchall())
        return found

    def _lock_conversations(self, txn: Cursor, conversations: dict[str, Conversation]) -> None:
        """Make sure each conversation has its head row, and lock those rows, in key order,
        until this transaction commits: another writer (another node) numbering the same
        conversation waits, and takes the numbers after these, so a reader that sees number
        N knows 1..N are committed. Key order: two writers never wait for each other in a
        circle."""
        keys = sorted(conversations)
        if not keys:
            return
        if self.array_parameters:
            txn.execute(
                "INSERT INTO conversations (conv, peer_a, peer_b, last_seq) "
                "SELECT c, a, b, 0 FROM unnest(%b::text[], %b::text[], %b::text[]) AS v(c, a, b) "
                "ON CONFLICT (conv) DO NOTHING",
                (keys, [conversations[k].peer_a for k in keys], [conversations[k].peer_b for k in keys]),
            )
            txn.execute(
                f"SELECT conv FROM conversations WHERE conv = ANY(%b) ORDER BY conv{self.lock_rows}", (keys,)
            )
            txn.fetchall()
            return
        self._insert_rows(
            txn,
            "INSERT INTO conversations (conv, peer_a, peer_b, last_seq) VALUES {rows} ON CONFLICT (conv) DO NOTHING",
            [(k, conversations[k].peer_a, conversations[k].peer_b, 0) for k in keys],
        )
        if self.lock_rows:
            for start in range(0, len(keys), ROWS_PER_STATEMENT):
                chunk = keys[start : start + ROWS_PER_STATEMENT]
                txn.execute(
                    self._q(
                        f"SELECT conv FROM conversations WHERE conv IN ({placeholders(len(chunk))}) "
                        f"ORDER BY conv{self.lock_rows}"
                    ),
                    chunk,
                )
                txn.fetchall()

    def _read_heads(self, txn: Cursor, keys: list[str]) -> dict[str, list[int]]:
        """``{conversation: [last_seq, last_ms]}`` of those of ``keys`` that have a head row
        (the writer's are locked by ``_lock_conversations`` until its transaction ends)."""
        heads: dict[str, list[int]] = {}
        if self.array_parameters:
            txn.execute("SELECT conv, last_seq, last_ms FROM conversations WHERE conv = ANY(%b)", (keys,))
            heads.update((conv, [int(seq), int(ms)]) for conv, seq, ms in txn.fetchall())
            return heads
        for start in range(0, len(keys), ROWS_PER_STATEMENT):
            chunk = keys[start : start + ROWS_PER_STATEMENT]
            where = f"conv IN ({placeholders(len(chunk))})"
            txn.execute(self._q(f"SELECT conv, last_seq, last_ms FROM conversations WHERE {where}"), chunk)
            heads.update((conv, [int(seq), int(ms)]) for conv, seq, ms in txn.fetchall())
        return heads

    def _move_heads(self, txn: Cursor, heads: dict[str, list[int]]) -> None:
        """Store each conversation's new ``[last_seq, last_ms]``."""
        keys = sorted(heads)
        if self.array_parameters:
            txn.execute(
                "UPDATE conversations SET last_seq = v.s, last_ms = v.m "
                "FROM unnest(%b::text[], %b::bigint[], %b::bigint[]) AS v(c, s, m) WHERE conversations.conv = v.c",
                (keys, [heads[k][0] for k in keys], [heads[k][1] for k in keys]),
            )
            return
        for start in range(0, len(keys), ROWS_PER_STATEMENT):
            chunk = keys[start : start + ROWS_PER_STATEMENT]
            txn.execute(
                self._q(
                    "UPDATE conversations SET last_seq = v.column2, last_ms = v.column3 "
                    f"FROM (VALUES {', '.join(['(?, ?, ?)'] * len(chunk))}) AS v "
                    "WHERE conversations.conv = v.column1"
                ),
                [value for k in chunk for value in (k, *heads[k])],
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
                "SELECT t.body FROM conversation_events t "
                f"WHERE {' AND '.join(where)} ORDER BY t.conv_seq {'DESC' if descending else 'ASC'} LIMIT ?"
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
            return _Bound(to_ms(float(value)), None, lambda ms: self._first_at(txn, conv, ms))
        txn.execute(
            self._q(
                "SELECT t.conv_seq, t.ms FROM conversation_events t "
                f"WHERE t.msgid = ? AND t.conv = ? AND {IN_INCARNATION}"
            ),
            (value, conv, conv),
        )
        row = txn.fetchone()
        if row is None:
            raise UnknownReference(str(value))
        return _Bound(int(row[1]), int(row[0]))

    def _first_at(self, txn: Cursor, conv: str, ms: int) -> int:
        """The first number of ``conv``'s current incarnation stored at millisecond ``ms``
        or later (one past its last if none is): a binary search on the (conv, conv_seq)
        key, since stored times never decrease with the numbers. At most about 64 index
        reads, whatever the history's size; numbers without a row (pruned, void) are
        stepped over."""
        txn.execute(
            self._q(
                "SELECT c.last_seq, COALESCE(r.after_conv_seq, 0) FROM conversations c "
                "LEFT JOIN room_incarnations r ON r.conv = c.conv WHERE c.conv = ?"
            ),
            (conv,),
        )
        row = txn.fetchone()
        if row is None:
            return 1
        # every row numbered below ``low`` is before ``ms``; every one from ``high`` on is not
        low, high = int(row[1]) + 1, int(row[0]) + 1
        query = self._q(
            "SELECT conv_seq, ms FROM conversation_events WHERE conv = ? AND conv_seq >= ? AND conv_seq < ? "
            "ORDER BY conv_seq LIMIT 1"
        )
        while low < high:
            middle = (low + high) // 2
            txn.execute(query, (conv, middle, high))
            found = txn.fetchone()
            if found is None or int(found[1]) >= ms:
                high = middle  # nothing before ``found`` from ``middle`` on
            else:
                low = int(found[0]) + 1
        return low

    def _history(self, fn: Callable[..., Any], viewer: str, target: str, limit: int, *args: Any) -> defer.Deferred[Any]:
        if limit <= 0:
            return defer.succeed([])
        conv = conversation_for(fold(viewer), target).key
        begun = self._once_rewritten((conv,))
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
            itself = self._select(txn, conv, [("t.conv_seq = ?", bound.seq)], kinds, False, 1)
            later = self._select(txn, conv, [bound.after()], kinds, False, limit)
            items = earlier + itself + later
            return centred_window(items, len(earlier), limit, pivot_is_item=bool(itself))
        later = self._select(txn, conv, [bound.from_time()], kinds, False, limit)
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
        """Conversations whose latest event is strictly between two times:
        ``[(name, latest_time)]``. One with events in the window but a later one after it is
        not listed (a client asking for what changed in a window sees each conversation
        once, at its latest time).

        Counted from ``start_time`` (which may be the later bound), returned oldest first.
        """
        if limit <= 0:
            return defer.succeed([])
        room_names = {fold(r): r for r in rooms}
        args = (fold(viewer), to_ms(start_time), to_ms(end_time), limit, room_names, kinds)
        begun = self._once_rewritten(room_names)
        if begun is not None:
            return begun.addCallback(lambda _: self._read(self._targets, *args))
        return self._read(self._targets, *args)

    def _targets(
        self, txn: Cursor, viewer: str, start_ms: int, end_ms: int, limit: int, room_names: dict[str, str], kinds: Kinds
    ) -> list[tuple[str, float]]:
        low, high = sorted((start_ms, end_ms))
        # no upper bound on the rows: each conversation's MAX is its latest event, kept only
        # when that is before ``high`` (HAVING)
        where = ["t.ms > ?"]
        params: list[Any] = [low]
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
        params += [high, limit]
        txn.execute(
            self._q(
                "SELECT t.conv, c.peer_b, MAX(t.ms) AS latest, MAX(t.conv_seq) AS newest, MAX(t.msgid) AS last_id "
                "FROM conversation_events t JOIN conversations c ON c.conv = t.conv "
                "LEFT JOIN room_incarnations r ON r.conv = t.conv "
                f"WHERE {' AND '.join(where)} AND t.conv_seq > COALESCE(r.after_conv_seq, 0) "
                "GROUP BY t.conv, c.peer_b HAVING MAX(t.ms) < ? "
                # two conversations whose latest events share a millisecond: the later id
                # (ids order by time below the millisecond, ``EventIds``) is the later one
                f"ORDER BY latest {order}, last_id {order}, t.conv {order} LIMIT ?"
            ),
            params,
        )
        rows = txn.fetchall()
        # a private conversation is named by its other party, as its newest event shows it
        private = [(row[0], row[3]) for row in rows if row[1] is not None]
        last_events: dict[tuple[str, int], Event] = {}
        if private:
            txn.execute(
                self._q(
                    "SELECT conv, conv_seq, body FROM conversation_events WHERE "
                    + " OR ".join(["(conv = ? AND conv_seq = ?)"] * len(private))
                ),
                [value for pair in private for value in pair],
            )
            last_events = {(conv, int(seq)): decode_event(body) for conv, seq, body in txn.fetchall()}
        found: list[tuple[int, str, str]] = []
        for conv, peer_b, latest, newest, last_id in rows:
            if peer_b is None:
                name = room_names.get(conv, conv)
            else:
                name = peer_name(last_events[(conv, int(newest))], viewer)
            found.append((int(latest), str(last_id), name))
        found.sort()  # oldest first; within a millisecond by the later id
        return [(name, latest / 1000.0) for latest, _, name in found]
