"""tools/screenshots.py makes its four PNGs (1280x800 and 390x844, light and dark) of the
formatted conversation, against a real twistd server with telnet and IRC users and the page
in Debian's Chromium; docs/ links the committed ones."""
from __future__ import annotations

import importlib.util
import struct
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def load_tool():
    spec = importlib.util.spec_from_file_location("chathub_screenshots", ROOT / "tools" / "screenshots.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR", path
    return struct.unpack(">II", data[16:24])


def test_the_tool_makes_four_shots_and_docs_link_them(browser, tmp_path):
    tool = load_tool()
    saved = tool.take(browser, tmp_path / "shots", tmp_path / "work")
    assert [path.name for path in saved] == [name for name, *_ in tool.SHOTS]
    for path, (_, width, height, _) in zip(saved, tool.SHOTS, strict=True):
        assert png_size(path) == (width, height)
    light, dark = saved[0].read_bytes(), saved[1].read_bytes()
    assert light != dark and saved[2].read_bytes() != saved[3].read_bytes()
    # the committed ones, at the same sizes, each linked from the docs
    docs = (ROOT / "README.md").read_text() + (ROOT / "docs" / "protocol.md").read_text()
    for name, width, height, _ in tool.SHOTS:
        assert png_size(ROOT / "docs" / "screenshots" / name) == (width, height)
        assert f"screenshots/{name}" in docs, name
