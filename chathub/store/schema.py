"""The database schema, as numbered migrations kept in code.

``schema_version`` holds one row: the number of the last migration applied. On open, each
later migration runs in its own transaction, so a crash mid-upgrade leaves the database
at the previous version. Never edit a released migration: add the next one.

The SQL is written once for both backends; ``{serial}``, ``{bigint}`` and ``{real}`` are
filled in per dialect (see ``Dialect``).
"""
from __future__ import annotations

from dataclasses import dataclass

MIGRATIONS: list[tuple[int, str, list[str]]] = [
    (
        1,
        "accounts, persistent rooms and history",
        [
            """CREATE TABLE accounts (
                name_folded TEXT PRIMARY KEY,
                name TEXT NOT NULL,
                password_hash TEXT NOT NULL,
                email TEXT,
                created {real} NOT NULL,
                last_seen {real}
            )""",
            """CREATE TABLE rooms (
                name_folded TEXT PRIMARY KEY,
                name TEXT NOT NULL,
                topic TEXT NOT NULL,
                topic_setter TEXT NOT NULL,
                topic_time {real} NOT NULL,
                modes TEXT NOT NULL,
                room_key TEXT,
                user_limit {bigint},
                created {real} NOT NULL
            )""",
            """CREATE TABLE room_bans (
                room TEXT NOT NULL,
                position {bigint} NOT NULL,
                mask TEXT NOT NULL,
                setter TEXT NOT NULL,
                set_at {real} NOT NULL,
                PRIMARY KEY (room, position)
            )""",
            """CREATE TABLE room_operators (
                room TEXT NOT NULL,
                position {bigint} NOT NULL,
                name TEXT NOT NULL,
                PRIMARY KEY (room, position)
            )""",
            # one row per event; seq is the order the hub delivered them in
            """CREATE TABLE events (
                seq {serial},
                msgid TEXT NOT NULL UNIQUE,
                at {real} NOT NULL,
                kind TEXT NOT NULL,
                body TEXT NOT NULL
            )""",
            # one row per (conversation, event): a quit shows in every room the user was in
            """CREATE TABLE timeline (
                conv TEXT NOT NULL,
                seq {bigint} NOT NULL,
                ms {bigint} NOT NULL,
                kind TEXT NOT NULL,
                PRIMARY KEY (conv, seq)
            )""",
            "CREATE INDEX timeline_conv_ms ON timeline (conv, ms)",
            "CREATE INDEX timeline_seq ON timeline (seq)",
            "CREATE INDEX timeline_ms ON timeline (ms)",
            # who takes part in each conversation, for CHATHISTORY TARGETS
            """CREATE TABLE conversations (
                conv TEXT PRIMARY KEY,
                peer_a TEXT NOT NULL,
                peer_b TEXT
            )""",
            "CREATE INDEX conversations_peer_a ON conversations (peer_a)",
            "CREATE INDEX conversations_peer_b ON conversations (peer_b)",
        ],
    ),
    (
        2,
        "room founders, and room incarnations that bound history",
        [
            # the account that owns a persistent room; version 1 kept only a list of
            # operators, whose first grant was the creator's: a room with a single stored
            # operator gets it as founder, one with several keeps them all as equals
            "ALTER TABLE rooms ADD COLUMN founder TEXT",
            """UPDATE rooms SET founder = (
                SELECT MIN(o.name) FROM room_operators o WHERE o.room = rooms.name_folded
            ) WHERE (SELECT COUNT(*) FROM room_operators o WHERE o.room = rooms.name_folded) = 1""",
            # a room's history starts after after_seq: the last event stored before the
            # room of that name was created (IStore.begin_room), so a new room never reads
            # what a vanished one of the same name said
            """CREATE TABLE room_epochs (
                conv TEXT PRIMARY KEY,
                after_seq {bigint} NOT NULL
            )""",
        ],
    ),
    (
        3,
        "one row per conversation event, numbered per conversation",
        [
            # Each conversation numbers its own events (conv_seq, 1, 2, 3, ...), taken from
            # conversations.last_seq under the row's lock in the writer's transaction: a
            # reader that sees number N knows 1..N are committed, whichever node wrote them
            # (a table-wide identity is taken at INSERT, so with two writers a reader could
            # see 2 committed before 1 and page past it). The event's body sits on its row:
            # a room message is one row, read without a join; an event of several
            # conversations (a quit seen in three rooms) has one row in each.
            """CREATE TABLE conversation_events (
                conv TEXT NOT NULL,
                conv_seq {bigint} NOT NULL,
                msgid TEXT NOT NULL,
                ms {bigint} NOT NULL,
                kind TEXT NOT NULL,
                body TEXT NOT NULL,
                PRIMARY KEY (conv, conv_seq)
            )""",
            """INSERT INTO conversation_events (conv, conv_seq, msgid, ms, kind, body)
               SELECT t.conv, ROW_NUMBER() OVER (PARTITION BY t.conv ORDER BY t.seq), e.msgid, t.ms, t.kind, e.body
               FROM timeline t JOIN events e ON e.seq = t.seq""",
            "CREATE UNIQUE INDEX conversation_events_msgid ON conversation_events (msgid, conv)",
            "CREATE INDEX conversation_events_conv_ms ON conversation_events (conv, ms)",
            "CREATE INDEX conversation_events_ms ON conversation_events (ms)",
            # the head of each conversation's numbering; a row outlives its events (retention
            # never reuses a number)
            "ALTER TABLE conversations ADD COLUMN last_seq {bigint} NOT NULL DEFAULT 0",
            """UPDATE conversations SET last_seq = COALESCE(
                (SELECT MAX(c.conv_seq) FROM conversation_events c WHERE c.conv = conversations.conv), 0)""",
            # where each room's current incarnation starts, now in its own numbering
            """CREATE TABLE room_incarnations (
                conv TEXT PRIMARY KEY,
                after_conv_seq {bigint} NOT NULL
            )""",
            """INSERT INTO room_incarnations (conv, after_conv_seq)
               SELECT r.conv, (SELECT COUNT(*) FROM timeline t WHERE t.conv = r.conv AND t.seq <= r.after_seq)
               FROM room_epochs r""",
            # a room whose incarnation began before it had any event needs its head row
            """INSERT INTO conversations (conv, peer_a, peer_b, last_seq)
               SELECT r.conv, r.conv, NULL, 0 FROM room_incarnations r
               WHERE NOT EXISTS (SELECT 1 FROM conversations c WHERE c.conv = r.conv)""",
            "DROP TABLE room_epochs",
            "DROP TABLE timeline",
            "DROP TABLE events",
        ],
    ),
    (
        4,
        "session tokens",
        [
            # a token is kept only as its sha256 digest: a copy of the database logs nobody in
            """CREATE TABLE session_tokens (
                digest TEXT PRIMARY KEY,
                account TEXT NOT NULL,
                created {real} NOT NULL,
                expires {real} NOT NULL
            )""",
            "CREATE INDEX session_tokens_account ON session_tokens (account)",
        ],
    ),
    (
        5,
        "the rooms each account is in",
        [
            # joined again when the account logs in, from any protocol
            """CREATE TABLE account_rooms (
                account TEXT NOT NULL,
                room_folded TEXT NOT NULL,
                room TEXT NOT NULL,
                joined {real} NOT NULL,
                PRIMARY KEY (account, room_folded)
            )""",
        ],
    ),
    (
        6,
        "the key of each kept +k room",
        [
            # given back at the rejoin, which fails without it; never sent to a client
            "ALTER TABLE account_rooms ADD COLUMN room_key TEXT",
        ],
    ),
    (
        7,
        "SCRAM-SHA-256 keys of accounts",
        [
            # salt, iterations, StoredKey and ServerKey (RFC 5803's form), never the password;
            # NULL until the account's password is next set or used with PLAIN
            "ALTER TABLE accounts ADD COLUMN scram TEXT",
        ],
    ),
    (
        8,
        "times that never go back within a conversation, and no (conv, ms) index",
        [
            # A conversation's stored times never decrease with its numbers: the writer
            # stores an event's millisecond or, if the clock (or another node's clock) is
            # behind, the conversation's latest (``last_ms``). A point in time is then a
            # number, found by a binary search on the (conv, conv_seq) key, and the second
            # per-conversation index goes: each commit wrote a leaf page of it for every
            # conversation it touched (a third of SQLite's work in the rooms benchmark).
            # The time shown with an event is the one in its body, never changed.
            "ALTER TABLE conversations ADD COLUMN last_ms {bigint} NOT NULL DEFAULT 0",
            # rows written before this version: each takes the latest time at or before it
            # (one pass: a running maximum per conversation)
            """UPDATE conversation_events SET ms = m.running FROM (
                SELECT conv, conv_seq, MAX(ms) OVER (PARTITION BY conv ORDER BY conv_seq) AS running
                FROM conversation_events
            ) AS m
            WHERE conversation_events.conv = m.conv AND conversation_events.conv_seq = m.conv_seq
            AND m.running > conversation_events.ms""",
            """UPDATE conversations SET last_ms = COALESCE(
                (SELECT MAX(e.ms) FROM conversation_events e WHERE e.conv = conversations.conv), 0)""",
            "DROP INDEX conversation_events_conv_ms",
        ],
    ),
    (
        9,
        "read markers of accounts",
        [
            # an account's last-read time of each conversation (IRC MARKREAD, chathub.v1
            # markread), kept across restarts and read by whichever node it logs in to;
            # ``moved`` orders them for the per-account bound ([limits] read_markers)
            """CREATE TABLE read_markers (
                account TEXT NOT NULL,
                target TEXT NOT NULL,
                at {real} NOT NULL,
                moved {real} NOT NULL,
                PRIMARY KEY (account, target)
            )""",
        ],
    ),
    (
        10,
        "secrets the nodes of a cluster share",
        [
            # one value per name, the first node's (``shared_secret``): the nodes of a
            # cluster must cloak one address alike, so they key the cloak with one secret
            """CREATE TABLE shared_secrets (
                name TEXT PRIMARY KEY,
                secret TEXT NOT NULL
            )""",
        ],
    ),
    (
        11,
        "the numbers a rename moved another room's history to",
        [
            # a room renamed to a name: its history is numbered after that name's last
            # number (``HistoryStore._move_incarnation``). A cluster node reading those
            # numbers (a gap) passes over them: another room's history, not this one's
            # events, and no node announced them
            """CREATE TABLE moved_history (
                conv TEXT NOT NULL,
                first_seq {bigint} NOT NULL,
                last_seq {bigint} NOT NULL,
                PRIMARY KEY (conv, first_seq)
            )""",
        ],
    ),
]

