"""The HTTP side: a twisted.web ``Site`` serving the bundled client at ``/`` and WebSocket at ``/ws``."""
from __future__ import annotations

import os
from typing import Optional

from twisted.internet.interfaces import IReactorTime
from twisted.web import http, resource, server, static

from chathub.config import Config
from chathub.protocols.web.sessions import install_sessions
from chathub.protocols.web.websocket import ChatWebSocketFactory, ChatWebSocketResource

#: the bundled web client
CLIENT_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "web")

#: headers on every static response: the client loads nothing from elsewhere and never
#: runs inline script, so injected markup could not run either
SECURITY_HEADERS = {
    b"Content-Security-Policy": (
        b"default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        b"connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'none'"
    ),
    b"X-Content-Type-Options": b"nosniff",
    b"Referrer-Policy": b"no-referrer",
    b"X-Frame-Options": b"DENY",
}


class ClientFiles(static.File):
    """The static client, with the security headers and an explicit JavaScript type (ES modules need it)."""

    contentTypes = {
        **static.File.contentTypes,
        ".js": "text/javascript; charset=utf-8",
        ".mjs": "text/javascript; charset=utf-8",
        ".css": "text/css; charset=utf-8",
        ".html": "text/html; charset=utf-8",
        ".svg": "image/svg+xml",
        ".webmanifest": "application/manifest+json",
    }

    def render(self, request):
        for name, value in SECURITY_HEADERS.items():
            request.setHeader(name, value)
        # The client is small and changes with the server: always revalidate.
        request.setHeader(b"Cache-Control", b"no-cache")
        return super().render(request)

    def directoryListing(self):
        return resource.NoResource("No such file.")


class ChathubSite(server.Site):
    """A Site that only ever speaks HTTP/1.1: WebSocket upgrades cannot run over HTTP/2."""

    protocol = http.HTTPChannel


def build_site(hub, portal, config: Config, clock: Optional[IReactorTime] = None) -> server.Site:
    """The HTTP listener's factory: the web client at ``/`` and the WebSocket endpoint at ``/ws``."""
    root = ClientFiles(CLIENT_DIR)
    root.indexNames = ["index.html"]
    factory = ChatWebSocketFactory(hub, portal, config, clock)
    install_sessions(factory)
    root.putChild(b"ws", ChatWebSocketResource(factory))
    site = ChathubSite(root)
    site.websocket_factory = factory
    return site
