"""STATUSMSG over real sockets, every protocol in one room (issue 16, item 2): ``PRIVMSG @#room``
reaches the room's operators, ``+#room`` its operators and voiced members, whoever sends it and
over whichever protocol; the others never see it, and no history returns it.

``history_hub`` is a hub on a real SQLite store serving IRC, telnet and chathub.v1 on 127.0.0.1
port 0. "Never sees it" is checked in hub order: a line said to the whole room afterwards
reaches that member, and nothing of the STATUSMSG came before it.
"""
from __future__ import annotations

import pytest_twisted

from tests.support import ALL_CAPS, history

ROOM = "#ops"


async def room_with_ranks(server):
    """op (IRC, the room's operator), tel (telnet, made operator), web (chathub.v1, voiced)
    and plain (IRC, neither), all in ROOM."""
    op = await server.irc("op", *ALL_CAPS, rooms=[ROOM])
    tel = await server.telnet("tel", rooms=[ROOM])
    web = await server.ws("web", rooms=[ROOM])
    plain = await server.irc("plain", *ALL_CAPS, rooms=[ROOM])
    op.send(f"MODE {ROOM} +ov tel web")
    await plain.expect(lambda l: l.command == "MODE" and l.params[1:] == ["+ov", "tel", "web"])
    await web.expect({"type": "mode", "room": ROOM})
    await tel.expect_re(r"sets mode \+o tel \+v web")
    return op, tel, web, plain


async def said_to_all(op, tel, web, plain, marker: str) -> None:
    """op says ``marker`` to the whole room; every other member receives it."""
    op.send(f"PRIVMSG {ROOM} :{marker}")
    await plain.expect(lambda l: l.command == "PRIVMSG" and l.params == [ROOM, marker])
    await tel.expect_re(rf"<op> {marker}$")
    await web.expect({"type": "message", "text": marker})


async def plain_to(plain, op, target: str, text: str):
    """plain (no operator) sends ``text`` to ``target`` (``@#ops``, ``+#ops``); its echo and
    op's copy, both naming ``target``, from plain."""
    plain.send(f"PRIVMSG {target} :{text}")
    echo = await plain.expect(lambda l: l.command == "PRIVMSG" and l.params[-1] == text)
    got = await op.expect(lambda l: l.command == "PRIVMSG" and l.params[-1] == text)
    assert echo.params == got.params == [target, text] and got.source.startswith("plain!")
    assert got.tags["msgid"] == echo.tags["msgid"]
    return got


@pytest_twisted.ensureDeferred
async def test_isupport_says_statusmsg(history_hub):
    client = await history_hub.irc("probe")
    tokens = {p for l in client.lines if l.command == "005" for p in l.params[1:-1]}
    assert "STATUSMSG=@+" in tokens


@pytest_twisted.ensureDeferred
async def test_at_room_reaches_the_operators_of_every_protocol_only(history_hub):
    op, tel, web, plain = await room_with_ranks(history_hub)

    # from a member who is no operator: allowed, as on most servers; its echo names @#ops
    await plain_to(plain, op, f"@{ROOM}", "for the operators")
    assert await tel.expect_re(r"for the operators") == f"[@{ROOM}] <plain> for the operators"
    await said_to_all(op, tel, web, plain, "after one")
    assert not [m for m in web.received if m.get("text") == "for the operators"]  # voiced, not operator

    # from telnet and from the web
    tel.send(f"/msg @{ROOM} telnet to operators")
    got = await op.expect(lambda l: l.command == "PRIVMSG" and l.params[-1] == "telnet to operators")
    assert got.params[0] == f"@{ROOM}"
    web.send_json({"type": "notice", "target": f"@{ROOM}", "text": "web to operators", "ref": 5})
    got = await op.expect(lambda l: l.command == "NOTICE" and l.params[-1] == "web to operators")
    assert got.params[0] == f"@{ROOM}"
    assert await tel.expect_re(r"web to operators") == f"[@{ROOM}] -web- web to operators"
    mine = await web.expect({"type": "notice", "text": "web to operators"})  # the sender's copy
    assert mine["target"] == ROOM and mine["statusmsg"] == "@"
    await web.expect({"type": "ok", "ref": 5})
    await said_to_all(op, tel, web, plain, "after two")
    assert not [l for l in plain.lines if "to operators" in l.text]

    # none of it is in the room's history, for anyone
    _, lines = await history(op, f"CHATHISTORY LATEST {ROOM} * 20")
    assert [l.params[-1] for l in lines if l.command in ("PRIVMSG", "NOTICE")] == ["after one", "after two"]
    web.send_json({"type": "history", "target": ROOM, "ref": 6})
    page = await web.expect({"type": "history", "ref": 6})
    assert [e["text"] for e in page["events"]] == ["after one", "after two"]
    late = await history_hub.telnet("late", rooms=[ROOM])
    await late.expect_re(r"^\* end of history")
    assert not [t for t in late.texts if "operators" in t]


@pytest_twisted.ensureDeferred
async def test_plus_room_reaches_operators_and_voiced_members(history_hub):
    op, tel, web, plain = await room_with_ranks(history_hub)
    await plain_to(plain, op, f"+{ROOM}", "for the voiced")
    assert await tel.expect_re(r"for the voiced") == f"[+{ROOM}] <plain> for the voiced"
    event = await web.expect({"type": "message", "text": "for the voiced"})
    assert event["target"] == ROOM and event["statusmsg"] == "+" and event["from"]["nick"] == "plain"
    # a member who is neither gets nothing, not even through another of the sender's echo paths
    op.send(f"PRIVMSG +{ROOM} :voiced again")
    await web.expect({"type": "message", "text": "voiced again"})
    await said_to_all(op, tel, web, plain, "after")
    assert not [l for l in plain.lines if l.params and l.params[-1] == "voiced again"]


@pytest_twisted.ensureDeferred
async def test_the_rooms_rules_bind_statusmsg_too(history_hub):
    op, tel, web, plain = await room_with_ranks(history_hub)
    outsider = await history_hub.irc("outsider", *ALL_CAPS)
    lines = await outsider.roundtrip(f"PRIVMSG @{ROOM} :let me in")  # +n: members only
    assert [l.command for l in lines] == ["404"]
    op.send(f"MODE {ROOM} +m")
    await plain.expect(lambda l: l.command == "MODE" and l.params[1:] == ["+m"])
    lines = await plain.roundtrip(f"PRIVMSG @{ROOM} :moderated")
    assert [l.command for l in lines] == ["404"]
    lines = await plain.roundtrip("PRIVMSG @#nowhere :hello")
    assert [l.command for l in lines] == ["403"]
