"""Listening sockets several processes share: the ``reuseport:`` and ``reuseport-ssl:``
string endpoints (Twisted plugins in ``twisted/plugins/chathub_reuseport.py``).

Twisted's ``tcp:`` and ``ssl:`` endpoints cannot set ``SO_REUSEPORT``. With it, every process
of one user that binds the same address and port gets its own listening socket, and Linux
(3.9 and later) spreads incoming connections over them by a hash of each connection's
addresses: N chathub processes on one machine serve one port per protocol, with no proxy.

The endpoint makes and binds the socket itself and hands it to the reactor's
``IReactorSocket.adoptStreamPort``. That is the path systemd socket activation takes, so
chathub's ``LimitingReactor`` counts the connections of these ports like any other TCP port,
and it works with every Twisted that chathub supports (Twisted 26's ``tcp.makeBinding`` can
ask for ``SO_REUSEPORT`` too, but no string endpoint reaches it).
"""
from __future__ import annotations

import socket
from typing import Any, Optional

from zope.interface import implementer

from twisted.internet import defer
from twisted.internet.abstract import isIPv6Address
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import IListeningPort, IProtocolFactory, IStreamServerEndpoint


@implementer(IStreamServerEndpoint)
class ReusePortServerEndpoint:
    """A TCP server endpoint whose socket has ``SO_REUSEADDR`` and ``SO_REUSEPORT``.

    ``interface`` chooses the family as ``tcp:`` does: an IPv6 address listens on IPv6,
    anything else (``""`` is every IPv4 address) on IPv4. With ``context_factory`` (an
    ``IOpenSSLServerConnectionCreator``) each connection is TLS, as on an ``ssl:`` port.
    """

    def __init__(
        self,
        reactor: Any,
        port: int,
        backlog: int = 50,
        interface: str = "",
        context_factory: Optional[Any] = None,
    ) -> None:
        """``reactor`` must provide ``adoptStreamPort`` (chathub's ``LimitingReactor`` does)."""
        if not hasattr(socket, "SO_REUSEPORT"):
            raise ValueError("SO_REUSEPORT is not available on this platform")
        self._reactor = reactor
        self._port = port
        self._backlog = backlog
        self._interface = interface
        self._context_factory = context_factory

    @property
    def context_factory(self) -> Optional[Any]:
        """The certificate options of a ``reuseport-ssl:`` endpoint (None: plain TCP)."""
        return self._context_factory

    def __repr__(self) -> str:
        kind = "reuseport-ssl" if self._context_factory is not None else "reuseport"
        return f"<{kind} endpoint on {self._interface or '0.0.0.0'}:{self._port}>"

    def listen(self, protocolFactory: IProtocolFactory) -> "defer.Deferred[IListeningPort]":
        """Listen with ``protocolFactory``; fails with ``CannotListenError`` when the address
        is taken by a socket without ``SO_REUSEPORT`` (or by another user's)."""
        return defer.execute(self._listen, protocolFactory)

    def _listen(self, factory: IProtocolFactory) -> IListeningPort:
        family = socket.AF_INET6 if isIPv6Address(self._interface) else socket.AF_INET
        try:
            sock = socket.socket(family, socket.SOCK_STREAM)
        except OSError as e:
            raise CannotListenError(self._interface, self._port, e) from e
        try:
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
                sock.bind(self._address(family))
                sock.listen(self._backlog)
            except OSError as e:
                raise CannotListenError(self._interface, self._port, e) from e
            sock.setblocking(False)  # adoptStreamPort wants a non-blocking listening socket
            creator = None
            if self._context_factory is not None:
                from twisted.protocols.tls import TLSMemoryBIOFactory

                from chathub.protocols.tls import SwappableTLS

                # what IReactorSSL.listenSSL does: TLS in memory over the TCP connection,
                # with a certificate that can be replaced while the port runs
                creator = SwappableTLS(self._context_factory)
                factory = TLSMemoryBIOFactory(creator, False, factory)
            # the reactor keeps a duplicate of the descriptor; ours is closed below
            port = self._reactor.adoptStreamPort(sock.fileno(), family, factory)
            if creator is not None:
                port.tls = creator
            return port
        finally:
            sock.close()

    def _address(self, family: int) -> tuple:
        if family == socket.AF_INET:
            return (self._interface, self._port)
        # numeric only, as tcp6: takes it; getaddrinfo fills in a scope ("fe80::1%eth0")
        return socket.getaddrinfo(
            self._interface, self._port, family, socket.SOCK_STREAM, 0, socket.AI_NUMERICHOST
        )[0][4]


def parse_reuseport(reactor: Any, port: str, interface: str = "", backlog: str = "50") -> ReusePortServerEndpoint:
    """``reuseport:PORT[:interface=ADDRESS][:backlog=N]``: the arguments of ``tcp:``."""
    return ReusePortServerEndpoint(reactor, int(port), int(backlog), interface)


def parse_reuseport_ssl(reactor: Any, *args: str, **kwargs: str) -> ReusePortServerEndpoint:
    """``reuseport-ssl:PORT:privateKey=KEY[:certKey=CERT]...``: the arguments of ``ssl:``
    (``privateKey``, ``certKey``, ``extraCertChain``, ``dhParameters``, ``sslmethod``,
    ``interface``, ``backlog``), read by Twisted's own ``ssl:`` parser so that they mean
    exactly what they mean there."""
    from twisted.internet.endpoints import _parseSSL

    (port, _factory, context), options = _parseSSL(None, *args, **kwargs)
    return ReusePortServerEndpoint(reactor, port, options["backlog"], options["interface"], context)
