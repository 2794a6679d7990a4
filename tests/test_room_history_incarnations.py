"""Issue 10, item 7 over real sockets, on SQLite and PostgreSQL: a vanished private room's
history is not readable by whoever makes a room of the same name next.

A ``+s +i +k`` guest room emptied and vanished; a new user joined the same name and read
its messages through IRC CHATHISTORY, the telnet join replay and chathub.v1 history. Each
path now shows the new room's own history only; a registered room keeps all of its own
(tests/test_persistence.py restarts one)."""
from __future__ import annotations

import pytest_twisted

from tests.store_fixtures import *  # noqa: F401,F403 (fixtures)
from tests.support import HubServer

HISTORY_CAPS = ("draft/chathistory", "batch", "echo-message", "server-time", "message-tags")


async def chathistory(client, target: str) -> list[str]:
    """The PRIVMSG texts of ``CHATHISTORY LATEST target * 50``."""
    lines = await client.roundtrip(f"CHATHISTORY LATEST {target} * 50")
    assert any(l.command == "BATCH" for l in lines), client.dump()
    return [l.params[-1] for l in lines if l.command == "PRIVMSG"]


@pytest_twisted.ensureDeferred
async def test_a_new_room_of_a_vanished_ones_name_reads_none_of_its_history(store):
    server = HubServer(store=store)
    hub = server.hub
    try:
        watchers = await server.bystanders()
        alice = await server.irc("alice", *HISTORY_CAPS, rooms=["#hidden"])
        alice.send("MODE #hidden +sik sesame")
        await alice.expect("MODE")
        for n in range(3):
            alice.send(f"PRIVMSG #hidden :secret {n}")
            await alice.expect(lambda l, n=n: l.command == "PRIVMSG" and l.params[-1] == f"secret {n}")
        assert await chathistory(alice, "#hidden") == ["secret 0", "secret 1", "secret 2"]
        alice.send("PART #hidden")
        await alice.expect("PART")
        assert hub.find_room("#hidden") is None

        # the newcomer makes the room anew and asks for its history in the same packet
        mallory = await server.irc("mallory", *HISTORY_CAPS)
        mallory.send("JOIN #hidden", "CHATHISTORY LATEST #hidden * 50")
        await mallory.expect(lambda l: l.command == "BATCH" and l.params[0].startswith("-"))
        leaked = [l.text for l in mallory.lines if "secret" in l.text]
        assert leaked == [], leaked
        mallory.send("PRIVMSG #hidden :fresh start")
        await mallory.expect(lambda l: l.command == "PRIVMSG" and l.params[-1] == "fresh start")
        assert await chathistory(mallory, "#hidden") == ["fresh start"]
        assert await chathistory(mallory, "#HIDDEN") == ["fresh start"]

        # telnet: the join replay
        tom = await server.telnet("tom")
        tom.send("/join #hidden")
        await tom.expect_re(r"^\* last 1 messages in #hidden:$")
        replay = await tom.expect_re(r"<mallory> ")
        assert replay.endswith("<mallory> fresh start")
        await tom.expect_re(r"^\* end of history of #hidden$")
        assert not any("secret" in text for text in tom.texts)

        # chathub.v1: history, latest and before the first new message
        wendy = await server.ws("wendy", rooms=["#hidden"])
        wendy.send_json({"type": "history", "target": "#hidden", "limit": 50, "ref": "h"})
        page = await wendy.expect({"type": "history", "ref": "h"})
        said = [e for e in page["events"] if e.get("type") == "message"]
        assert [e["text"] for e in said] == ["fresh start"] and page["more"] is False
        wendy.send_json({"type": "history", "target": "#hidden", "before": said[0]["id"], "ref": "b"})
        older = await wendy.expect({"type": "history", "ref": "b"})
        assert not any("secret" in (e.get("text") or "") for e in older["events"]) and older["more"] is False
        assert not any("secret" in str(m) for m in wendy.received)

        # the old room's own member, back in the new room, does not get it back either
        alice.send("JOIN #hidden")
        await alice.expect("366")
        assert await chathistory(alice, "#hidden") == ["fresh start"]
        await watchers.still_served()
    finally:
        for user in list(hub.users.values()):
            hub.quit(user, "test over")  # stored now, before the store closes
        await server.stop()
