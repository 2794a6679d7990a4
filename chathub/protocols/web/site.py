"""The HTTP side: a twisted.web ``Site`` serving the bundled client at ``/`` and WebSocket at ``/ws``."""
from __future__ import annotations

import html
import os
import re
from typing import Optional

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.web import http, pages, resource, server, static
from twisted.web.http_headers import Headers

from chathub.config import Config
from chathub.interfaces import IOperations
from chathub.protocols.connlimit import REASON_TEXT, TOO_FAST
from chathub.protocols.irc.server import IrcServer
from chathub.protocols.web.ops import HealthPage, MetricsPage
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
    index_page: "IndexPage"  # set on the root only (``build_site``)
    websocket_resource: "ChatWebSocketResource"  # the root only: a WebSocket opened at / (``build_site``)

    def render(self, request):
        for name, value in SECURITY_HEADERS.items():
            request.setHeader(name, value)
        # The client is small and changes with the server: always revalidate.
        request.setHeader(b"Cache-Control", b"no-cache")
        return super().render(request)

    def directoryListing(self):
        return pages.notFound("No Such Resource", "No such file.")

    def getChild(self, path, request):
        index = getattr(self, "index_page", None)  # only the root has one
        if index is not None and path in (b"", b"index.html"):
            if path == b"" and (request.getHeader(b"upgrade") or b"").lower() == b"websocket":
                # a WebSocket opened at / (IRC clients given ws://host:port) is served as at /ws
                return getattr(self, "websocket_resource", index)
            return index
        try:
            return super().getChild(path, request)
        except (ValueError, OSError):
            # a path the file system cannot name (``/%00``: "embedded null byte") is simply
            # not here; without this it was a 500 with a traceback in the log
            return pages.notFound("No Such Resource", "No such file.")


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


def _is_websocket_path(request_line: bytes) -> bool:
    # "GET /ws HTTP/1.1" (and /ws?..., /ws/...: the resource is a leaf)
    parts = request_line.split(b" ")
    if len(parts) != 3:
        return False
    path = parts[1]
    return path == b"/ws" or path.startswith((b"/ws?", b"/ws/"))


class ChathubChannel(http.HTTPChannel):
    """HTTP/1.1 with a deadline for each request, and no server version in any response.

    A request (request line, headers and any body) must arrive whole within ``[limits]
    http_request_timeout`` of the connection being made, or of the previous response on a
    kept-alive connection; a request for ``/ws`` must arrive within ``[websocket]
    open_handshake_timeout`` of the same start, which is the opening handshake's deadline
    (the upgrade answers at once once the request is in). Twisted's own timer is an idle
    timer that every byte restarts, so a client trickling a byte every few seconds held the
    connection for ever: here the same timer is a deadline, started with the wait for a
    request and never restarted by what arrives. Once a request is in, nothing times the
    channel (a response being written is the send queue's business; an upgraded
    connection is Autobahn's).
    """

    site: "ChathubSite"
    _wait_started = 0.0
    _request_begun = False  # bytes of the awaited request have come

    def dataReceived(self, data: bytes) -> None:
        self._request_begun = True
        super().dataReceived(data)

    def connectionMade(self) -> None:
        super().connectionMade()  # starts the timer with the site's timeout
        self._wait_started = self.site.reactor.seconds()

    def resetTimeout(self) -> None:
        """Bytes arriving do not extend the deadline (see the class docstring)."""

    def lineReceived(self, line: bytes) -> None:
        requests = len(self.requests)
        super().lineReceived(line)
        if len(self.requests) > requests and _is_websocket_path(line):
            # this line began a request for /ws: its deadline is the opening handshake's
            left = self._wait_started + self.site.open_handshake_timeout - self.site.reactor.seconds()
            self.setTimeout(max(left, 0.0))

    def requestDone(self, request) -> None:
        if self.persistent:
            # the wait for the next request starts now, with the full request deadline
            # (Twisted restores the timeout it saved when this request arrived)
            self._savedTimeOut = self.site.timeOut  # type: ignore[assignment]  # Twisted's ``= None``, unannotated
            self._wait_started = self.site.reactor.seconds()
            self._request_begun = False
        super().requestDone(request)

    def timeoutConnection(self) -> None:
        if self._request_begun and not self._handlingRequest:
            # part of a request came, and no response has begun: say why it ends
            assert self.transport is not None  # connected: the timer runs
            self.transport.write(
                b"HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
            )
        super().timeoutConnection()

    def writeHeaders(self, version, code, reason, headers) -> None:
        # twisted.web names itself and its version in a Server header; nothing says which
        # software (let alone which version) answers here
        if isinstance(headers, Headers):
            headers.removeHeader(b"server")
        else:
            headers = [(name, value) for name, value in headers if name.lower() != b"server"]
        super().writeHeaders(version, code, reason, headers)


