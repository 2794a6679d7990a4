"""Assembles the running server: storage, hub, portal and every configured listener.

Start-up order matters: the store is checked synchronously (a corrupt or unwritable
database stops twistd with a clear message before anything listens), opened, registered
rooms and account names are loaded, and only then do the listeners start.
"""
from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, Callable, Iterable, Optional

from twisted.application import service
from twisted.cred.checkers import ICredentialsChecker
from twisted.internet import defer, endpoints
from twisted.internet.interfaces import IListeningPort, IStreamServerEndpoint
from twisted.internet.protocol import Factory
from twisted.logger import Logger
from twisted.python.failure import Failure

from chathub.auth.accounts import StoreAccountChecker
from chathub.auth.cloak import CloakSecretError, open_cloak
from chathub.auth.hashing import PasswordHashing
from chathub.auth.portal import account_directory, build_portal, password_checkers
from chathub.backplane import make_backplane
from chathub.cluster.relay import ClusterRelay
from chathub.config import Config
from chathub.hub.service import ChatHub
from chathub.interfaces import IBackplane
from chathub.privatefiles import private_directory
from chathub.protocols.connlimit import ConnectionLimits, LimitingReactor, raise_open_files_limit
from chathub.store import StorageError, open_store
from chathub.store.service import StoreService

if TYPE_CHECKING:
    from chathub.protocols.irc import IrcServer

# Each protocol is imported only when a listener serves it (no autobahn without HTTP).


def _line_factory(server: "ChathubService") -> Factory[Any]:
    from chathub.protocols.line import LineFactory

    return LineFactory(server.hub, server.portal, server.config)


def _irc_factory(server: "ChathubService") -> Factory[Any]:
    from chathub.protocols.irc import IrcFactory

    assert server.irc is not None  # made whenever an IRC or HTTP listener is configured
    return IrcFactory(server.irc)


def _http_factory(server: "ChathubService") -> Factory[Any]:
    from chathub.protocols.web import build_site

    return build_site(server.hub, server.portal, server.config, irc=server.irc)


#: listener kind -> its factory, made from the service's hub, portal, config and IRC server
#: (IRC over TCP and IRC over WebSocket share one ``IrcServer``)
LISTENER_FACTORIES: dict[str, Callable[["ChathubService"], Factory[Any]]] = {
    "line": _line_factory,
    "irc": _irc_factory,
    "http": _http_factory,
}


class Listener(service.Service):
    """One configured listener: listens on its endpoint when started, stops when stopped.

    A listener that cannot listen (a taken port, a missing interface) calls ``on_failure``
    with a message naming its protocol and endpoint: chathub never runs short of one of
    its listeners.
    """

    def __init__(
        self,
        kind: str,
        description: str,
        endpoint: IStreamServerEndpoint,
        factory,
        on_failure: Callable[[str], None],
    ) -> None:
        self.kind = kind
        self.description = description
        self.endpoint = endpoint
        self.factory = factory
        self.on_failure = on_failure
        self.port: Optional[IListeningPort] = None
        self._listening: Optional[defer.Deferred] = None
        self.setName(f"{kind}:{description}")

    def startService(self) -> None:
        super().startService()
        self._listening = self.endpoint.listen(self.factory)
        self._listening.addCallbacks(self._listened, self._failed)

    def _listened(self, port: IListeningPort) -> None:
        self.port = port

    def _failed(self, failure: Failure) -> None:
        if failure.check(defer.CancelledError):
            return
        self.on_failure(f"the {self.kind} listener {self.description} cannot listen: {failure.getErrorMessage()}")

    def stopService(self) -> Optional[defer.Deferred]:
        super().stopService()
        if self.port is not None:
            port, self.port = self.port, None
            return port.stopListening()
        if self._listening is not None and not self._listening.called:
            self._listening.cancel()
        return None


