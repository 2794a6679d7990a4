"""Reading IRC-style mode strings (``+mb-v *!*@host bob``) into the hub's change lists.

Both the IRC server and the telnet ``/mode`` command take modes in this form; the hub
applies the resulting ``[("+m", None), ("+b", "*!*@host"), ("-v", "bob")]``.
"""
from __future__ import annotations

from typing import Optional, Sequence

from chathub.hub.rooms import FLAG_MODES

#: modes with a parameter when set and when unset
ALWAYS_PARAM = frozenset("bov")
#: modes with a parameter only when set (``-l`` takes none; ``-k`` takes one, which is ignored)
SET_PARAM = frozenset("kl")
LIST_MODES = frozenset("b")
ROOM_MODES = FLAG_MODES | ALWAYS_PARAM | SET_PARAM


def parse_room_modes(
    modestring: str, args: Sequence[str]
) -> tuple[list[tuple[str, Optional[str]]], list[str]]:
    """Split ``modestring`` and its ``args`` into changes; also return unknown letters.

    A list mode without a parameter (``+b``) comes back as ``("+b", None)``: a request
    to list it. A parameter that is missing leaves the change out.
    """
    changes: list[tuple[str, Optional[str]]] = []
    unknown: list[str] = []
    params = list(args)
    sign = "+"
    for letter in modestring:
        if letter in "+-":
            sign = letter
            continue
        if letter not in ROOM_MODES:
            unknown.append(letter)
            continue
        if letter in ALWAYS_PARAM or (letter in SET_PARAM and sign == "+") or (letter == "k" and params):
            if params:
                changes.append((sign + letter, params.pop(0)))
            elif letter in LIST_MODES:
                changes.append((sign + letter, None))
            continue
        changes.append((sign + letter, None))
    return changes, unknown
