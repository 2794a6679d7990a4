"""The declarative command table: what each IRC command needs before its handler runs,
and the hooks command modules run at points of a session's or a room's life.

Handlers register themselves with ``@command(...)``; the session checks registration
state, parameter count and privilege from the table, so handlers only do their job.
Hooks register with ``@hook(point)``: the session and the ``IrcServer`` run them
(``run_hooks``) without importing the modules that fill them.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional


@dataclass(frozen=True)
class Command:
    """One IRC command: its name, when it may be used, and its handler."""

    name: str
    handler: Callable
    #: usable before registration completes (CAP, NICK, USER, PASS, ...)
    before_registration: bool = False
    #: usable only before registration (USER, PASS)
    only_before_registration: bool = False
    #: parameters needed, else 461 ERR_NEEDMOREPARAMS
    min_params: int = 0
    #: operator privilege needed ("oper" for any operator, or a named one like "kill")
    privilege: Optional[str] = None
    #: flood penalty, in units of one ordinary command
    penalty: float = 1.0


COMMANDS: dict[str, Command] = {}

#: ``hook(session, rb)``: a client completed registration (001-005, LUSERS, MOTD)
WELCOME = "welcome"
#: ``hook(session, rb)``: after every ``WELCOME`` hook (what the client set before it)
REGISTERED = "registered"
#: ``hook(session, user)``: a registered client left the hub
SIGNED_OFF = "signed_off"
#: ``hook(server, user or room, key, value or None, by)``: a key of the hub's metadata of
#: a user or room changed, here or on another node (``chathub.hub.metadata``)
METADATA_CHANGED = "metadata_changed"
#: ``hook(session, event, rb)``: show a room's rename (a ``rename`` event) to one session
RENAME_SHOWN = "rename_shown"

#: the first 8 bytes of a line -> what handles the commonest form of that command before
#: the parser sees it (``fast(session, line)``: True when it handled the line, False when
#: the line must be parsed and dispatched as usual); only for registered clients
FAST_PATHS: dict[bytes, Callable[..., bool]] = {}

#: point -> its hooks, run in the order they were registered
HOOKS: dict[str, list[Callable[..., None]]] = {
    WELCOME: [], REGISTERED: [], SIGNED_OFF: [], METADATA_CHANGED: [], RENAME_SHOWN: [],
}


def int_param(params, index: int, default: int = 0) -> int:
    """``params[index]`` as an integer, or ``default`` when absent or not a number."""
    try:
        return int(params[index])
    except (IndexError, ValueError):
        return default


def command(name: str, **options) -> Callable[[Callable], Callable]:
    """Decorator: put the handler in the table under ``name`` (and ``aliases``)."""
    aliases = options.pop("aliases", ())

    def register(handler: Callable) -> Callable:
        for each in (name, *aliases):
            COMMANDS[each] = Command(each, handler, **options)
        return handler

    return register


def fast_path(prefix: bytes) -> Callable[[Callable[..., bool]], Callable[..., bool]]:
    """Decorator: try the function on a registered client's lines that start with
    ``prefix`` (8 bytes) before parsing them (``FAST_PATHS``)."""
    assert len(prefix) == 8

    def add(fn: Callable[..., bool]) -> Callable[..., bool]:
        FAST_PATHS[prefix] = fn
        return fn

    return add


def hook(point: str) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """Decorator: run the function at ``point`` (``WELCOME``, ``REGISTERED``, ...)."""

    def add(fn: Callable[..., None]) -> Callable[..., None]:
        HOOKS[point].append(fn)
        return fn

    return add


def run_hooks(point: str, *args) -> None:
    """Call every hook of ``point`` with ``args``, in registration order."""
    for fn in HOOKS[point]:
        fn(*args)
