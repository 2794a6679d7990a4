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
]

LATEST_VERSION = MIGRATIONS[-1][0]


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
