"""Assembles the running server: hub, portal, storage and every configured listener."""
from __future__ import annotations

import importlib
import os
from typing import Iterable

from twisted.application import service, strports
from twisted.cred.checkers import ICredentialsChecker

from chathub.auth.portal import build_portal, password_checkers
from chathub.config import Config
from chathub.hub.service import ChatHub

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
    """The whole server as one twistd service; ``hub`` and ``portal`` are its core."""

    def __init__(self, config: Config, checkers: Iterable[ICredentialsChecker] = ()) -> None:
        super().__init__()
        self.config = config
        os.makedirs(config.server.data_dir, exist_ok=True)
        self.hub = ChatHub(config)
        self.hub.setServiceParent(self)
        self.portal = build_portal(self.hub, config, password_checkers(config, checkers))
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
                listener.setServiceParent(self)
