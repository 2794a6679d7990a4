"""Issue 13, point 8: every nick colour of the web client reaches WCAG AA (4.5:1) on the
backgrounds a nick is shown on, in the light theme and in the dark one. The contrast is
computed from style.css as WCAG 2.x defines it."""
from __future__ import annotations

import re
from pathlib import Path

WEB = Path(__file__).resolve().parent.parent / "chathub" / "web"
BACKGROUNDS = ("--bg", "--panel", "--panel-2", "--mention")


def luminance(colour: str) -> float:
    """WCAG relative luminance of ``#rrggbb``."""
    def channel(value: int) -> float:
        c = value / 255
        return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = (int(colour[i : i + 2], 16) for i in (1, 3, 5))
    return 0.2126 * channel(r) + 0.7152 * channel(g) + 0.0722 * channel(b)


def contrast(a: str, b: str) -> float:
    high, low = sorted((luminance(a), luminance(b)), reverse=True)
    return (high + 0.05) / (low + 0.05)


def themes() -> dict[str, dict[str, str]]:
    """The custom properties of the light ``:root`` block and of the dark one."""
    css = (WEB / "style.css").read_text()
    light = css[css.index(":root {") : css.index("}", css.index(":root {"))]
    start = css.index("@media (prefers-color-scheme: dark)")
    dark = css[start : css.index("}", start)]
    found = {}
    for name, block in (("light", light), ("dark", dark)):
        found[name] = dict(re.findall(r"(--[\w-]+):\s*(#[0-9a-fA-F]{6});", block))
    # the dark theme keeps what it does not override
    found["dark"] = {**found["light"], **found["dark"]}
    return found


def test_contrast_formula():
    assert round(contrast("#000000", "#ffffff"), 2) == 21.0
    assert round(contrast("#767676", "#ffffff"), 2) == 4.54  # the usual AA grey


def test_every_nick_colour_reaches_aa_on_both_themes():
    count = int(re.search(r"const NICK_COLOURS = (\d+);", (WEB / "js" / "app.js").read_text()).group(1))
    for theme, props in themes().items():
        colours = [props[f"--nick-{i}"] for i in range(count)]
        assert len(set(colours)) == count, theme
        for colour in colours:
            for background in BACKGROUNDS:
                ratio = contrast(colour, props[background])
                assert ratio >= 4.5, f"{theme}: {colour} on {background} {props[background]} is {ratio:.2f}:1"
    # the dark theme has colours of its own: the light ones are too dark there
    assert all(f"--nick-{i}" in themes()["dark"] for i in range(count))
    css = (WEB / "style.css").read_text()
    dark_block = css[css.index("@media (prefers-color-scheme: dark)") :]
    assert all(f"--nick-{i}:" in dark_block for i in range(count))
