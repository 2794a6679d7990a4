"""Assembles the running server: storage, hub, portal and every configured listener.

Start-up order matters: the store is checked synchronously (a corrupt or unwritable
database stops twistd with a clear message before anything listens), opened, registered
rooms and account names are loaded, and only then do the listeners start.
"""
from __future__ import annotations

import importlib
import os
from typing import Iterable

from twisted.application import service, strports
from twisted.cred.checkers import ICredentialsChecker
from twisted.logger import Logger
from twisted.python.failure import Failure

from chathub.auth.hashing import PasswordHashing
from chathub.auth.portal import account_directory, build_portal, password_checkers
from chathub.config import Config
from chathub.hub.service import ChatHub
from chathub.store import StorageError, open_store
from chathub.store.accounts import StoreAccountChecker
from chathub.store.service import StoreService

#: listener kind -> "module:callable" making its factory from (hub, portal, config)
LISTENER_FACTORIES = {
    "line": "chathub.protocols.line:LineFactory",
    "irc": "chathub.protocols.irc:IrcFactory",
    "http": "chathub.protocols.web:build_site",
}


def _factory_maker(kind: str):
    module, _, name = LISTENER_FACTORIES[kind].partition(":")
    return getattr(importlib.import_module(module), name)


class ChathubService(service.MultiService):
    """The whole server as one twistd service; ``hub``, ``portal`` and ``store`` are its core."""

    log = Logger()

    def __init__(self, config: Config, checkers: Iterable[ICredentialsChecker] = ()) -> None:
        super().__init__()
        self.config = config
        try:
            os.makedirs(config.server.data_dir, exist_ok=True)
        except OSError as e:
            raise SystemExit(f"chathub cannot start: data directory {config.server.data_dir}: {e.strerror}")
        self.store = open_store(config)
        try:
            self.store.preflight()
        except StorageError as e:
            raise SystemExit(f"chathub cannot start: {e}")
        self.store_service = StoreService(self.store, config.history, on_failure=self._store_failed)
        self.store_service.setServiceParent(self)
        # one argon2 queue for every password check (store, password file, OPER)
        hashing = PasswordHashing(concurrency=config.auth.hash_concurrency)
        self.accounts = StoreAccountChecker(self.store, hashing=hashing)
        checkers = password_checkers(config, checkers, store_checker=self.accounts)
        from twisted.internet import reactor

        self.hub = ChatHub(
            config,
            store=self.store,
            accounts=account_directory(checkers),
            registrar=self.accounts,
            clock=reactor,
        )
        self.hub.setServiceParent(self)
        self.portal = build_portal(self.hub, config, checkers, hashing=hashing)
        self.listeners = service.MultiService()
        self._failed = False
        self.factories = {}
        for kind in LISTENER_FACTORIES:
            descriptions = getattr(config.listeners, kind)
            if not descriptions:
                continue
            factory = _factory_maker(kind)(self.hub, self.portal, config)
            self.factories[kind] = factory
            for description in descriptions:
                listener = strports.service(description, factory)
                listener.setName(f"{kind}:{description}")
                listener.setServiceParent(self.listeners)

    def startService(self) -> None:
        super().startService()
        d = self.store_service.ready()
        d.addCallback(lambda store: store.load_rooms())
        d.addCallback(self.hub.restore_rooms)
        d.addCallback(lambda _: self.accounts.load())
        d.addCallback(self._ready)
        d.addErrback(self._store_failed)

    def _ready(self, accounts: int) -> None:
        self.log.info(
            "{rooms} registered rooms and {accounts} accounts loaded; starting listeners",
            rooms=len(self.hub.rooms),
            accounts=accounts,
        )
        self.listeners.setServiceParent(self)

    def _store_failed(self, failure: Failure) -> None:
        # called by StoreService on a failed open and again through ready()'s errback
        if self.listeners.parent is not None or self._failed:
            return
        self._failed = True
        self.log.critical("chathub cannot start: {message}", message=failure.getErrorMessage())
        from twisted.internet import reactor

        if reactor.running:
            # twistd exits 0 after reactor.stop(); make a failed start visible to supervisors
            reactor.addSystemEventTrigger("after", "shutdown", os._exit, 1)
            reactor.stop()
