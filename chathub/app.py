"""Assembles the running server: storage, hub, portal and every configured listener.

Start-up order matters: the store is checked synchronously (a corrupt or unwritable
database stops twistd with a clear message before anything listens), opened, registered
rooms and account names are loaded, and only then do the listeners start.
"""
from __future__ import annotations

import os
import signal
from typing import TYPE_CHECKING, Any, Callable, Iterable, Optional

from twisted.application import service
from twisted.cred.checkers import ICredentialsChecker
from twisted.internet import defer, endpoints
from twisted.internet.interfaces import IListeningPort, IStreamServerEndpoint
from twisted.internet.protocol import Factory
from twisted.logger import ILogObserver, Logger
from twisted.python.failure import Failure

from chathub.auth.accounts import StoreAccountChecker
from chathub.auth.checkers import file_checkers
from chathub.auth.cloak import CloakSecretError, open_cloak, share_cloak_secret
from chathub.auth.hashing import PasswordHashing
from chathub.auth.portal import account_directory, build_portal, password_checkers
from chathub.auth.tokens import SessionTokens
from chathub.backplane import make_backplane
from chathub.cluster.relay import ClusterRelay
from chathub.config import Config, ConfigError
from chathub.hub.service import ChatHub
from chathub.interfaces import IBackplane
from chathub.lifecycle.announce import reachable, ready_text
from chathub.lifecycle.logs import JsonLines
from chathub.lifecycle.metrics import Operations
from chathub.lifecycle.reload import Reloader
from chathub.lifecycle.shutdown import REASON as SHUTDOWN_REASON
from chathub.lifecycle.shutdown import Deadline
from chathub.privatefiles import private_directory
from chathub.protocols.connlimit import (
    ConnectionLimits,
    LimitingReactor,
    raise_open_files_limit,
    reserve_descriptor_table,
)
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

    return build_site(server.hub, server.portal, server.config, irc=server.irc, operations=server.operations)


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

    def when_listening(self) -> defer.Deferred[Optional[IListeningPort]]:
        """Fires with the listening port once it listens, or None if it cannot."""
        assert self._listening is not None, "not started"
        done: defer.Deferred[Optional[IListeningPort]] = defer.Deferred()

        def fire(result: object) -> object:
            done.callback(self.port)
            return result

        self._listening.addBoth(fire)
        return done

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

    def __init__(
        self,
        config: Config,
        checkers: Iterable[ICredentialsChecker] = (),
        overrides: Optional[dict[str, dict[str, Any]]] = None,
    ) -> None:
        """``overrides`` are the command line's settings (``Config.with_overrides``
        arguments): a reload of the file applies them again."""
        super().__init__()
        self.config = config
        self.overrides = overrides or {}
        #: runs reloads one at a time, reading the file in a thread (SIGHUP, REHASH)
        self.reloader = Reloader(self)
        #: True under twistd (the plugin sets it): the process is this hub's, so it takes
        #: SIGHUP and bounds its shutdown; False in a test's process
        self.owns_process = False
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
                deliver_again=self.hub.deliver_again,
                outbox=self.hub.outbox,
                made_here=self.hub.ids.made_here,
                held_alone=self.hub.held_alone,
                admit=self.hub.admit,
                wanted=self.hub.wants_order,
                batching=self.hub.batching,
                gap_wait=config.cluster.gap_wait,
                live=self.hub.room_is_live,
                max_ended=config.cluster.max_ended_rooms,
                no_audience=self.hub.no_audience,
            )
        try:
            cloak = self.cloak = open_cloak(config)
        except CloakSecretError as e:
            raise SystemExit(f"chathub cannot start: {e}") from e
        # session tokens: issued to logged-in chathub.v1 users, logging the account in again
        tokens = SessionTokens(self.store, config.auth.token_lifetime, config.auth.max_tokens, reactor)
        self.portal = build_portal(self.hub, config, checkers, cloak=cloak, hashing=hashing, tokens=tokens)
        # what every IRC session shares, over TCP and over WebSocket (reads the MOTD now)
        self.irc: Optional[IrcServer] = None
        if config.listeners.irc or config.listeners.http:
            from chathub.protocols.irc import IrcServer

            self.irc = IrcServer(self.hub, self.portal, config, reactor)
            self.irc.rehash = self.reload
        self.listeners = service.MultiService()
        # /metrics and /healthz of the HTTP listeners (chathub.lifecycle.metrics)
        self.operations = Operations(self, reactor)
        self._failed = False
        self._ready_waiters: list[defer.Deferred[None]] = []
        self.factories: dict[str, Factory[Any]] = {}
        # one count per client address across every listener of every protocol
        self.connection_limits = ConnectionLimits.from_config(config.limits, reactor)
        self._limiting = LimitingReactor(reactor, self.connection_limits)
        for kind in LISTENER_FACTORIES:
            for description in getattr(config.listeners, kind):
                try:
                    endpoint = self.endpoint_for(kind, description)
                except ConfigError as e:
                    raise SystemExit(f"chathub cannot start: {e}") from e
                self.add_listener(kind, description, endpoint, self._cannot_start)

    # -- listeners -----------------------------------------------------------------------

    def endpoint_for(self, kind: str, description: str) -> IStreamServerEndpoint:
        """The endpoint of a listener description, each TCP port of it limited by
        ``[limits]``; raise ``ConfigError`` naming it when it cannot be used (a bad
        description, an unreadable certificate, ...)."""
        try:
            return endpoints.serverFromString(self._limiting, description)
        except Exception as e:
            raise ConfigError(f"the {kind} listener {description!r}: {e}") from None

    def add_listener(
        self,
        kind: str,
        description: str,
        endpoint: IStreamServerEndpoint,
        on_failure: Optional[Callable[[str], None]] = None,
    ) -> Listener:
        """Add a listener (listening at once if the listeners run); ``on_failure`` is told
        why it cannot listen (default: logged, the hub goes on; at start-up the start stops)."""
        factory = self.factories.get(kind)
        if factory is None:
            if kind in ("irc", "http") and self.irc is None:
                from twisted.internet import reactor

                from chathub.protocols.irc import IrcServer

                self.irc = IrcServer(self.hub, self.portal, self.config, reactor)
                self.irc.rehash = self.reload
            factory = self.factories[kind] = LISTENER_FACTORIES[kind](self)
        listener = Listener(kind, description, endpoint, factory, on_failure or self._listener_failed)
        listener.setServiceParent(self.listeners)
        return listener

    def listener(self, kind: str, description: str) -> Optional[Listener]:
        """The running listener of ``kind`` on ``description``, if there is one."""
        for listener in self.listeners:
            if listener.kind == kind and listener.description == description:
                return listener
        return None

    def remove_listener(self, listener: Listener) -> None:
        """Stop listening there; connections made through it stay."""
        self.listeners.removeService(listener)

    def _listener_failed(self, message: str) -> None:
        self.log.error("{message}", message=message)

    # -- reload and shutdown -------------------------------------------------------------

    def reload(self) -> defer.Deferred[tuple[bool, list[str]]]:
        """Re-read the config file and apply what can change while everyone stays
        connected (``chathub.lifecycle.reload``); fires with (ok, report lines)."""
        return self.reloader.reload().addCallback(lambda report: (report.ok, report.lines))

    def apply_config(self, config: Config) -> list[defer.Deferred[Any]]:
        """Hand a reloaded, validated ``config`` to everything that reads settings while
        it runs; returns what is still being done (the MOTD is read in a thread)."""
        self.config = config
        self.hub.reconfigure(config)
        self.connection_limits.reconfigure(config.limits)
        waits: list[defer.Deferred[Any]] = []
        if self.irc is not None:
            waits.append(self.irc.reconfigure(config))
        # the password files, in threads (between reloads a guest login checks them at most
        # once a second: ReloadingFile.current)
        waits.extend(checker.reload() for checker in file_checkers(self.checkers))
        for factory in self.factories.values():
            reconfigure = getattr(factory, "reconfigure", None)
            if reconfigure is not None:  # the IRC factory reads its server's
                reconfigure(config)
        return waits

    def _sighup(self, signum: int, frame: object) -> None:
        from twisted.internet import reactor

        # a signal handler runs between two bytecodes of the reactor's thread: do the
        # work in the reactor, as a call from outside it
        def reload() -> None:
            # the report is logged; only a fault in applying it is left to say
            self.reload().addErrback(lambda f: self.log.failure("config reload failed", f))

        reactor.callFromThread(reload)  # type: ignore[attr-defined]  # IReactorThreads

    def _going_away(self) -> None:
        """The process is stopping (SIGTERM): from now on it ends within
        ``server.shutdown_timeout`` whatever hangs."""
        self.log.info(
            "shutting down: telling every connection, then flushing the store (at most {seconds:g} s)",
            seconds=self.config.server.shutdown_timeout, event="shutdown",
        )
        # never cancelled: a shutdown that ends in time ends the process, and this with it
        Deadline(self.config.server.shutdown_timeout).start()

    def _farewell(self) -> defer.Deferred[Any]:
        """Stop accepting, then tell every connection the server is going, in its own terms;
        fires once the WebSocket peers answered the close (or half the timeout passed)."""
        stopped = defer.maybeDeferred(self.listeners.stopService)
        waits: list[defer.Deferred[Any]] = [stopped]
        for factory in self.factories.values():
            socket = getattr(factory, "websocket_factory", None)
            if socket is not None:  # the HTTP site: JSON event or IRC ERROR, then 1001
                going = socket.going_away(SHUTDOWN_REASON, self.config.server.shutdown_timeout / 2)
                if going is not None:
                    waits.append(going)
        if self.irc is not None:
            self.irc.going_away(SHUTDOWN_REASON)  # ERROR to each IRC session over TCP
        line: Any = self.factories.get("line")  # a LineFactory
        if line is not None:
            line.going_away(SHUTDOWN_REASON)  # a "! " line to each telnet connection
        return defer.DeferredList(waits, consumeErrors=True)

    def setServiceParent(self, parent: Any) -> None:
        """Join ``parent``; under twistd that is the application, whose log observer
        component twistd uses when it starts logging, just after: the JSON lines of
        ``[logging] format = "json"`` are set there."""
        super().setServiceParent(parent)
        if self.config.logging.format == "json" and hasattr(parent, "setComponent"):
            parent.setComponent(ILogObserver, JsonLines())

    def startService(self) -> None:
        from twisted.internet import reactor

        if self.owns_process:
            # SIGHUP reloads the config (its default would end the process); a stop of the
            # reactor (SIGTERM) ends the process within server.shutdown_timeout
            signal.signal(signal.SIGHUP, self._sighup)
            reactor.addSystemEventTrigger("before", "shutdown", self._going_away)
        before, after, hard = raise_open_files_limit()
        table = reserve_descriptor_table()
        self.log.info(
            "open files limit {after} (was {before}, hard limit {hard}): each connection holds one; "
            "descriptor table made for {table}",
            after=after, before=before, hard=hard, table=table,
        )
        super().startService()
        d: defer.Deferred[Any] = self.store_service.ready()  # each callback changes the result
        d.addCallback(lambda store: store.load_rooms())
        d.addCallback(self.hub.restore_rooms)
        if self.backplane is not None:  # after the stored rooms: the live state replaces theirs
            # one cloak of an address on every node: keyed by the secret the nodes share
            d.addCallback(lambda _: share_cloak_secret(self.cloak, self.config, self.store))
            d.addCallback(self._join_cluster)
        d.addCallback(lambda _: self.accounts.load())
        d.addCallback(self._ready)
        d.addErrback(self._store_failed)

    def _join_cluster(self, _: object) -> defer.Deferred[object]:
        """Join the cluster before anyone can sign on: a Redis that cannot be reached stops
        start-up with the reason (the backplane's ``BackplaneUnavailable``). The rooms in
        use come from another node first (docs/cluster.md); then the relay starts where
        each room's state stands and fetches what was committed since."""
        assert self.backplane is not None and self.relay is not None
        backplane, relay = self.backplane, self.relay
        from twisted.internet import reactor

        def joined(_: object) -> defer.Deferred[None]:
            return self.hub.join_cluster(backplane, relay, reactor, wait=backplane_wait)

        def rooms_known(_: object) -> None:
            relay.start()
            relay.resync()
            self.log.info(
                "cluster mode (node {node}): one nick namespace, presence, rooms and chat across nodes "
                "(docs/cluster.md)",
                node=backplane.node_id,
            )

        backplane_wait = self.hub.config.cluster.lease  # a live node answers in milliseconds
        return backplane.start().addCallback(joined).addCallback(rooms_known)

    def stopService(self) -> Optional[defer.Deferred[None]]:
        """Stop accepting and tell every connection (``_farewell``), then stop the hub and
        the store (children, in reverse: the store commits what it holds), then leave the
        cluster."""
        d: defer.Deferred[None] = self._farewell().addCallback(
            lambda _: super(ChathubService, self).stopService()
        )
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

        return d.addBoth(leave)

    def _ready(self, accounts: int) -> None:
        self.log.info(
            "{rooms} persistent rooms and {accounts} accounts loaded; starting listeners",
            rooms=len(self.hub.rooms),
            accounts=accounts,
        )
        self.listeners.setServiceParent(self)
        waits = [listener.when_listening() for listener in self.listeners]
        defer.gatherResults(waits).addCallback(self._announce)

    def when_ready(self) -> defer.Deferred[None]:
        """Fires once every listener listens (when the start-up block is logged); fails
        with the reason if start-up stops."""
        d: defer.Deferred[None] = defer.Deferred()
        self._ready_waiters.append(d)
        return d

    def _announce(self, ports: list[Optional[IListeningPort]]) -> None:
        """Say how to reach every listener, once all of them listen."""
        if self._failed or any(port is None for port in ports):
            return
        waiters, self._ready_waiters = self._ready_waiters, []
        for waiter in waiters:
            waiter.callback(None)
        rows = [reachable(listener.kind, listener.description, port.getHost())
                for listener, port in zip(self.listeners, ports, strict=True) if port is not None]
        self.log.info(
            "{text}", text=ready_text(rows), event="ready",
            listeners=[{"kind": r.kind, "address": r.address, "connect": r.how} for r in rows],
        )

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
        waiters, self._ready_waiters = self._ready_waiters, []
        for waiter in waiters:
            waiter.errback(ConfigError(f"chathub cannot start: {message}"))
        from twisted.internet import reactor

        if reactor.running:
            # twistd exits 0 after reactor.stop(); make a failed start visible to supervisors
            reactor.addSystemEventTrigger("after", "shutdown", os._exit, 1)
            reactor.stop()
