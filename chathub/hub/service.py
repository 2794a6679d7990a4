"""The hub: rooms, nicks, presence, permissions and fan-out. It knows no wire format.

Protocols call the methods of ``ChatHub`` with a ``User`` (the avatar they got from the
portal); a refused request raises a ``HubError`` with a stable code. Accepted requests
become ``Event``s, stored (chat is committed before anyone sees it) and delivered in hub
order through the ``Outbox``. Fan-out (``Fanout``) asks each distinct ``format_key``
among the recipients to encode once, then hands the same bytes to every recipient of
that format.

``ChatHub`` holds the nicks, the rooms and their members and checks every request; the
jobs with rules of their own live beside it, and the hub's methods of the same names
hand them the state they need: applying room modes (``roommodes``), what one user may
see of rooms and users (``visibility``), room lifetimes, founders and limits on making
rooms (``lifetimes``), MONITOR (``presence``) and the WHOWAS log (``whowas``).
"""
from __future__ import annotations

import dataclasses
import gc
import math
import time
from collections import ChainMap, OrderedDict
from functools import partial
from typing import Any, Callable, Collection, Iterable, Mapping, Optional, Sequence, Union, cast

from twisted.application import service
from twisted.internet import defer
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from chathub.config import Config
from chathub.counters import HubCounts
from chathub.events import REDACTED, STATUSMSG, Event, EventIds, Kind, Source
from chathub.hub import errors, visibility
from chathub.hub.account_rooms import AccountRooms
from chathub.hub.admission import (
    EXTERNAL,
    JOIN_COUNT,
    JOIN_EXEMPT,
    JOIN_INVITED,
    JOIN_KEY,
    JOIN_SEEN,
    ROOM_ENDS,
    SPOKE_EXCEPTED,
    SPOKE_MODERATED,
    SPOKE_PRIVILEGES,
    Admission,
    key_digest,
    remember,
)
from chathub.hub.fanout import Fanout
from chathub.hub.lifetimes import ROOM_FOUNDER, RoomLifetimes, persistent_operator, room_record
from chathub.hub.metadata import Metadata, read_room_state
from chathub.hub.modes import Change
from chathub.hub.names import RESERVED_NICKS
from chathub.hub.outbox import Outbox, Receipt, not_stored_text
from chathub.hub.presence import Presence
from chathub.hub.readmarkers import ReadMarkers
from chathub.hub.remote import RemoteDirectory, RemoteParticipant, RemoteUser, presence_of
from chathub.hub.replica import MODE_SESSIONS, TARGET_SESSION, Positions, RemoteRooms, following_renames
from chathub.hub.roomclaims import HOLD_GAP_WAITS, ROOM_CLAIM, RoomClaims
from chathub.hub.roommodes import ModeState, apply_room_modes, mode_state, reset_room, take_back_room_modes
from chathub.hub.rooms import LIST_MODES, PRIVILEGE_MODES, BanEntry, Member, Room
from chathub.hub.roomstate import STARTING, RoomStateWait
from chathub.hub.storage import as_hub_error
from chathub.hub.users import User
from chathub.hub.whowas import WhowasEntry, WhowasLog
from chathub.interfaces import BackplaneUnavailable, IAccountCreator, IAccountDirectory, IBackplane, IParticipant
from chathub.names import fold, is_room_name, nick_problem, valid_nick, valid_room_name
from chathub.records import CHAT_KINDS, Ref, RoomRecord
from chathub.store.interfaces import IStore, StorageError
from chathub.text import encode_utf8

# room_record is imported from here too (it was defined here before ``lifetimes``)
__all__ = ["ChatHub", "room_record"]

#: events committed to history before anyone sees them: user text, and its redaction (once
#: anyone is shown a REDACT, no history read returns the text it took back)
DURABLE_KINDS = Kind.TEXT_KINDS | {Kind.REDACT}
#: events kept in history for draft/event-playback, without waiting for the commit
PLAYBACK_KINDS = frozenset(
    {Kind.TAGMSG, Kind.JOIN, Kind.PART, Kind.KICK, Kind.QUIT, Kind.NICK, Kind.TOPIC, Kind.MODE}
)
#: events whose delivery waits for their commit: chat, and a room's rename (history
#: follows the room to its new name in the same writes)
HELD_KINDS = DURABLE_KINDS | {Kind.RENAME}
HISTORY_KINDS = HELD_KINDS | PLAYBACK_KINDS
#: events that may share one write per recipient with the next ones (see ``Fanout``)
BATCHABLE_KINDS = DURABLE_KINDS | {Kind.TAGMSG}
#: a room's changes that a cluster node shows in the room's numbered order, its own too
ROOM_STATE_KINDS = frozenset({Kind.JOIN, Kind.PART, Kind.KICK, Kind.TOPIC, Kind.MODE})
#: what ``ChatHub.history`` may ask of the store
HISTORY_QUERIES = frozenset({"latest", "before", "after", "around", "between"})
#: STATUSMSG prefixes (IRC ISUPPORT ``STATUSMSG=@+``): ``@#room`` reaches the room's
#: operators, ``+#room`` its operators and voiced members
STATUS_PREFIXES = "@+"


class _HeldEvent:
    """An event held in the outbox until its commit (``ChatHub._publish``) or, a cluster
    node's own room event, until its number (``ChatHub._publish_numbered``): shown then, or
    its sender told it is void, or, if it could not be stored, its sender told (a chat
    message) or shown even so (a change made here already). An object rather than two
    closures over nine variables: one per room message, and the profile showed the cells."""

    __slots__ = ("hub", "event", "recipients", "skip", "actor", "receipt", "acting", "each")

    def __init__(self, hub: "ChatHub", event: Event, recipients: Sequence[User], skip: Optional[User],
                 actor: Optional[User], receipt: Optional[Receipt], each: bool = False) -> None:
        self.hub = hub
        self.event = event
        self.recipients = recipients
        self.skip = skip
        self.actor = actor
        self.receipt = receipt
        #: the session that sent it, of an actor with several: worked out now, since
        #: another of its sessions may act before the commit (``User.act_as``)
        self.acting = hub._acting(skip)
        self.each = each  # each recipient renders it for itself (``ChatHub.deliver_each``)

    def deliver(self) -> None:
        """Its number is reached: show it, unless it was found void there."""
        hub, event = self.hub, self.event
        refusal = hub._voided.pop(event.id, None) if hub._voided else None
        if refusal is None:
            self._show()
        else:
            hub._void_own(self.actor, event, refusal, self.receipt)

    def not_stored(self, failure: Failure) -> None:
        """It could not be stored."""
        hub, event = self.hub, self.event
        if event.kind in DURABLE_KINDS:
            hub._not_stored(self.actor, event, failure, self.receipt)
        else:  # made here already: shown, as a lone node shows a change it could not store
            hub._log_store_failure(failure, event)
            self._show()

    def _show(self) -> None:
        event, skip = self.event, self.skip
        if self.each:
            self.hub.deliver_each(event, self.recipients, skip, self.acting)
        else:
            self.hub.fanout.publish(event, self.recipients, skip, event.kind in BATCHABLE_KINDS, self.acting)
        if self.receipt is not None:
            # (once what was published before it is encoded: a change is never batched, so
            # the fan-out wrote out what it held first)
            self.receipt.shown = True


def status_audience(member: Member, prefix: str) -> bool:
    """Whether ``member`` is among those a STATUSMSG with ``prefix`` reaches."""
    return member.is_operator if prefix == "@" else member.is_voiced


def _as_room(events: list[Event], name: str) -> list[Event]:
    """A room's history as the room is called now: what was said before a rename names
    the old room (its stored target), and is shown as said in ``name``. A rename itself
    keeps its names."""
    return [
        dataclasses.replace(e, target=name) if e.target != name and e.kind != Kind.RENAME and is_room_name(e.target)
        else e
        for e in events
    ]


class _NoAccounts:
    """Account directory used when no checker knows of accounts."""

    def is_account(self, name: str) -> bool:
        return False

    def learned(self, name: str) -> None:
        """Nothing: no accounts here."""

    def load(self) -> Deferred[int]:
        return defer.succeed(0)


#: a cluster node's own topic and mode changes remembered on their way to their number
OWN_CHANGES_KEPT = 10_000
#: renamed rooms a cluster node remembers under their old names (``ChatHub.room_named``),
#: and ended rooms whose copy it held then (``ChatHub._copy_outlived_its_end``)
RENAMES_KEPT = 1024
#: the events that take a member out of a room, and may end it
LEAVING_KINDS = frozenset({Kind.PART, Kind.KICK, Kind.QUIT})
#: an event of no one room (a private message, a quit, a nick change) shown to at most this
#: many users here waits on a cluster node only behind what a held room owes one of them
#: (``Outbox.hold``'s ``shown_to``: each user's rooms are looked at); one shown to more
#: waits behind every held room
SCOPED_MOST = 64
#: mode changes in one MODE event a node shows when its copy of a room takes a new room's
#: state (``_joined_an_ended_copy``): as many parameters as one IRC MODE line carries
RESET_CHANGES_PER_EVENT = 4
#: room names a ``founded`` item (a guest's room registered at its login on another node)
#: named before this node had the room, kept until the room's JOIN makes it here
EARLY_FOUNDED = 1000
#: how long such a name is kept (a room whose JOIN never came here is no reason to
#: register a later room of the name)
EARLY_FOUNDED_SECONDS = 60.0
#: metadata items kept for such a room (a room's keys are bounded by the protocol: 50)
EARLY_METADATA_ITEMS = 128

#: the cyclic garbage collector's thresholds in a running server (``gc.set_threshold``).
#: With Python's default (a young collection every 700 allocations of containers), a busy
#: server collected every few hundred microseconds: the objects of each message in flight
#: (its event, its outbox entry, its store write), alive for the 100-150 ms of a commit,
#: outlived two collections, were promoted to the oldest generation and brought on its full
#: passes: 13% of the CPU of a busy node (rooms benchmark, gc callbacks timed). At 50,000
#: they mostly die young: rooms (1 node, SQLite) 246k-252k deliveries/s against 227k-233k
#: at 10,000 (medians of 3, twice each, quiet). Only cyclic garbage waits for a collection
#: (everything else is freed at once), so the server leaves none where it can: a
#: WebSocket's HTTP channel and request are taken apart at the upgrade
#: (``ChatWebSocketResource``), which left idle WebSocket connections 1 KiB each larger
#: at this threshold before.
GC_THRESHOLDS = (50_000, 20, 10)


def _prepare_collector() -> None:
    """Set the collector's thresholds (``GC_THRESHOLDS``), and keep what exists at start-up
    (modules, Twisted, config) out of its full passes, once per process.

    A full pass walks every tracked object, start-up's own included; those pauses were
    the tail of fan-out latency (rate benchmark p99 17-19 ms -> 10-12 ms). Whether it
    was done is the interpreter's own state (its frozen count), not ours to keep."""
    gc.set_threshold(*GC_THRESHOLDS)
    if not gc.get_freeze_count():
        gc.collect()
        gc.freeze()


#: the least time between two answers of a node to the requests for the rooms in use
#: (``ChatHub._answer_rooms``): seconds
ROOMS_ANSWER_EVERY = 1.0
#: asks in a row for a room this node holds only in part (``ChatHub._learn_partial_again``)
PARTIAL_ASKS = 3


def _list_in_number_order(room: Room, changes: Sequence[tuple[str, Any]]) -> bool:
    """Move the mask-list entries that ``changes`` (a MODE's, at its number) added to the
    end of their lists, where the numbered order puts them; True when one moved."""
    moved = False
    for change, mask in changes:
        attribute = LIST_MODES.get(change[1:2]) if change[:1] == "+" and isinstance(mask, str) else None
        if attribute is None:
            continue
        entries: list[BanEntry] = getattr(room, attribute)
        folded = fold(mask)
        at = next((i for i, entry in enumerate(entries) if fold(entry.mask) == folded), None)
        if at is not None and at != len(entries) - 1:
            entries.append(entries.pop(at))
            moved = True
    return moved


