"""The HTTP side: a twisted.web ``Site`` serving the bundled client at ``/`` and WebSocket at ``/ws``."""
from __future__ import annotations

import html
import os
import re
from typing import Optional

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.web import http, resource, server, static

from chathub.config import Config
from chathub.protocols.web.sessions import install_sessions
from chathub.protocols.web.websocket import ChatWebSocketFactory, ChatWebSocketResource, host_allowed

_log = Logger()

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

    def getChild(self, path, request):
        index = getattr(self, "index_page", None)  # only the root has one
        if index is not None and path in (b"", b"index.html"):
            return index
        try:
            return super().getChild(path, request)
        except (ValueError, OSError):
            # a path the file system cannot name (``/%00``: "embedded null byte") is simply
            # not here; without this it was a 500 with a traceback in the log
            return resource.NoResource("No such file.")


class IndexPage(resource.Resource):
    """``index.html`` with the page title set to ``[server] description`` (rendered once, at start-up)."""

    isLeaf = True

    def __init__(self, path: str, description: str) -> None:
        super().__init__()
        with open(path, encoding="utf-8") as f:
            text = f.read()
        title = f"<title>{html.escape(description)}</title>"
        self.body = re.sub(r"<title>.*?</title>", lambda _: title, text, count=1, flags=re.S).encode("utf-8")

    def render_GET(self, request):
        for name, value in SECURITY_HEADERS.items():
            request.setHeader(name, value)
        request.setHeader(b"Cache-Control", b"no-cache")
        request.setHeader(b"Content-Type", b"text/html; charset=utf-8")
        return self.body


class ChathubSite(server.Site):
    """A Site that only ever speaks HTTP/1.1 (WebSocket upgrades cannot run over HTTP/2) and
    only answers to the host names of ``[websocket] hostnames`` (DNS rebinding)."""

    protocol = http.HTTPChannel
    hostnames: tuple[str, ...] = ("*",)

    def getResourceFor(self, request):
        host = (request.getHeader(b"host") or b"").decode("latin-1")
        if not host_allowed(host, self.hostnames):
            _log.info(
                "refused HTTP request from {peer} for host {host}: not in [websocket] hostnames",
                peer=getattr(request.getClientAddress(), "host", "?"), host=host,
            )
            if request.path == b"/ws" or request.path.startswith(b"/ws/"):
                return resource.ErrorPage(http.FORBIDDEN, "Forbidden", "This host name is not served here.")
            return resource.ErrorPage(421, "Misdirected Request", "This host name is not served here.")
        return super().getResourceFor(request)


def build_site(hub, portal, config: Config, clock: Optional[IReactorTime] = None) -> server.Site:
    """The HTTP listener's factory: the web client at ``/`` and the WebSocket endpoint at ``/ws``."""
    root = ClientFiles(CLIENT_DIR)
    root.indexNames = ["index.html"]
    root.index_page = IndexPage(os.path.join(CLIENT_DIR, "index.html"), config.server.description)
    factory = ChatWebSocketFactory(hub, portal, config, clock)
    install_sessions(factory)
    root.putChild(b"ws", ChatWebSocketResource(factory))
    site = ChathubSite(root)
    site.hostnames = tuple(config.websocket.hostnames)
    site.websocket_factory = factory
    return site
