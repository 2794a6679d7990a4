"""String endpoints for listening sockets several processes share (``SO_REUSEPORT``):

- ``reuseport:PORT[:interface=ADDRESS][:backlog=N]``, the arguments of ``tcp:``;
- ``reuseport-ssl:PORT:privateKey=KEY[:certKey=CERT]...``, the arguments of ``ssl:``.

Twisted imports every module here whenever it looks for any plugin (twistd does at each
start), so chathub itself is imported only when one of these endpoints is parsed.
"""
from __future__ import annotations

from zope.interface import implementer

from twisted.internet.interfaces import IStreamServerEndpointStringParser
from twisted.plugin import IPlugin


@implementer(IPlugin, IStreamServerEndpointStringParser)
class ReusePortParser:
    """Parses ``reuseport:`` (``tls=False``) or ``reuseport-ssl:`` (``tls=True``) descriptions."""

    def __init__(self, prefix: str, tls: bool) -> None:
        self.prefix = prefix
        self.tls = tls

    def parseStreamServer(self, reactor, *args, **kwargs):
        """An ``IStreamServerEndpoint`` for the description's arguments."""
        from chathub.protocols.reuseport import parse_reuseport, parse_reuseport_ssl

        return (parse_reuseport_ssl if self.tls else parse_reuseport)(reactor, *args, **kwargs)


reuseport = ReusePortParser("reuseport", tls=False)
reuseportSSL = ReusePortParser("reuseport-ssl", tls=True)
