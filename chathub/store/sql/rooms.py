"""``RoomStore``: the registered-rooms domain of ``SqlStore``: a room's settings in ``rooms``,
its bans and the operators its founder named in ``room_bans`` and ``room_operators``, kept in
order. What a room is made of is the hub's (``chathub.records.RoomRecord``).
"""
from __future__ import annotations

from twisted.internet import defer

from chathub.names import fold
from chathub.records import Ban, RoomRecord
from chathub.store.sql.database import Cursor, SqlDatabase


class RoomStore(SqlDatabase):
    """Persistent rooms: save (insert or replace), delete, load them all."""

    def save_room(self, record: RoomRecord) -> defer.Deferred[None]:
        """Insert or replace a persistent room."""
        return self._write(self._save_room, record)

    def _save_room(self, txn: Cursor, r: RoomRecord) -> None:
        folded = fold(r.name)
        txn.execute(
            self._q(
                "INSERT INTO rooms (name_folded, name, topic, topic_setter, topic_time, modes, "
                "room_key, user_limit, created, founder) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (name_folded) DO UPDATE SET name = excluded.name, "
                "topic = excluded.topic, topic_setter = excluded.topic_setter, "
                "topic_time = excluded.topic_time, modes = excluded.modes, "
                "room_key = excluded.room_key, user_limit = excluded.user_limit, "
                "created = excluded.created, founder = excluded.founder"
            ),
            (folded, r.name, r.topic, r.topic_setter, r.topic_time, r.modes, r.key, r.limit, r.created, r.founder),
        )
        self._write_room_lists(txn, folded, r)

    def update_room(self, record: RoomRecord) -> defer.Deferred[bool]:
        """Replace a persistent room's stored state, if that room is stored: one deleted
        meanwhile (renamed on another node of a cluster) stays deleted, and a newer room
        of the name (made since, ``created`` later) is not overwritten; the name's case
        is left as stored (a rename sets it). Fires with whether it was."""
        return self._write(self._update_room, record)

    def _update_room(self, txn: Cursor, r: RoomRecord) -> bool:
        folded = fold(r.name)
        txn.execute(
            self._q(
                "UPDATE rooms SET topic = ?, topic_setter = ?, topic_time = ?, modes = ?, "
                "room_key = ?, user_limit = ?, founder = ? WHERE name_folded = ? AND (created = ? OR created IS NULL)"
            ),
            (r.topic, r.topic_setter, r.topic_time, r.modes, r.key, r.limit, r.founder, folded, r.created),
        )
        if txn.rowcount <= 0:
            return False
        self._write_room_lists(txn, folded, r)
        return True

    def _write_room_lists(self, txn: Cursor, folded: str, r: RoomRecord) -> None:
        """Replace the room's bans and the operators its founder named."""
        self._delete_room_lists(txn, folded)
        if r.bans:
            txn.executemany(
                self._q("INSERT INTO room_bans (room, position, mask, setter, set_at) VALUES (?, ?, ?, ?, ?)"),
                [(folded, i, b.mask, b.setter, b.time) for i, b in enumerate(r.bans)],
            )
        if r.operators:
            txn.executemany(
                self._q("INSERT INTO room_operators (room, position, name) VALUES (?, ?, ?)"),
                [(folded, i, op) for i, op in enumerate(r.operators)],
            )

    def _delete_room_lists(self, txn: Cursor, folded: str) -> None:
        for table in ("room_bans", "room_operators"):
            txn.execute(self._q(f"DELETE FROM {table} WHERE room = ?"), (folded,))

    def delete_room(self, name: str) -> defer.Deferred[bool]:
        """Forget a persistent room; fires with True if it existed."""
        return self._write(self._delete_room, fold(name))

    def _delete_room(self, txn: Cursor, folded: str) -> bool:
        self._delete_room_lists(txn, folded)
        txn.execute(self._q("DELETE FROM rooms WHERE name_folded = ?"), (folded,))
        return txn.rowcount > 0

    def load_rooms(self) -> defer.Deferred[list[RoomRecord]]:
        """Every persistent room, as ``RoomRecord``s ordered by name."""
        return self._read(self._load_rooms)

    def _load_rooms(self, txn: Cursor) -> list[RoomRecord]:
        bans: dict[str, list[Ban]] = {}
        txn.execute("SELECT room, mask, setter, set_at FROM room_bans ORDER BY room, position")
        for room, mask, setter, set_at in txn.fetchall():
            bans.setdefault(room, []).append(Ban(mask, setter, set_at))
        operators: dict[str, list[str]] = {}
        txn.execute("SELECT room, name FROM room_operators ORDER BY room, position")
        for room, name in txn.fetchall():
            operators.setdefault(room, []).append(name)
        txn.execute(
            "SELECT name_folded, name, topic, topic_setter, topic_time, modes, room_key, "
            "user_limit, created, founder FROM rooms ORDER BY name_folded"
        )
        return [
            RoomRecord(
                name=name,
                topic=topic,
                topic_setter=setter,
                topic_time=topic_time,
                modes=modes,
                key=key,
                limit=None if limit is None else int(limit),
                bans=tuple(bans.get(folded, ())),
                operators=tuple(operators.get(folded, ())),
                created=created,
                founder=founder,
            )
            for folded, name, topic, setter, topic_time, modes, key, limit, created, founder in txn.fetchall()
        ]
