"""The storage plug point: ``IStore``, the account record, and the store's errors.

The rooms it keeps (``RoomRecord``) are plain data in the leaf ``chathub.records``, as the
hub makes them too. The hub talks to storage only through ``IStore`` (protocols reach it
through the hub, which turns these errors into ``HubError`` codes); ``chathub.store.sqlite``
(the embedded default) and ``chathub.store.postgres`` implement it with the same
semantics, and one test suite runs against both.

History is kept per *conversation*: a room (its folded name), or the private
conversation between two folded nicks. Queries follow IRCv3 ``draft/chathistory``: a
reference is ``("msgid", id)`` or ``("timestamp", epoch_seconds)``, bounds are
exclusive, and results are always returned oldest first.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Collection, ContextManager, Optional, Sequence

from zope.interface import Attribute, Interface

from twisted.internet.defer import Deferred
from twisted.python.failure import Failure

from chathub.events import Event
from chathub.records import Ref, RoomRecord


class StorageError(Exception):
    """Storage failed; ``str()`` is a message fit for an operator or a user.

    Start-up failures name the database (file or server) and the problem; write failures
    during operation say what could not be stored and why.
    """


class AccountExists(StorageError):
    """An account with that name (in any case) already exists."""

    def __init__(self, name: str) -> None:
        super().__init__(f"the account {name} already exists")
        self.name = name


class NoSuchAccount(StorageError):
    """The named account does not exist."""

    def __init__(self, name: str) -> None:
        super().__init__(f"there is no account named {name}")
        self.name = name


class UnknownReference(LookupError):
    """A ``("msgid", id)`` reference names no message in the conversation asked about.

    Protocols answer it as "no such message" (IRC: ``FAIL CHATHISTORY MESSAGE_ERROR`` or an
    empty batch); it never reveals whether the id exists in another conversation.
    """

    def __init__(self, msgid: str) -> None:
        super().__init__(f"no message with id {msgid} in this conversation")
        self.msgid = msgid


@dataclass(frozen=True)
class Account:
    """A registered account. ``name`` keeps the case it was registered with; ``scram`` is its
    SCRAM-SHA-256 keys in their stored form (``chathub.auth.scram``), None when it has none."""

    name: str
    password_hash: str
    created: float
    last_seen: Optional[float] = None
    email: Optional[str] = None
    scram: Optional[str] = None


@dataclass(frozen=True)
class StoreStats:
    """What ``IStore.stats()`` counts, in one read transaction (``python -m chathub.admin stats``)."""

    database: str  # the store's description
    schema_version: int
    size_bytes: int  # SQLite: the file and its WAL; PostgreSQL: chathub's tables with their indexes
    accounts: int
    persistent_rooms: int
    rooms_with_history: int
    private_conversations: int
    events: int  # distinct events kept
    history_rows: int  # rows: a quit shown in three rooms is one event and three rows
    oldest: Optional[float]  # time of the oldest event kept, None without history
    newest: Optional[float]
    #: rows the next prune would remove by [history] max_age_days / max_per_target
    prunable_by_age: int
    prunable_by_count: int


#: what ``append(..., notify=)`` calls once the event is committed (None) or not (the failure)
Notify = Callable[[Optional[Failure]], object]


class IStore(Interface):
    """Durable storage for history, accounts and persistent rooms.

    Every method but ``preflight``, ``stats``, ``backup`` and ``wrap_releases`` returns a Deferred and never
    blocks the reactor. Writes are applied in the order they were called.
    """

    description = Attribute("Where the data lives, for log lines (never contains a password).")

    def preflight() -> None:
        """Blocking: what ``open`` checks and migrates, for start-up before the reactor runs.

        Raises ``StorageError`` with the message to print (the twistd plugin turns it into
        an exit). Leaves no connection open; ``open`` must still be called (it then finds
        nothing to migrate).
        """

    def open() -> Deferred[None]:
        """Create the database if needed and run schema migrations.

        Fires with None; fails with ``StorageError`` naming the database and the problem
        (corrupt file, unwritable directory, unreachable server, newer schema).
        """

    def close() -> Deferred[None]:
        """Commit everything appended so far, then release the database. Fires with None."""

    def wrap_releases(around: Callable[[], ContextManager[object]]) -> None:
        """Release each committed group of writes (firing their Deferreds and ``notify``
        calls) inside the context manager ``around()`` makes: the hub gives its fan-out
        batching, so a committed group reaches each member as one write. Plain
        ``contextlib.nullcontext`` until called.
        """

    def check_writable() -> Deferred[None]:
        """Write something that changes nothing, in turn with every other write; fails
        with ``StorageError`` when the database cannot take a write (``/healthz``)."""

    def append(event: Event, rooms: Sequence[str] = (), notify: Optional[Notify] = None) -> Optional[Deferred[None]]:
        """Queue ``event`` for history; fires with None once it is committed.

        Everything appended within one reactor turn, or while the previous commit runs,
        is committed in one transaction (group commit). Deferreds fire in append order.
        The event belongs to the room ``event.target`` names, or to the private
        conversation between the sender and the nick ``event.target`` names, and to each
        room in ``rooms`` (used for user-wide events such as quit and nick changes).
        A failed write fails the Deferred with ``StorageError`` (and is logged).

        With ``notify``, nothing is returned and ``notify(None)`` is called instead of
        firing a Deferred, or ``notify(failure)`` on failure, in the same order (the hub's
        path for every message, which a Deferred per event slowed down).
        """

    def when_committed(listener: Callable[[list[tuple[Event, tuple[tuple[str, int], ...]]]], object]) -> None:
        """Call ``listener(group)`` after each commit of appended events, in commit order,
        before their ``notify`` calls: ``group`` lists each event that transaction wrote
        with its positions, ``((conversation key, number), ...)``. Each conversation
        numbers its events 1, 2, 3, ... in commit order, and a number is committed only
        after every smaller one of its conversation (whichever process wrote it). An
        event stored already (a retry of a commit whose answer was lost) is listed with
        the numbers it was stored at. A cluster node publishes each group."""

    def conversation_heads(convs: Sequence[str]) -> Deferred[dict[str, int]]:
        """The last committed number of each conversation key in ``convs`` that has one."""

    def conversation_range(
        conv: str, after_seq: int, up_to: int, limit: int = 1000
    ) -> Deferred[list[tuple[int, Event]]]:
        """``[(number, event)]`` of conversation ``conv`` numbered in ``(after_seq, up_to]``,
        oldest first, at most ``limit`` (numbers retention removed are absent)."""

    def void_events(conv: str, ids: Sequence[str]) -> Deferred[None]:
        """Delete the events ``ids`` from conversation ``conv``: a cluster found them void at
        their number, and nobody was shown them. Ordered with ``append``; history queries
        of ``conv`` asked meanwhile wait for it. Their numbers stay taken (a gap, as
        retention leaves)."""

    def begin_room(name: str) -> Deferred[None]:
        """Start a new incarnation of room ``name``: from now on, history queries for the
        room (and ``targets``) see only what is appended after this call, never what an
        earlier room of the same name said. Ordered with ``append``; fires with None once
        committed. A persistent room restored after a restart is the same incarnation
        (this is not called for it), so it keeps its whole history.
        """

    def rename_room(old: str, new: str) -> Deferred[None]:
        """Room ``old`` is called ``new`` now: the current incarnation of its history becomes
        ``new``'s (numbered after what ``new`` held; earlier rooms of the name ``new`` stay
        unread), and the accounts remembered in it are in ``new``. Ordered with ``append``
        (an event appended before it moves with the history); queries for either name wait
        for it. The persistent room record is the caller's (``delete_room``, ``save_room``)."""

    def latest(
        viewer: str,
        target: str,
        after_ref: Optional[Ref] = None,
        limit: int = 50,
        kinds: Optional[Collection[str]] = None,
    ) -> Deferred[list[Event]]:
        """The newest ``limit`` events of the conversation, after ``after_ref`` if given."""

    def before(
        viewer: str, target: str, ref: Ref, limit: int = 50, kinds: Optional[Collection[str]] = None
    ) -> Deferred[list[Event]]:
        """The ``limit`` events just before ``ref`` (exclusive)."""

    def after(
        viewer: str, target: str, ref: Ref, limit: int = 50, kinds: Optional[Collection[str]] = None
    ) -> Deferred[list[Event]]:
        """The ``limit`` events just after ``ref`` (exclusive)."""

    def around(
        viewer: str, target: str, ref: Ref, limit: int = 50, kinds: Optional[Collection[str]] = None
    ) -> Deferred[list[Event]]:
        """Up to ``limit`` events centred on ``ref``; a msgid reference includes its message."""

    def between(
        viewer: str, target: str, ref1: Ref, ref2: Ref, limit: int = 50, kinds: Optional[Collection[str]] = None
    ) -> Deferred[list[Event]]:
        """Up to ``limit`` events strictly between the references, counted from ``ref1``."""

    def targets(
        viewer: str,
        start_time: float,
        end_time: float,
        limit: int = 50,
        rooms: Sequence[str] = (),
        kinds: Optional[Collection[str]] = None,
    ) -> Deferred[list[tuple[str, float]]]:
        """Conversations whose latest event is strictly between the two times, as
        ``(name, latest)`` (one with a later event is not listed).

        Private conversations of ``viewer`` give the other party's nick; rooms are listed
        only when named in ``rooms`` (those the viewer may see). Counted from ``start_time``
        like ``between``; returned oldest first.
        """

    def create_account(
        name: str,
        password_hash: str,
        email: Optional[str] = None,
        created: Optional[float] = None,
        scram: Optional[str] = None,
    ) -> Deferred[Account]:
        """Store a new account (with its SCRAM keys, if given); fails with ``AccountExists``.
        Fires with the ``Account``."""

    def get_account(name: str) -> Deferred[Optional[Account]]:
        """The ``Account`` (any case of ``name``), or None."""

    def set_password_hash(name: str, password_hash: str, scram: Optional[str] = None) -> Deferred[None]:
        """Replace the stored hash and SCRAM keys (None: none, as keys of the old password
        must not log in); fails with ``NoSuchAccount``."""

    def set_scram_keys(name: str, scram: str, password_hash: str) -> Deferred[bool]:
        """Store SCRAM keys for an account whose hash is still ``password_hash`` (the password
        they were made from); fires with False when it is not (the password changed meanwhile)."""

    def touch_account(name: str, when: float) -> Deferred[bool]:
        """Record the account's last login time; fires with True if the account exists."""

    def delete_account(name: str) -> Deferred[bool]:
        """Remove the account; fires with True if it existed."""

    def account_names() -> Deferred[set[str]]:
        """The set of folded account names."""

    def add_token(digest: str, account: str, created: float, expires: float, keep: int) -> Deferred[None]:
        """Store a session token's digest (never the token) for ``account``, revoking its
        oldest tokens beyond ``keep``."""

    def token_account(digest: str, now: float) -> Deferred[Optional[str]]:
        """The account an unexpired token digest logs in, by its registered name, or None."""

    def revoke_token(digest: str) -> Deferred[bool]:
        """Remove one token; fires with True if it existed."""

    def revoke_tokens(account: str) -> Deferred[int]:
        """Remove every token of ``account``; fires with how many there were."""

    def add_account_room(account: str, room: str, at: float, keep: int, key: Optional[str] = None) -> Deferred[None]:
        """Remember that ``account`` is in ``room``, entered with ``key`` (a ``+k`` room's,
        replacing the one remembered), keeping its ``keep`` latest rooms."""

    def remove_account_room(account: str, room: str) -> Deferred[bool]:
        """Forget that ``account`` is in ``room``; fires with True if it was remembered."""

    def account_rooms(account: str) -> Deferred[list[tuple[str, Optional[str]]]]:
        """The rooms ``account`` is in, as (name, key or None), in joining order."""

    def save_read_marker(account: str, target: str, at: float, moved: float, keep: int) -> Deferred[None]:
        """``account``'s read marker of ``target`` is at ``at`` (epoch seconds; one there or
        later already stays), moved at ``moved``; only its ``keep`` most recently moved stay."""

    def read_markers(account: str) -> Deferred[dict[str, float]]:
        """``account``'s read markers: {folded target: epoch seconds}, most recently moved last."""

    def shared_secret(name: str, candidate: str) -> Deferred[str]:
        """The secret the nodes sharing this store keep under ``name``: the first one asked
        for (``candidate`` when there is none yet)."""

    def save_room(record: RoomRecord) -> Deferred[None]:
        """Insert or replace a persistent room."""

    def update_room(record: RoomRecord) -> Deferred[bool]:
        """Replace a persistent room's stored state if it is stored (a room deleted
        meanwhile stays deleted); fires with whether it was."""

    def delete_room(name: str) -> Deferred[bool]:
        """Forget a persistent room; fires with True if it existed."""

    def load_rooms() -> Deferred[list[RoomRecord]]:
        """Every persistent room, ordered by folded name."""

    def prune(now: Optional[float] = None) -> Deferred[int]:
        """Apply the [history] retention settings; fires with the number of events removed."""

    def stats(now: Optional[float] = None) -> StoreStats:
        """Blocking, for the admin command (never on the reactor): counts, size and the age of
        history, on a connection of its own. ``StorageError`` when there is no database yet
        or its schema is not this chathub's."""

    def backup(path: str, replace: bool = False) -> int:
        """Blocking, for the admin command: copy the database, consistent as of one moment,
        to a new private (0600) file ``path`` while the server runs; returns its size.
        ``StorageError`` where the backend has its own tools (PostgreSQL: pg_dump)."""
