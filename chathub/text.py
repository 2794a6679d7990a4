"""Text that UTF-8 can carry: the check protocols apply to what they decode, and the
encoding every renderer uses for what it sends.

A Python ``str`` may hold lone UTF-16 surrogates (U+D800 to U+DFFF). They are not
Unicode scalar values, UTF-8 cannot encode them (``str.encode`` raises), and no
database driver will store them as text. JSON lets a client send one (``"\\ud800"``);
IRC's strict UTF-8 decoding and the telnet protocol's ``errors="replace"`` decoding
cannot produce one. So a protocol refuses such text where it decodes it
(``is_valid_text``), and every renderer encodes with ``encode_utf8``, which writes
U+FFFD for a surrogate instead of raising: text already stored by an older version,
or that reaches a renderer any other way, costs one character, never a page of history
or a connection.

A leaf module: it imports nothing from chathub, so the hub, the store and every
protocol can use it.
"""
from __future__ import annotations

import re

#: what a lone surrogate is shown as
REPLACEMENT = "\ufffd"

# One code point of a single character class: matching is linear in the text.
_SURROGATE = re.compile("[\ud800-\udfff]")


def is_valid_text(text: str) -> bool:
    """True when every code point of ``text`` is a Unicode scalar value (no surrogate).

    ASCII text (the common case) is answered without reading it; other text is
    encoded once, which is faster here than searching it for surrogates.
    """
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def scrub(text: str) -> str:
    """``text`` with each surrogate replaced by U+FFFD (valid text is returned equal)."""
    return _SURROGATE.sub(REPLACEMENT, text)


def encode_utf8(text: str) -> bytes:
    """``text`` as UTF-8, a surrogate written as U+FFFD: never raises.

    Valid text costs exactly ``text.encode("utf-8")``; only text that fails to encode
    is scrubbed and encoded again.
    """
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        return scrub(text).encode("utf-8")
