"""The hub's plug points as zope.interface interfaces.

- ``IParticipant``: something the hub can deliver events to (one per connection).
- ``IChatUser``: the avatar interface the realm hands out through the twisted.cred portal.
- ``IAccountDirectory``: which nicks are registered accounts.
- ``IAccountCreator``: creates accounts (``chathub.auth.accounts.StoreAccountChecker``).
- ``IBackplane``: what joins nodes into a cluster: messages, the nick namespace, liveness
  (``chathub.backplane.LocalBackplane`` for a lone node, ``chathub.cluster.redis`` for
  several); a claim it cannot decide fails with ``BackplaneUnavailable``.
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
        "Hashable; participants with equal keys get identical bytes for every event. None: "
        "another cluster node writes to this participant, so fan-out leaves it out."
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

    def learned(name: str) -> None:
        """Another node of a cluster registered the account ``name`` (any case)."""

    def load() -> Deferred[int]:
        """Read every account's name from where accounts are kept again (after a cluster
        node was cut off from the others: registrations it missed); fires with the count."""


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

    def set_password(name: str, password: str) -> Deferred[Any]:
        """Replace the password of account ``name`` (hashed off the reactor); fails with a
        ``StorageError`` (``NoSuchAccount`` among them) when it cannot be stored. Checking
        the old password, and that the new one is acceptable, is the caller's job."""


class BackplaneUnavailable(Exception):
    """The backplane cannot answer now (Redis unreachable, just restarted without its data,
    or this node's lease not held): a nick claim is refused rather than risk two nodes
    granting one nick. The message says why, for the operator's log; the hub answers its
    clients with a "try again later" error (IRC 437 ERR_UNAVAILRESOURCE)."""


