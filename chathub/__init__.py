"""chathub: a Twisted multi-protocol chat hub (telnet line protocol, IRC, WebSocket)."""
from __future__ import annotations

from importlib import metadata


def _installed_version() -> str:
    """The version of the installed ``chathub`` distribution (setup.py's), or
    ``0+unknown`` when chathub runs from a tree that was never installed."""
    try:
        return metadata.version("chathub")
    except metadata.PackageNotFoundError:
        return "0+unknown"


#: chathub's version, as the IRC server names it (002, 004, VERSION, INFO)
__version__: str = _installed_version()
