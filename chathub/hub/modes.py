"""Reading IRC-style mode strings (``+mb-v *!*@host bob``) into the hub's change lists.

The one parser of room modes: the IRC server's MODE and the telnet ``/mode`` command both
use it, and it knows the letters from the hub's own tables (``chathub.hub.rooms``), so a
mode the hub learns is understood by every protocol. The hub applies the resulting
``[("+m", None), ("+b", "*!*@host"), ("-v", "bob")]`` (``ChatHub.change_room_modes``,
``chathub.hub.roommodes``).
"""
from __future__ import annotations

from typing import NamedTuple, Optional, Sequence

from chathub.hub.rooms import FLAG_MODES, KEY_MODES, LIMIT_MODES, LIST_MODES, PRIVILEGE_MODES

#: modes with a parameter when set and when unset
ALWAYS_PARAM = frozenset(LIST_MODES) | PRIVILEGE_MODES | KEY_MODES
#: modes with a parameter only when set (``-l`` takes none)
SET_PARAM = LIMIT_MODES
ROOM_MODES = FLAG_MODES | ALWAYS_PARAM | SET_PARAM
#: ISUPPORT CHANMODES: list modes, always-parameter, set-only parameter, flags
CHANMODES = ",".join(
    "".join(sorted(group, key=lambda c: (c.lower(), c)))
    for group in (LIST_MODES, KEY_MODES, LIMIT_MODES, FLAG_MODES)
)

Change = tuple[str, Optional[str]]


class ModeRequest(NamedTuple):
    """A parsed mode string: changes to apply, list modes to show, letters not known."""

    changes: list[Change]
    queries: list[str]
    unknown: list[str]


def parse_room_modes(
    modestring: str, args: Sequence[str], max_params: Optional[int] = None
) -> ModeRequest:
    """Split ``modestring`` and its ``args`` into changes, list queries and unknown letters.

    A list mode without a parameter (``+b``) is a request to show that list (each letter
    once, in order). Another change whose parameter is missing is left out, except
    ``-k`` (the key need not be repeated to remove it). With ``max_params``, changes past
    that many parameters are dropped (IRC's ``MODES``).
    """
    changes: list[Change] = []
    queries: list[str] = []
    unknown: list[str] = []
    params = list(args)
    used = 0
    sign = "+"
    for letter in modestring:
        if letter in "+-":
            sign = letter
            continue
        if letter not in ROOM_MODES:
            unknown.append(letter)
            continue
        arg: Optional[str] = None
        if letter in ALWAYS_PARAM or (letter in SET_PARAM and sign == "+"):
            if params:
                arg = params.pop(0)
            elif letter in LIST_MODES:
                if letter not in queries:
                    queries.append(letter)
                continue
            elif not (letter in KEY_MODES and sign == "-"):
                continue
        if arg is not None:
            used += 1
            if max_params is not None and used > max_params:
                continue
        changes.append((sign + letter, arg))
    return ModeRequest(changes, queries, unknown)