LATEST_VERSION = MIGRATIONS[-1][0]

#: the tables of the latest version
TABLES = (
    "schema_version",
    "accounts",
    "rooms",
    "room_bans",
    "room_operators",
    "room_incarnations",
    "conversation_events",
    "conversations",
    "session_tokens",
    "account_rooms",
    "read_markers",
    "shared_secrets",
    "moved_history",
)


@dataclass(frozen=True)
class Dialect:
    """What differs between the SQL of two backends."""

    name: str
    serial: str  # an auto-incrementing integer primary key that never reuses values
    bigint: str
    real: str
    paramstyle: str  # "qmark" or "format"

    def ddl(self, statement: str) -> str:
        """A schema statement with the type placeholders filled in."""
        return statement.format(serial=self.serial, bigint=self.bigint, real=self.real)

    def sql(self, query: str) -> str:
        """A query written with ``?`` placeholders, in this dialect's parameter style."""
        return query if self.paramstyle == "qmark" else query.replace("?", "%s")


SQLITE = Dialect(
    name="sqlite",
    serial="INTEGER PRIMARY KEY AUTOINCREMENT",
    bigint="INTEGER",
    real="REAL",
    paramstyle="qmark",
)

POSTGRES = Dialect(
    name="postgres",
    serial="BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY",
    bigint="BIGINT",
    real="DOUBLE PRECISION",
    paramstyle="format",
)
