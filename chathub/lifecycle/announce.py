"""What to do with each listener, said once they all listen (``ChathubService._ready``).

A newcomer who ran the README's command reads where to go from the log: ``telnet 127.0.0.1
2323``, ``irc://127.0.0.1:6667``, ``http://127.0.0.1:8080/``, with the ports really bound (a
``tcp:0`` listener's port is the system's choice).
"""
from __future__ import annotations

from typing import Iterable, NamedTuple

from twisted.internet.address import IPv4Address, IPv6Address, UNIXAddress

#: endpoint kinds whose connections are TLS (the description's first field)
TLS_ENDPOINTS = ("ssl", "reuseport-ssl")

#: what each listener kind serves, as the block names it
TITLES = {"line": "telnet line protocol", "irc": "IRC", "http": "web client"}


class Reachable(NamedTuple):
    """One listening port and how a user reaches it."""

    kind: str  # "line", "irc", "http"
    description: str  # the endpoint description it was configured with
    address: str  # "127.0.0.1:2323", "[::1]:6667" or a UNIX socket's path
    how: str  # the command or URL to use


def is_tls(description: str) -> bool:
    """Whether connections to the endpoint ``description`` are TLS."""
    return description.split(":", 1)[0] in TLS_ENDPOINTS


def _host(address: object) -> str:
    # a wildcard bind is reached on loopback from this machine; the block says it is all
    host = getattr(address, "host", "")
    if host in ("", "0.0.0.0"):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    return f"[{host}]" if ":" in host else host


def reachable(kind: str, description: str, address: object) -> Reachable:
    """How a user reaches the ``kind`` listener bound at ``address`` (``port.getHost()``)."""
    tls = is_tls(description)
    if isinstance(address, UNIXAddress):
        path = address.name.decode() if isinstance(address.name, bytes) else str(address.name)
        how = {"line": f"socat - UNIX-CONNECT:{path}", "irc": f"an IRC client on the UNIX socket {path}",
               "http": f"curl --unix-socket {path} http://localhost/"}[kind]
        return Reachable(kind, description, path, how)
    if not isinstance(address, (IPv4Address, IPv6Address)):
        return Reachable(kind, description, str(address), description)
    host, port = _host(address), address.port
    bare = host.strip("[]")
    if kind == "line":
        how = f"openssl s_client -quiet -connect {host}:{port}" if tls else f"telnet {bare} {port}"
    elif kind == "irc":
        how = f"{'ircs' if tls else 'irc'}://{host}:{port}"
    else:
        scheme, ws = ("https", "wss") if tls else ("http", "ws")
        how = f"{scheme}://{host}:{port}/ (WebSocket: {ws}://{host}:{port}/ws)"
    return Reachable(kind, description, f"{host}:{port}", how)


def ready_text(listeners: Iterable[Reachable]) -> str:
    """The block: a first line, then one line per listener (title, then what to do)."""
    rows = list(listeners)
    width = max((len(TITLES[r.kind]) for r in rows), default=0)
    lines = ["chathub is ready; connect with:"]
    lines += [f"    {TITLES[r.kind].ljust(width)}  {r.how}" for r in rows]
    return "\n".join(lines)
