"""A TLS listener whose certificate can be replaced while it runs (``SIGHUP``, ``REHASH``).

Every TLS port (``ssl:``, ``reuseport-ssl:``) gets its connections' TLS state from a
``SwappableTLS``: ``swap()`` puts a new ``CertificateOptions`` (read from the renewed files) in
place, connections accepted after it use the new certificate, and those already open keep the
one they were made with, so nobody is dropped.
"""
from __future__ import annotations

from typing import Any, Optional

from zope.interface import implementer

from twisted.internet.interfaces import IOpenSSLServerConnectionCreator


@implementer(IOpenSSLServerConnectionCreator)
class SwappableTLS:
    """An ``IOpenSSLServerConnectionCreator`` that hands each connection to the creator
    currently in place (a ``CertificateOptions``, which provides the same interface)."""

    def __init__(self, creator: Any) -> None:
        self.creator = creator

    def swap(self, creator: Any) -> None:
        """Use ``creator`` for every connection accepted from now on."""
        self.creator = creator

    def serverConnectionForTLS(self, protocol: Any) -> Any:
        """The TLS connection object for a new server-side connection."""
        return self.creator.serverConnectionForTLS(protocol)


def tls_creator_of(endpoint: object) -> Optional[Any]:
    """The certificate options a TLS server endpoint was parsed with, or None if it is not TLS.

    Twisted's ``SSL4ServerEndpoint`` keeps them as ``_sslContextFactory`` (so named since
    Twisted 10.1); chathub's ``reuseport-ssl:`` endpoint as ``context_factory``."""
    creator = getattr(endpoint, "_sslContextFactory", None)
    return creator if creator is not None else getattr(endpoint, "context_factory", None)
