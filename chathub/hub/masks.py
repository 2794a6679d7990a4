"""Hostmask globs (``nick!user@host`` with ``*`` and ``?``) for bans, WHO, LIST and operators,
and the extended bans of the mask lists (``a:account``, ``m:mask``; ``EXTBAN=,am``).

A mask is matched in time linear in the subject for each ``*``-free piece of it, never by a
backtracking regular expression: a glob such as ``*a*a*a*a*b`` compiled to ``.*a.*a.*...``
makes Python's regex engine try every split of the subject (seconds for a few hundred
characters, and each extra ``*a`` about triples it), and masks come from guests.

The glob splits at its stars into pieces. The first piece must match at the start, the
last at the end, and each piece in between at its leftmost place after the one before it:
taking the leftmost place never loses a match, because a star before the next piece can
absorb whatever a later place would have skipped. That is the classic non-backtracking
glob algorithm (the two pointers ircds use, which go back only to the last star, do the
same work); ``str.find`` does the search for pieces without ``?``.
"""
from __future__ import annotations

import functools
import re
from typing import Optional

from chathub.names import fold


class _Piece:
    """A ``*``-free part of a mask: literal text, perhaps with ``?`` wildcards."""

    __slots__ = ("text", "size", "pattern")

    def __init__(self, text: str) -> None:
        self.text = text
        self.size = len(text)
        # a fixed-length pattern of literals and '.': a search costs at most
        # len(subject) * len(piece), with nothing to backtrack into
        self.pattern: Optional[re.Pattern[str]] = (
            re.compile("".join("." if c == "?" else re.escape(c) for c in text), re.DOTALL)
            if "?" in text
            else None
        )

    def at(self, subject: str, pos: int) -> bool:
        """True when the piece matches ``subject`` exactly at ``pos``."""
        if self.pattern is None:
            return subject.startswith(self.text, pos)
        return self.pattern.match(subject, pos) is not None

    def find(self, subject: str, start: int, end: int) -> int:
        """The leftmost place in ``subject[start:end]`` where the piece matches, or -1."""
        if self.pattern is None:
            return subject.find(self.text, start, end)
        found = self.pattern.search(subject, start, end)
        return -1 if found is None else found.start()


class Glob:
    """A compiled mask; ``matches(subject)`` expects both already folded."""

    __slots__ = ("first", "middle", "last", "starred", "least")

    def __init__(self, mask: str) -> None:
        parts = mask.split("*")
        self.starred = len(parts) > 1
        self.first = _Piece(parts[0])
        self.last = _Piece(parts[-1]) if self.starred else self.first
        self.middle = tuple(_Piece(p) for p in parts[1:-1] if p)
        # the shortest subject that can match
        self.least = sum(len(p) for p in parts)

    def matches(self, subject: str) -> bool:
        """True when the whole of ``subject`` matches the glob."""
        size = len(subject)
        if not self.starred:
            return size == self.first.size and self.first.at(subject, 0)
        if size < self.least:
            return False
        end = size - self.last.size
        if not self.first.at(subject, 0) or not self.last.at(subject, end):
            return False
        pos = self.first.size
        for piece in self.middle:
            found = piece.find(subject, pos, end)
            if found < 0:
                return False
            pos = found + piece.size
        return True


@functools.lru_cache(maxsize=4096)
def compile_mask(mask: str) -> Glob:
    """The compiled, case-folded form of ``mask`` (cached: ban lists are checked on every
    message and join)."""
    return Glob(fold(mask))


def normalize_mask(mask: str) -> str:
    """Complete a partial ban mask the way IRC servers do: ``bob`` -> ``bob!*@*``."""
    if "!" not in mask and "@" not in mask:
        return f"{mask}!*@*"
    if "!" not in mask:
        return f"*!{mask}"
    if "@" not in mask:
        return f"{mask}@*"
    return mask


def mask_matches(mask: str, hostmask: str) -> bool:
    """True when glob ``mask`` matches ``hostmask``, ignoring case (ASCII casemapping)."""
    return compile_mask(mask).matches(fold(hostmask))


#: extended ban types (IRC ``EXTBAN=,am``, no prefix): ``a:`` matches an account name (a
#: glob, any case), ``m:`` mutes whoever its mask matches (``m:nick!user@host``, ``m:a:name``)
ACCOUNT_EXTBAN = "a"
MUTE_EXTBAN = "m"
EXTBAN_TYPES = ACCOUNT_EXTBAN + MUTE_EXTBAN


def extban(mask: str) -> tuple[str, str]:
    """``("a", "name")`` for ``a:name``; ``("", mask)`` for a plain hostmask. A letter and a
    colon at the start make an extended ban: a nick cannot hold a colon."""
    if len(mask) > 1 and mask[1] == ":" and mask[0].isascii() and mask[0].isalpha():
        return mask[0], mask[2:]
    return "", mask


def normalize_entry(mask: str) -> str:
    """A mask-list entry in the form it is kept and shown: a hostmask completed
    (``bob`` -> ``bob!*@*``), ``m:bob`` -> ``m:bob!*@*``, ``a:name`` as given. Raises
    ``ValueError`` (its text for people) for an unknown type or an empty one."""
    kind, rest = extban(mask)
    if not kind:
        return normalize_mask(mask)
    if kind not in EXTBAN_TYPES:
        raise ValueError(f"Unknown extended ban type {kind}: (this server knows a: and m:)")
    if not rest:
        raise ValueError(f"Extended ban {kind}: needs a mask")
    if kind == MUTE_EXTBAN:
        if extban(rest)[0] == MUTE_EXTBAN:
            raise ValueError("A mute cannot hold a mute")
        return f"{kind}:{normalize_entry(rest)}"
    return f"{kind}:{rest}"


def entry_matches(entry: str, hostmask: str, account: Optional[str]) -> bool:
    """True when the list entry ``entry`` (no ``m:``: the caller chose the mutes) matches a
    user with ``hostmask`` and ``account`` (None: a guest, whom no ``a:`` matches)."""
    kind, rest = extban(entry)
    if kind == ACCOUNT_EXTBAN:
        return account is not None and mask_matches(rest, account)
    if kind:
        return False
    return mask_matches(entry, hostmask)
