"""The hub's one formatting model: mIRC formatting codes, as modern.ircdocs.horse describes them.

Text is stored and relayed as sent (IRC clients get the codes untouched); each renderer
reads it here: ``spans`` splits it into runs of one style, ``plain`` keeps only the
text, ``to_ansi`` writes it as ANSI SGR for a terminal. ``strip_ansi`` removes terminal
escape sequences (CSI, OSC, DCS, ...) whole from what a telnet user typed.

Every function is one left-to-right pass over the text with a bounded look-ahead (at most
13 characters for a hex colour): linear in the text, no regex, no recursion.

A leaf module: it imports nothing from chathub.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Optional, Union

BOLD = "\x02"
COLOR = "\x03"
HEX_COLOR = "\x04"
RESET = "\x0f"
MONOSPACE = "\x11"
REVERSE = "\x16"
ITALIC = "\x1d"
STRIKETHROUGH = "\x1e"
UNDERLINE = "\x1f"

#: every formatting code; other C0 controls are not formatting
CODES = frozenset(BOLD + COLOR + HEX_COLOR + RESET + MONOSPACE + REVERSE + ITALIC + STRIKETHROUGH + UNDERLINE)

_TOGGLES = {
    BOLD: "bold",
    ITALIC: "italic",
    UNDERLINE: "underline",
    STRIKETHROUGH: "strikethrough",
    MONOSPACE: "monospace",
    REVERSE: "reverse",
}

#: colours 16 to 98 of the extended palette (0-15 are the terminal's own, see ANSI_16)
EXTENDED = (
    "470000 472100 474700 324700 004700 00472c 004747 002747 000047 2e0047 470047 47002a "
    "740000 743a00 747400 517400 007400 007449 007474 004074 000074 4b0074 740074 740045 "
    "b50000 b56300 b5b500 7db500 00b500 00b571 00b5b5 0063b5 0000b5 7500b5 b500b5 b5006b "
    "ff0000 ff8c00 ffff00 b2ff00 00ff00 00ffa0 00ffff 008cff 0000ff a500ff ff00ff ff0098 "
    "ff5959 ffb459 ffff71 cfff60 6fff6f 65ffc9 6dffff 59b4ff 5959ff c459ff ff66ff ff59bc "
    "ff9c9c ffd39c ffff9c e2ff9c 9cff9c 9cffdb 9cffff 9cd3ff 9c9cff dc9cff ff9cff ff94d3 "
    "000000 131313 282828 363636 4d4d4d 656565 818181 9f9f9f bcbcbc e2e2e2 ffffff"
).split()

#: mIRC colours 0-15 as ANSI SGR foreground codes (background adds 10)
ANSI_16 = (97, 30, 34, 32, 91, 31, 35, 33, 93, 92, 36, 96, 94, 95, 90, 37)

#: a colour: a palette number 0-98, or "#rrggbb" from a hex colour code
Colour = Union[int, str]


@dataclass(frozen=True)
class Style:
    """The formatting in effect for a run of text."""

    bold: bool = False
    italic: bool = False
    underline: bool = False
    strikethrough: bool = False
    monospace: bool = False
    reverse: bool = False
    fg: Optional[Colour] = None
    bg: Optional[Colour] = None


PLAIN = Style()


def _digits(text: str, i: int) -> tuple[Optional[int], int]:
    """Up to two ASCII digits at ``i``: their value (None when there are none) and the end."""
    end = i
    while end < len(text) and end - i < 2 and "0" <= text[end] <= "9":
        end += 1
    return (int(text[i:end]) if end > i else None), end


def _hex(text: str, i: int) -> Optional[str]:
    """Six hex digits at ``i`` as "#rrggbb", or None."""
    chunk = text[i : i + 6]
    if len(chunk) == 6 and all(c in "0123456789abcdefABCDEF" for c in chunk):
        return "#" + chunk.lower()
    return None


def _palette(n: int) -> Optional[Colour]:
    """Colour ``n`` of the 99-colour palette; 99 means the default colour (None)."""
    return None if n == 99 else n


def spans(text: str) -> list[tuple[str, Style]]:
    """``text`` as runs of one style each, formatting codes removed; empty runs are left out."""
    # runs as lists of pieces, joined at the end: merging by concatenation would be
    # quadratic on text like "\x031,x\x031,x..." (one style, cut by codes every character)
    runs: list[tuple[list[str], Style]] = []
    style = PLAIN
    start = 0
    i = 0
    n = len(text)

    def flush(end: int) -> None:
        if end > start:
            if runs and runs[-1][1] == style:
                runs[-1][0].append(text[start:end])
            else:
                runs.append(([text[start:end]], style))

    while i < n:
        c = text[i]
        if c not in CODES:
            i += 1
            continue
        flush(i)
        i += 1
        if c in _TOGGLES:
            name = _TOGGLES[c]
            style = replace(style, **{name: not getattr(style, name)})
        elif c == RESET:
            style = PLAIN
        elif c == COLOR:
            fg, i = _digits(text, i)
            if fg is None:
                style = replace(style, fg=None, bg=None)
            else:
                bg = style.bg
                if i + 1 < n and text[i] == "," and "0" <= text[i + 1] <= "9":
                    value, i = _digits(text, i + 1)
                    assert value is not None
                    bg = _palette(value)
                style = replace(style, fg=_palette(fg), bg=bg)
        else:  # HEX_COLOR
            fg_hex = _hex(text, i)
            if fg_hex is None:
                style = replace(style, fg=None, bg=None)
            else:
                i += 6
                bg_hex: Optional[Colour] = style.bg
                if i < n and text[i] == ",":
                    found = _hex(text, i + 1)
                    if found is not None:
                        bg_hex = found
                        i += 7
                style = replace(style, fg=fg_hex, bg=bg_hex)
        start = i
    flush(n)
    return [("".join(pieces), run_style) for pieces, run_style in runs]


def plain(text: str) -> str:
    """``text`` without formatting codes, their colour numbers included."""
    if not any(c in CODES for c in text):
        return text
    return "".join(part for part, _ in spans(text))


def _rgb(colour: Colour) -> Optional[tuple[int, int, int]]:
    if isinstance(colour, str):
        return int(colour[1:3], 16), int(colour[3:5], 16), int(colour[5:7], 16)
    if 16 <= colour < 99:
        value = EXTENDED[colour - 16]
        return int(value[0:2], 16), int(value[2:4], 16), int(value[4:6], 16)
    return None


def _sgr_colour(colour: Colour, background: bool) -> str:
    rgb = _rgb(colour)
    if rgb is None:
        return str(ANSI_16[int(colour)] + (10 if background else 0))
    return f"{48 if background else 38};2;{rgb[0]};{rgb[1]};{rgb[2]}"


def sgr(style: Style) -> str:
    """The SGR parameters (after a reset) that show ``style``; empty for plain text."""
    params = []
    if style.bold:
        params.append("1")
    if style.italic:
        params.append("3")
    if style.underline:
        params.append("4")
    if style.reverse:
        params.append("7")
    if style.strikethrough:
        params.append("9")
    if style.fg is not None:
        params.append(_sgr_colour(style.fg, False))
    if style.bg is not None:
        params.append(_sgr_colour(style.bg, True))
    return ";".join(params)


def to_ansi(text: str) -> str:
    """``text`` with its formatting written as ANSI SGR escapes, ending in the terminal's default.

    Monospace has no SGR code (a terminal is monospaced already).
    """
    if not any(c in CODES for c in text):
        return text
    parts = []
    styled = False
    for part, style in spans(text):
        params = sgr(style)
        if params:
            parts.append(f"\x1b[0;{params}m")
            styled = True
        elif styled:
            parts.append("\x1b[0m")
            styled = False
        parts.append(part)
    if styled:
        parts.append("\x1b[0m")
    return "".join(parts)


def strip_ansi(text: str) -> str:
    """``text`` without terminal escape sequences, each removed whole.

    ESC ``[`` (or the C1 CSI, U+009B) starts a CSI sequence that ends at its final byte
    (``@`` to ``~``); ESC ``]`` (OSC), ``P`` (DCS), ``X``, ``^`` and ``_`` start a string
    that ends at BEL or ST (ESC ``\\``); any other ESC takes its intermediate bytes and
    one final character. A sequence the line cuts off is removed to the end of the line.
    """
    if "\x1b" not in text and "\x9b" not in text:
        return text
    out = []
    i = 0
    n = len(text)
    while i < n:
        c = text[i]
        if c != "\x1b" and c != "\x9b":
            j = i
            while j < n and text[j] != "\x1b" and text[j] != "\x9b":
                j += 1
            out.append(text[i:j])
            i = j
            continue
        if c == "\x9b":
            kind = "["
            i += 1
        else:
            kind = text[i + 1] if i + 1 < n else ""
            i += 2
        if kind == "[":
            while i < n and "\x20" <= text[i] <= "\x3f":  # parameters, intermediates
                i += 1
            if i < n and "\x40" <= text[i] <= "\x7e":  # the final byte
                i += 1
        elif kind in ("]", "P", "X", "^", "_"):
            while i < n:
                if text[i] == "\x07":
                    i += 1
                    break
                if text[i] == "\x1b" and i + 1 < n and text[i + 1] == "\\":
                    i += 2
                    break
                i += 1
        elif "\x20" <= kind <= "\x2f":
            while i < n and "\x20" <= text[i] <= "\x2f":
                i += 1
            i += 1
    return "".join(out)