class IBackplane(Interface):
    """What joins hub nodes into one cluster: a doorbell between nodes, one nick namespace,
    and each node's liveness (``chathub.backplane.LocalBackplane`` for a lone node,
    ``chathub.cluster.redis.RedisBackplane`` for several).

    Messages are plain JSON-able dicts and carry no guarantee: one published while the
    transport is down is dropped, never queued, because the events it announces are in the
    database already and receivers catch up from there (``on_resync``). Callbacks
    registered with the ``on_*`` and ``subscribe`` methods run on the reactor thread; an
    exception in one is logged and does not stop the others.
    """

    node_id = Attribute("This node's name in the cluster (str without '/' or spaces).")
    connected = Attribute(
        "True while messages flow and nick claims can be answered (bool); a lone node is "
        "always connected."
    )
    lease_held = Attribute(
        "True while this node holds its lease in the cluster (bool): False while it is fenced "
        "(declared dead, or its node id taken by another process) and until it rejoins, when "
        "it grants no nick; a lone node always holds it."
    )

    def start() -> Deferred[None]:
        """Join the cluster: connect, take this node's lease, subscribe, start the timers.

        Fires (with None) once ready; fails with ``BackplaneUnavailable`` saying why when
        the transport is unreachable or another live process holds this node id.
        """

    def stop() -> Deferred[None]:
        """Leave the cluster: release this node's nicks and lease, unsubscribe, disconnect.

        Other nodes get no ``on_node_lost`` for a node that left this way: the hub
        announces its users' departures before it stops. Fires with None.
        """

    def publish(message: dict[str, Any]) -> None:
        """Send ``message`` (a dict of plain data: strings, whole numbers, floats, booleans,
        None, lists, tuples and dicts with string keys; tuples arrive as lists) to every
        other node, or drop it when disconnected; returns None at once."""

    def subscribe(callback: Callable[[dict[str, Any]], None]) -> None:
        """Call ``callback(message)`` for each message published by another node (never for
        this node's own), in the order the transport delivered them."""

    def unsubscribe(callback: Callable[[dict[str, Any]], None]) -> None:
        """Stop calling ``callback`` for messages."""

    def on_resync(callback: Callable[[bool], None]) -> None:
        """Call ``callback(reconnected)`` when messages may have been missed: with True
        right after the subscription is re-established after an outage, and with False
        every resync interval (connected or not), so the hub compares its sequence heads
        with the database and fetches any gap."""

    def on_connection(callback: Callable[[bool], None]) -> None:
        """Call ``callback(connected)`` each time ``connected`` changes."""

    def on_node_lost(callback: Callable[[str], None]) -> None:
        """Call ``callback(node_id)`` once when another node is declared dead (its lease
        ran out); the hub then drops that node's users and calls ``reap``."""

    def on_lease_lost(callback: Callable[[], None]) -> None:
        """Call ``callback()`` when this node finds it was declared dead by the others (it
        stalled or was cut off longer than its lease): the hub drops its clients rather
        than diverge. The backplane then rejoins with no nicks."""

    def on_nick_lost(callback: Callable[[str, str], None]) -> None:
        """Call ``callback(folded, owner)`` for each nick of this node that another node
        claimed while the transport had lost its data (see ``chathub.cluster.redis``);
        the hub renames or drops that user."""

    def claim_nick(folded: str, owner: str) -> Deferred[bool]:
        """Claim the casefolded nick ``folded`` for ``owner`` ("node_id/session").

        Fires True when granted (it was free, already ``owner``'s, or held by a dead node)
        and False when another live session holds it; fails with ``BackplaneUnavailable``
        when the claim cannot be decided now (fail closed).
        """

    def rename_nick(old: str, new: str, owner: str) -> Deferred[bool]:
        """Claim ``new`` and release ``old`` in one step: True, False or
        ``BackplaneUnavailable`` as ``claim_nick``; on False ``old`` stays claimed."""

    def release_nick(folded: str, owner: str) -> Deferred[None]:
        """Give up ``folded`` if ``owner`` still holds it. Fires with None, also while
        disconnected (the release is applied once the transport is back)."""

    def nick_owner(folded: str) -> Deferred[Optional[str]]:
        """Fire with the owner string holding ``folded``, or None; ``BackplaneUnavailable``
        when it cannot be asked."""

    def keep_room_claims(made: Callable[[], list[tuple[str, str]]]) -> None:
        """``made()`` lists (folded room name, making token) of each live room this node
        made: their names are claimed again when Redis lost its data (a claim lives as long
        as its room). A lone node keeps no claims."""

    def claim_room(folded: str, token: str, replacing: Optional[str] = None) -> Deferred[Optional[str]]:
        """Claim the casefolded room name ``folded`` for the room this node is making,
        ``token`` naming that making (``chathub.hub.roomclaims``).

        Fires None when granted (the name was free, held by ``token`` already, held by
        ``replacing``: a claim whose room never came, taken over, or held by a making whose
        process is gone) and with the holder's token when another making holds it; fails
        with ``BackplaneUnavailable`` when the claim cannot be decided now (fail closed: no
        room is made), ``ValueError`` when ``token`` is not this node's.
        """

    def release_room(folded: str, token: str) -> Deferred[None]:
        """Give up room name ``folded`` if ``token`` still holds it (its room ended). Fires
        with None, also while disconnected (the release is applied once the transport is
        back)."""

    def peers() -> Deferred[list[str]]:
        """The other nodes of the cluster holding a lease now (a node starting asks whether
        anyone can tell it the state of the rooms in use)."""

    def reap(node_id: str) -> Deferred[bool]:
        """Free the nicks of the dead node ``node_id``. Fires True for exactly one caller in
        the cluster (who then records that node's users' departures) and False for every
        other, or when the node is alive."""


class IOperations(Interface):
    """What an operator's tools read over HTTP: ``/metrics`` and ``/healthz`` (the HTTP
    listener serves them; ``chathub.lifecycle.metrics`` implements it over the running
    server)."""

    def metrics_text() -> bytes:
        """Every figure in the Prometheus text format, read now."""

    def health() -> Deferred[tuple[bool, dict[str, Any]]]:
        """Fire with (healthy, a JSON-able report naming each check and its outcome)."""
