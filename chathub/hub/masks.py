"""Hostmask globs (``nick!user@host`` with ``*`` and ``?``) for bans and invites."""
from __future__ import annotations

import functools
import re

from chathub.hub.names import fold


@functools.lru_cache(maxsize=4096)
def _compile(mask: str) -> re.Pattern[str]:
    pattern = "".join(
        ".*" if c == "*" else "." if c == "?" else re.escape(c) for c in fold(mask)
    )
    return re.compile(pattern + r"\Z", re.DOTALL)


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
    return _compile(mask).match(fold(hostmask)) is not None
