"""ISUPPORT (005) is full and truthful: every token docs/irc.md lists is sent with the
documented value (config references resolved against the running config), and nothing
undocumented is sent. The table is parsed from the document, so they cannot drift apart.
"""
from __future__ import annotations

import re

import pytest
import pytest_twisted
from twisted.cred.checkers import InMemoryUsernamePasswordDatabaseDontUse

from chathub.config import Config
from tests.support import REPO, HubServer

#: values unlike the defaults, so a token that ignored its setting would show
OVERRIDES = {
    "server": {"name": "irc.test", "network": "DocNet"},
    "limits": {"nick_length": 23, "room_name_length": 41, "topic_length": 307, "away_length": 111,
               "max_rooms_per_user": 17},
    "irc": {"flood_exempt": ["127.0.0.0/8"], "user_length": 12, "kick_length": 255, "max_targets": 7,
            "max_bans": 33, "monitor_limit": 44},
    "history": {"query_limit": 37},
}


def _doc() -> str:
    return (REPO / "docs" / "irc.md").read_text()


def documented_isupport(config) -> dict[str, str]:
    """``{token: value}`` from the "ISUPPORT (005)" table, config references resolved."""
    text = _doc()
    section = text.split("## ISUPPORT (005)", 1)[1].split("\n## ", 1)[0]
    tokens: dict[str, str] = {}
    for row in re.findall(r"^\|\s*`([A-Z0-9]+)`\s*\|(.*)\|\s*$", section, re.M):
        name, cell = row
        value_part, _, note = cell.strip().partition(" (")
        value = "".join(_resolve(span, config) for span in re.findall(r"`([^`]*)`", value_part))
        # "(n = `[irc] max_targets`)": a letter standing for a setting inside the value
        for letter, ref in re.findall(r"\b(\w) = `(\[\w+\] \w+)`", note):
            value = re.sub(rf"(?<=:){letter}\b", _resolve(ref, config), value)
        tokens[name] = value
    assert len(tokens) >= 20, "the ISUPPORT table of docs/irc.md was not found"
    return tokens


def _resolve(span: str, config) -> str:
    """A backticked value: ``[section] key`` is that setting; anything else is literal."""
    ref = re.fullmatch(r"\[(\w+)\] (\w+)", span)
    if ref is None:
        return span
    return str(getattr(getattr(config, ref.group(1)), ref.group(2)))


def documented_history_tokens(config) -> dict[str, str]:
    """The history section's sentence on CHATHISTORY= and MSGREFTYPES=."""
    sentence = re.search(r"005 carries `CHATHISTORY=<history\.(\w+)>`.*?`MSGREFTYPES=([^`]+)`", _doc(), re.S)
    assert sentence, "docs/irc.md no longer says what CHATHISTORY/MSGREFTYPES carry"
    return {"CHATHISTORY": str(getattr(config.history, sentence.group(1))), "MSGREFTYPES": sentence.group(2)}


async def sent_isupport(config) -> dict[str, str]:
    """Register on an in-process server with ``config``; the 005 tokens as ``{name: value}``."""
    server = HubServer(config, [InMemoryUsernamePasswordDatabaseDontUse()], protocols=["irc"])
    try:
        c = await server.connect("irc")
        c.send("NICK doc")
        c.send("USER doc 0 * :doc")
        await c.expect("001")
        lines = await c.roundtrip()
        tokens: dict[str, str] = {}
        for line in lines:
            if line.command == "005":
                assert line.params[0] == "doc" and line.params[-1] == "are supported by this server"
                for word in line.params[1:-1]:
                    name, _, value = word.partition("=")
                    assert name not in tokens, f"{name} sent twice"
                    tokens[name] = value
        # VERSION repeats the same 005
        again = {}
        for line in await c.roundtrip("VERSION"):
            if line.command == "005":
                again.update(w.partition("=")[::2] for w in line.params[1:-1])
        assert again == tokens
        return tokens
    finally:
        await server.stop()


@pytest.mark.parametrize("history", [True, False], ids=["history", "no-history"])
@pytest_twisted.ensureDeferred
async def test_isupport_is_exactly_what_docs_irc_md_says(history):
    sections = {name: dict(values) for name, values in OVERRIDES.items()}
    sections["history"]["enabled"] = history
    config = Config().with_overrides(**sections)
    expected = documented_isupport(config)
    if history:
        expected.update(documented_history_tokens(config))
    sent = await sent_isupport(config)
    missing = {k: v for k, v in expected.items() if k not in sent}
    wrong = {k: (sent[k], v) for k, v in expected.items() if k in sent and sent[k] != v}
    undocumented = sorted(set(sent) - set(expected))
    assert not missing, f"documented but not sent: {missing}"
    assert not wrong, f"sent value != documented value: {wrong}"
    assert not undocumented, f"sent but not in docs/irc.md: {undocumented}"
    # spot checks that the resolution above did what it should
    assert sent["NICKLEN"] == "23" and sent["NETWORK"] == "DocNet" and sent["CHANLIMIT"] == "#:17"
    assert "PRIVMSG:7" in sent["TARGMAX"].split(",")
    assert ("CHATHISTORY" in sent) == history
