"""Nick and room names: ASCII casemapping (ISUPPORT ``CASEMAPPING=ascii``) and validity rules.

A leaf module (it imports no other chathub module): one folding function serves the hub,
every protocol, auth, the store and the backplane, so ``Alice``, ``ALICE`` and ``alice``
are one nick everywhere. Which nicks the hub keeps for itself is hub policy
(``chathub.hub.names``).
"""
from __future__ import annotations

import re

_FOLD = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")

#: characters IRC allows in nicks after the first; the first may not be a digit or '-'
_NICK_RE = re.compile(r"[A-Za-z\[\]\\`_^{|}][A-Za-z0-9\[\]\\`_^{|}\-]*\Z")
ROOM_PREFIXES = "#"
# and surrogates: a room name is a key in the store and in everyone's room list
_ROOM_FORBIDDEN = re.compile(r"[\x00-\x20,\x07:\x7f\ud800-\udfff]")


def fold(name: str) -> str:
    """Casefold a nick or room name the way the whole hub compares them."""
    # ASCII casemapping: for an ASCII string (which ``isascii`` tells without reading it)
    # ``lower`` maps A-Z alone, five times faster than ``translate``; every message is
    # folded several times on its way (its room, its sender, on each node of a cluster)
    folded = name.lower() if name.isascii() else name.translate(_FOLD)
    # an already folded name is returned itself: users keep one string for nick and
    # folded nick, not two
    return name if folded == name else folded


def is_room_name(name: str) -> bool:
    """True when ``name`` addresses a room rather than a nick."""
    return bool(name) and name[0] in ROOM_PREFIXES


def valid_nick(nick: str, max_length: int) -> bool:
    """True for a usable nick: IRC's character rules and the length limit."""
    return 0 < len(nick) <= max_length and _NICK_RE.match(nick) is not None


#: what a nick may hold, for the reason a refusal gives
NICK_CHARACTERS = "letters A-Z, digits and [ ] \\ ` _ ^ { | } - (not first: a digit or -)"
_NICK_FIRST = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz[]\\`_^{|}")
_NICK_REST = _NICK_FIRST | frozenset("0123456789-")


def nick_problem(nick: str, max_length: int) -> str | None:
    """Why ``nick`` is no usable nick (None when it is): the reason a refusal gives."""
    if not nick:
        return "a nick cannot be empty"
    if len(nick) > max_length:
        return f"a nick has at most {max_length} characters"
    for i, c in enumerate(nick):
        if c not in (_NICK_FIRST if i == 0 else _NICK_REST):
            if c == "\ufffd":
                what = "U+FFFD (bytes that were not UTF-8)"
            elif c.isprintable() and c != " ":
                what = repr(c)
            else:
                what = f"U+{ord(c):04X}"
            return f"{what} cannot be {'the first character ' if i == 0 else ''}in a nick: {NICK_CHARACTERS}"
    return None


def valid_room_name(name: str, max_length: int) -> bool:
    """True for a usable room name: a ``#`` prefix, no spaces, commas, colons, controls or surrogates."""
    return (
        1 < len(name) <= max_length
        and name[0] in ROOM_PREFIXES
        and _ROOM_FORBIDDEN.search(name) is None
    )