class ChathubSite(server.Site):
    """A Site that only ever speaks HTTP/1.1 (WebSocket upgrades cannot run over HTTP/2),
    only answers to the host names of ``[websocket] hostnames`` (DNS rebinding), and gives
    every request a deadline (``ChathubChannel``)."""

    # a plain HTTP/1.1 channel where Twisted's type says its HTTP/2-negotiating wrapper
    protocol = ChathubChannel  # type: ignore[assignment]
    hostnames: tuple[str, ...] = ("*",)
    open_handshake_timeout: float = 10.0
    websocket_factory: ChatWebSocketFactory  # set by ``build_site``
    noisy = False  # the start-up block names the listeners (chathub.lifecycle.announce)
    #: one log line per request (``[logging] access_log``); off, static files log nothing
    access_log = False
    #: ``/metrics`` when served (its token follows a reload)
    metrics_page: Optional[MetricsPage] = None

    def log(self, request) -> None:
        """Twisted's access log line for ``request``, only when ``access_log`` is on."""
        if self.access_log:
            super().log(request)

    def reconfigure(self, config: Config) -> None:
        """Take a reloaded config: host names, origins, handshake and request timeouts, the
        access log, and the WebSocket settings of connections opened from now on."""
        self.hostnames = tuple(config.websocket.hostnames)
        self.open_handshake_timeout = config.websocket.open_handshake_timeout
        self.timeOut = config.limits.http_request_timeout
        self.access_log = config.logging.access_log
        if self.metrics_page is not None:
            self.metrics_page.reconfigure(config)
        self.websocket_factory.reconfigure(config)

    def getResourceFor(self, request):
        host = (request.getHeader(b"host") or b"").decode("latin-1")
        if not host_allowed(host, self.hostnames):
            _log.info(
                "refused HTTP request from {peer} for host {host}: not in [websocket] hostnames",
                peer=getattr(request.getClientAddress(), "host", "?"), host=host,
            )
            if request.path == b"/ws" or request.path.startswith(b"/ws/"):
                return pages.errorPage(http.FORBIDDEN, "Forbidden", "This host name is not served here.")
            return pages.errorPage(421, "Misdirected Request", "This host name is not served here.")
        return super().getResourceFor(request)

    def refusal(self, reason: str) -> bytes:
        """A connection refused by ``[limits]`` gets 503 (too many held) or 429 (too fast)."""
        status = b"429 Too Many Requests" if reason == TOO_FAST else b"503 Service Unavailable"
        body = REASON_TEXT[reason].encode("ascii") + b"\n"
        return (
            b"HTTP/1.1 " + status + b"\r\nContent-Type: text/plain; charset=utf-8\r\n"
            b"Content-Length: " + str(len(body)).encode("ascii") + b"\r\nRetry-After: 10\r\n"
            b"Connection: close\r\n\r\n" + body
        )


def build_site(
    hub, portal, config: Config, clock: Optional[IReactorTime] = None, irc: Optional[IrcServer] = None,
    operations: Optional[IOperations] = None,
) -> server.Site:
    """The HTTP listener's factory: the web client at ``/`` and the WebSocket endpoint at ``/ws``.

    IRC over WebSocket is served by ``irc``, the server the TCP IRC listener shares
    (``chathub/app.py``); without one, the site gets an ``IrcServer`` of its own. With
    ``operations``, ``/healthz`` and (unless ``[metrics] enabled`` is false) ``/metrics``
    are served too (``chathub.protocols.web.ops``)."""
    if clock is None:
        from twisted.internet import reactor as clock
    if irc is None:
        irc = IrcServer(hub, portal, config, clock)
    root = ClientFiles(CLIENT_DIR)
    root.indexNames = ["index.html"]
    root.index_page = IndexPage(os.path.join(CLIENT_DIR, "index.html"), config.server.description)
    factory = ChatWebSocketFactory(hub, portal, config, irc, clock)
    install_sessions(factory)
    root.websocket_resource = ChatWebSocketResource(factory)
    root.putChild(b"ws", root.websocket_resource)
    site = ChathubSite(root, timeout=config.limits.http_request_timeout, reactor=clock)
    if operations is not None:
        root.putChild(b"healthz", HealthPage(operations))
        if config.metrics.enabled:
            site.metrics_page = MetricsPage(operations, config)
            root.putChild(b"metrics", site.metrics_page)
    site.hostnames = tuple(config.websocket.hostnames)
    site.open_handshake_timeout = config.websocket.open_handshake_timeout
    site.access_log = config.logging.access_log
    site.websocket_factory = factory
    return site