class ChatHub(service.Service):
    """The one room/broadcast service every protocol feeds."""

    log = Logger()
    name = "hub"  # type: ignore[assignment]  # Twisted's Service says ``name = None``, unannotated

    def __init__(
        self,
        config: Optional[Config] = None,
        store: Optional[IStore] = None,
        accounts: Optional[IAccountDirectory] = None,
        account_creator: Optional[IAccountCreator] = None,
        clock: Optional[IReactorTime] = None,
        seconds: Callable[[], float] = time.monotonic,
    ) -> None:
        """``accounts`` answers which nicks belong to accounts (none without it);
        ``account_creator`` creates accounts (``IAccountCreator``), and without one account
        registration is refused. With ``clock`` (the reactor), chat
        that one member is owed from all the reads of a reactor turn goes out as one write
        at the end of the turn (``Fanout``); without it, at the end of each read.
        ``seconds`` is the clock the room-creation rate is measured with."""
        self.config = config or Config()
        self.store = store
        self.accounts = accounts or _NoAccounts()
        self.ids = EventIds()
        self.users: dict[str, User] = {}  # folded nick -> signed-on user
        #: the users signed on here by their connection (``User.session``): a guest's private
        #: conversations are its connection's, whatever its nick (``wants_order``), and another
        #: node's message names the connection it is for (``deliver_remote``)
        self._by_session: dict[str, User] = {}
        self.rooms: dict[str, Room] = {}  # folded name -> room
        self.whowas_log = WhowasLog()
        self._lifetimes = RoomLifetimes(self.rooms, self.config, store, seconds, self.log)
        #: the rooms each account is in, kept to join them again at its next login
        self.account_rooms: Optional[AccountRooms] = (
            AccountRooms(store, self.config.limits.max_rooms_per_user, self.log) if store is not None else None
        )
        self._presence = Presence(self.after_delivery)
        #: counters read by /metrics (``chathub.lifecycle.metrics``) when it is scraped;
        #: with ``[metrics] enabled = false`` the fan-out counts nothing (bench/: metrics off)
        self.counts = HubCounts()
        self.fanout = Fanout(clock, self.counts if self.config.metrics.enabled else None)
        self.read_markers = ReadMarkers(self.config.limits.read_markers, store, timer=clock)
        self.outbox = Outbox(self.fanout.batching)
        if store is not None:
            # a committed group of events is released by one drain, as one fan-out batch
            store.wrap_releases(self.outbox.settling)
        self.started = time.time()
        self.max_users_seen = 0
        self.max_global_seen = 0  # with the users of the other nodes of a cluster
        self._user_mode_counts: dict[str, int] = {}  # signed-on users per user mode letter
        self.server_source = Source(nick=self.config.server.name, protocol="server")
        self.history_enabled = self.config.history.enabled
        self.account_creator = account_creator
        #: issues and revokes session tokens (``chathub.auth.tokens.SessionTokens``); None: none
        self.session_tokens: Optional[Any] = None
        #: in a cluster (``join_cluster``): the backplane that grants nicks, and the users of
        #: the other nodes; None on a lone node
        self.cluster: Optional[IBackplane] = None
        self.remote: Optional[RemoteDirectory] = None
        #: in a cluster: the claims of new rooms' names (one node makes a room)
        self.room_claims: Optional[RoomClaims] = None
        #: other nodes' users in this node's rooms, kept by their room events
        self.replica = RemoteRooms(self, self._deliver_now)
        #: in a cluster: where each room's conversation stands here (the relay), and the
        #: start-up's request for the rooms in use while it is unanswered
        self._positions: Optional[Positions] = None
        self._snapshot_wanted: Optional[Deferred[None]] = None
        self._room_state: Optional[RoomStateWait] = None  # while asking: which answer to take
        #: in a cluster: while this node learns the rooms made while it was cut off from the
        #: other nodes (``learn_rooms``), what waits for that; and how long the asking waits
        self._learning: Optional[list[Deferred[None]]] = None
        self._learn_timer: Optional[IDelayedCall] = None
        #: the next ``learn_rooms`` of a room held in part (``_learn_rooms_soon``)
        self._learn_again: Optional[IDelayedCall] = None
        self._cluster_clock: Optional[IReactorTime] = None
        self._answer_wait = 5.0
        #: when this node last answered a request for the rooms, and its next answer, due
        self._rooms_answered = float("-inf")
        self._rooms_answer_due: Optional[IDelayedCall] = None
        self._partial_asks = 0  # asks in a row that left a room held in part
        self._stopped = False
        #: in a cluster: each room event checked again at its number (``admit``), and this
        #: node's events found void there (event id -> the error for its sender), until
        #: the outbox reaches them
        self.admission = Admission()
        self._voided: dict[str, errors.HubError] = {}
        #: in a cluster: rooms registered on another node before this node had them
        #: (``_remote_founded``): folded name -> (the founder's folded account, when)
        self._early_founded: OrderedDict[str, tuple[str, float]] = OrderedDict()
        #: and the metadata items of such rooms (``_remote_metadata``), with when they came
        self._early_metadata: OrderedDict[str, tuple[list[tuple[str, Optional[str], float, str]], float]] = (
            OrderedDict())
        self._on_rename: list[Callable[[Room, str], None]] = []
        #: accounts whose tokens this node revoked while the backplane was down
        self._unannounced_revocations: set[str] = set()
        #: in a cluster: this node's topic and mode changes on their way to their number,
        #: with the copy of the room they were made on and the other nodes' changes it had
        #: applied then (``_note_own_change``)
        self._own_changes: OrderedDict[str, tuple[Room, int, Union[ModeState, tuple[str, str, float]]]] = OrderedDict()
        #: in a cluster: rooms whose end stood at its number while this node held a copy
        #: (``_copy_outlived_its_end``), until their next JOIN
        self._outlived: OrderedDict[str, Room] = OrderedDict()
        #: room (folded) -> the JOINs and leaves of it applied here and not yet at their number
        #: (this node's own; another node's QUIT applied at another of its rooms' numbers):
        #: event id -> the joiner, or None for a leave (``_only_joining_left``)
        self._on_their_way: dict[str, OrderedDict[str, Optional[User]]] = {}
        #: room (folded) -> its copy, ended here while leaves applied ahead of their numbers
        #: were on their way, kept in ``_ended_ahead`` until they are at their numbers
        #: (``_ends_before_leaves_on_their_way``)
        self._kept_for_leaves: OrderedDict[str, tuple[Room, set[str]]] = OrderedDict()
        #: in a cluster: rooms this node's own JOIN made, until that JOIN's number (folded
        #: name -> its id): another node's JOIN numbered before it made the room (``made_earlier``)
        self._made_ahead: OrderedDict[str, str] = OrderedDict()
        #: in a cluster: rooms that ended here at a leave of this node's, until that leave's
        #: number (``room_ends``): another node's JOIN numbered before it kept the room
        self._ended_ahead: OrderedDict[str, Room] = OrderedDict()
        #: in a cluster: rooms renamed lately, old folded name -> new (``room_named``)
        self._renamed_from: OrderedDict[str, str] = OrderedDict()
        #: draft/metadata-3 values of users and rooms, and who hears of their changes
        self.metadata = Metadata(time.time)

    def deliver_again(self, event: Event, conv: str) -> None:
        """Another node's QUIT or NICK, delivered at the first of its rooms' numbers here,
        at its number in room ``conv`` (``ClusterRelay``; ``RemoteRooms.again``)."""
        self.replica.again(event, conv)

    def _deliver_now(self, event: Event, recipients: Sequence[User]) -> None:
        # Another node's event comes in its conversation's committed order, past the local
        # outbox: a local event still waiting there for its commit gets a later number (the
        # conversation's lock orders the two commits), and one waiting for this event's
        # number to be delivered is held by the relay (``Outbox.pause``).
        self.fanout.publish(event, recipients, None, event.kind in BATCHABLE_KINDS)

    def join_cluster(
        self,
        backplane: IBackplane,
        positions: Optional[Positions] = None,
        clock: Optional[IReactorTime] = None,
        wait: float = 5.0,
    ) -> Deferred[None]:
        """Share the nick namespace with the other nodes through ``backplane`` (started):
        nicks are granted by its claims, presence goes out and comes in, and a node that
        dies takes its users out of the directory.

        With ``positions`` (the cluster relay, not started yet) this node asks the others
        for the state of the rooms in use: the Deferred fires once the first answer is
        applied and the relay told where each room's state stands, at once when no other
        node holds a lease, or after ``wait`` seconds on ``clock`` without an answer.

        With ``clock``, a new room's name is claimed across the cluster before the room is
        made (``claim_and_join``: ``chathub.hub.roomclaims``)."""
        self.cluster = backplane
        self.remote = RemoteDirectory(backplane.node_id, listener=self)
        # a user's metadata travels with its presence, a room's as a ``meta`` item
        self.metadata.node_id = backplane.node_id
        self.metadata.on_user_change = lambda user: self._announce(["id", presence_of(user)])
        self.metadata.on_room_change = self._announce
        self._cluster_clock, self._answer_wait = clock, wait
        self._lifetimes.shared = True  # other nodes change and rename the stored rooms too
        if clock is not None:
            claims = self.room_claims = RoomClaims(
                backplane, self.rooms, clock, self.config.cluster.room_claim_wait, self.learn_rooms,
                hold=HOLD_GAP_WAITS * self.config.cluster.gap_wait)
            self.when_room_ends(claims.ended)
            backplane.keep_room_claims(claims.made_here)
            # the old name's claim a rename of this node kept (``RoomClaims.renaming``)
            self.admission.on_renamed = claims.confirm
        self.admission.on_end = self._end_stood
        backplane.subscribe(self._cluster_message)
        backplane.on_resync(self._resynced)
        backplane.on_node_lost(self._node_lost)
        # a node the others declared dead must not go on serving users they saw leave, and a
        # nick another node now holds must not stay with a user here: one namespace, no divergence
        backplane.on_lease_lost(self._lease_lost)
        backplane.on_nick_lost(self._nick_lost)
        # a revocation of session tokens ends the sessions holding them on every node
        backplane.on_connection(self._connection_changed)
        if self.session_tokens is not None:
            self.session_tokens.announce = self._tokens_revoked
        if positions is None:
            self._announce(["hello"], ["roster", self.remote.roster(self.users.values())])
            return defer.succeed(None)
        self._positions = positions
        waiting = self._snapshot_wanted = Deferred()

        def none(why: str) -> None:
            if not waiting.called:
                self.log.info("no room state from the other nodes ({why}): starting with none", why=why)
                self._snapshot_wanted = self._room_state = None
                waiting.callback(None)

        self._room_state = state = RoomStateWait(self._install_rooms, none)
        if clock is not None:  # bounded from now, whether or not the list of nodes comes
            timer = clock.callLater(wait, state.give_up, f"not every node answered within {wait:g} s")

            def answered(result: None) -> None:
                if timer.active():
                    timer.cancel()

            waiting.addCallback(answered)
        self._announce(["hello", {"rooms": True}], ["roster", self.remote.roster(self.users.values())])
        backplane.peers().addCallbacks(state.peers_known, lambda f: state.give_up(f.getErrorMessage()))
        return waiting

    def _announce(self, *items: list[Any]) -> None:
        if self.cluster is not None:
            # "ids": what this process's event ids carry (``RemoteDirectory.lost``)
            self.cluster.publish({"node": self.cluster.node_id, "ids": self.ids.tag, "presence": list(items)})

    def _cluster_message(self, message: dict[str, Any]) -> None:
        if "presence" not in message or self.remote is None:
            return
        rooms_asked = False
        try:
            hello = self.remote.apply(message)
            for item in message["presence"]:
                if item[0] == "invite":
                    self._remote_invite(Event.from_dict(item[1]))
                elif item[0] == "account" and isinstance(item[1], str):
                    self.accounts.learned(item[1])  # its nick is protected here too
                elif item[0] == "founded" and isinstance(item[1], str) and isinstance(item[2], str):
                    self._remote_founded(item[1], fold(item[2]))
                elif item[0] == "marker" and isinstance(item[1], str) and isinstance(item[2], str) \
                        and type(item[3]) in (int, float) and math.isfinite(item[3]):
                    self._remote_marker(item[1], item[2], float(item[3]))
                elif item[0] == "wallops":
                    self._remote_wallops(Event.from_dict(item[1]))
                elif item[0] == "kill":
                    self._remote_kill(str(item[1]), str(item[2]), str(item[3]), str(item[4]))
                elif item[0] == "tokens":
                    self._check_tokens(str(item[1]))
                elif item[0] == "meta":
                    self._remote_metadata(item[1], item[2:6])
                elif item[0] == "hello" and len(item) > 1 and item[1].get("rooms"):
                    rooms_asked = True  # a node that starts
                elif item[0] == "rooms?":
                    rooms_asked = True  # a node that learns the rooms made while it was cut off
                elif item[0] == "rooms" and self._room_state is not None:
                    starting = len(item) > 3 and item[3] == STARTING
                    self._room_state.answer(str(message["node"]), item[1], item[2] if len(item) > 2 else [], starting)
        except Exception:
            self.log.failure("a malformed presence message was dropped")
            return
        if hello:  # a node (re)joined: it needs this node's users
            self._announce(["roster", self.remote.roster(self.users.values())])
        if rooms_asked and self._positions is not None:  # starting or learning: the rooms
            self._answer_rooms()

    def _remote_metadata(self, name: Any, fields: Any) -> None:
        """Another node changed a key of room ``name``'s metadata (``chathub.hub.metadata``).
        The item goes out at once, a room's making JOIN once committed: a room not here
        yet takes it when its JOIN makes it (``made_elsewhere``; as ``_remote_founded``)."""
        (item,) = read_room_state([fields])
        room = self.rooms.get(fold(str(name)))
        if room is not None:
            self.metadata.apply_room(room, item[0], item[1], (item[2], item[3]))
            return
        kept = self._early_metadata.get(fold(str(name)))
        items = kept[0] if kept is not None else []
        if len(items) < EARLY_METADATA_ITEMS:
            items.append(item)
        remember(self._early_metadata, fold(str(name)), (items, time.monotonic()), EARLY_FOUNDED)

    def _install_rooms(self, rooms: Any, node: str, facts: Any) -> bool:
        """Take an answer to this node's request for the rooms in use (``RoomStateWait``
        chose it): apply it, take the facts of each room's numbered order (``Admission``),
        and tell the relay where each room stands (it delivers what follows). False, with
        nothing taken, for a malformed answer: the next one may do."""
        waiting, positions = self._snapshot_wanted, self._positions
        assert waiting is not None and positions is not None and self.remote is not None
        try:  # all read before anything is taken
            orders = self.admission.parse(facts)
            installed = self.replica.install(self.remote.node_id, rooms)
        except Exception:
            self.log.failure("the room state from node {node} is malformed: waiting for another answer", node=node)
            return False
        self._snapshot_wanted = self._room_state = None
        for room, seq in installed:
            if seq is not None:
                positions.start_at(room.folded, seq)
        self.admission.adopt(orders)
        for conv, (_, _, seq) in orders.items():
            positions.start_at(conv, seq)
        self.log.info("the state of {count} rooms came from node {node}", count=len(rooms), node=node)
        waiting.callback(None)
        return True

    def learn_rooms(self, again: bool = False) -> Deferred[None]:
        """Ask the other nodes for the rooms in use and take those this node lacks or holds
        only in part: rooms made while it was cut off from Redis (the doorbell's messages of
        their making were lost, and the relay compares with the database only the
        conversations it heard of), or one whose making a join here waited for in vain
        (``RoomClaims``: a lost message, not a lost room). The relay holds the events of
        rooms it neither heard of nor holds meanwhile (from the moment the connection
        dropped: ``_connection_changed``), and delivers them after, from where each room's
        state stands. ``again`` (a reconnect while asking): the request and its answers may
        have been lost with the connection, so it is made again. Fires once an answer is
        taken, every node answered, or the start-up's wait (``join_cluster``) is over; at
        once on a lone node, or while the start-up's own request is unanswered."""
        positions, backplane, clock = self._positions, self.cluster, self._cluster_clock
        if positions is None or backplane is None or clock is None or self._snapshot_wanted is not None \
                or self._stopped:
            return defer.succeed(None)
        told: Deferred[None] = Deferred()
        if self._learning is not None:  # asked already: that answer will do
            self._learning.append(told)
            if again:  # a new wait: answers (and fallbacks) from before the cut lack its rooms
                self._room_state = RoomStateWait(self._take_learned, self._learned)
                self._ask_rooms()
            return told
        self._learning = [told]
        positions.hold_unknown_rooms()
        self._room_state = RoomStateWait(self._take_learned, self._learned)
        self._ask_rooms()
        return told

    def _take_learned(self, rooms: Any, node: str, facts: Any) -> bool:
        """Take an answer to ``learn_rooms`` (``RoomStateWait`` chose it); False when it is
        malformed (the next one may do)."""
        if not self._install_unknown_rooms(rooms, node, facts):
            return False
        self._learned(f"node {node} answered")
        return True

    def _learned(self, why: str) -> None:
        """``learn_rooms`` is over (an answer taken, or none came): the relay delivers what
        it held, and whoever waited goes on."""
        positions, backplane = self._positions, self.cluster
        assert positions is not None and backplane is not None
        waiting, self._learning, self._room_state = self._learning or [], None, None
        if self._learn_timer is not None and self._learn_timer.active():
            self._learn_timer.cancel()
        self._learn_timer = None
        try:
            positions.release_unknown_rooms()
            if not backplane.connected:
                # ended while cut off again (the wait ran out): hold again until the
                # reconnect asks anew (the subscriber may be delivering meanwhile)
                positions.hold_unknown_rooms()
        finally:
            self.log.info("rooms learned from the other nodes: {why}", why=why)
            for d in waiting:
                d.callback(None)
            self._learn_partial_again()

    def _learn_partial_again(self) -> None:
        """A room still held only in part after an answer (the answer stood below where this
        node had delivered it, or only learning nodes answered) is asked for again, a second
        later, at most ``PARTIAL_ASKS`` times in a row."""
        clock = self._cluster_clock
        if clock is None or not any(room.partial for room in self.rooms.values()):
            self._partial_asks = 0
            return
        if self._partial_asks >= PARTIAL_ASKS:
            self.log.warn("rooms held only in part after {n} answers: left as they are", n=self._partial_asks)
            self._partial_asks = 0
            return
        self._partial_asks += 1
        self._learn_rooms_soon(ROOMS_ANSWER_EVERY)

    def _learn_rooms_soon(self, delay: float) -> None:
        """``learn_rooms`` in ``delay`` seconds, or sooner if asked for sooner already; never
        once the hub stopped (its timer is cancelled then: it ran on into whatever the
        reactor did next)."""
        clock, pending = self._cluster_clock, self._learn_again
        if clock is None or self._stopped:
            return
        if pending is not None and pending.active():
            if pending.getTime() <= clock.seconds() + delay:
                return
            pending.cancel()
        self._learn_again = clock.callLater(delay, self.learn_rooms)

    def _ask_rooms(self) -> None:
        """Send this node's request for the rooms in use (``learn_rooms``), bounded by the
        start-up's wait from now on."""
        state, backplane, clock = self._room_state, self.cluster, self._cluster_clock
        assert state is not None and backplane is not None and clock is not None
        if self._learn_timer is not None and self._learn_timer.active():
            self._learn_timer.cancel()
        wait = self._answer_wait
        self._learn_timer = clock.callLater(wait, state.give_up, f"not every node answered within {wait:g} s")
        self._announce(["rooms?"])
        backplane.peers().addCallbacks(state.peers_known, lambda f: state.give_up(f.getErrorMessage()))

    def begun_unseen(self, room: Room) -> None:
        """Another node's JOIN that is not the room's making made ``room`` here. When this
        node's order of the room began while it held no copy (its making's message was
        lost, not an end this node had not applied yet), this copy may lack the members
        before it: marked ``partial``, it is replaced by the other nodes' state of the room,
        asked for in the next reactor turn (not inside this event's delivery)."""
        positions, clock = self._positions, self._cluster_clock
        if positions is None or clock is None or not positions.began_unseen(room.folded):
            return
        positions.seen_making(room.folded)  # asked for once: the answer makes the copy whole
        room.partial = True
        self._learn_rooms_soon(0)

    def seen_making(self, room: Room) -> None:
        """The JOIN that made ``room`` (its making, with its claim) made this node's copy: the
        copy is whole from there, whatever this node heard of the name before."""
        if self._positions is not None:
            self._positions.seen_making(room.folded)

    def _install_unknown_rooms(self, rooms: Any, node: str, facts: Any) -> bool:
        """Take, of another node's answer to ``learn_rooms``, each room this node lacks, or
        holds only in part (``Room.partial``) with none of its own users in it, and has not
        delivered past (``Positions.movable``): its state, the facts of its order, and where
        it stands. Any other copy stands (the relay fetches what it missed of it). False,
        with nothing taken, for a malformed answer."""
        positions = self._positions
        assert positions is not None and self.remote is not None

        def unknown(folded: str, seq: Optional[int]) -> bool:
            room = self.rooms.get(folded)
            if room is not None and (not room.partial or any(
                not isinstance(m.user.participant, RemoteParticipant) for m in room.members.values()
            )):
                return False
            if seq is None:  # not numbered there yet: only a room this node knows nothing of
                return room is None and positions.position(folded) is None
            return positions.movable(folded, seq)

        try:  # all read before anything is taken
            orders = self.admission.parse(facts)
            installed = self.replica.install(self.remote.node_id, rooms, unknown)
        except Exception:
            self.log.failure("the room state from node {node} is malformed: waiting for another answer", node=node)
            return False
        taken = {room.folded for room, _ in installed}
        self.admission.adopt({conv: order for conv, order in orders.items() if conv in taken})
        for room, seq in installed:
            if seq is not None:
                positions.start_at(room.folded, seq)
            if self.room_claims is not None:
                self.room_claims.made(room)  # a join waiting for it goes on
        return True

    def _answer_rooms(self) -> None:
        """Answer a request for the rooms in use (a starting or a learning node's), at most
        once each ``ROOMS_ANSWER_EVERY`` seconds: the answer goes to every node, so one
        serves every request made before it (after a Redis restart every node asks at once,
        and each answering each would send the whole state N x (N - 1) times)."""
        clock = self._cluster_clock
        if clock is None:
            self._send_rooms()
            return
        if self._rooms_answer_due is not None and self._rooms_answer_due.active():
            return  # one is on its way: it answers this request too
        wait = self._rooms_answered + ROOMS_ANSWER_EVERY - clock.seconds()
        if wait <= 0:
            self._send_rooms()
        else:
            self._rooms_answer_due = clock.callLater(wait, self._send_rooms)

    def _send_rooms(self) -> None:
        positions = self._positions
        self._rooms_answer_due = None
        if positions is None or self.remote is None or self._stopped:
            return
        if self._cluster_clock is not None:
            self._rooms_answered = self._cluster_clock.seconds()
        position = positions.position
        # each room's facts at its number (ended rooms' too) with where they stand
        facts = [[*fact, at] for fact in self.admission.export() if (at := position(fact[0])) is not None]
        answer: list[Any] = ["rooms", self.replica.snapshot(self.remote.node_id, position), facts]
        if self._snapshot_wanted is not None or self._learning is not None \
                or any(room.partial for room in self.rooms.values()):
            answer.append(STARTING)  # it may lack rooms itself: taken only if no one knows better
        self._announce(answer)

    # -- the users of other nodes (RemoteDirectory's listener) ----------------------------

    def remote_online(self, user: User) -> None:
        """A user of another node signed on, or took a new nick: MONITOR tells it."""
        self.max_global_seen = max(self.max_global_seen, self.global_user_count())
        self._presence.announce(user, "online", self.ids)

    def remote_offline(self, user: User) -> None:
        """A user of another node left, or dropped its nick: MONITOR tells it, and WHOWAS
        remembers it as it does a local user that quits or changes nick."""
        self.whowas_log.remember(user)
        self._presence.announce(user, "offline", self.ids)

    def remote_recased(self, user: User) -> None:
        """A user of another node changes the case of its nick: WHOWAS remembers the old
        spelling, as it does for a local user's."""
        self.whowas_log.remember(user)

    def remote_changed(self, user: User, before: RemoteUser, after: RemoteUser, watchers: bool = True) -> None:
        """A user of another node changed account, host, real name, away or user modes:
        this node's users who share a room with it, and those monitoring it, are told as
        they are of a local user's change (in the order a local change would come).
        ``watchers=False``: those monitoring it were told already (``RemoteRooms._nick``
        catching up its room copy)."""
        member = self._member_view(user)
        if member is not user:
            after.update(member)  # its copy in this node's rooms
        changes = []
        old = Source(before.nick, before.user, before.host, before.account, before.realname, before.protocol)
        if before.account != after.account:
            changes.append(self.ids.make(Kind.ACCOUNT, member.source, data={"account": after.account}))
        if (before.user, before.host) != (after.user, after.host):
            changes.append(self.ids.make(Kind.CHGHOST, old, data={"user": after.user, "host": after.host}))
        if before.realname != after.realname:
            changes.append(self.ids.make(Kind.SETNAME, member.source, text=after.realname))
        if before.away != after.away:
            changes.append(self.ids.make(Kind.AWAY, member.source, text=after.away or ""))
        if before.metadata != after.metadata:
            values = dict(after.metadata or ())
            if member is not user:
                user.metadata = dict(values) or None  # the directory's, told through its copy's
            self.metadata.took_user(member, values)
        for event in changes:
            neighbours = self._neighbours(member) if member.rooms else []
            self._deliver_now(event, neighbours)
            if watchers:
                self._presence.tell_watchers(user, event, told=neighbours)

    def _member_view(self, user: User) -> User:
        """The stand-in of another node's ``user`` that sits in this node's rooms, when it
        is in some (it has the rooms), else the directory's."""
        member = self.replica.users.get(user.folded or "")
        if member is None:
            return user
        node = getattr(member.participant, "node", "")
        return member if node in ("", getattr(user.participant, "node", "")) else user

    def global_user_count(self) -> int:
        """Users signed on at this node and, in a cluster, at every other node."""
        return len(self.users) + (len(self.remote.users) if self.remote is not None else 0)

    def _remote_invite(self, event: Event) -> None:
        """Another node's user invited someone: when the invited user is here it gets the
        invite (and may pass +i, +l and bans here, where it joins); this node's operators of
        the room hear of it (invite-notify)."""
        room = self.rooms.get(fold(event.target))
        data = event.data or {}
        target = self.users.get(fold(str(data.get("nick", ""))))
        session = data.get(TARGET_SESSION)
        if target is None and isinstance(session, str) and session:
            # renamed here before the inviting node heard of it: the same connection
            target = self._by_session.get(session)
            if target is not None:
                event = dataclasses.replace(event, data={**data, "nick": target.nick})  # shown as it is now
        if target is not None:
            if room is not None:
                self._remember_invite(room, target)
            self.fanout.flush()  # after what the target is owed already
            for session in target.sessions:
                session.deliver(event)
        if room is not None:
            witnesses = [m.user for m in room.members.values()
                         if m.is_operator and not isinstance(m.user.participant, RemoteParticipant)]
            self._deliver_now(event, witnesses)

    def _resynced(self, reconnected: bool) -> None:
        if reconnected:  # what was said while cut off is lost: ask every node again
            self._announce(["hello"], ["roster", RemoteDirectory.roster(self.users.values())])
            # and the rooms made meanwhile: the relay only compares the rooms it heard of
            self.learn_rooms(again=True)
            # and a revocation's doorbell may be among it: the store says which tokens live
            self._check_tokens(None)
            # and accounts registered elsewhere meanwhile (their nicks are protected here too)
            self.accounts.load().addErrback(
                lambda f: self.log.warn("could not read the accounts again: {why}", why=f.getErrorMessage()))
            # and rooms registered elsewhere meanwhile (a ``founded`` item lost with Redis)
            if self.store is not None:
                self.store.load_rooms().addCallbacks(self._registered_rooms, lambda f: self.log.warn(
                    "could not read the registered rooms again: {why}", why=f.getErrorMessage()))

    def _tokens_revoked(self, folded: str) -> None:
        """This node revoked session tokens of the account ``folded`` (committed): every
        other node checks the tokens its sessions of that account hold. Told once the
        backplane is back when it is down now (the doorbell is not queued)."""
        assert self.cluster is not None
        if self.cluster.connected:
            self._announce(["tokens", folded])
        else:
            self._unannounced_revocations.add(folded)

    def _connection_changed(self, connected: bool) -> None:
        if not connected and self._positions is not None and self._snapshot_wanted is None:
            # rooms made from now on may reach this node only in part: the events of rooms
            # it neither heard of nor holds wait until it has asked for them (``learn_rooms``)
            self._positions.hold_unknown_rooms()
        if connected and self._unannounced_revocations:
            folded, self._unannounced_revocations = self._unannounced_revocations, set()
            self._announce(*(["tokens", account] for account in sorted(folded)))

    def _check_tokens(self, folded: Optional[str]) -> None:
        """End this node's sessions holding a token of ``folded`` (None: any account) that
        the store no longer has (``SessionTokens.check``)."""
        tokens = self.session_tokens
        if tokens is not None:
            tokens.check(folded).addErrback(lambda f: self.log.warn(
                "checking session tokens failed: {error}", error=f.getErrorMessage()))

    def _node_lost(self, node: str) -> None:
        quits: list[tuple[Event, list[str]]] = []
        if self.remote is not None:
            gone = [u.nick or "" for u in self.remote.drop_node(node)]
            listed = set(gone)  # (a node may have had thousands of users)
            # and those its presence said had left, whose QUIT it died before committing
            gone += [nick for nick in self.replica.members_of(node) if nick not in listed]
            quits = self.replica.drop_users(gone, "*.net *.split", node)
        if self.cluster is not None:
            # one survivor frees the dead node's nicks (the others' reaps find nothing),
            # and stores its users' quits in their rooms: history shows them leaving
            # once; the others have shown the same quits without storing them
            def reaped(won: bool) -> None:
                store = self.store
                if won and store is not None and self.history_enabled:
                    for event, rooms in quits:
                        appended = cast("Deferred[None]", store.append(event, rooms))
                        appended.addErrback(self._log_store_failure, event)

            self.cluster.reap(node).addCallbacks(reaped, lambda f: self.log.warn(
                "freeing the nicks of lost node {node} failed: {error}", node=node, error=f.getErrorMessage()))
            self.log.info("cluster node {node} is gone with {count} users", node=node, count=len(quits))

    def _lease_lost(self) -> None:
        """This node was declared dead (it stalled or was cut off longer than its lease): the
        other nodes have shown its users leaving and freed their nicks, so each one is
        disconnected with the reason in its protocol's terms, and reconnects as a new user."""
        users = list(self.users.values())
        self.log.error("lease lost: dropping {count} users", count=len(users))
        for user in users:
            self.quit(user, "Server lost its place in the cluster")
            for session in user.sessions:
                session.close("This server lost its place in the cluster: please reconnect")

    def _nick_lost(self, folded: str, owner: str) -> None:
        """Another node holds ``folded`` now (Redis lost its data and that node claimed it
        first): its user here is disconnected, as a nick collision has always been on IRC; a
        forced rename would need a claim that can fail in the same outage."""
        user = self.users.get(folded)
        if user is None or self.cluster is None or self._owner(user) != owner:
            return  # already gone, or the nick changed hands here since
        nick = user.nick
        self.quit(user, "Nick collision")
        for session in user.sessions:
            session.close(f"Nick collision: {nick} was taken on another server of this network; please reconnect")

    def _owner(self, user: User) -> str:
        assert self.cluster is not None
        return f"{self.cluster.node_id}/{user.session}"

    def _claim(self, user: User, nick: str) -> Deferred[None]:
        """In a cluster, claim ``nick`` for ``user`` on every node (renaming its current
        claim if it has one): the one nick namespace. Fails with NickInUse when another
        session holds it, NickUnavailable when the claim cannot be decided now."""
        assert self.cluster is not None
        new = fold(nick)
        owner = self._owner(user)
        old = user.folded if user.signed_on else None
        if old == new:
            return defer.succeed(None)
        d = self.cluster.rename_nick(old, new, owner) if old else self.cluster.claim_nick(new, owner)

        def granted(ok: bool) -> Deferred[None]:
            if not ok:
                raise self._held_elsewhere(user, nick) or errors.NickInUse(nick)
            # its earlier holder, on another node, may still be listed in the rooms here
            # until its QUIT or NICK comes: the nick is given once it has
            return self.replica.vacated(new, self._cluster_clock)

        def unavailable(failure: Failure) -> None:
            failure.trap(BackplaneUnavailable)
            raise errors.NickUnavailable(nick)

        return d.addCallbacks(granted, unavailable)

    def _held_elsewhere(self, user: User, nick: str) -> Optional[errors.HubError]:
        """Why a claim of ``nick`` was refused when the holder is a user of ``user``'s own
        account on another node: ``[auth] multiclient`` attaches sessions on one node only
        (docs/cluster.md, Limits), so the login is told so rather than "in use"."""
        holder = self.remote.get(nick) if self.remote is not None else None
        if (not self.config.auth.multiclient or user.account is None or holder is None
                or holder.account is None or fold(holder.account) != fold(user.account)):
            return None
        return errors.NickOnOtherServer(nick)

    def _unclaim(self, user: User, nick: str, restore: Optional[str] = None) -> None:
        """Give back a claim the hub did not use (``restore``: the nick it replaced)."""
        if self.cluster is None:
            return
        owner = self._owner(user)
        if restore is not None and fold(restore) != fold(nick):
            self.cluster.rename_nick(fold(nick), fold(restore), owner).addErrback(lambda _: None)
        elif restore is None:
            self.cluster.release_nick(fold(nick), owner)

    def claim_and_sign_on(self, user: User, nick: str) -> Deferred[User]:
        """``sign_on``, after claiming ``nick`` across the cluster; fails with the
        ``HubError`` to answer, else gives the user the connection now is (see
        ``sign_on``). On a lone node it runs now (the Deferred has fired)."""
        if self.cluster is None or self._attachable(user, nick) is not None:
            # attaching claims nothing: the account's user here holds the nick already
            return defer.maybeDeferred(self.sign_on, user, nick)
        try:
            self.check_nick(nick, user)  # local refusals need no round trip
        except errors.HubError:
            return defer.fail()

        def claimed(_: None) -> User:
            try:
                return self.sign_on(user, nick)
            except errors.HubError:
                self._unclaim(user, nick)
                raise

        return self._claim(user, nick).addCallback(claimed)

    def claim_and_change_nick(self, user: User, new: str) -> Deferred[Optional[Event]]:
        """``change_nick``, after claiming ``new`` across the cluster; fails with the
        ``HubError`` to answer. On a lone node it runs now (the Deferred has fired)."""
        if self.cluster is None or new == user.nick:
            return defer.maybeDeferred(self.change_nick, user, new)
        try:
            self._check_present(user)
            self.check_nick(new, user)
        except errors.HubError:
            return defer.fail()
        old = user.nick

        def claimed(_: None) -> Optional[Event]:
            try:
                return self.change_nick(user, new)
            except errors.HubError:
                self._unclaim(user, new, restore=old)
                raise

        return self._claim(user, new).addCallback(claimed)

    def reconfigure(self, config: Config) -> None:
        """Take a reloaded config (``SIGHUP``, ``REHASH``): its limits apply from the next
        call on. The server name and history settings are the start's (a restart changes them)."""
        self.config = config
        self._lifetimes.reconfigure(config)
        self.read_markers.most = config.limits.read_markers

    def startService(self) -> None:
        _prepare_collector()
        super().startService()  # type: ignore[no-untyped-call]  # Twisted's, unannotated (mypy#16653)

    def stopService(self) -> Optional[Deferred[None]]:
        """Quit everyone while the store (a service stopped after the hub) still takes the
        quit events; the connections themselves are dropped later by the reactor, and
        their own quit is then a no-op."""
        for user in list(self.users.values()):
            self.quit(user, "Server shutting down")
        self._stopped = True  # no more asking or answering for rooms
        for timer in (self._learn_timer, self._rooms_answer_due, self._learn_again):
            if timer is not None and timer.active():
                timer.cancel()
        stopped: Optional[Deferred[None]] = super().stopService()  # type: ignore[no-untyped-call]  # mypy#16653
        return stopped

    # -- nicks -------------------------------------------------------------------------

    def check_nick(self, nick: str, user: Optional[User] = None) -> None:
        """Raise unless ``user`` may take ``nick`` now (valid, free, not someone's account)."""
        limits = self.config.limits
        if not valid_nick(nick, limits.nick_length):
            # the reason, not just "erroneous": nobody is silently renamed or left guessing
            raise errors.ErroneousNick(nick, f"Erroneous nickname: {nick_problem(nick, limits.nick_length)}")
        folded = fold(nick)
        holder = self.users.get(folded)
        if folded in RESERVED_NICKS:
            raise errors.ErroneousNick(nick, "Nickname is reserved for a service")
        if holder is not None and holder is not user:
            raise errors.NickInUse(nick)
        if self.accounts.is_account(folded) and (
            user is None or user.account is None or fold(user.account) != folded
        ):
            raise errors.NickRegistered(nick)

    def sign_on(self, user: User, nick: str) -> User:
        """Give ``user`` its first nick: it becomes visible to everyone. Returns the user
        the connection is from now on: ``user``, or, with ``[auth] multiclient``, the user
        of the same account that holds ``nick`` already, which ``user``'s connection joins
        as one more session (nobody else sees anything: it is in its rooms already)."""
        if user.signed_on:
            raise errors.NickInUse(nick, "You are already registered")
        holder = self._attachable(user, nick)
        if holder is not None:
            return self._attach(holder, user)
        self.check_nick(nick, user)
        user.set_nick(nick)
        self.users[fold(nick)] = user
        self._by_session[user.session] = user
        self._count_modes(user.modes, 1)
        self.max_users_seen = max(self.max_users_seen, len(self.users))
        self.max_global_seen = max(self.max_global_seen, self.global_user_count())
        if self.config.logging.detailed:  # else the connection's closing line is its one
            self.log.debug(
                "{nick} signed on via {protocol} from {host} (shown as {shown})",
                event="login",  # a stable name for log shippers (chathub.lifecycle.logs)
                nick=nick,
                protocol=user.protocol,
                host=user.ip or user.host,
                shown=user.host,
            )
        self._presence.announce(user, "online", self.ids)
        if self.cluster is not None:
            self._announce(["on", presence_of(user)])
        if user.account:  # its stored read markers: set before a restart, or on another node
            self.read_markers.load(user)
        return user

    def _attachable(self, user: User, nick: str) -> Optional[User]:
        """The user of this node that ``user``'s login would join as a session (same
        account, holding ``nick``), if ``[auth] multiclient`` allows it."""
        if user.account is None:
            return None
        holder = self.users.get(fold(nick))
        return holder if holder is not user and self.may_attach(nick, user.account) else None

    def may_attach(self, nick: str, account: Optional[str] = None) -> bool:
        """Whether a login to ``account`` (None: not known yet) with ``nick`` would join
        the user holding it as one more session (``[auth] multiclient``): a protocol that
        checks a nick before the login (IRC NICK, telnet /nick) lets such a nick through,
        and ``sign_on`` decides."""
        if not self.config.auth.multiclient:
            return False
        holder = self.users.get(fold(nick))
        if holder is None or holder.account is None:
            return False
        return account is None or fold(holder.account) == fold(account)

    def _attach(self, holder: User, user: User) -> User:
        """Add ``user``'s connection to ``holder`` as one more session."""
        most = self.config.auth.max_sessions_per_account
        if len(holder.sessions) >= most:
            raise errors.TooManySessions(
                holder.nick or "*", f"Too many sessions of this account are connected (at most {most})")
        holder.attach(user.participant)
        if len(holder.others) == 1:  # its second session: the fan-out walks sessions now
            self.fanout.several += 1
        self.log.info(
            "{nick} attached a session via {protocol} from {host} ({count} sessions)",
            event="login",
            nick=holder.nick,
            protocol=user.participant.protocol,
            host=user.ip or user.host,
            count=len(holder.sessions),
        )
        return holder

    def change_nick(self, user: User, new: str) -> Optional[Event]:
        """Rename ``user``; tells everyone who shares a room. None when nothing changed."""
        old_folded = self._check_present(user)
        if new == user.nick:
            return None
        self.check_nick(new, user)
        self.whowas_log.remember(user)
        event = self._event(Kind.NICK, user, data={"new": new})
        recipients = self._neighbours(user)
        new_folded = fold(new)
        renamed = new_folded != old_folded  # not just a change of case
        if renamed:
            self._presence.announce(user, "offline", self.ids)
            self._forget_invites(user)
        del self.users[old_folded]
        user.set_nick(new)
        self.users[new_folded] = user
        for room in user.rooms.values():
            room.rekey(old_folded, new_folded)
        self._publish(event, recipients, user, rooms=list(user.rooms))
        if renamed:
            self._presence.announce(user, "online", self.ids)
        if self.cluster is not None:
            self._announce(["nick", event.source.nick, new])
        return event

    def _present(self, user: User) -> bool:
        """Whether ``user`` is in the hub (signed on, under whatever nick it has now)."""
        return user.folded is not None and self.users.get(user.folded) is user

    def _check_present(self, user: User) -> str:
        """Refuse a request of a user who is not in the hub: one who quit (or was killed)
        or never registered. A protocol may still act for such a user (a request read
        after its quit): it must neither change the hub nor reach anyone, and must not
        act as whoever holds that nick now (JSON join after quit left a ghost operator).

        Returns the user's folded nick (never None for a user in the hub)."""
        folded = user.folded
        if folded is None or self.users.get(folded) is not user:
            raise errors.NotLoggedIn(user.nick or "*")
        return folded

    def _forget_invites(self, user: User) -> None:
        """Drop the invites ``user`` holds: they name a nick it is leaving (a quit or a
        new nick), and must not let the next holder of that nick past +i, +l or a ban."""
        for name in user.invited_to or ():
            room = self.rooms.get(name)
            if room is not None:
                room.invited.discard(user.folded or "")
        user.invited_to = None

    def find_user(self, nick: str) -> Optional[User]:
        """The signed-on user holding ``nick`` (any case), or None; in a cluster, a user
        of another node too (WHOIS, WHO, ISON, USERHOST, MONITOR see every node)."""
        folded = fold(nick)
        user = self.users.get(folded)
        if user is None and self.remote is not None:
            remote = self.remote.users.get(folded)
            if remote is not None:
                return self._member_view(remote)
        return user

    def whowas(self, nick: str) -> list[WhowasEntry]:
        """Past holders of ``nick``, newest first."""
        return self.whowas_log.find(nick)

    # -- rooms -------------------------------------------------------------------------

    def find_room(self, name: str) -> Optional[Room]:
        """The room called ``name`` (any case), or None."""
        return self.rooms.get(fold(name))

    def _room_of(self, user: User, name: str) -> Room:
        room = self.rooms.get(fold(name))
        if room is None:
            raise errors.NoSuchRoom(name)
        return room

    def _member_of(self, user: User, name: str) -> tuple[Room, Member]:
        room = self._room_of(user, name)
        member = room.members.get(user.folded or "")
        if member is None or member.user is not user:
            # (another user of the nick: on a cluster node, its earlier holder on another
            # node, whose quit or nick change is on its way here, is listed until it comes)
            raise errors.NotOnRoom(room.name)
        return room, member

    def claims_room(self, name: str) -> bool:
        """Whether a join of room ``name`` waits for a claim of its name (a cluster node
        without a room of that name: ``claim_and_join``); False where ``join`` answers now."""
        return (self.room_claims is not None and fold(name) not in self.rooms
                and valid_room_name(name, self.config.limits.room_name_length))

    def claim_and_join(
        self, user: User, name: str, key: Optional[str] = None, receipt: Optional[Receipt] = None,
        joined: Optional[list[Event]] = None,
    ) -> Deferred[Optional[Room]]:
        """``join``, after claiming the name across the cluster when the room is new here
        (``chathub.hub.roomclaims``): the node granted the claim makes the room, a node
        refused joins the room made once it arrives. Fails with the ``HubError`` to answer
        (``RoomUnavailable`` when the claim cannot be decided). Where nothing needs claiming
        it runs now (the Deferred has fired)."""
        claims = self.room_claims
        if claims is None or not self.claims_room(name):
            return defer.maybeDeferred(self.join, user, name, key, receipt, joined=joined)
        try:
            # local refusals need no round trip, nor hold the name meanwhile
            self._check_present(user)
            if len(user.rooms) >= self.config.limits.max_rooms_per_user:
                raise errors.TooManyRooms(name)
            self._lifetimes.check_create(user, name)
        except errors.HubError:
            return defer.fail()
        folded = fold(name)

        def claimed(token: Optional[str]) -> Optional[Room]:
            if token is None and folded not in self.rooms:
                # its user left while it waited (the join answers that), or the room came
                # and went: never made here without a claim
                self._check_present(user)
                raise errors.RoomUnavailable(name)
            try:
                return self.join(user, name, key, receipt, claim=token, joined=joined)
            except Exception:
                if token is not None and (folded not in self.rooms or self.rooms[folded].claim != token):
                    claims.release(folded, token)  # no room was made with it
                raise

        # wanted while its user is still here (under whatever nick it has now)
        return claims.claim(folded, name, partial(self._present, user)).addCallback(claimed)

    def join(
        self, user: User, name: str, key: Optional[str] = None, receipt: Optional[Receipt] = None,
        claim: Optional[str] = None, joined: Optional[list[Event]] = None,
    ) -> Optional[Room]:
        """Put ``user`` in room ``name``, creating it (with ``user`` as operator) if new.

        Returns the room, or None when the user was already in it. ``joined``, when given,
        gets the JOIN event (its id and time are the ones history keeps: a protocol that
        shows the joiner its own JOIN shows those). In a cluster the join
        may still be found void at its number (``admit``: a ``+i`` another node set at the
        same moment): ``receipt`` records that, or the user gets a notice, and is out again.
        A new room of a cluster is made with the token of its name's ``claim``
        (``claim_and_join``, which releases a claim the join did not use).
        """
        self._check_present(user)
        limits = self.config.limits
        folded = fold(name)
        room = self.rooms.get(folded)
        if room is None:
            if not valid_room_name(name, limits.room_name_length):
                raise errors.BadRoomName(name)
        elif user.folded in room.members and room.members[user.folded].user is user:
            return None
        if len(user.rooms) >= limits.max_rooms_per_user:
            raise errors.TooManyRooms(name)
        exempt = invited = False
        made_with: Optional[str] = None
        made = room is None
        if room is None:
            room = self._lifetimes.create(user, name)
            self._renamed_from.pop(room.folded, None)  # the name is this room's now
            member = Member(user, "o")
            if self.room_claims is not None:
                room.claim = made_with = claim
                self.room_claims.made(room)  # other joins of it here waited for its claim
        else:
            invited = user.folded in room.invited
            if room.key is not None and key != room.key:
                raise errors.BadKey(room.name)
            if "i" in room.modes and not invited and not room.is_invite_excepted(user):
                raise errors.InviteOnly(room.name)
            if room.limit is not None and len(room.members) >= room.limit and not invited:
                raise errors.RoomFull(room.name)
            if room.is_banned(user) and not invited:
                raise errors.Banned(room.name)
            exempt = self._positions is not None and (invited or room.is_invite_excepted(user))
            room.invited.discard(user.folded)
            # only the founder and those it made operators get ops back; being first into an
            # empty persistent room gives nothing
            member = Member(user, "o" if persistent_operator(room, user) else "")
        if user.folded in room.members:
            # in a cluster, another node's earlier holder of this nick, renamed to it here
            # ahead of this user's sign-on reaching its rooms (its QUIT or NICK away
            # follows, as this node was granted the nick): it stays, moved aside
            room.displace(user.folded)
        room.add(member)
        user.add_room(room)
        # the privileges it joined with: other nodes of a cluster give it the same
        data: dict[str, Any] = {"account": user.account, "away": user.away,
                                "privileges": "".join(sorted(member.privileges))}
        if self._positions is not None:
            # what this node had applied of the room when it checked the join (``admit``),
            # and the members it counted then (a ``+l`` set elsewhere meanwhile)
            data[JOIN_SEEN] = self._positions.position(room.folded) or 0
            data[JOIN_COUNT] = len(room.members) - 1
            if made_with is not None:
                data[ROOM_CLAIM] = made_with  # it makes the room: every node learns its claim
            if made and room.founder is not None:
                data[ROOM_FOUNDER] = room.founder  # registered from its making, on every node
            if exempt:
                data[JOIN_EXEMPT] = True
            if invited:
                data[JOIN_INVITED] = True  # past a ban too
            if room.key is not None:
                data[JOIN_KEY] = key_digest(room.folded, room.key)  # the key it passed with
            excepted = room.exceptions_for(user)
            if excepted:
                data[SPOKE_EXCEPTED] = excepted
        event = self._event(Kind.JOIN, user, room.name, data=data)
        if made and self._positions is not None:
            # as every other node's copy has it (its making JOIN's time: 329 differed by
            # seconds), and as a registered room's record is matched by (``update_room``)
            room.created = event.time
            remember(self._made_ahead, room.folded, event.id, OWN_CHANGES_KEPT)
            self._ended_ahead.pop(room.folded, None)  # made again here: the old one stays ended
            if room.persistent:
                self._lifetimes.save(room)
        if joined is not None:
            joined.append(event)
        self._publish(event, room.recipients(), user, rooms=[room.folded], receipt=receipt)
        if self.account_rooms is not None:
            self.account_rooms.joined(user.account, room.name, room.key)
        return room

    def kept_rooms(self, user: User) -> Deferred[list[tuple[str, Optional[str]]]]:
        """The rooms ``user``'s account is in, as (name, key or None: the ``+k`` room's key
        it was in with), in the order it joined them, for a protocol to join again at login
        through its own JOIN (the answers are its own); a guest, or a hub without a store,
        has none, and a store that cannot answer gives none (logged). The account's stored
        read markers are taken in first, so each rejoin shows its room's marker."""
        account_rooms, account = self.account_rooms, user.account
        if account_rooms is None or account is None:
            return defer.succeed([])

        def failed(failure: Any) -> list[tuple[str, Optional[str]]]:
            self.log.error("could not read the rooms of {account}: {why}", account=account,
                           why=failure.getErrorMessage())
            return []

        loaded = self.read_markers.load(user)
        return loaded.addCallback(lambda _: account_rooms.rooms_of(account)).addErrback(failed)

    def part(self, user: User, name: str, reason: str = "") -> Event:
        """Take ``user`` out of room ``name``."""
        self._check_present(user)
        room, _ = self._member_of(user, name)
        limit = self.config.limits.reason_length
        if len(reason) > limit:
            raise errors.ReasonTooLong(room.name, f"Part reason too long (at most {limit} characters)")
        event = self._event(Kind.PART, user, room.name, reason, data=self.room_ends(user, [room]))
        recipients = room.recipients()
        self._leave(user, room)
        self._publish(event, recipients, user, rooms=[room.folded])
        if self.account_rooms is not None:
            self.account_rooms.left(user.account, room.name)
        return event

    def room_ends(self, user: User, rooms: Iterable[Room]) -> Optional[dict[str, Any]]:
        """In a cluster, the data a PART, QUIT or KICK of ``user`` carries when ``user``
        leaving ends some of ``rooms`` (its last member here, and not registered):
        ``{ROOM_ENDS: [[folded name, the room's position on this node], ...]}``, which every
        node honours at the event's number (``chathub.hub.admission``). None otherwise, and
        on a lone node."""
        positions = self._positions
        if positions is None:
            return None
        ending = [room for room in rooms
                  if not room.persistent and len(room.members) == 1 and user.folded in room.members]
        if not ending:
            return None
        claims = self._claims_kept_to_numbers()
        for room in ending:
            # ends here now, ahead of its number: its state waits for that (``revived``),
            # and so does its claim
            if self._keep_for_a_join_before(room) and claims is not None:
                claims.ending(room)
        return {ROOM_ENDS: [[room.folded, positions.position(room.folded) or 0] for room in ending]}

    def leave_room(self, user: User, room: Room) -> None:
        """Take ``user`` out of ``room`` without telling anyone (the room ends if it
        empties and is not persistent); for applying another node's events."""
        self._leave(user, room)

    def neighbours(self, user: User) -> list[User]:
        """Everyone who shares at least one room with ``user``, once each, ``user`` included."""
        return self._neighbours(user)

    def _leave(self, user: User, room: Room) -> None:
        key = room.key_of(user)  # its nick; in a cluster, maybe moved aside (``Room.displace``)
        if key is not None:
            room.remove(key)  # never another user's entry under the same nick
        user.remove_room(room.folded)
        if not room.members and not room.persistent:
            if self._on_their_way:
                self._ends_before_leaves_on_their_way(room)
            self._lifetimes.end(room)

    # -- room lifetimes (chathub.hub.lifetimes) -----------------------------------------

    def when_room_ends(self, callback: Callable[[Room], None]) -> None:
        """Call ``callback(room)`` each time a room stops existing (its last member left
        and it is not registered), so whatever is kept per room can go with it."""
        self._lifetimes.when_room_ends(callback)

    def owned_rooms(self, account: str) -> int:
        """How many persistent rooms ``account`` is the founder of."""
        return self._lifetimes.owned(account)

    def restore_rooms(self, records: Iterable[RoomRecord]) -> None:
        """Recreate persistent rooms from stored ``RoomRecord``s (at start-up).

        Every stored room comes back, even past [limits] max_rooms or max_owned_rooms
        (lowered since): those bound new rooms only."""
        self._lifetimes.restore(records)

    # -- room requests -------------------------------------------------------------------

    def set_topic(self, user: User, name: str, text: str) -> Event:
        """Change a room's topic (operators only on +t rooms)."""
        self._check_present(user)
        room, member = self._member_of(user, name)
        if "t" in room.modes and not member.is_operator:
            raise errors.NotRoomOperator(room.name)
        text = text[: self.config.limits.topic_length]
        event = self._event(Kind.TOPIC, user, room.name, text)
        self._note_own_change(room, event, (room.topic, room.topic_setter, room.topic_time))
        room.topic = text
        room.topic_setter = user.mask
        room.topic_time = event.time  # the event's: every node of a cluster shows this time
        self._publish(event, room.recipients(), user, rooms=[room.folded])
        self._lifetimes.update(room)
        return event

    def claim_and_rename(self, user: User, name: str, new: str, reason: str = "") -> Deferred[Event]:
        """``rename_room``, after claiming the new name across the cluster when it is
        another name (``chathub.hub.roomclaims``): a name another node is making, or has
        made, is refused as in use at once. On a lone node, or for a change of case, it runs
        now (the Deferred has fired)."""
        claims = self.room_claims
        try:
            room = self._check_rename(user, name, new, reason)
        except errors.HubError:
            return defer.fail()
        new_folded = fold(new)
        if claims is None or new_folded == room.folded:
            return defer.maybeDeferred(self.rename_room, user, name, new, reason)

        def claimed(token: Optional[str]) -> Event:
            if token is None:
                raise errors.RoomNameInUse(room.name)
            try:
                return self.rename_room(user, name, new, reason, claim=token)
            except Exception:
                renamed = self.rooms.get(new_folded)
                if renamed is None or renamed.claim != token:
                    claims.release(new_folded, token)  # not renamed with it
                raise

        return claims.claim(new_folded, new, partial(self._present, user), others_wait=False).addCallback(claimed)

    def _check_rename(self, user: User, name: str, new: str, reason: str) -> Room:
        """``rename_room``'s refusals (raised), or the room to rename."""
        self._check_present(user)
        room, member = self._member_of(user, name)
        if not member.is_operator:
            raise errors.NotRoomOperator(room.name)
        limits = self.config.limits
        if new == room.name:
            raise errors.CannotRename(room.name, "The room already has that name")
        if not valid_room_name(new, limits.room_name_length):
            raise errors.CannotRename(room.name, f"{new} is not a valid room name")
        new_folded = fold(new)
        if new_folded != room.folded and new_folded in self.rooms:
            raise errors.RoomNameInUse(room.name)
        if len(reason) > limits.reason_length:
            raise errors.ReasonTooLong(room.name, f"Rename reason too long (at most {limits.reason_length} characters)")
        return room

    def rename_room(self, user: User, name: str, new: str, reason: str = "", claim: Optional[str] = None) -> Event:
        """Give room ``name`` the name ``new`` (its operators only; IRCv3
        draft/channel-rename): members, modes, topic, lists, founder and history stay with
        it, and every member is told (each protocol in its own terms, the sender too). In a
        cluster the new name comes with the token of its ``claim`` (``claim_and_rename``),
        which every node learns from the event.

        Refused with ``room_name_in_use`` when another room holds ``new``, and with
        ``cannot_rename`` for the same name or an invalid one."""
        room = self._check_rename(user, name, new, reason)
        old_name = room.name
        data: dict[str, Any] = {"new": new}
        if claim is not None:
            data[ROOM_CLAIM] = claim
        event = self._event(Kind.RENAME, user, old_name, reason, data=data)
        self._rename(room, new, claim, ahead=self._claims_kept_to_numbers() is not None)
        # stored under the old name, then the old name's history moves to the new one: both
        # writes are queued in this order, and the members are told once they are committed
        self._publish(event, room.recipients(), user, each=True)
        if self.store is not None:
            self.store.rename_room(old_name, new).addErrback(
                lambda f: self.log.failure("could not move the history of {old} to {new}", f, old=old_name, new=new)
            )
        self._lifetimes.renamed(room, old_name)
        self.log.info("{nick} renamed {old} to {new}", event="rename", nick=user.nick, old=old_name, new=new)
        return event

    def made_again(self, folded: str) -> None:
        """A room of the name ``folded`` was made here again (another node's JOIN): a room
        renamed from it lately is no longer the room of that name (``room_named``)."""
        self._renamed_from.pop(folded, None)

    def room_named(self, name: str) -> Optional[Room]:
        """The room called ``name`` here or, when none is, the one that was, renamed lately
        (another node's events numbered before the rename still come under its old name to
        a node that renamed its copy at once, its own rename's node)."""
        room = self.rooms.get(fold(name))
        if room is None and self._renamed_from:
            new = self._renamed_from.get(fold(name))
            room = self.rooms.get(new) if new is not None else None
        return room

    def _rename(self, room: Room, new: str, claim: Optional[str] = None, ahead: bool = False) -> None:
        """Give ``room`` its new name in every index that holds it (the hub's rooms, each
        member's rooms, invites) and tell whoever asked (``when_room_renamed``); in a
        cluster, the old name's claim is released (kept until the RENAME's number when the
        rename is this node's, applied ``ahead`` of it) and ``claim`` (the new name's, when
        the rename came with one) is the room's."""
        old_folded = room.folded
        del self.rooms[old_folded]
        if self.room_claims is not None and fold(new) != old_folded:
            if room.claim is not None and ahead:
                self.room_claims.renaming(old_folded, room.claim)  # until the RENAME's number
            elif room.claim is not None:
                self.room_claims.release(old_folded, room.claim)  # free to make a room of
            room.claim = claim
        room.name, room.folded = new, fold(new)
        self.rooms[room.folded] = room
        self._renamed_from.pop(room.folded, None)  # the name is this room's now
        if self.cluster is not None and old_folded != room.folded:
            remember(self._renamed_from, old_folded, room.folded, RENAMES_KEPT)
        if self.room_claims is not None:
            self.room_claims.made(room)
        for member in room.members.values():
            member.user.remove_room(old_folded)
            member.user.add_room(room)
            self.read_markers.rename(member.user, old_folded, new)  # the marker follows the room
        for nick in room.invited:
            invited = self.users.get(nick)
            if invited is not None and invited.invited_to and old_folded in invited.invited_to:
                invited.invited_to.discard(old_folded)
                invited.invited_to.add(room.folded)
        for callback in self._on_rename:
            try:
                callback(room, old_folded)
            except Exception:
                self.log.failure("a callback for the rename of room {room} failed", room=room.name)

    def when_room_renamed(self, callback: Callable[[Room, str], None]) -> None:
        """Call ``callback(room, old folded name)`` each time a room takes a new name (here
        or, in a cluster, on another node), so whatever is kept per room name follows it."""
        self._on_rename.append(callback)

    def apply_rename(self, room: Room, new: str, claim: Optional[str] = None) -> bool:
        """Give ``room`` the new name another node gave it (``RemoteRooms``), with that
        name's ``claim``: that node stored the event and moved the history. A room of that
        name here (made on this node meanwhile: a rename from a node without the claim, or
        a join here that took the claim over after ``room_claim_wait``) keeps it: the
        rename is not applied, and the clash is logged."""
        other = self.rooms.get(fold(new))
        if other is not None and other is not room:
            self.log.warn("room {old} was renamed to {new} on another node, where this node has a room of that "
                          "name: the rename is not applied here", old=room.name, new=new)
            return False
        self._rename(room, new, claim)
        return True

    def kick(self, user: User, name: str, nick: str, reason: str = "") -> Event:
        """Remove ``nick`` from a room (operators only)."""
        self._check_present(user)
        room, member = self._member_of(user, name)
        if not member.is_operator:
            raise errors.NotRoomOperator(room.name)
        limit = self.config.irc.kick_length  # advertised to IRC clients as KICKLEN
        if len(reason) > limit:
            raise errors.ReasonTooLong(room.name, f"Kick reason too long (at most {limit} characters)")
        target = room.members.get(fold(nick))
        if target is None:
            if fold(nick) not in self._everyone():
                raise errors.NoSuchNick(nick)
            raise errors.UserNotInRoom(nick, f"{nick} isn't on {room.name}")
        # a last member kicking itself ends the room; the kicked connection names the user on
        # every node even when its nick change is on its way there (``RemoteRooms._kick``)
        data = {"nick": target.user.nick, TARGET_SESSION: target.user.session,
                **(self.room_ends(target.user, [room]) or {})}
        event = self._event(Kind.KICK, user, room.name, reason or user.nick or "", data=data)
        recipients = room.recipients()
        self._leave(target.user, room)
        self._publish(event, recipients, user, rooms=[room.folded])
        if self.account_rooms is not None:
            self.account_rooms.left(target.user.account, room.name)
        self.log.info("{nick} kicked {target} from {room} ({reason})", event="kick", nick=user.nick,
                      target=target.user.nick, room=room.name, reason=reason)
        return event

    def invite(self, user: User, name: str, nick: str) -> Event:
        """Invite ``nick`` into a room; on +i rooms only operators may."""
        folded = self._check_present(user)
        target = self.users.get(fold(nick))
        remote = self.remote.get(nick) if target is None and self.remote is not None else None
        if target is None and remote is None:
            raise errors.NoSuchNick(nick)
        invited = target or cast(User, remote)
        room = self.rooms.get(fold(name))
        if room is not None:
            member = room.members.get(folded)
            if member is None:
                raise errors.NotOnRoom(room.name)
            if "i" in room.modes and not member.is_operator:
                raise errors.NotRoomOperator(room.name)
            if invited.folded in room.members:
                raise errors.AlreadyOnRoom(nick, f"{nick} is already on {room.name}")
            if target is not None:
                self._remember_invite(room, target)
        data: dict[str, Any] = {"nick": invited.nick}
        if self.cluster is not None:
            # the invited user's connection: its node finds it by that when its nick change
            # is on its way here (``_remote_invite``)
            data[TARGET_SESSION] = invited.session
        event = self._event(Kind.INVITE, user, room.name if room else name, data=data)
        if target is None or room is not None:
            # the invite is kept where the invited user is, the node that checks its join,
            # and every node tells its own operators of the room (invite-notify)
            self._announce(["invite", event.to_dict()])
        if target is not None:
            fanout = self.fanout
            local = target

            def deliver() -> None:
                fanout.flush()  # after what the target is owed already
                for session in local.sessions:  # shown whatever its capabilities (IRC ``direct``)
                    session.deliver(event)

            # through the outbox like every event: behind a message still waiting for its commit
            self.outbox.publish(deliver, (local,))
        if room is not None:
            # invite-notify: members who may see invites (operators) hear about it
            witnesses = [m.user for m in room.members.values() if m.is_operator and m.user is not user]
            self._publish(event, witnesses, user)
        return event

    def _remember_invite(self, room: Room, target: User) -> None:
        room.invited.add(cast(str, target.folded))  # a user of this hub: signed on
        # remembered on the user too, so its quit or new nick drops the invite; pruned
        # to the rooms that still list it, so it never outgrows them
        rooms = self.rooms
        target.invited_to = {
            n for n in target.invited_to or () if n in rooms and target.folded in rooms[n].invited
        }
        target.invited_to.add(room.folded)

    def change_room_modes(
        self, user: User, name: str, changes: Sequence[Change]
    ) -> tuple[list[Change], list[errors.HubError]]:
        """Apply ``[("+m", None), ("+b", "*!*@host"), ("+o", "bob")]`` as far as allowed
        (``chathub.hub.roommodes``); only the room's operators may change its modes.

        Returns the changes applied and one error per change refused.
        """
        folded = self._check_present(user)
        room = self._room_of(user, name)
        member = room.members.get(folded)
        if member is None or member.user is not user or not member.is_operator:  # (``_member_of``)
            raise errors.NotRoomOperator(room.name)
        # the event's id and time first: a list entry is listed with the time of the MODE
        # that sets it, on this node and on every other (``apply_room_modes``)
        eid, now = self.ids.next()
        before = mode_state(room) if self._positions is not None else None
        applied, refused = apply_room_modes(user, room, changes, self._everyone(), self.config, at=now)
        if applied:
            data: dict[str, Any] = {"changes": applied}
            if self._positions is not None:
                # each target's connection: another node finds it by that when its nick
                # change is numbered before this MODE (``RemoteRooms._mode``)
                targets = {nick: room.members[fold(nick)].user.session for (change, nick) in applied
                           if change[1:2] in PRIVILEGE_MODES and nick and fold(nick) in room.members}
                if targets:
                    data[MODE_SESSIONS] = targets
            event = Event(eid, now, Kind.MODE, user.source, room.name, "", None, data)
            if before is not None:
                self._note_own_change(room, event, before)
            self._publish(event, room.recipients(), user, rooms=[room.folded])
            self._lifetimes.update(room)
            self._keys_changed(room, applied)
        return applied, refused

    def _keys_changed(self, room: Room, changes: Sequence[Change]) -> bool:
        """After ``changes`` to ``room``: if one set or removed its key, its members'
        accounts keep the new key (or none) with the room, for their rejoin. Whether one did."""
        if self.account_rooms is None or not any(change[1] == "k" for change, _ in changes):
            return False
        for member in room.members.values():
            self.account_rooms.joined(member.user.account, room.name, room.key)
        return True

    # -- visibility (chathub.hub.visibility): every protocol asks the hub ---------------

    def may_see_room(self, viewer: Optional[User], room: Room) -> bool:
        """True unless ``room`` is secret and ``viewer`` is not in it."""
        return visibility.may_see_room(viewer, room)

    def may_see_user(self, viewer: Optional[User], other: User) -> bool:
        """True unless ``other`` is invisible (+i) and shares no room with ``viewer``."""
        return visibility.may_see_user(viewer, other)

    def visible_room(self, viewer: Optional[User], name: str) -> Optional[Room]:
        """The room called ``name`` if it exists and ``viewer`` may know of it, else None."""
        return visibility.visible_room(self.rooms, viewer, name)

    def visible_members(self, viewer: Optional[User], room: Room) -> list[Member]:
        """The members of ``room`` that ``viewer`` may see: all of them to a member;
        none of a secret room to others; otherwise all but invisible users sharing no
        room with ``viewer``."""
        return visibility.visible_members(viewer, room)

    def visible_users(self, viewer: Optional[User]) -> list[User]:
        """Every user online that ``viewer`` may see (WHO *, the line protocol's /who), on
        every node of a cluster."""
        local = visibility.visible_users(self.users, viewer)
        if self.remote is None:
            return local
        others = {u.folded or "": self._member_view(u) for u in self.remote.users.values()}
        return local + visibility.visible_users(others, viewer)

    def list_rooms(self, user: Optional[User] = None) -> list[Room]:
        """Rooms ``user`` may see listed (secret rooms only to their members)."""
        return visibility.listed_rooms(self.rooms, user)

    # -- talking -----------------------------------------------------------------------

    def send(
        self,
        user: User,
        target: str,
        text: str,
        kind: str = Kind.MESSAGE,
        tags: Optional[Mapping[str, str]] = None,
        receipt: Optional[Receipt] = None,
        data: Optional[Mapping[str, Any]] = None,
    ) -> Event:
        """Send a message, action, notice or tag-only message to a room or a nick.

        With a ``receipt`` the caller answers the sender itself once the message is
        delivered or refused (``after_delivery``); without one, a message that cannot be
        stored is reported to the sender with a server notice. ``data`` is carried on the
        event as given (plain JSON-able values: how a protocol's client sent the text)."""
        self._check_present(user)
        if kind != Kind.TAGMSG:
            if not text:
                raise errors.NoText(target)
            self._check_message_size(target, text)
        user.last_active = time.time()
        if kind != Kind.TAGMSG:
            self.counts.protocols[user.participant.protocol].received += 1  # made on first use
        prefix = target[:1] if target[:1] in STATUS_PREFIXES and is_room_name(target[1:]) else ""
        if prefix or is_room_name(target):
            room = self._room_of(user, target[len(prefix):])
            self._check_can_send(user, room)
            if "C" in room.modes and kind in (Kind.MESSAGE, Kind.NOTICE) and text.startswith("\x01"):
                raise errors.CannotSend(room.name, "Cannot send CTCP to room (+C)")
            member = room.members.get(user.folded or "")
            if self.cluster is not None and member is None:
                # a non-member's message needs no membership at its number (``admit``)
                data = {**(data or {}), EXTERNAL: True}
            elif self._positions is not None and member is not None and kind != Kind.TAGMSG:
                # what let it speak, and where this node stood, for the check at its number
                data = self._spoke(member, room, data)
            if not prefix:
                event = self._event(kind, user, room.name, text, tags, data)
                self._publish(event, room.recipients(), user, receipt=receipt, room=room)
                return event
            # STATUSMSG: the room's operators (and voiced members) only, and the sender; kept
            # in a conversation of its own (``@#room``), never in the room's history
            event = self._event(kind, user, room.name, text, tags, {**(data or {}), STATUSMSG: prefix})
            audience = [m.user for m in room.members.values()
                        if m.user.participant.format_key is not None
                        and (status_audience(m, prefix) or m.user is user)]
            self._publish(event, audience, user, receipt=receipt)
            return event
        recipient = self.users.get(fold(target))
        if recipient is None:
            remote = self.remote.get(target) if self.remote is not None else None
            if remote is None:
                raise errors.NoSuchNick(target)
            # stored, and carried by the cluster relay to the node that holds the nick; named
            # by its connection too (a guest's party; an account holder's, to find it renamed
            # there before this node heard of it: ``deliver_remote``)
            to_remote = (dict(data or {}, to_session=remote.session) if remote.account is None
                         else dict(data or {}, **{TARGET_SESSION: remote.session}))
            event = self._event(kind, user, cast(str, remote.nick), text, tags, to_remote)
            self._publish(event, [user], user, receipt=receipt)
            return event
        private = dict(data or {}, to_session=recipient.session) if recipient.account is None else data
        event = self._event(kind, user, cast(str, recipient.nick), text, tags, private)  # signed on
        self._publish(event, [recipient, user] if recipient is not user else [user], user, receipt=receipt)
        return event

    def redact(
        self, user: User, target: str, msgid: str, reason: str = "", receipt: Optional[Receipt] = None
    ) -> Deferred[Event]:
        """Take back message ``msgid`` of room or nick ``target`` (IRCv3
        draft/message-redaction): its sender may, and so may the room's operators and
        server operators. Fires with the REDACT event, which the store commits together
        with taking the text out of the message's history before anyone is shown it.

        Fails with ``no_such_message`` for an id not among the conversation's messages (or
        one taken back already, or with no history kept), ``redact_forbidden`` for someone
        else's message, ``no_such_room``/``not_on_room``/``no_such_nick`` for a target the
        user cannot redact in; ``receipt`` as for ``send``."""
        self._check_present(user)
        if not msgid:
            raise errors.NoSuchMessage(msgid)
        room: Optional[Room] = None
        if is_room_name(target):
            room = self._room_of(user, target)
            if user.folded not in room.members and not user.is_operator:
                raise errors.NotOnRoom(room.name)
        elif not valid_nick(target, self.config.limits.nick_length):
            raise errors.NoSuchNick(target)
        reason = reason[: self.config.limits.reason_length]
        d = self.history(user, "around", room.name if room else target, ("msgid", msgid), limit=1,
                         kinds=Kind.REDACTABLE_KINDS)
        return d.addCallback(self._redact_found, user, target, room, msgid, reason, receipt)

    def _redact_found(
        self,
        found: list[Event],
        user: User,
        target: str,
        room: Optional[Room],
        msgid: str,
        reason: str,
        receipt: Optional[Receipt],
    ) -> Event:
        self._check_present(user)  # the lookup took a while: it may have quit meanwhile
        # ``around`` a message that is not redactable (a join) gives its neighbour instead
        if not found or found[0].id != msgid or REDACTED in found[0].data:
            raise errors.NoSuchMessage(msgid)
        original = found[0]
        data: dict[str, Any] = {"msgid": msgid, "sender": original.source.nick}
        if room is not None:
            if self.rooms.get(room.folded) is not room:
                raise errors.NoSuchRoom(target)  # it ended meanwhile
            member = room.members.get(user.folded or "")
            if not (self._sent_by(user, original) or user.is_operator or (member is not None and member.is_operator)):
                raise errors.RedactForbidden(room.name)
            event = self._event(Kind.REDACT, user, room.name, reason, data=data)
            self._publish(event, room.recipients(), user, receipt=receipt)
            return event
        if not (self._sent_by(user, original) or user.is_operator):
            raise errors.RedactForbidden(target)
        # stored in the conversation the message is in: the other party as the lookup named it
        party = self.history_target(user, target)
        session = party.partition("/")[2]
        if session:
            data["to_session"] = session
        holder = self.users.get(fold(target))
        here = holder is not None and holder is not user and holder.history_party == party
        # named as a message to it names it: by its holder's nick, here or on another node
        named = holder or (self.remote.get(target) if self.remote is not None else None)
        if not session and holder is None and named is not None:
            data[TARGET_SESSION] = named.session  # found renamed there, as a message is
        event = self._event(Kind.REDACT, user, named.nick or target if named else target, reason, data=data)
        # the other party's node, in a cluster, gets it through the relay as a message
        self._publish(event, [cast(User, holder), user] if here else [user], user, receipt=receipt)
        return event

    @staticmethod
    def _sent_by(user: User, event: Event) -> bool:
        """Whether ``user`` sent ``event``: the same account, or (a guest's) the same connection."""
        source = event.source
        if source.account:
            return user.account is not None and fold(user.account) == fold(source.account)
        return bool(source.session) and source.session == user.session and user.account is None

    def _check_message_size(self, target: str, text: str) -> None:
        """Refuse a message over ``[limits] message_bytes`` or ``message_lines``, naming
        the limit: a message is kept whole or refused, never cut."""
        limits = self.config.limits
        if len(text) * 4 > limits.message_bytes and len(encode_utf8(text)) > limits.message_bytes:
            raise errors.MessageTooLong(target, f"Message too long (at most {limits.message_bytes} bytes)")
        if "\n" in text and text.count("\n") >= limits.message_lines:
            raise errors.MessageTooLong(target, f"Message has too many lines (at most {limits.message_lines})")

    def deliver_remote(self, event: Event, conv: Optional[str] = None) -> None:
        """Deliver another node's committed chat event (``ClusterRelay``, in the order of
        its conversation ``conv``) to this node's users it is for: the members here of its
        room, or the user here its private message is addressed to (a STATUSMSG: the members
        here it is for; a REDACT: like the message it takes back). The sending node checked
        it; it is in the store already. Other kinds are room events (``RemoteRooms``)."""
        if event.kind not in BATCHABLE_KINDS:  # chat and its redaction go to a conversation
            if event.kind == Kind.QUIT and conv:
                self._quits_ahead(event, conv)
            self.replica.apply(event)
            return
        # a room's conversation is its folded name, the key of ``rooms`` (a STATUSMSG's,
        # ``@#room``, and a private pair's, ``a b``, are no room's): the room of nearly every
        # message without a fold of its name (each node reads every other node's messages)
        room = self.rooms.get(conv) if conv else None
        if room is not None:
            self._deliver_now(event, room.recipients())
            return
        target = event.target
        if is_room_name(target):
            room = self.room_named(target)
            if room is None:
                return
            if room.folded != fold(target):  # renamed here ahead of the rename's number
                event = dataclasses.replace(event, target=room.name)
            recipients: Sequence[User] = room.recipients()
            prefix = event.data.get(STATUSMSG) if event.data else None
            if prefix:
                recipients = [m.user for m in room.members.values()
                              if m.user.participant.format_key is not None and status_audience(m, str(prefix))]
        else:
            data = event.data or {}
            user = self.users.get(fold(target))
            session = data.get("to_session")  # a guest's: that connection's, whoever has the nick now
            if user is None or (session is not None and session != user.session):
                # renamed here before the sending node heard of it: found by its connection
                # (it was dropped, acknowledged to its sender)
                found = self._by_session.get(str(session or data.get(TARGET_SESSION) or ""))
                if found is None:
                    return
                user = found
                if fold(target) != found.folded:
                    event = dataclasses.replace(event, target=found.nick or target)  # shown to it as it is now
            recipients = (user,)
        self._deliver_now(event, recipients)

    def _spoke(self, member: Member, room: Room, data: Optional[Mapping[str, Any]]) -> dict[str, Any]:
        """``data`` with what the check of a member's room message at its number needs
        (``chathub.hub.admission``): the room's position on this node, and what let the
        member speak here (privileges, ``+m``, exceptions), each only when it applies."""
        assert self._positions is not None
        spoke: dict[str, Any] = {**(data or {}), JOIN_SEEN: self._positions.position(room.folded) or 0}
        if member.privileges:
            spoke[SPOKE_PRIVILEGES] = "".join(sorted(member.privileges))
        if "m" in room.modes:
            spoke[SPOKE_MODERATED] = True
        excepted = room.exceptions_for(member.user) if room.excepts else ""
        if excepted:
            spoke[SPOKE_EXCEPTED] = excepted
        return spoke

    def _check_can_send(self, user: User, room: Room) -> None:
        member = room.members.get(user.folded or "")
        if member is None:
            if "n" in room.modes:
                raise errors.CannotSend(room.name, "Cannot send to room (no external messages)")
        elif member.is_voiced:
            return
        if "m" in room.modes:
            raise errors.CannotSend(room.name, "Cannot send to room (moderated, +v needed)")
        if not room.bans:
            return  # most rooms: no ban list to match on every message
        if room.is_banned(user):
            raise errors.CannotSend(room.name, "Cannot send to room (you are banned)")
        if room.is_muted(user):
            raise errors.CannotSend(room.name, "Cannot send to room (you are muted)")

    # -- presence and identity ---------------------------------------------------------

    def _publish_identity(self, user: User, event: Event) -> None:
        """Tell ``user``'s neighbours about an identity change (away, host, realname,
        account), and those monitoring ``user`` who share no room with them: their
        participant's ``deliver`` decides whether it shows it (IRCv3 extended-monitor)."""
        neighbours = self._neighbours(user)
        self._publish(event, neighbours, user)
        self._presence.tell_watchers(user, event, told=neighbours)
        if self.cluster is not None:  # the other nodes tell theirs (``remote_changed``)
            self._announce(["id", presence_of(user)])

    def set_away(self, user: User, text: Optional[str]) -> Event:
        """Mark ``user`` away with ``text``, or back with None/empty."""
        self._check_present(user)
        text = (text or "")[: self.config.limits.away_length] or None
        user.away = text
        event = self._event(Kind.AWAY, user, text=text or "")
        self._publish_identity(user, event)
        return event

    def set_host(self, user: User, username: str, host: str) -> Event:
        """Change a user's user and host parts (IRC chghost)."""
        self._check_present(user)
        event = self._event(Kind.CHGHOST, user, data={"user": username, "host": host})
        user.user, user.host = username, host
        user.identity_changed()
        self._publish_identity(user, event)
        return event

    def set_realname(self, user: User, realname: str) -> Event:
        """Change a user's real name (IRC setname)."""
        self._check_present(user)
        user.realname = realname
        user.identity_changed()
        event = self._event(Kind.SETNAME, user, text=realname)
        self._publish_identity(user, event)
        return event

    def set_account(self, user: User, account: Optional[str]) -> Event:
        """Record that ``user`` logged in to (or out of) an account after registering."""
        self._check_present(user)
        user.account = account
        user.identity_changed()
        event = self._event(Kind.ACCOUNT, user, data={"account": account})
        self._publish_identity(user, event)
        if account is not None:
            self.read_markers.load(user)  # the account's stored markers (a login after registering)
            for room in self._lifetimes.claim(user):
                # registered now: every node's copy is, to keep it while empty and save it
                self._announce(["founded", room.name, fold(account)])
        return event

    def make_operator(self, user: User, privileges: Iterable[str]) -> None:
        """Grant server-operator status."""
        self._check_present(user)
        self._set_user_modes(user, user.modes | {"o"})
        user.privileges = frozenset(privileges)
        self.log.info("{nick} is now a server operator", nick=user.nick)

    def change_user_modes(
        self, user: User, changes: Sequence[tuple[str, Optional[str]]]
    ) -> list[tuple[str, Optional[str]]]:
        """Apply a user's own mode changes (+i/-i, +w/-w, +B/-B bot, -o); return those applied."""
        if user.signed_on:
            self._check_present(user)  # before registration the modes are counted at register
        for change, _arg in changes:  # all checked first: a refused request changes nothing
            if change[1] not in "iwoB" or change[:2] == "+o":
                raise errors.UnknownMode(change[1])
        applied: list[tuple[str, Optional[str]]] = []
        for change, _arg in changes:
            sign, letter = change[0], change[1]
            if (sign == "+") == (letter in user.modes):
                continue
            # a user's modes are a frozenset, replaced on change (most users share the empty one)
            if sign == "+":
                self._set_user_modes(user, user.modes | {letter})
            else:
                self._set_user_modes(user, user.modes - {letter})
                if letter == "o":
                    user.privileges = frozenset()
            applied.append((change, None))
        return applied

    def users_with_mode(self, letter: str) -> int:
        """How many signed-on users (of every node) have user mode ``letter`` (LUSERS:
        invisible, operators)."""
        remote = self.remote.mode_counts.get(letter, 0) if self.remote is not None else 0
        return self._user_mode_counts.get(letter, 0) + remote

    def _set_user_modes(self, user: User, modes: frozenset[str]) -> None:
        signed_on = self.users.get(user.folded or "") is user
        if signed_on:
            self._count_modes(user.modes - modes, -1)
            self._count_modes(modes - user.modes, 1)
        user.modes = modes
        if signed_on and self.cluster is not None:
            self._announce(["id", presence_of(user)])

    def _count_modes(self, letters: Iterable[str], step: int) -> None:
        # kept up to date so LUSERS, part of every welcome, is not a walk over every user
        counts = self._user_mode_counts
        for letter in letters:
            counts[letter] = counts.get(letter, 0) + step

    def wallops(self, user: User, text: str) -> Event:
        """Send ``text`` to every user with user mode +w (operators with "wallops" only)."""
        self._check_present(user)
        if not user.is_operator or "wallops" not in user.privileges:
            raise errors.NotServerOperator(user.nick or "")
        event = self._event(Kind.WALLOPS, user, text=text)
        self._publish(event, [u for u in self.users.values() if "w" in u.modes], user)
        self._announce(["wallops", event.to_dict()])  # each node tells its own +w users
        return event

    def kill(self, user: User, nick: str, reason: str) -> User:
        """Disconnect ``nick`` (operators with the kill privilege only), here or, in a
        cluster, on the node that holds it (``_remote_kill``)."""
        self._check_present(user)
        if not user.is_operator or "kill" not in user.privileges:
            raise errors.NotServerOperator(nick)
        target = self.users.get(fold(nick))
        if target is None:
            remote = self.remote.get(nick) if self.remote is not None else None
            if remote is None:
                raise errors.NoSuchNick(nick)
            self.log.info("{nick} killed {target} of node {node} ({reason})", event="kill", nick=user.nick,
                          target=remote.nick, node=cast(RemoteParticipant, remote.participant).node, reason=reason)
            # the session names the user the operator saw: one that took the nick since is spared
            self._announce(["kill", remote.nick, remote.session, user.nick, reason])
            return remote
        self.log.info("{nick} killed {target} ({reason})", event="kill", nick=user.nick, target=target.nick,
                      reason=reason)
        self._killed(target, user.nick or "", reason)
        return target

    def _killed(self, target: User, killer: str, reason: str) -> None:
        """Quit ``target`` (a user of this node) and close its connections, for a KILL."""
        self.quit(target, f"Killed ({killer} ({reason}))")
        for session in target.sessions:
            session.close(f"Killed by {killer} ({reason})")

    def _remote_kill(self, nick: str, session: str, killer: str, reason: str) -> None:
        """An operator of another node killed ``nick`` of this node (if it is still the
        user of ``session``: it may have quit, or changed nick, meanwhile)."""
        target = self.users.get(fold(nick))
        if target is None or target.session != session:
            return
        self.log.info("{nick} of another node killed {target} ({reason})", event="kill", nick=killer,
                      target=target.nick, reason=reason)
        self._killed(target, killer, reason)

    def _remote_founded(self, name: str, account: str) -> None:
        """A guest that made room ``name`` on another node logged in to ``account`` while
        its operator: this node's copy is registered to that account too. The item goes out
        at once, the making JOIN once committed: a room not here yet is registered when
        its JOIN makes it (``registered_by``; the latest ``EARLY_FOUNDED`` names kept)."""
        room = self.rooms.get(fold(name))
        if room is not None:
            self._lifetimes.adopt(room, account)
            return
        remember(self._early_founded, fold(name), (account, time.monotonic()), EARLY_FOUNDED)

    def made_elsewhere(self, room: Room, account: Optional[str]) -> None:
        """Another node's JOIN made ``room`` here: registered to ``account`` when that
        JOIN says so (an account holder made it), or to the account a ``founded`` item
        that came before it named (``_remote_founded``); with the metadata set on that
        node before it (``_remote_metadata``)."""
        early = self._early_founded.pop(room.folded, None)
        if early is not None and time.monotonic() - early[1] < EARLY_FOUNDED_SECONDS:
            account = account or early[0]
        if account:
            self._lifetimes.adopt(room, account)
        metadata = self._early_metadata.pop(room.folded, None)
        if metadata is not None and time.monotonic() - metadata[1] < EARLY_FOUNDED_SECONDS:
            for key, value, when, node in metadata[0]:
                self.metadata.apply_room(room, key, value, (when, node))

    def took_state(self, room: Room, founder_before: Optional[str]) -> None:
        """``room``'s copy took another node's state (``RemoteRooms.install``), with its
        registration: counted as the account's (``RoomLifetimes.took_state``)."""
        self._lifetimes.took_state(room, founder_before)

    def _registered_rooms(self, records: Iterable[RoomRecord]) -> None:
        """The registered rooms the store holds, read after a reconnect: a copy here that
        is not registered yet (its ``founded`` item was lost) is registered to its founder."""
        for record in records:
            room = self.rooms.get(fold(record.name))
            if room is not None and record.founder:
                self._lifetimes.adopt(room, fold(record.founder))

    def room_changed(self, room: Room) -> None:
        """Another node's topic or mode change was applied to ``room``: a registered room
        is saved again. Every node saves its copy after each change it applies, so the
        stored record ends as the state all of them reach, whichever save lands last."""
        self._lifetimes.update(room)

    def _remote_wallops(self, event: Event) -> None:
        """An operator of another node sent WALLOPS: this node's users with +w get it."""
        self._deliver_now(event, [u for u in self.users.values() if "w" in u.modes])

    # -- presence (chathub.hub.presence) ------------------------------------------------

    @property
    def watchers(self) -> Mapping[str, set[User]]:
        """Folded nick -> the users monitoring it (a nick nobody watches has no entry)."""
        return self._presence.watchers

    def monitor(self, user: User, nicks: Iterable[str]) -> list[tuple[str, Optional[User]]]:
        """Watch nicks for presence; returns each with its current holder (or None)."""
        self._check_present(user)
        users = self.users if self.remote is None else ChainMap(self.users, self.remote.users)
        return self._presence.watch(user, nicks, users)

    def unmonitor(self, user: User, nicks: Optional[Iterable[str]] = None) -> None:
        """Stop watching some nicks, or all of them."""
        self._presence.unwatch(user, nicks)

    # -- leaving -----------------------------------------------------------------------

    def read_marker(self, user: User, target: str) -> Optional[float]:
        """``user``'s read marker of ``target`` (epoch seconds), None when unset."""
        return self.read_markers.get(user, target)

    def markers_loaded(self, user: User) -> Deferred[None]:
        """Fires once ``user``'s account's stored read markers are in (read at its login:
        a marker asked for in the first moments waits for them; fired at once otherwise)."""
        return self.read_markers.loaded(user)

    def mark_read(self, user: User, target: str, when: float) -> bool:
        """Move ``user``'s read marker of ``target`` forward to ``when`` (never back); when
        it moves, the user's other sessions that show markers (a participant's optional
        ``read_marker_moved``) are told. False when it was there or later already."""
        if not self.read_markers.move(user, target, when):
            return False
        if user.others:
            self._tell_marker(user.others, target, when)  # not the one that acted: it answers itself
        if user.account and self.cluster is not None:
            # the account's sessions on other nodes (another nick there) see it move too
            self._announce(["marker", user.account, target, when])
        return True

    @staticmethod
    def _tell_marker(sessions: Iterable[IParticipant], target: str, when: float) -> None:
        """Tell ``sessions`` that show read markers (a participant's optional
        ``read_marker_moved``) that the marker of ``target`` moved to ``when``."""
        for session in sessions:
            moved = getattr(session, "read_marker_moved", None)
            if moved is not None:
                moved(target, when)

    def _remote_marker(self, account: str, target: str, when: float) -> None:
        """A session of ``account`` on another node moved its marker of ``target``: moved
        here too, and this node's sessions of the account told, when it has some."""
        if not self.read_markers.learned(account, target, when):
            return
        folded = fold(account)
        for user in list(self.users.values()):
            if user.account is not None and fold(user.account) == folded:
                self._tell_marker(user.sessions, target, when)

    def quit(self, user: User, reason: str = "", session: Optional[IParticipant] = None) -> Optional[Event]:
        """Take ``user`` out of the hub (idempotent). Returns the QUIT event if it was in.

        ``session``: the connection that is closing. A user with other sessions keeps
        everything (nick, rooms, away) and nobody sees anything; one that is not among the
        user's sessions (detached already) changes nothing."""
        if session is not None:
            if user.detach(session):
                if not user.others:
                    self.fanout.several -= 1
                self.log.info("{nick} closed a session via {protocol} ({reason}); {count} left", event="logout",
                              nick=user.nick, protocol=session.protocol, reason=reason, count=len(user.sessions))
                return None
            if session is not user.participant:
                return None
        self._presence.unwatch(user)
        self._lifetimes.forget(user)
        self.read_markers.forget(user)
        folded = user.folded
        if folded is None or self.users.get(folded) is not user:  # not signed on, or gone
            return None
        # a quit cannot be refused (the connection is going): a long reason is cut
        event = self._event(Kind.QUIT, user, text=reason[: self.config.limits.reason_length],
                            data=self.room_ends(user, user.rooms.values()))
        recipients = self._neighbours(user)
        rooms = list(user.rooms)
        for room in list(user.rooms.values()):
            self._leave(user, room)
        self._forget_invites(user)
        del self.users[folded]
        self._by_session.pop(user.session, None)
        self._count_modes(user.modes, -1)
        self.whowas_log.remember(user)
        self._publish(event, recipients, user, rooms=rooms)
        self._presence.announce(user, "offline", self.ids)
        if self.cluster is not None:
            self._announce(["off", user.nick])
            self.cluster.release_nick(folded, self._owner(user))
        if self.config.logging.detailed:
            self.log.debug("{nick} quit ({reason})", event="logout", nick=user.nick, reason=reason)
        return event

    # -- delivery ----------------------------------------------------------------------

    def _event(
        self,
        kind: str,
        user: User,
        target: str = "",
        text: str = "",
        tags: Optional[Mapping[str, str]] = None,
        data: Optional[Mapping[str, Any]] = None,
    ) -> Event:
        return self.ids.make(kind, user.source, target, text, tags, data)

    def _everyone(self) -> Mapping[str, User]:
        """Every signed-on user by folded nick: this node's and, in a cluster, the other
        nodes' (a KICK or MODE +o of a user of another node who is not in the room is
        ``user_not_in_room``, IRC 441, not ``no_such_nick``)."""
        return self.users if self.remote is None else ChainMap(self.users, self.remote.users)

    def _neighbours(self, user: User) -> list[User]:
        """Everyone who shares at least one room with ``user``, once each, ``user`` included."""
        seen: dict[str, User] = {user.folded: user} if user.folded else {}
        for room in user.rooms.values():
            for folded, member in room.members.items():
                if folded not in seen:
                    seen[folded] = member.user
        return list(seen.values())

    def _publish(
        self,
        event: Event,
        recipients: Sequence[User],
        actor: Optional[User],
        rooms: Sequence[str] = (),
        receipt: Optional[Receipt] = None,
        each: bool = False,
        room: Optional[Room] = None,
    ) -> None:
        """Store (if history keeps it) and deliver, in hub order.

        With ``each``, every recipient's participant renders the event for itself
        (``deliver``) instead of sharing one encoding per format: what a rename shows an
        IRC client without the capability names the client.

        ``recipients`` is a snapshot that is not changed afterwards (a room's
        ``recipients()`` tuple or a fresh list); the actor is skipped unless its
        participant wants its own events. A durable event the store refuses is delivered
        to nobody; ``receipt`` (or else a notice to the actor) records that. ``room``: the
        room a chat message went to, when the caller has it (not to a STATUSMSG audience).
        """
        # an actor with several sessions is skipped as a user, and its sessions but the
        # acting one get the event (``_acting``)
        skip = actor if actor is not None and (actor.others or not actor.participant.echo_own) else None
        store = self.store
        stored = store is not None and self.history_enabled and event.kind in HISTORY_KINDS
        kind = event.kind
        if stored and self._positions is not None and rooms and (kind == Kind.JOIN or kind in LEAVING_KINDS):
            joiner = actor if kind == Kind.JOIN else None
            for conv in rooms:
                self._on_its_way(conv, event.id, joiner)
        if (stored and self.cluster is not None
                and self._publish_numbered(event, recipients, skip, actor, rooms, receipt, room)):
            return  # before the closures below, which a cluster node's room message never needs
        if stored and event.kind in HELD_KINDS:
            # delivered once committed (the store settles the outbox entry directly); an
            # object, not closures: one per room message
            assert store is not None
            held = _HeldEvent(self, event, recipients, skip, actor, receipt, each)
            if room is not None:  # a lone node's room message: its room concerns its members
                key: Optional[str] = room.folded
                shown_to = None
            else:
                key, shown_to = None, self._audience(recipients, actor)
            # (the call positional: one per room message)
            store.append(event, rooms, notify=self.outbox.hold(held.deliver, held.not_stored, key, shown_to, None,
                                                               actor))
            return
        acting = self._acting(skip)
        batchable = event.kind in BATCHABLE_KINDS
        fanout = self.fanout
        show: Callable[[], None]
        if each:
            def show() -> None:
                self.deliver_each(event, recipients, skip, acting)
        else:
            def show() -> None:
                fanout.publish(event, recipients, skip, batchable, acting)
        if stored:
            assert store is not None
            appended = cast("Deferred[None]", store.append(event, rooms))  # no ``notify``: a Deferred
            appended.addErrback(self._log_store_failure, event)
        outbox = self.outbox
        # (with nothing pending it goes at once: no audience to name, as with history off)
        outbox.publish(show, self._audience(recipients, actor) if outbox.pending or self.cluster is not None else None)

    @staticmethod
    def _audience(recipients: Sequence[User], actor: Optional[User]) -> Optional[tuple[User, ...]]:
        """Everyone here an event of no one room is shown to (its recipients and its actor),
        for the outbox: only their later replies wait for it, and a cluster node holds it
        only behind what a held room owes one of them; None (before every later reply,
        behind every held room) for more than ``SCOPED_MOST``."""
        if len(recipients) > SCOPED_MOST:
            return None
        return (*recipients, actor) if actor is not None else tuple(recipients)

    def deliver_each(
        self, event: Event, recipients: Iterable[User], skip: Optional[User] = None,
        acting: Optional[IParticipant] = None,
    ) -> None:
        """Deliver ``event`` now to each of ``recipients`` but ``skip``, each participant
        rendering it for itself (``IParticipant.deliver``), after what they are owed; each
        session of a user with several, of ``skip`` those but ``acting`` (``_acting``)."""
        self.fanout.flush()
        for recipient in recipients:
            if recipient is skip and not recipient.others:
                continue
            for session in recipient.sessions:
                if session is not acting or recipient is not skip:
                    session.deliver(event)

    @staticmethod
    def _acting(skip: Optional[User]) -> Optional[IParticipant]:
        """Of a skipped actor with several sessions, the one that acted (it renders its own
        confirmation; the others get the event as their own, Ergo's multiclient as if
        echo-message), unless it wants its own events too."""
        if skip is None or not skip.others or skip.participant.echo_own:
            return None
        return skip.participant

    def held_alone(self, event: Event) -> bool:
        """Whether a cluster node's outbox holds ``event`` (committed and stored) under its
        room's key: a room's chat message or change (``_publish_numbered``), which the node
        may hold alone while another node's earlier event of the room is on its way
        (``Outbox.pause``). A lone node holds nothing, so names no room (no fold per message)."""
        kind = event.kind
        return (
            (kind in DURABLE_KINDS or kind in ROOM_STATE_KINDS) and is_room_name(event.target)
            and STATUSMSG not in event.data  # numbered in a conversation of its own (``@#room``)
        )

    def wants_order(self, conv: str) -> bool:
        """Whether this node still needs conversation ``conv``'s numbered order (the cluster
        relay forgets an idle one it does not): every room's, ended or not (a room made
        again numbers on from the old one's last number: a node that had forgotten it
        would start its order at the first number it then heard, and show the smaller
        ones that came later without checking them at their number, its verdicts on
        them not the others'); the STATUSMSG audience of a room that exists here
        (``@#room``); a private conversation (``a b``, each party a folded nick or
        ``/session``, a guest's connection: ``User.history_party``) with a party signed on here."""
        if conv[:1] in STATUS_PREFIXES and is_room_name(conv[1:]):
            return conv[1:] in self.rooms
        if is_room_name(conv):
            return True
        return any(party[1:] in self._by_session if party[:1] == "/" else party in self.users
                   for party in conv.split(" "))

    def no_audience(self, conv: str) -> bool:
        """Whether another node's chat message (``Kind.TEXT_KINDS``) of room ``conv``, next
        in the room's order, needs nothing of this node: its copy of the room has no member
        here to show it to, and nothing of the room's order can void it (no facts at their
        numbers, not renamed away: ``admit`` passes it). The cluster relay then only counts
        its number (``ClusterRelay``: a node with no member of a busy room read each of its
        messages whole). False for a room this node has no copy of: a message to a name
        renamed here ahead of the rename's number goes to the renamed room (``room_named``)."""
        room = self.rooms.get(conv)
        if room is None or room.recipients():
            return False
        admission = self.admission
        return conv not in admission.rooms and conv not in admission.renamed

    def room_is_live(self, conv: str) -> bool:
        """Whether conversation ``conv`` (one this node wants the order of) is not an ended
        room: a room's, while this node holds its copy (every node holds one of every live
        room); any other (a room's STATUSMSG audience, a private pair) is wanted only while
        someone here takes part. The cluster relay keeps an idle ended room in brief
        (``ClusterRelay.ended``)."""
        return conv in self.rooms if is_room_name(conv) else True

    def _publish_numbered(
        self,
        event: Event,
        recipients: Sequence[User],
        skip: Optional[User],
        actor: Optional[User],
        rooms: Sequence[str],
        receipt: Optional[Receipt],
        room: Optional[Room] = None,
    ) -> bool:
        """In a cluster, store a room's message or change and show it here in the room's
        numbered order, as every other node does: held in the outbox under the room's key
        until the relay reaches its number, where ``admit`` may find it void. False for
        the other events (a private message, a quit in several rooms: ``_publish``)."""
        kind = event.kind
        leaver: Optional[User] = None
        if kind in DURABLE_KINDS:
            if room is not None:  # a message to it, from ``send``: the commonest, its key at hand
                key = room.folded
            elif rooms or not is_room_name(event.target) or STATUSMSG in event.data:
                return False  # a STATUSMSG is numbered in its own conversation (``@#room``)
            else:
                key = fold(event.target)
        elif kind in ROOM_STATE_KINDS and len(rooms) == 1:
            key = rooms[0]
            # a departure is owed to its leaver, no longer a member, before its later replies
            if kind == Kind.PART:
                leaver = actor
            elif kind == Kind.KICK:
                leaver = self._by_session.get(str(event.data.get(TARGET_SESSION) or ""))
        else:
            return False
        held = _HeldEvent(self, event, recipients, skip, actor, receipt)
        store = self.store
        assert store is not None  # a cluster node stores (not ``cast``: a call per message)
        store.append(event, rooms, notify=self.outbox.hold(held.deliver, held.not_stored, key, None, leaver, actor))
        return True

    def admit(self, conv: str, seq: int, event: Event, own: bool) -> bool:
        """The cluster relay's check of each event at its number in conversation ``conv``
        (``chathub.hub.admission``), the same on every node: False when it is void there.
        A void event is deleted from history (by every node: whichever reads history next
        waits for it); this node's own is not shown and its sender is told, when the
        outbox reaches it (``_void_own``). Never raises: a check that fails admits (the
        relay calls this for every event, with nothing around it)."""
        admission = self.admission
        if event.kind in Kind.TEXT_KINDS and conv not in admission.rooms and conv not in admission.renamed:
            if conv[:1] not in STATUS_PREFIXES or conv[1:] not in admission.renamed:
                return True  # every node checks every chat message: nothing of its room's order can void it
            # to a room's operators (``@#room``) under a name it was renamed from: void as
            # a message to the room is (``Admission.renamed``)
            refusal: Optional[errors.HubError] = errors.CannotSend(
                event.target, f"Cannot send to room (it was renamed to {admission.renamed[conv[1:]]})")
        elif not is_room_name(conv):
            return True
        else:
            try:
                refusal = self.admission.check(conv, seq, event)
            except Exception:  # a check that fails admits: every node shows it
                self.log.failure("checking event {id} at its number failed (it is shown)", id=event.id)
                return True
        if own and event.kind == Kind.JOIN and self._made_ahead.get(conv) == event.id:
            del self._made_ahead[conv]  # at its number: the room's making, or a join of it
        if self._on_their_way:
            self._at_its_number(conv, event)
        if refusal is None:
            try:
                kind = event.kind
                if kind == Kind.JOIN:
                    if self._outlived:
                        self._joined_an_ended_copy(conv, seq, event)
                elif own and (kind == Kind.TOPIC or kind == Kind.MODE):
                    self._own_change_at_its_number(conv, event)
                if kind in LEAVING_KINDS and (
                    (not own and admission.ended.get(conv) == seq) or self._only_joining_left(conv, event)
                ):
                    self._copy_outlived_its_end(conv)
            except Exception:  # the event stands: its copy here may differ (logged)
                self.log.failure("settling {kind} {id} at its number failed", kind=event.kind, id=event.id)
            return True
        if own and event.kind == Kind.RENAME:
            # not held (shown once committed): its sender is told now; the room has the
            # name of the rename numbered before it, applied here at its number already
            actor = self.users.get(fold(event.source.nick))
            if actor is not None and (not event.source.session or actor.session == event.source.session):
                self._void_own(actor, event, refusal, None)
        elif own:
            self._voided[event.id] = refusal
            if event.kind == Kind.TOPIC or event.kind == Kind.MODE:
                self._take_back_own_change(event)
        self.log.info("{kind} {id} of {nick} in {room} is void at number {seq}: {why}", kind=event.kind,
                      id=event.id, nick=event.source.nick, room=event.target, seq=seq, why=refusal.message)
        if self.store is not None:
            self.store.void_events(conv, [event.id]).addErrback(
                lambda f: self.log.warn("could not delete void event {id}: {why}", id=event.id,
                                        why=f.getErrorMessage()))
        return False

    def _on_its_way(self, conv: str, event_id: str, joiner: Optional[User]) -> None:
        """In a cluster: a JOIN of ``joiner`` (None: a leave) of room ``conv`` is applied to
        its copy now, ahead of its number there (``_only_joining_left``)."""
        # at most OWN_CHANGES_KEPT a room: one never numbered (its commit failed) goes in time
        remember(self._on_their_way.setdefault(conv, OrderedDict()), event_id, joiner, OWN_CHANGES_KEPT)

    def _at_its_number(self, conv: str, event: Event) -> None:
        on_way = self._on_their_way.get(conv)
        if on_way is not None and on_way.pop(event.id, 0) != 0 and not on_way:
            del self._on_their_way[conv]
        kept = self._kept_for_leaves.get(conv)
        if kept is not None and event.id in kept[1]:
            kept[1].discard(event.id)
            if not kept[1]:
                # the last of them at its number, and no JOIN between took the room back:
                # it ends here in number order, as on every other node
                del self._kept_for_leaves[conv]
                if self._ended_ahead.get(conv) is kept[0]:
                    del self._ended_ahead[conv]

    def _ends_before_leaves_on_their_way(self, room: Room) -> None:
        """This node's copy of ``room`` ends (its last member here left), while members it
        lost earlier left it ahead of their leaves' numbers in the room (this node's own
        leaves; another node's QUIT, applied at the first of its rooms' numbers to come): in
        number order they are still in the room, so another node's JOIN numbered before
        those leaves keeps the room as it was on every other node. The copy is kept for that
        JOIN (``revived``) until those leaves are at their numbers; before, it made a fresh
        copy from it (``+nt``, no topic: a random three-node driver, outsider seed 1103)."""
        conv = room.folded
        if self._ended_ahead.get(conv) is room:
            # kept already for this node's own leave that ends it (``room_ends``), numbered
            # after those: the room's end is decided at that leave's number (``_end_stood``),
            # and another node's JOIN numbered between brings it back. Given up when the
            # earlier leaves were at their numbers, that JOIN made a fresh copy on this node
            # only, without the topic and metadata (a random three-node driver with more
            # renames, outsider seed 6566)
            return
        on_way = self._on_their_way.get(conv)
        leaves = {eid for eid, joiner in on_way.items() if joiner is None} if on_way else None
        if leaves and self._keep_for_a_join_before(room):
            remember(self._kept_for_leaves, conv, (room, leaves), RENAMES_KEPT)

    def _keep_for_a_join_before(self, room: Room) -> bool:
        """Keep ``room``'s copy, ending here ahead of the number of a leave, for another
        node's JOIN numbered before that leave (``revived``); False, keeping nothing, when
        the room already ended at an earlier number while this copy lived on
        (``_copy_outlived_its_end``): in number order that room is gone, and the next JOIN
        makes it anew on every node. Brought back, the copy kept the old room's topic and
        modes on this node only (a random three-node driver, outsider seed 6190)."""
        if self._outlived.get(room.folded) is room:
            return False
        remember(self._ended_ahead, room.folded, room, RENAMES_KEPT)
        return True

    def _quits_ahead(self, event: Event, conv: str) -> None:
        """Another node's QUIT, numbered in each room its user was in, reaches this node
        first at its number in ``conv``: it takes the user out of every room here now,
        ahead of its numbers in the others (``_ends_before_leaves_on_their_way``). The
        quitter is the one the replica applies it to (``leaver``): not, by nick alone, a
        new holder of the nick here, whose rooms the QUIT leaves alone."""
        user = self.replica.leaver(event)
        if user is None:
            return
        for folded in user.rooms:
            if folded != conv:
                self._on_its_way(folded, event.id, None)

    def _only_joining_left(self, conv: str, event: Event) -> bool:
        """Whether a leave of room ``conv`` (``event``, at its number) leaves nobody in the
        room in number order while this node's copy lives on: every other member of the copy
        is a user of this node whose JOIN comes later, and no leave of this node's is on its
        way (its leaver is still a member in number order). Two leaves, each made while its
        node's copy listed the other leaver, empty a room in number order with neither
        saying it ends (``room_ends``): every other node's copy then ends at the second, and
        this one must make the room anew at its next JOIN as they do (a random three-node
        driver: creation time, topic and modes differing on one node)."""
        on_way = self._on_their_way.get(conv)
        room = self.rooms.get(conv)
        if not on_way or room is None or room.persistent or None in on_way.values():
            return False
        joining = {id(user) for user in on_way.values()}
        leaver = fold(str(event.data.get("nick") or "")) if event.kind == Kind.KICK else fold(event.source.nick)
        others = [m for folded, m in room.members.items() if folded != leaver]
        return bool(others) and all(id(m.user) in joining for m in others)

    def _copy_outlived_its_end(self, conv: str) -> None:
        """Another node's part, kick or quit ends room ``conv`` at its number (the room's
        last member there left): this node's copy, which it is about to leave, is the old
        room's. If it lives on (a user here joined it at that moment), the room's next JOIN
        makes it anew (``_joined_an_ended_copy``)."""
        room = self.rooms.get(conv)
        if room is None:
            return
        remember(self._outlived, conv, room, RENAMES_KEPT)

    def _claims_kept_to_numbers(self) -> Optional[RoomClaims]:
        """The room claims when this node numbers room events (a cluster with a store and
        history): only then does a claim kept until an event's number come back."""
        return self.room_claims if self.store is not None and self.history_enabled else None

    def _end_stood(self, conv: str) -> None:
        """Room ``conv``'s end stood at its number (``Admission``, on every node): what this
        node kept of it for a JOIN numbered before the end goes, as its claim does."""
        self._ended_ahead.pop(conv, None)
        if self.room_claims is not None:
            self.room_claims.confirm(conv)

    def revived(self, folded: str) -> Optional[Room]:
        """The room ``folded`` as it stood when it ended here, ahead of the number of the
        leave of this node's that ended it, for another node's JOIN (no making) numbered
        before that leave: in the numbered order the room never ended (the leave does not
        end it at its number, ``Admission._ends``), and every other node kept its topic,
        modes, key, bans and creation time. Before, this node made a fresh copy from that
        JOIN (``+nt``, no key, no bans: its users could join past a key and bans the
        others kept). None when nothing is kept (the JOIN makes the room anew)."""
        return self._ended_ahead.pop(folded, None)

    def made_earlier(self, room: Room, event: Event) -> None:
        """Another node's JOIN ``event`` of ``room`` is applied here at its number. When this
        node's copy was made by its own JOIN still on its way to its number (the room had
        ended here, and a user here made it again while another node's user joined that
        node's copy, which had not applied the end yet), the room was made anew, on every
        other node, by that earlier JOIN: the copy takes its creation time (329 differed
        between nodes: a random two-node driver, outsider seeds 145, 168, 319 and 416)."""
        if self._made_ahead.pop(room.folded, None) is not None:
            room.created = event.time

    def _note_own_change(self, room: Room, event: Event, before: Union[ModeState, tuple[str, str, float]]) -> None:
        """In a cluster: this node applies ``event``, a TOPIC or MODE of ``room``, now, ahead
        of its number; how many other nodes' changes the copy had applied by then tells at
        that number whether one came between (``_own_change_at_its_number``), and what it
        changed from (``before``: the topic, its setter and time, or the room's
        ``ModeState``) what to take back if it is void there (``_take_back_own_change``)."""
        if self._positions is None:
            return
        # (bounded: an event never numbered, its commit failed, is forgotten in time)
        remember(self._own_changes, event.id, (room, room.changed_elsewhere, before), OWN_CHANGES_KEPT)

    def _forget_old_name(self, room: Room, name: str, users: Iterable[User]) -> None:
        """``users``' accounts were written down (``account_rooms``) as in ``room`` under
        ``name``, the name it had here when a request now void was asked, and it has been
        renamed since: the store's rename had moved the accounts' rooms already, so that
        row is another, under a name no room holds, which their next login would join
        (make). It goes, unless a room holds that name here again."""
        if self.account_rooms is None or room.folded == fold(name) or fold(name) in self.rooms:
            return
        for user in users:
            self.account_rooms.left(user.account, name)

    def _take_back_own_change(self, event: Event) -> None:
        """This node's TOPIC or MODE is void at its number (taken under a name the room was
        renamed from before this node applied the rename: ``Admission.check``). Every other
        node leaves it out; this one applied it to its copy when asked, so it takes back
        what it set wherever that still stands (a change made since over it stays, as it
        does on every other node). Its members were never shown it (held to its number)."""
        noted = self._own_changes.pop(event.id, None)
        if noted is None:
            return
        room, _, before = noted
        if self.rooms.get(room.folded) is not room:
            return  # ended since: nothing of it is left to take back
        source = event.source
        if isinstance(before, ModeState):
            changes: list[tuple[Any, ...]] = [(str(c[0]), c[1]) for c in event.data.get("changes", ()) if c]
            sessions = event.data.get(MODE_SESSIONS)
            if isinstance(sessions, dict) and sessions:
                changes = following_renames(room, changes, sessions)  # a target renamed since
            taken = take_back_room_modes(room, changes, before)
            if not taken:
                return
            if self._keys_changed(room, taken):
                self._forget_old_name(room, event.target, [member.user for member in room.members.values()])
        elif (room.topic, room.topic_setter, room.topic_time) == (event.text, source.mask, event.time):
            room.topic, room.topic_setter, room.topic_time = before
        else:
            return
        self.log.info("{kind} {id} of {nick} in {room} taken back (void at its number)", kind=event.kind,
                      id=event.id, nick=source.nick, room=room.name)
        self._lifetimes.update(room)

    def _own_change_at_its_number(self, conv: str, event: Event) -> None:
        """This node's TOPIC or MODE of room ``conv`` reached its number. It was applied
        here when asked, ahead of that number, and another node's change of the same moment,
        numbered before it, was applied over it since (two topics, two keys, a ``-b`` and a
        ``+b`` of one mask): every other node applies the two in number order, this one
        applied them the other way round, and the copies kept different topics and keys.
        Applied again now, so this copy too ends as the numbered order does (nothing is
        shown: the event itself is shown at this number, after the other one)."""
        before = self._own_changes.pop(event.id, None)
        room = self.rooms.get(conv)
        if room is None or before is None or (room is before[0] and room.changed_elsewhere == before[1]):
            # nothing of another node's came between (nearly always): re-applying it would
            # only undo this node's own later changes applied meanwhile (a -k after a +k).
            # Another room object is another room: the copy it was made on ended at a number
            # before this one and a JOIN made the room anew (every other node applies the
            # change to that one: a +l left on one node only, a random two-node driver)
            return
        source = event.source
        if event.kind == Kind.TOPIC:
            if (room.topic, room.topic_setter, room.topic_time) == (event.text, source.mask, event.time):
                return  # nothing came between: nearly always
            room.topic, room.topic_setter, room.topic_time = event.text, source.mask, event.time
        else:
            setter = self.users.get(fold(source.nick))
            if setter is None or (source.session and setter.session != source.session):
                # renamed since (or gone): the member of that connection, if still in the room
                setter = next((m.user for m in room.members.values() if m.user.session == source.session), None)
            if setter is None:
                return
            changes = [(str(c[0]), c[1]) for c in event.data.get("changes", ()) if c]
            applied, _ = apply_room_modes(setter, room, changes, self._everyone(), self.config, counted=False,
                                          at=event.time)
            # a list entry added here stands after those of the changes numbered before it
            # (another node's entries of the same moment, applied since, are listed first)
            moved = _list_in_number_order(room, changes)
            if not applied and not moved:
                return  # nothing came between: nearly always
        self.log.info("{kind} {id} of {nick} in {room} applied again at its number (another node's change "
                      "of the same moment, numbered before it, was applied over it)", kind=event.kind,
                      id=event.id, nick=source.nick, room=room.name)
        self._lifetimes.update(room)

    def _joined_an_ended_copy(self, conv: str, seq: int, event: Event) -> None:
        """A JOIN of room ``conv``, numbered ``seq``, the first since the room's end stood at
        its number while this node's copy lived on (a user here joined it before this node
        applied the end: the last member parting on another node at that moment;
        ``_copy_outlived_its_end``): every other node makes the room anew from that JOIN
        (``Room``'s state: ``+nt``, no topic, key, limit or lists), so this copy takes that
        state too, before the JOIN is applied, and its members here are told what changed
        (they were shown the old room's). Whichever node's the JOIN is: a JOIN of another
        node numbered before this node's own made the room anew there first."""
        stale = self._outlived.pop(conv, None)
        room = self.rooms.get(conv)
        if stale is None or room is not stale or room.persistent:
            return
        changes = reset_room(room)
        room.changed_elsewhere += 1  # (this node's own changes on their way apply again at their number)
        topic = room.topic
        room.topic, room.topic_setter, room.topic_time = "", "", 0.0
        room.created = event.time  # made by this JOIN, as the others' copies were
        self.metadata.reset(room, event.time)
        claims = self.room_claims
        if claims is not None:
            claim = event.data.get(ROOM_CLAIM)
            if isinstance(claim, str):  # a making (its node's copy had ended): its claim
                room.claim = claim
            elif room.claim is not None:
                old, room.claim = room.claim, None  # the old room's, given back at its end ...
                claims.rebuilt(room, old)  # ... or else replaced: as every other node does with this JOIN
        self.log.info("room {room} ended before {nick}'s JOIN {seq}, while a user here was joining it: made anew",
                      room=room.name, nick=event.source.nick, seq=seq)
        if not changes and not topic:
            return

        def tell() -> None:
            if self.rooms.get(conv) is not room:
                return
            # a few changes an event, as one MODE command could carry them
            for start in range(0, len(changes), RESET_CHANGES_PER_EVENT):
                self._deliver_now(self.ids.make(Kind.MODE, self.server_source, room.name, data={
                    "changes": changes[start : start + RESET_CHANGES_PER_EVENT]}), room.recipients())
            if topic:
                self._deliver_now(self.ids.make(Kind.TOPIC, self.server_source, room.name, ""), room.recipients())

        self.after_delivery(tell)  # after the JOIN itself

    def _void_own(self, actor: Optional[User], event: Event, refusal: errors.HubError,
                  receipt: Optional[Receipt]) -> None:
        """This node's ``event`` is void at its number: nobody is shown it; a join made here
        is undone; the sender is told through ``receipt`` or with a notice."""
        if event.kind == Kind.JOIN and actor is not None:
            room = self.room_named(event.target)
            if room is not None and actor.rooms.get(room.folded) is room:
                self._leave(actor, room)
                if self.account_rooms is not None:
                    self.account_rooms.left(actor.account, room.name)
                    self._forget_old_name(room, event.target, [actor])
        if receipt is not None:
            receipt.refuse(event.target, Failure(refusal))
            return
        if actor is None or self.users.get(actor.folded or "") is not actor:
            return
        notice = self.ids.make(
            Kind.NOTICE, self.server_source, actor.nick or "", f"{refusal.target}: {refusal.message}",
            # what a protocol needs to say it in its own terms (IRC: the error's numeric)
            data={"error": refusal.code, "refers_to": event.id, "room": refusal.target, "reason": refusal.message},
        )
        self.fanout.flush()
        actor.participant.deliver(notice)

    def after_delivery(self, fn: Callable[[], object], user: Optional[User] = None) -> None:
        """Run ``fn`` once everything the hub accepted so far has been delivered.

        Fan-out batches held so far are written first, so what ``fn`` writes (a
        protocol's own echo or reply) follows them on the wire. With ``user``, what ``fn``
        writes is for that user alone: it then follows only what concerns the user (its
        own events, its rooms' events, what else is shown to it), not what is owed to
        others only (another room's messages waiting for their commit), and a cluster node
        holding a room for another node's earlier event holds it only behind what that
        room owes the user (a member), not behind every held room (``Outbox.after``)."""
        fanout = self.fanout

        def run() -> None:
            fanout.flush()
            fn()

        self.outbox.after(run, (user,) if user is not None else None)

    def batching(self) -> Fanout:
        """Context manager: coalesce chat deliveries made inside it into one write per
        member, at the end of the reactor turn (``Fanout``)."""
        return self.fanout.batching()

    # -- accounts and history ----------------------------------------------------------

    def create_account(self, user: User, password: str) -> Deferred[str]:
        """Register ``user``'s current nick as an account with ``password``; log them in to it.

        Fires with the account name; fails with a ``HubError`` when the nick cannot be
        registered (``account_exists`` and ``storage_failed`` when the store refuses).
        """
        if user.signed_on and self.users.get(user.folded or "") is not user:  # quit
            return defer.fail(errors.NotLoggedIn(user.nick or "*"))
        if self.account_creator is None:
            return defer.fail(errors.RegistrationUnavailable(user.nick or ""))
        if user.account is not None:
            return defer.fail(errors.AlreadyRegistered(user.account))
        if not user.signed_on:
            return defer.fail(errors.ErroneousNick("*", "Choose a nick first"))
        if self.users.get(user.folded or "") is not user:
            return defer.fail(errors.NotLoggedIn(user.nick or "*"))  # it has quit
        shortest = self.config.auth.min_password_length
        if len(password) < shortest:
            return defer.fail(errors.weak_password(user.nick or "", shortest))
        nick = cast(str, user.nick)  # signed on, checked above

        def registered(account: Any) -> str:
            name: str = getattr(account, "name", nick)
            if self.users.get(fold(name)) is user:  # still here, still holding that nick
                self.set_account(user, name)
            self.log.info("account {name} registered via {protocol}", name=name, protocol=user.protocol)
            # the other nodes protect its nick too (a guest there could take it, before)
            self._announce(["account", fold(name)])
            return name

        return self.account_creator.create_account(nick, password).addCallbacks(registered, as_hub_error)

    def change_password(self, user: User, password: str) -> Deferred[int]:
        """Give ``user``'s account the new ``password`` (the caller checked the old one) and
        revoke every session token of the account, which logs out the connections holding
        one; fires with how many tokens were revoked. Fails with a ``HubError``
        (``registration_unavailable``, ``weak_password``, ``storage_failed``)."""
        account = user.account
        if self.account_creator is None or account is None:
            return defer.fail(errors.RegistrationUnavailable(user.nick or ""))
        shortest = self.config.auth.min_password_length
        if len(password) < shortest:
            return defer.fail(errors.weak_password(user.nick or "", shortest))
        tokens = self.session_tokens

        def changed(_: Any) -> Any:
            self.log.info("password of account {account} changed via {protocol}", account=account,
                          protocol=user.protocol)
            return 0 if tokens is None else tokens.revoke_all(account)

        d = self.account_creator.set_password(account, password).addCallback(changed)
        return d.addErrback(as_hub_error)

    def create_nick_account(self, nick: str, password: str) -> Deferred[Any]:
        """Create the account ``nick`` for a connection that has no nick in the hub yet
        (IRC ``REGISTER`` before connection registration); fires with the account.

        Fails with ``registration_unavailable``, ``account_exists`` or ``storage_failed``.
        Whether the nick is free is the caller's to check first.
        """
        if self.account_creator is None:
            return defer.fail(errors.RegistrationUnavailable(nick))
        return self.account_creator.create_account(nick, password).addErrback(as_hub_error)

    @property
    def history_available(self) -> bool:
        """True when this hub keeps history: it has a store and history is enabled.

        Every protocol asks this before offering or reading history."""
        return self.store is not None and self.history_enabled

    def history_viewer(self, user: User) -> str:
        """The ``viewer`` to give the store's history queries for ``user``."""
        return user.history_party

    def history_target(self, user: User, target: str) -> str:
        """The store's name for ``target`` as ``user`` means it: a room, or a party.

        A nick held right now, here or on another node of a cluster, names its holder's
        private conversation with ``user``; a nick nobody holds names its last holder's
        (WHOWAS remembers guests' connections), else the account of that name.
        """
        if is_room_name(target):
            return target
        holder = self.users.get(fold(target))
        if holder is None and self.remote is not None:
            holder = self.remote.get(target)  # a guest of another node: its connection's talk
        if holder is not None:
            return holder.history_party
        past = self.whowas(target)
        return past[0].party if past else fold(target)

    def recent_history(
        self, user: User, target: str, limit: int, before: Optional[Event] = None
    ) -> Deferred[list[Event]]:
        """The last ``limit`` chat events of a room or private conversation, oldest first;
        with ``before`` (an event of it, a JOIN), the last ones numbered before it, or, when
        the store does not hold it (a lone node's JOIN is not waited for: there, at once),
        up to its millisecond."""
        if not self.history_available or limit <= 0:
            return defer.succeed([])
        if before is None:
            return self.history(user, "latest", target, None, limit=limit, kinds=CHAT_KINDS)
        # by time: what was stored up to the JOIN's millisecond, that one included (a line
        # said just before the JOIN in its millisecond was in neither the replay nor live; one
        # said just after it in that millisecond comes twice, the lesser harm)
        at = before.time + 0.001
        if self._positions is None:
            # a lone node shows a JOIN before its commit: the store does not hold it yet at
            # the replay (asked by msgid first, each join read history twice)
            return self.history(user, "before", target, ("timestamp", at), limit=limit, kinds=CHAT_KINDS)

        def not_yet(failure: Failure) -> Deferred[list[Event]]:
            failure.trap(errors.NoSuchMessage)
            return self.history(user, "before", target, ("timestamp", at), limit=limit, kinds=CHAT_KINDS)

        d = self.history(user, "before", target, ("msgid", before.id), limit=limit, kinds=CHAT_KINDS)
        return d.addErrback(not_yet)

    def history(
        self,
        user: User,
        query: str,
        target: str,
        *refs: Optional[Ref],
        limit: int,
        kinds: Optional[Collection[str]] = None,
    ) -> Deferred[list[Event]]:
        """A page of the history of room or nick ``target`` as ``user`` reads it, oldest first.

        ``query`` is one of the store's (``latest``, ``before``, ``after``, ``around``,
        ``between``) and ``refs`` its references (``("msgid", id)`` or ``("timestamp",
        t)``; ``latest`` takes one or None, ``between`` two). Whether ``user`` may read a
        room is the caller's to check. Fails with ``no_such_message`` for a msgid not in
        the conversation, ``storage_failed`` when the store cannot answer, and
        ``history_unavailable`` when this hub keeps no history.
        """
        if query not in HISTORY_QUERIES:
            raise ValueError(f"unknown history query {query!r}")
        self.counts.history_requests += 1
        if not self.history_available:
            return defer.fail(errors.HistoryUnavailable(target))
        read: Callable[..., Deferred[list[Event]]] = getattr(self.store, query)
        viewer, conversation = self.history_viewer(user), self.history_target(user, target)
        if self.cluster is not None and self.outbox.pending:
            # this node's events still in the outbox may be found void at their number
            # (``admit``: deleted from the store then); read once they are settled
            settled: Deferred[None] = Deferred()
            # behind what a held room owes the reader (a member): its events may be void
            member = is_room_name(target) and fold(target) in user.rooms
            self.outbox.after(lambda: settled.callback(None), (user,) if member else None)
            d = settled.addCallback(lambda _: read(viewer, conversation, *refs, limit, kinds))
        else:
            d = read(viewer, conversation, *refs, limit, kinds)
        if is_room_name(target):
            room = self.rooms.get(fold(target))
            d.addCallback(_as_room, room.name if room is not None else target)
        return d.addErrback(as_hub_error)

    def history_targets(
        self, user: User, start: float, end: float, limit: int, kinds: Optional[Collection[str]] = None
    ) -> Deferred[list[tuple[str, float]]]:
        """The conversations ``user`` had (its private ones and the rooms it is in) with
        events strictly between two times, as ``[(name, latest time)]``, counted from
        ``start`` (IRC ``CHATHISTORY TARGETS``). Fails as ``history`` does."""
        store = self.store
        if store is None or not self.history_available:
            return defer.fail(errors.HistoryUnavailable("*"))
        rooms = [room.name for room in user.rooms.values()]
        d = store.targets(self.history_viewer(user), start, end, limit, rooms, kinds)
        return d.addErrback(as_hub_error)

    def _log_store_failure(self, failure: Failure, event: Event) -> None:
        # A refused write is logged by the store, once per run of failures with a count;
        # anything else is a bug worth its traceback.
        if not failure.check(StorageError):
            self.log.failure("could not store {kind} event {id}", failure, kind=event.kind, id=event.id)

    def _not_stored(
        self, actor: Optional[User], event: Event, failure: Failure, receipt: Optional[Receipt] = None
    ) -> None:
        """A durable event was not stored, so it was delivered to nobody: tell its sender,
        through the request's ``receipt`` (its protocol answers) or with a server notice."""
        self._log_store_failure(failure, event)
        if receipt is not None:
            receipt.refuse(event.target, failure)
            return
        if actor is None:
            return
        notice = self.ids.make(
            Kind.NOTICE,
            self.server_source,
            actor.nick or "",
            not_stored_text(event.target, failure.getErrorMessage()),
            data={"error": "storage_failed", "refers_to": event.id},
        )
        self.fanout.flush()
        actor.participant.deliver(notice)

