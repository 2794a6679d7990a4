"""Helpers for the WebSocket and browser tests: an Autobahn test client (servers: tests/support.py).

The client records every message and close; ``expect`` waits (with a timeout) for a
message matching a predicate, so tests synchronise on events, never on sleeps.
Import the reactor lazily: pytest-twisted installs it.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable, Optional, Union

from autobahn.twisted.websocket import WebSocketClientFactory, WebSocketClientProtocol
from twisted.internet import defer

Predicate = Callable[[Any], bool]

#: Debian's chromium (scripts/test installs it and exports its path); never a Playwright download
CHROMIUM = os.environ.get("CHATHUB_CHROMIUM") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
WAIT_MS = 10_000


def _reactor():
    from twisted.internet import reactor

    return reactor


class _Waiter:
    def __init__(self, predicate: Predicate, deferred: defer.Deferred) -> None:
        self.predicate = predicate
        self.deferred = deferred


class WsClient(WebSocketClientProtocol):
    """Records messages (decoded JSON for chathub.v1, text lines for IRC) and the close."""

    def __init__(self) -> None:
        super().__init__()
        self.received: list[Any] = []
        self.unread: list[Any] = []
        self.waiters: list[_Waiter] = []
        self.close_info: Optional[tuple[bool, Optional[int], Optional[str]]] = None
        self.binary_flags: list[bool] = []

    def onOpen(self) -> None:
        self.factory.opened.callback(self)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        self.binary_flags.append(isBinary)
        if self.factory.json:
            item = json.loads(payload.decode("utf-8"))
        else:
            item = payload.decode("utf-8")
        self.received.append(item)
        for waiter in list(self.waiters):
            if waiter.predicate(item):
                self.waiters.remove(waiter)
                waiter.deferred.callback(item)
                return
        self.unread.append(item)

    def onClose(self, wasClean: bool, code: Optional[int], reason: Optional[str]) -> None:
        self.close_info = (wasClean, code, reason)
        if not self.factory.opened.called:
            self.factory.opened.errback(ConnectionError(f"handshake failed: {code} {reason}"))
        if not self.factory.closed.called:
            self.factory.closed.callback(self.close_info)
        for waiter in self.waiters:
            waiter.deferred.errback(ConnectionError(f"closed ({code} {reason}) while waiting; got {self.received[-10:]}"))
        self.waiters = []

    # -- test API ----------------------------------------------------------------------

    def send_json(self, obj: Any) -> None:
        self.sendMessage(json.dumps(obj).encode("utf-8"))

    def send_together(self, *messages: Any) -> None:
        """Send several messages (JSON objects, or IRC lines as text) in one TCP write, so
        the server reads them from one packet."""
        frames = []
        for message in messages:
            payload = message if isinstance(message, str) else json.dumps(message)
            frames.append(self.factory.prepareMessage(payload.encode("utf-8")).payloadHybi)
        self.transport.write(b"".join(frames))

    def send_text(self, text: Union[str, bytes], binary: bool = False) -> None:
        self.sendMessage(text.encode("utf-8") if isinstance(text, str) else text, isBinary=binary)

    def expect(self, predicate: Union[Predicate, dict, str], timeout: float = 10.0) -> defer.Deferred:
        """Fire with the first message (unread ones first) matching ``predicate``.

        A dict matches JSON objects containing those key/values; a string matches IRC lines
        containing it.
        """
        predicate = _as_predicate(predicate)
        for item in self.unread:
            if predicate(item):
                self.unread.remove(item)
                return defer.succeed(item)
        if self.close_info is not None:
            return defer.fail(ConnectionError(f"already closed: {self.close_info}; got {self.received[-10:]}"))
        d: defer.Deferred = defer.Deferred()
        self.waiters.append(_Waiter(predicate, d))

        def timed_out(failure):
            failure.trap(defer.TimeoutError)
            raise AssertionError(f"nothing matching {predicate!r} within {timeout}s; got {self.received[-15:]}")

        d.addTimeout(timeout, _reactor())
        d.addErrback(timed_out)
        return d

    def wait_closed(self, timeout: float = 10.0) -> defer.Deferred:
        d = defer.Deferred()
        self.factory.closed.chainDeferred(d) if not self.factory.closed.called else d.callback(self.close_info)
        return d.addTimeout(timeout, _reactor())


def _as_predicate(spec) -> Predicate:
    if callable(spec):
        return spec
    if isinstance(spec, dict):
        def match(item, spec=spec):
            return isinstance(item, dict) and all(item.get(k) == v for k, v in spec.items())

        match.__qualname__ = f"match({spec!r})"
        return match
    if isinstance(spec, str):
        def contains(item, spec=spec):
            return isinstance(item, str) and spec in item

        contains.__qualname__ = f"contains({spec!r})"
        return contains
    raise TypeError(spec)


#: every client connected by ``connect``, for ``close_clients``
OPEN_CLIENTS: list = []


def close_clients(timeout: float = 10.0) -> defer.Deferred:
    """Drop every client ``connect`` opened; fire once all are closed (for fixture teardown)."""
    waits = []
    while OPEN_CLIENTS:
        client = OPEN_CLIENTS.pop()
        if client.close_info is None:
            waits.append(client.wait_closed(timeout))
            client.dropConnection(abort=True)
    return defer.DeferredList(waits)


class WsClientFactory(WebSocketClientFactory):
    protocol = WsClient


def connect(
    port: int,
    protocols: Optional[list[str]] = None,
    origin: Optional[str] = None,
    json_messages: bool = True,
    max_message: int = 0,
    headers: Optional[dict] = None,
    timeout: float = 10.0,
    tls=None,
    source: Optional[str] = None,
    path: str = "/ws",
) -> defer.Deferred:
    """Open ``ws://127.0.0.1:port/ws`` (``wss://localhost:port/ws`` with ``tls``, client TLS
    options; from local address ``source`` if given; at ``path`` if given); fire with the
    client protocol once open.

    Fails with ``ConnectionError`` (saying the close code and reason) if the handshake is refused.
    """
    from tests.support import client_endpoint

    url = f"wss://localhost:{port}{path}" if tls is not None else f"ws://127.0.0.1:{port}{path}"
    factory = WsClientFactory(url, protocols=protocols or [], origin=origin, headers=headers or {})
    factory.json = json_messages
    factory.opened = defer.Deferred()
    factory.closed = defer.Deferred()
    factory.setProtocolOptions(maxMessagePayloadSize=max_message, autoPingInterval=0)
    endpoint = client_endpoint(port, tls, source)
    d = endpoint.connect(factory)

    def connected(proto):
        factory.client = proto
        OPEN_CLIENTS.append(proto)
        return factory.opened

    d.addCallback(connected)
    return d.addTimeout(timeout, _reactor())


def connect_failure(port: int, **kw) -> defer.Deferred:
    """Fire with the close info of a handshake that is expected to be refused."""
    d = connect(port, **kw)

    def opened(proto):
        raise AssertionError("handshake unexpectedly succeeded")

    def refused(failure):
        failure.trap(ConnectionError)
        return str(failure.value)

    return d.addCallbacks(opened, refused)


# -- the bundled web client in Chromium (Playwright; the ``browser`` fixture) ---------------


class Page:
    """One browser tab running the web client, with the errors it logged."""

    def __init__(self, browser, url: str, width: int, height: int, bypass_csp: bool = False) -> None:
        self.context = browser.new_context(viewport={"width": width, "height": height}, bypass_csp=bypass_csp)
        self.page = self.context.new_page()
        self.errors: list[str] = []
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.on("console", lambda m: m.type == "error" and self.errors.append(m.text))
        self.page.goto(url)

    def login(self, nick: str) -> None:
        p = self.page
        p.wait_for_selector("#login-button:not([disabled])", timeout=WAIT_MS)
        p.fill("#login-nick", nick)
        p.click("#login-button")
        p.wait_for_selector("#chat-view:not([hidden])", timeout=WAIT_MS)
        assert p.text_content("#me") == nick

    def register(self, nick: str, password: str) -> None:
        """Log in by registering ``nick`` as an account, from the form."""
        self._account_form("register", nick, password, nick)

    def login_account(self, nick: str, password: str, shown: Optional[str] = None) -> None:
        """Log in to account ``nick`` from the form's Account tab; the sidebar then shows
        ``shown`` (by default ``nick``) as the nick."""
        self._account_form("account", nick, password, shown or nick)

    def _account_form(self, tab: str, nick: str, password: str, shown: str) -> None:
        p = self.page
        p.wait_for_selector(f"#tab-{tab}:not([hidden])", timeout=WAIT_MS)
        p.wait_for_selector("#login-button:not([disabled])", timeout=WAIT_MS)
        p.click(f"#tab-{tab}")
        p.fill("#login-nick", nick)
        p.fill("#login-password", password)
        p.click("#login-button")
        p.wait_for_selector(f"#me:text-is('{shown} ✓')", timeout=WAIT_MS)

    def type(self, text: str) -> None:
        self.page.fill("#input", text)
        self.page.press("#input", "Enter")

    def join(self, room: str) -> None:
        self.type(f"/join {room}")
        self.page.wait_for_selector(f"#conv-name:text-is('{room}')", timeout=WAIT_MS)

    def wait_line(self, text: str) -> str:
        """Wait for a message line containing ``text`` in the open conversation; return its text."""
        locator = self.page.locator("#message-list li", has_text=text).last
        locator.wait_for(timeout=WAIT_MS)
        return locator.inner_text()

    def screenshot(self, name: str) -> Path:
        ARTIFACTS.mkdir(exist_ok=True)
        path = ARTIFACTS / name
        self.page.screenshot(path=str(path), animations="disabled")
        return path


def refused_reconnect(error: str, url: str) -> bool:
    """Chromium's console error for a WebSocket to this page's server that nobody accepted."""
    ws = url.replace("http://", "ws://", 1).split("/", 3)
    return error.startswith(f"WebSocket connection to '{ws[0]}//{ws[2]}/ws' failed") and error.endswith(
        "net::ERR_CONNECTION_REFUSED"
    )


def page_and_irc(browser, ports: dict, room: str, caps: str = "") -> tuple[str, Page, "LineClient"]:
    """The web client's URL, alice on a page in ``room`` and carl on IRC (with ``caps``) in
    it too, once alice's member list shows carl."""
    url = f"http://127.0.0.1:{ports['http']}/"
    alice = Page(browser, url, 1280, 800)
    alice.login("alice")
    alice.join(room)
    carl = irc_client(ports["irc"], "carl", caps, room)
    alice.page.locator("#member-list li", has_text="carl").wait_for(timeout=WAIT_MS)
    return url, alice, carl


def irc_client(port: int, nick: str, caps: str = "", room: Optional[str] = None) -> "LineClient":
    """An IRC client over a real socket, registered as ``nick`` with the capabilities
    ``caps`` (a space-separated list, all acknowledged), in ``room`` if given."""
    from tests.support import LineClient

    client = LineClient(port)
    if caps:
        client.send("CAP LS 302")
        client.send(f"CAP REQ :{caps}")
        client.expect(r"CAP \S+ ACK")
    client.send(f"NICK {nick}")
    client.send(f"USER {nick} 0 * :{nick} on IRC")
    if caps:
        client.send("CAP END")
    client.expect(r" 001 ")
    if room is not None:
        client.send(f"JOIN {room}")
        client.expect(rf" 366 {nick} {room} ")
    return client
