"""The storage plug point: ``IStore``, the plain records it keeps, and its errors.

The hub and the protocols talk to storage only through ``IStore``; ``chathub.store.sqlite``
(the embedded default) and ``chathub.store.postgres`` implement it with the same
semantics, and one test suite runs against both.

History is kept per *conversation*: a room (its folded name), or the private
conversation between two folded nicks. Queries follow IRCv3 ``draft/chathistory``: a
reference is ``("msgid", id)`` or ``("timestamp", epoch_seconds)``, bounds are
exclusive, and results are always returned oldest first.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from zope.interface import Attribute, Interface

from chathub.records import Ref


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
    """A registered account. ``name`` keeps the case it was registered with."""

    name: str
    password_hash: str
    created: float
    last_seen: Optional[float] = None
    email: Optional[str] = None


class IStore(Interface):
    """Durable storage for history, accounts and registered rooms.

    Every method returns a Deferred and never blocks the reactor. Writes are applied in
    the order they were called.
    """

    description = Attribute("Where the data lives, for log lines (never contains a password).")

    def open():
        """Create the database if needed and run schema migrations.

        Fires with None; fails with ``StorageError`` naming the database and the problem
        (corrupt file, unwritable directory, unreachable server, newer schema).
        """

    def close():
        """Commit everything appended so far, then release the database. Fires with None."""

    def append(event, rooms=(), notify=None):
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

    def begin_room(name):
        """Start a new incarnation of room ``name``: from now on, history queries for the
        room (and ``targets``) see only what is appended after this call, never what an
        earlier room of the same name said. Ordered with ``append``; fires with None once
        committed. A registered room restored after a restart is the same incarnation
        (this is not called for it), so it keeps its whole history.
        """

    def latest(viewer, target, after_ref=None, limit=50, kinds=None):
        """The newest ``limit`` events of the conversation, after ``after_ref`` if given."""

    def before(viewer, target, ref, limit=50, kinds=None):
        """The ``limit`` events just before ``ref`` (exclusive)."""

    def after(viewer, target, ref, limit=50, kinds=None):
        """The ``limit`` events just after ``ref`` (exclusive)."""

    def around(viewer, target, ref, limit=50, kinds=None):
        """Up to ``limit`` events centred on ``ref``; a msgid reference includes its message."""

    def between(viewer, target, ref1, ref2, limit=50, kinds=None):
        """Up to ``limit`` events strictly between the references, counted from ``ref1``."""

    def targets(viewer, start_time, end_time, limit=50, rooms=(), kinds=None):
        """Conversations with activity strictly between the two times, as ``(name, latest)``.

        Private conversations of ``viewer`` give the other party's nick; rooms are listed
        only when named in ``rooms`` (those the viewer may see). Counted from ``start_time``
        like ``between``; returned oldest first.
        """

    def create_account(name, password_hash, email=None, created=None):
        """Store a new account; fails with ``AccountExists``. Fires with the ``Account``."""

    def get_account(name):
        """The ``Account`` (any case of ``name``), or None."""

    def set_password_hash(name, password_hash):
        """Replace the stored hash; fails with ``NoSuchAccount``."""

    def touch_account(name, when):
        """Record the account's last login time."""

    def delete_account(name):
        """Remove the account; fires with True if it existed."""

    def account_names():
        """The set of folded account names."""

    def save_room(record):
        """Insert or replace a registered room (``RoomRecord``)."""

    def delete_room(name):
        """Forget a registered room; fires with True if it existed."""

    def load_rooms():
        """Every registered room as a list of ``RoomRecord``."""

    def prune(now):
        """Apply the [history] retention settings; fires with the number of events removed."""
