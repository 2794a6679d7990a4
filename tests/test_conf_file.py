"""conf/chathub.toml documents every setting, each with a comment, at its built-in default."""
from __future__ import annotations

import dataclasses
import re
import tomllib
from pathlib import Path

from chathub.config import Config, load_config

CONF = Path(__file__).resolve().parent.parent / "conf" / "chathub.toml"


def _settings(section) -> list[str]:
    return [f.name for f in dataclasses.fields(section) if f.init]


def test_reference_config_is_the_defaults():
    assert load_config(str(CONF)) == dataclasses.replace(Config(), source=str(CONF))


def test_every_setting_is_in_the_file_with_a_comment():
    text = CONF.read_text()
    table = tomllib.loads(text)
    lines = text.splitlines()
    missing, uncommented = [], []
    for section_field in dataclasses.fields(Config):
        if section_field.name == "source":
            continue
        section = getattr(Config(), section_field.name)
        present = table.get(section_field.name, {})
        for name in _settings(section):
            if name == "operators":  # a list of tables, documented as a commented example
                if not re.search(r"^# \[\[irc\.operators\]\]", text, re.M):
                    missing.append("irc.operators")
                continue
            if name not in present:
                missing.append(f"{section_field.name}.{name}")
                continue
            # the line before the setting (skipping other settings of one comment) is a comment
            index = next(
                i for i, line in enumerate(lines)
                if re.match(rf"{name}\s*=", line) and _section_at(lines, i) == section_field.name
            )
            j = index - 1
            while j >= 0 and re.match(r"\w+\s*=", lines[j]):
                j -= 1
            if j < 0 or not lines[j].startswith("#"):
                uncommented.append(f"{section_field.name}.{name}")
    assert not missing, f"settings missing from {CONF.name}: {missing}"
    assert not uncommented, f"settings without a comment in {CONF.name}: {uncommented}"


def _section_at(lines: list[str], index: int) -> str:
    for line in reversed(lines[:index]):
        m = re.match(r"\[(\w+)\]\s*$", line)
        if m:
            return m.group(1)
    return ""
