"""The hub's plug points as zope.interface interfaces.

- ``IParticipant``: something the hub can deliver events to (one per connection).
- ``IChatUser``: the avatar interface the realm hands out through the twisted.cred portal.
- ``IAccountDirectory``: which nicks are registered accounts.
- ``IAccountCreator``: creates accounts (``chathub.auth.accounts.StoreAccountChecker``).
- ``IBackplane``: where events go so other nodes see them (``chathub.backplane.LocalBackplane``
  for a single node; Redis pub/sub to come).
Storage has its own interface in ``chathub.store.interfaces``.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Optional

from zope.interface import Attribute, Interface

if TYPE_CHECKING:
    from twisted.internet.defer import Deferred

    from chathub.events import Event


class IParticipant(Interface):
    """A connection the hub delivers events to; each protocol implements it.

    Fan-out calls ``encode`` once per distinct ``format_key`` among the recipients and
    hands the same bytes to every recipient with that key, so ``encode`` must depend only
    on the event and on what the key captures (wire format, negotiated capabilities).
    """

    protocol = Attribute("Short protocol name: 'line', 'irc' or 'ws'.")
    format_key = Attribute(
        "Hashable; participants with equal keys get identical bytes for every event."
    )
    address = Attribute(
        "The peer's real address (IP address text; '' when unknown): the realm keeps it as "
        "User.ip and shows everyone else its cloak (chathub.auth.cloak) as User.host."
    )
    echo_own = Attribute(
        "True when the participant wants its own events (messages, joins) delivered back "
        "by fan-out; False when the protocol renders its own copy (IRC labeled-response)."
    )

    def encode(event: Event) -> Optional[bytes]:
        """Return the bytes for ``event`` in this participant's format, or None to skip it."""

    def send(data: bytes) -> None:
        """Queue ``data`` (bytes) for writing; never blocks, may close on send-queue overflow."""

    def deliver(event: Event) -> None:
        """Deliver one event meant only for this participant (encode and send)."""

    def close(reason: str) -> None:
        """Disconnect with ``reason`` (a short human text) shown in the protocol's terms."""


class IChatUser(Interface):
    """Avatar interface: a logged-in user of the hub (see ``chathub.hub.users.User``)."""

    nick = Attribute("Current nick (str), or None before the nick is claimed.")
    account = Attribute("Account name when logged in with a password, else None.")


class IAccountDirectory(Interface):
    """Knows which nicks belong to registered accounts."""

    def is_account(name: str) -> bool:
        """True when ``name`` (any case) is a registered account; answered from memory."""


class IAccountCreator(Interface):
    """Creates accounts: what ``ChatHub.create_account`` registers a nick with.

    The hub turns its failures into ``HubError`` codes (``account_exists``,
    ``storage_failed``), so no protocol sees the store's errors.
    """

    def create_account(name: str, password: str, email: Optional[str] = None) -> Deferred[Any]:
        """Create the account ``name`` with ``password`` (hashed off the reactor).

        Fires with the new account, whose ``name`` is the name as registered; fails with
        the store's ``AccountExists`` when the name is taken in any case, or another
        ``StorageError`` when it cannot be stored. Whether ``name`` is a valid nick and the
        password acceptable is the caller's to check.
        """


class IBackplane(Interface):
    """Carries events between hub nodes (Redis pub/sub); the local one carries nothing."""

    def publish(event: Event) -> None:
        """Send ``event`` to other nodes."""

    def subscribe(callback: Callable[[Event], None]) -> None:
        """Call ``callback(event)`` for every event published by another node."""