class ChathubService(service.MultiService):
    """The whole server as one twistd service; ``hub``, ``portal`` and ``store`` are its core,
    ``irc`` the IRC server its IRC and WebSocket listeners share (None when neither listens)."""

    log = Logger()

    def __init__(self, config: Config, checkers: Iterable[ICredentialsChecker] = ()) -> None:
        super().__init__()
        self.config = config
        try:
            if private_directory(config.server.data_dir):
                self.log.warn(
                    "the data directory {path} was open to other users; it is now private (0700)",
                    path=os.path.abspath(config.server.data_dir),
                )
        except OSError as e:
            raise SystemExit(f"chathub cannot start: data directory {config.server.data_dir}: {e.strerror}") from e
        self.store = open_store(config)
        try:
            self.store.preflight()
        except StorageError as e:
            raise SystemExit(f"chathub cannot start: {e}") from e
        self.store_service = StoreService(self.store, config.history, on_failure=self._store_failed)
        self.store_service.setServiceParent(self)
        # one argon2 queue for every password check (store, password file, OPER)
        hashing = PasswordHashing(concurrency=config.auth.hash_concurrency)
        self.accounts = StoreAccountChecker(self.store, hashing=hashing)
        checkers = password_checkers(config, checkers, store_checker=self.accounts)
        self.checkers = checkers  # their reload timers stop with the service
        from twisted.internet import reactor

        self.hub = ChatHub(
            config,
            store=self.store,
            accounts=account_directory(checkers),
            account_creator=self.accounts,
            clock=reactor,
        )
        self.hub.setServiceParent(self)
        # cluster mode: other nodes' chat arrives through the relay, in each conversation's
        # committed order (docs/cluster.md); a lone node has no backplane to start
        self.backplane: Optional[IBackplane] = None
        self.relay: Optional[ClusterRelay] = None
        if config.cluster.enabled:
            self.backplane = make_backplane(config.cluster, reactor)
            self.relay = ClusterRelay(
                self.store,
                self.backplane,
                self.hub.deliver_remote,
                reactor,
                outbox=self.hub.outbox,
                made_here=self.hub.ids.made_here,
                held_alone=self.hub.held_alone,
                batching=self.hub.batching,
                gap_wait=config.cluster.gap_wait,
            )
        try:
            cloak = open_cloak(config)
        except CloakSecretError as e:
            raise SystemExit(f"chathub cannot start: {e}") from e
        self.portal = build_portal(self.hub, config, checkers, cloak=cloak, hashing=hashing)
        # what every IRC session shares, over TCP and over WebSocket (reads the MOTD now)
        self.irc: Optional[IrcServer] = None
        if config.listeners.irc or config.listeners.http:
            from chathub.protocols.irc import IrcServer

            self.irc = IrcServer(self.hub, self.portal, config, reactor)
        self.listeners = service.MultiService()
        self._failed = False
        self.factories = {}
        # one count per client address across every listener of every protocol
        self.connection_limits = ConnectionLimits.from_config(config.limits, reactor)
        limiting = LimitingReactor(reactor, self.connection_limits)
        for kind in LISTENER_FACTORIES:
            descriptions = getattr(config.listeners, kind)
            if not descriptions:
                continue
            factory = LISTENER_FACTORIES[kind](self)
            self.factories[kind] = factory
            for description in descriptions:
                try:
                    endpoint = endpoints.serverFromString(limiting, description)
                except Exception as e:  # a bad description, an unreadable certificate, ...
                    raise SystemExit(f"chathub cannot start: the {kind} listener {description!r}: {e}") from e
                Listener(kind, description, endpoint, factory, self._cannot_start).setServiceParent(self.listeners)

    def startService(self) -> None:
        before, after, hard = raise_open_files_limit()
        self.log.info(
            "open files limit {after} (was {before}, hard limit {hard}): each connection holds one",
            after=after, before=before, hard=hard,
        )
        super().startService()
        d: defer.Deferred[Any] = self.store_service.ready()  # each callback changes the result
        if self.backplane is not None:
            d.addCallback(self._join_cluster)
        d.addCallback(lambda store: store.load_rooms())
        d.addCallback(self.hub.restore_rooms)
        d.addCallback(lambda _: self.accounts.load())
        d.addCallback(self._ready)
        d.addErrback(self._store_failed)

    def _join_cluster(self, store: object) -> defer.Deferred[object]:
        """Join the cluster before anyone can sign on: a Redis that cannot be reached stops
        start-up with the reason (the backplane's ``BackplaneUnavailable``)."""
        assert self.backplane is not None and self.relay is not None
        backplane, relay = self.backplane, self.relay

        def joined(_: object) -> object:
            relay.start()
            self.hub.join_cluster(backplane)
            self.log.warn(
                "cluster mode (node {node}): one nick namespace, private messages and chat in rooms "
                "cross nodes; room membership and presence do not yet (docs/cluster.md)",
                node=backplane.node_id,
            )
            return store

        return backplane.start().addCallback(joined)

    def stopService(self) -> Optional[defer.Deferred[None]]:
        """Stop the listeners, the hub and the store (children, in reverse), then leave the
        cluster."""
        d = super().stopService()
        for checker in self.checkers:
            stop = getattr(checker, "stop", None)  # a password file's reload timer
            if stop is not None:
                stop()
        if self.backplane is None:
            return d
        backplane, relay = self.backplane, self.relay

        def leave(result: object) -> defer.Deferred[None]:
            if relay is not None:
                relay.stop()
            return backplane.stop().addBoth(lambda _: None)

        return (d if d is not None else defer.succeed(None)).addBoth(leave)

    def _ready(self, accounts: int) -> None:
        self.log.info(
            "{rooms} persistent rooms and {accounts} accounts loaded; starting listeners",
            rooms=len(self.hub.rooms),
            accounts=accounts,
        )
        self.listeners.setServiceParent(self)

    def _store_failed(self, failure: Failure) -> None:
        # called by StoreService on a failed open and again through ready()'s errback;
        # once the listeners run, a store fault is the store service's to report
        if self.listeners.parent is not None:
            return
        self._cannot_start(failure.getErrorMessage())

    def _cannot_start(self, message: str) -> None:
        """Stop start-up: log why, stop the reactor, exit with status 1."""
        if self._failed:
            return
        self._failed = True
        self.log.critical("chathub cannot start: {message}", message=message)
        from twisted.internet import reactor

        if reactor.running:
            # twistd exits 0 after reactor.stop(); make a failed start visible to supervisors
            reactor.addSystemEventTrigger("after", "shutdown", os._exit, 1)
            reactor.stop()
