"""The HTTP listener: the bundled web client and the WebSocket endpoint (chathub.v1 JSON and IRC)."""
from chathub.protocols.web.site import build_site

__all__ = ["build_site"]
