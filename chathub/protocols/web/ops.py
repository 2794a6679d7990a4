"""``/metrics`` and ``/healthz`` on the HTTP listener, for Prometheus and load balancers.

What they report comes from an ``IOperations`` handed to ``build_site``; this module only
decides who may read ``/metrics`` and writes the answers.
"""
from __future__ import annotations

import hmac
import ipaddress
import json
from typing import Any

from twisted.internet.address import IPv4Address, IPv6Address
from twisted.logger import Logger
from twisted.web import http, resource, server

from chathub.config import Config
from chathub.interfaces import IOperations

_log = Logger()

#: the Prometheus text exposition format, version 0.0.4
METRICS_TYPE = b"text/plain; version=0.0.4; charset=utf-8"
#: headers a reverse proxy adds: a request carrying one came from elsewhere, whatever
#: address it reached chathub from (a proxy on the same host would make it "loopback")
PROXY_HEADERS = (b"x-forwarded-for", b"forwarded", b"x-real-ip", b"x-forwarded-host")


def is_loopback_peer(request: server.Request) -> bool:
    """Whether ``request`` came straight from this machine: a loopback TCP peer, and no
    proxy header (a unix socket peer is not: a proxy is what usually connects there)."""
    peer = request.getClientAddress()
    if not isinstance(peer, (IPv4Address, IPv6Address)):
        return False
    try:
        address = ipaddress.ip_address(peer.host.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if not address.is_loopback:
        return False
    return not any(request.requestHeaders.hasHeader(name) for name in PROXY_HEADERS)


class MetricsPage(resource.Resource):
    """``/metrics``: the Prometheus text, for loopback peers only, or (with ``[metrics]
    token`` set) for whoever sends ``Authorization: Bearer <token>`` and no one else."""

    isLeaf = True

    def __init__(self, operations: IOperations, config: Config) -> None:
        super().__init__()
        self.operations = operations
        self.reconfigure(config)

    def reconfigure(self, config: Config) -> None:
        """Take a reloaded ``[metrics]`` token (``enabled`` is read at start-up)."""
        self.token = config.metrics.token.encode("ascii")

    def allowed(self, request: server.Request) -> bool:
        """The access rule of the class docstring."""
        if self.token:
            given = request.getHeader(b"authorization") or b""
            scheme, _, value = given.partition(b" ")
            return scheme.lower() == b"bearer" and hmac.compare_digest(value.strip(), self.token)
        return is_loopback_peer(request)

    def render_GET(self, request: server.Request) -> bytes:
        if not self.allowed(request):
            _log.info(
                "refused /metrics to {peer}: {why}", peer=getattr(request.getClientAddress(), "host", "?"),
                why="no valid bearer token" if self.token else "not a loopback peer ([metrics] token is unset)",
            )
            request.setResponseCode(http.FORBIDDEN if not self.token else http.UNAUTHORIZED)
            if self.token:
                request.setHeader(b"WWW-Authenticate", b'Bearer realm="chathub metrics"')
            request.setHeader(b"Content-Type", b"text/plain; charset=utf-8")
            return b"metrics are not served to this client (see [metrics] in the configuration)\n"
        request.setHeader(b"Content-Type", METRICS_TYPE)
        request.setHeader(b"Cache-Control", b"no-store")
        return self.operations.metrics_text()

    render_HEAD = render_GET


class HealthPage(resource.Resource):
    """``/healthz``: 200 with ``{"status": "ok", ...}`` while the server is fit to serve,
    503 with ``{"status": "failing", ...}`` naming what is not."""

    isLeaf = True

    def __init__(self, operations: IOperations) -> None:
        super().__init__()
        self.operations = operations

    def render_GET(self, request: server.Request) -> Any:
        def answer(result: tuple[bool, dict[str, Any]]) -> None:
            healthy, report = result
            _write_json(request, http.OK if healthy else http.SERVICE_UNAVAILABLE, report)

        def failed(failure: Any) -> None:
            _log.failure("health check failed", failure)
            _write_json(request, http.SERVICE_UNAVAILABLE, {"status": "failing", "error": "health check failed"})

        self.operations.health().addCallbacks(answer, failed)
        return server.NOT_DONE_YET


def _write_json(request: server.Request, code: int, body: dict[str, Any]) -> None:
    if request.finished or request.channel is None:
        return  # the client went away while the store was asked
    request.setResponseCode(code)
    request.setHeader(b"Content-Type", b"application/json")
    request.setHeader(b"Cache-Control", b"no-store")
    request.write(json.dumps(body, sort_keys=True).encode("utf-8") + b"\n")
    request.finish()
