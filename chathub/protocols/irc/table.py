"""The declarative command table: what each IRC command needs before its handler runs.

Handlers register themselves with ``@command(...)``; the session checks registration
state, parameter count and privilege from the table, so handlers only do their job.
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
